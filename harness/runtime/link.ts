// Link: an attachment of a program; close() detaches. Either a bpf_link fd (raw tracepoint,
// fentry/fexit, LINK_CREATE), a perf event fd carrying the program (kprobe, tracepoint), or a
// legacy attachment that holds no fd of its own (BPF_PROG_ATTACH to a cgroup or a map, a tc
// filter made over netlink, XDP set on an interface) and whose cleanup detaches it; each with an
// optional cleanup (removing a legacy tracefs kprobe event).

import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { CoreMatrixError, UsageError } from '../core/errors.js';
import { PERF_EVENT_ATTR, writeAttr } from './attr.js';
import { linkCreate, rawTracepointOpen } from './bpf.js';
import { AttachType, Perf } from './consts.js';
import { trackFd } from './fds.js';
import type { Program } from './program.js';
import { close, errnoNumber, ioctl, mount, perfEventOpen, SyscallError, withScratch } from './sys.js';

/** `legacy`: no fd (fd is -1); close() runs the cleanup, which detaches. */
export type LinkKind = 'bpf_link' | 'perf_event' | 'legacy';

export class Link {
  private closed = false;
  constructor(
    readonly fd: number,
    readonly kind: LinkKind,
    /** What is attached where, for messages: "kprobe do_sys_openat2". */
    readonly target: string,
    /** How it was attached: "BPF_LINK_CREATE", "BPF_RAW_TRACEPOINT_OPEN", "kprobe PMU", "tracefs kprobe_events", "perf tracepoint". */
    readonly via: string,
    private readonly cleanup?: () => void,
  ) {}

  /** Detaches: closes the fd (and, for perf events, disables first and removes legacy probes). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.kind === 'legacy') return;
      if (this.kind === 'perf_event') {
        try {
          ioctl(this.fd, Perf.IOC_DISABLE, 0, `PERF_EVENT_IOC_DISABLE ${this.target}`);
        } finally {
          close(this.fd);
        }
      } else close(this.fd);
    } finally {
      this.cleanup?.();
    }
  }
}

/** BPF_RAW_TRACEPOINT_OPEN for a BPF_PROG_TYPE_RAW_TRACEPOINT program. */
export function attachRawTracepoint(prog: Program, name: string): Link {
  return new Link(rawTracepointOpen(prog.fd, name), 'bpf_link', `raw_tp ${name}`, 'BPF_RAW_TRACEPOINT_OPEN');
}

const EINVAL = errnoNumber('EINVAL');

/**
 * Attaches a tracing program (fentry/fexit/fmod_ret/lsm) loaded with attach_btf_id: BPF_LINK_CREATE
 * with its attach type, falling back to BPF_RAW_TRACEPOINT_OPEN(name=NULL) where LINK_CREATE does
 * not know tracing programs (5.10).
 */
export function attachTracing(prog: Program, attachType: number = AttachType.TRACE_FENTRY, label = 'tracing'): Link {
  try {
    return new Link(linkCreate({ progFd: prog.fd, attachType }, label), 'bpf_link', label, 'BPF_LINK_CREATE');
  } catch (e) {
    if (!(e instanceof SyscallError) || e.errno !== EINVAL) throw e;
    return new Link(rawTracepointOpen(prog.fd, undefined), 'bpf_link', label, 'BPF_RAW_TRACEPOINT_OPEN');
  }
}

let tracefsRoot: string | undefined;
/**
 * Where tracefs is mounted. With `mount: true` it is mounted on /sys/kernel/tracing when it is
 * not (a guest's init may not have); the default only looks, so host runs change nothing.
 */
export function tracefs(o: { mount?: boolean } = {}): string {
  if (tracefsRoot) return tracefsRoot;
  for (const dir of ['/sys/kernel/tracing', '/sys/kernel/debug/tracing']) {
    if (existsSync(`${dir}/events`)) return (tracefsRoot = dir);
  }
  if (o.mount && existsSync('/sys/kernel/tracing')) {
    mount('tracefs', '/sys/kernel/tracing', 'tracefs');
    if (existsSync('/sys/kernel/tracing/events')) return (tracefsRoot = '/sys/kernel/tracing');
  }
  throw new CoreMatrixError(`tracefs not mounted at /sys/kernel/tracing or /sys/kernel/debug/tracing${o.mount ? ' and mounting it failed' : ''}`);
}

function readNumber(path: string): number {
  const n = Number(readFileSync(path, 'utf8').trim());
  if (!Number.isInteger(n)) throw new CoreMatrixError(`${path}: not an integer`);
  return n;
}

/** Opens a perf event on CPU 0 for all tasks (pid -1), as needed for kprobes and tracepoints. */
function openPerf(values: Parameters<typeof writeAttr<typeof PERF_EVENT_ATTR.fields>>[2], what: string, strings: string[] = []): number {
  return withScratch((s) => {
    const attr = s.alloc(PERF_EVENT_ATTR.size);
    const ptrs = strings.map((x) => s.cstring(x).addr);
    writeAttr(PERF_EVENT_ATTR, attr, { size: PERF_EVENT_ATTR.size, sample_period: 1, wakeup_events: 1, ...values, ...(ptrs.length ? { config1: ptrs[0] } : {}) });
    return trackFd(perfEventOpen(attr, -1, 0, -1, Perf.FLAG_FD_CLOEXEC, what), 'perf_event', what);
  });
}

/** PERF_EVENT_IOC_SET_BPF + PERF_EVENT_IOC_ENABLE, closing the event on failure. */
function attachPerf(fd: number, prog: Program, target: string, via: string, cleanup?: () => void): Link {
  try {
    ioctl(fd, Perf.IOC_SET_BPF, prog.fd, `PERF_EVENT_IOC_SET_BPF ${target}`);
    ioctl(fd, Perf.IOC_ENABLE, 0, `PERF_EVENT_IOC_ENABLE ${target}`);
  } catch (e) {
    close(fd);
    cleanup?.();
    throw e;
  }
  return new Link(fd, 'perf_event', target, via, cleanup);
}

/** The id of a tracefs event (events/<group>/<name>/id). */
export function tracepointId(group: string, name: string): number {
  return readNumber(`${tracefs()}/events/${group}/${name}/id`);
}

/** Attaches a BPF_PROG_TYPE_TRACEPOINT program to tracepoint group:name. */
export function attachTracepoint(prog: Program, group: string, name: string): Link {
  const id = tracepointId(group, name);
  const what = `tracepoint ${group}:${name}`;
  return attachPerf(openPerf({ type: Perf.TYPE_TRACEPOINT, config: id }, what), prog, what, 'perf tracepoint');
}

export interface KprobeOptions {
  retprobe?: boolean;
  offset?: number;
  /** Force the legacy tracefs kprobe_events path (also used when the kprobe PMU is absent). */
  legacy?: boolean;
}

const KPROBE_PMU = '/sys/bus/event_source/devices/kprobe';
let legacyCounter = 0;
const STARTED = Date.now().toString(36);

/** The perf PMU type and retprobe config bit of the kprobe PMU, if the kernel has it. */
export function kprobePmu(): { type: number; retprobeBit: number } | undefined {
  if (!existsSync(`${KPROBE_PMU}/type`)) return undefined;
  const type = readNumber(`${KPROBE_PMU}/type`);
  let retprobeBit = 0;
  const fmt = `${KPROBE_PMU}/format/retprobe`;
  if (existsSync(fmt)) {
    const m = /^config:(\d+)/.exec(readFileSync(fmt, 'utf8').trim());
    if (m) retprobeBit = Number(m[1]);
  }
  return { type, retprobeBit };
}

/**
 * Attaches a kprobe/kretprobe program to kernel function `func`: via the kprobe PMU
 * (perf_event_open with config1 = function name), or a legacy tracefs kprobe_events entry that
 * is removed again on close().
 */
export function attachKprobe(prog: Program, func: string, o: KprobeOptions = {}): Link {
  const kind = o.retprobe ? 'kretprobe' : 'kprobe';
  const what = `${kind} ${func}`;
  const pmu = o.legacy ? undefined : kprobePmu();
  if (pmu) {
    const fd = openPerf({ type: pmu.type, config: o.retprobe ? 1 << pmu.retprobeBit : 0, config2: o.offset ?? 0 }, what, [func]);
    return attachPerf(fd, prog, what, 'kprobe PMU');
  }
  if (o.retprobe && o.offset) throw new UsageError(`${what}: a kretprobe takes no offset`);
  const root = tracefs();
  // pid + start time + counter: unique even if a crashed earlier run with our pid left one behind.
  const event = `cm_${process.pid}_${STARTED}_${legacyCounter++}`;
  const spec = `${o.retprobe ? 'r' : 'p'}:corematrix/${event} ${func}${o.offset ? `+${o.offset}` : ''}\n`;
  try {
    appendFileSync(`${root}/kprobe_events`, spec);
  } catch (e) {
    throw new CoreMatrixError(`${what}: writing ${root}/kprobe_events failed: ${(e as Error).message.split('\n')[0]}`);
  }
  const remove = () => {
    try {
      appendFileSync(`${root}/kprobe_events`, `-:corematrix/${event}\n`);
    } catch {
      // Best effort: the event is named after our pid, so a stale one cannot collide.
    }
  };
  let fd: number;
  try {
    fd = openPerf({ type: Perf.TYPE_TRACEPOINT, config: readNumber(`${root}/events/corematrix/${event}/id`) }, what);
  } catch (e) {
    remove();
    throw e;
  }
  return attachPerf(fd, prog, what, 'tracefs kprobe_events', remove);
}
