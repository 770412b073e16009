// Uprobes, uretprobes and multi-uprobes, attached as libbpf attaches them (facts from libbpf's
// docs and behaviour; no code of theirs):
//  - the binary: a name without '/' is looked up as libbpf looks it up (core/binary.ts
//    binarySearchPath); a function name becomes a file offset by libbpf's symbol rules;
//  - a uprobe is a perf event of the uprobe PMU (/sys/bus/event_source/devices/uprobe, 4.17:
//    config1 = path, config2 = file offset, the retprobe bit and the USDT semaphore's
//    ref_ctr_offset in the config bits the PMU's format/ names), else a tracefs uprobe_events
//    entry, removed again when the link closes;
//  - the program goes on the event with BPF_LINK_CREATE (attach type BPF_PERF_EVENT, 5.15) when a
//    BPF cookie is asked for, else with PERF_EVENT_IOC_SET_BPF;
//  - uprobe.multi is one BPF_LINK_CREATE of type BPF_TRACE_UPROBE_MULTI (6.6) for every offset
//    (BPF_TRACE_UPROBE_SESSION for uprobe.session, 6.13).

import { accessSync, appendFileSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { binarySearchPath, type ElfBinary, isLibraryName, parseBinary } from '../core/binary.js';
import { CoreMatrixError, UsageError } from '../core/errors.js';
import { BpfCmd, layout, LINK_CREATE_UPROBE_MULTI, PERF_EVENT_ATTR, writeAttr } from './attr.js';
import { AttachType, Perf } from './consts.js';
import { trackFd } from './fds.js';
import { Link, tracefs } from './link.js';
import { FeatureMissingError, probeUprobeMultiLink } from './probe.js';
import type { Program } from './program.js';
import { bpf, close, errnoNumber, ioctl, perfEventOpen, SyscallError, withScratch } from './sys.js';

/** BPF_LINK_CREATE on a perf event (attach type BPF_PERF_EVENT): `link_create.perf_event.bpf_cookie` after the common fields (5.15). */
export const LINK_CREATE_PERF_EVENT = layout('BPF_LINK_CREATE perf_event', ['union bpf_attr', 'link_create.'], 24, {
  prog_fd: [0, 4],
  target_fd: [4, 4],
  attach_type: [8, 4],
  flags: [12, 4],
  'perf_event.bpf_cookie': [16, 8],
});

/** uprobe_multi.flags: BPF_F_UPROBE_MULTI_RETURN. */
const UPROBE_MULTI_RETURN = 1;
const EINVAL = errnoNumber('EINVAL');
const UPROBE_PMU = '/sys/bus/event_source/devices/uprobe';

export interface UprobeOptions {
  /** Path of the executable or library, or a name looked up as libbpf does (libc.so.6, bash). */
  binary: string;
  /** The function: "func", "func@VER" or "func@@VER". Without it, `offset` is a file offset. */
  func?: string;
  /** Bytes into `func`, or (without `func`) the file offset to probe. */
  offset?: number;
  retprobe?: boolean;
  /** File offset of a USDT semaphore the kernel increments while the probe is attached. */
  refCtrOffset?: number;
  /** The BPF cookie bpf_get_attach_cookie() returns (attaches with BPF_LINK_CREATE, 5.15+). */
  cookie?: bigint | number;
  /** Only this process (default: every process). */
  pid?: number;
  /** Force the tracefs uprobe_events path (also used when the uprobe PMU is absent). */
  legacy?: boolean;
}

export interface UprobeMultiOptions {
  binary: string;
  /** A glob over function names (`*`, `?`), resolved as libbpf resolves uprobe.multi patterns. */
  pattern?: string;
  /** File offsets instead of a pattern. */
  offsets?: readonly number[];
  /** Per offset: a USDT semaphore's file offset (0: none). */
  refCtrOffsets?: readonly number[];
  /** Per offset: the BPF cookie. */
  cookies?: readonly (bigint | number)[];
  retprobe?: boolean;
  /** A session program (uprobe.session, 6.13): one program at entry and return, as BPF_TRACE_UPROBE_SESSION. */
  session?: boolean;
  pid?: number;
  /** What the link is called in messages and Link.target (default "uprobe.multi <path>:<pattern>"). */
  label?: string;
}

/**
 * The path of `binary` as libbpf resolves it: as given when it holds a '/', else the first
 * readable (libraries) or readable and executable (programs) `dir/binary` on libbpf's search path.
 */
export function resolveBinaryPath(binary: string, env: NodeJS.ProcessEnv = process.env): string {
  if (binary.includes('/')) return binary;
  const candidates = binarySearchPath(binary, env, process.arch === 'arm64' ? 'aarch64' : 'x86_64');
  const mode = isLibraryName(binary) ? constants.R_OK : constants.R_OK | constants.X_OK;
  for (const p of candidates) {
    try {
      accessSync(p, mode);
      return p;
    } catch {
      // not there, or not usable: next
    }
  }
  throw new CoreMatrixError(`${binary}: not found in ${[...new Set(candidates.map((c) => c.slice(0, c.lastIndexOf('/'))))].join(', ')}`);
}

const binaries = new Map<string, ElfBinary>();
/** The parsed binary at `path`, reused while its size, mtime and inode stay (a USDT attach parses once for all its locations). */
export function readBinary(path: string): ElfBinary {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new CoreMatrixError(`${path}: ${(e as Error).message.split('\n')[0]}`);
  }
  const key = `${path}\0${st.size}\0${st.mtimeMs}\0${st.ino}`;
  let bin = binaries.get(key);
  if (!bin) {
    bin = parseBinary(new Uint8Array(readFileSync(path)), path);
    if (binaries.size >= 8) binaries.delete(binaries.keys().next().value!);
    binaries.set(key, bin);
  }
  return bin;
}

function readFormatShift(name: string): number | undefined {
  const f = `${UPROBE_PMU}/format/${name}`;
  if (!existsSync(f)) return undefined;
  const m = /^config:(\d+)/.exec(readFileSync(f, 'utf8').trim());
  return m ? Number(m[1]) : undefined;
}

/**
 * The uprobe PMU, if the kernel has it (4.17): its perf type, the config bit of a return probe,
 * and where in config a USDT semaphore's ref_ctr_offset goes (4.20; undefined before).
 */
export function uprobePmu(): { type: number; retprobeBit: number; refCtrShift?: number } | undefined {
  if (!existsSync(`${UPROBE_PMU}/type`)) return undefined;
  const type = Number(readFileSync(`${UPROBE_PMU}/type`, 'utf8').trim());
  if (!Number.isInteger(type)) throw new CoreMatrixError(`${UPROBE_PMU}/type: not an integer`);
  const pmu: { type: number; retprobeBit: number; refCtrShift?: number } = { type, retprobeBit: readFormatShift('retprobe') ?? 0 };
  const shift = readFormatShift('ref_ctr_offset');
  if (shift !== undefined) pmu.refCtrShift = shift;
  return pmu;
}

/** perf_event_open for a probe: pid -1 (every process) on CPU 0, or one process on any CPU, as libbpf opens them. */
function openProbeEvent(values: Parameters<typeof writeAttr<typeof PERF_EVENT_ATTR.fields>>[2], pid: number | undefined, what: string, path?: string): number {
  return withScratch((s) => {
    const attr = s.alloc(PERF_EVENT_ATTR.size);
    writeAttr(PERF_EVENT_ATTR, attr, { size: PERF_EVENT_ATTR.size, sample_period: 1, wakeup_events: 1, ...values, ...(path ? { config1: s.cstring(path).addr } : {}) });
    const all = pid === undefined || pid < 0;
    return trackFd(perfEventOpen(attr, all ? -1 : pid, all ? 0 : -1, -1, Perf.FLAG_FD_CLOEXEC, what), 'perf_event', what);
  });
}

/** BPF_LINK_CREATE(BPF_PERF_EVENT) with a cookie → link fd. */
function perfLinkCreate(prog: Program, perfFd: number, cookie: bigint, what: string): number {
  return withScratch((s) => {
    const attr = s.alloc(LINK_CREATE_PERF_EVENT.size);
    writeAttr(LINK_CREATE_PERF_EVENT, attr, { prog_fd: prog.fd, target_fd: perfFd, attach_type: AttachType.PERF_EVENT, 'perf_event.bpf_cookie': cookie });
    return trackFd(bpf(BpfCmd.LINK_CREATE, 'BPF_LINK_CREATE', attr, LINK_CREATE_PERF_EVENT.size), 'link', what);
  });
}

let legacyCounter = 0;
const STARTED = Date.now().toString(36);

/** A tracefs uprobe_events entry: its perf tracepoint id and how to remove it. */
function legacyUprobe(path: string, offset: number, o: UprobeOptions, what: string): { id: number; remove: () => void } {
  if (/\s/.test(path)) throw new UsageError(`${what}: tracefs uprobe_events cannot name a path with white space`);
  const root = tracefs({ mount: true });
  // pid + start time + counter: unique even next to a stale entry a crashed run with our pid left.
  const event = `cm_u_${process.pid}_${STARTED}_${legacyCounter++}`;
  const refCtr = o.refCtrOffset ? `(0x${o.refCtrOffset.toString(16)})` : '';
  const line = `${o.retprobe ? 'r' : 'p'}:corematrix/${event} ${path}:0x${offset.toString(16)}${refCtr}\n`;
  try {
    appendFileSync(`${root}/uprobe_events`, line);
  } catch (e) {
    throw new CoreMatrixError(`${what}: writing ${root}/uprobe_events failed: ${(e as Error).message.split('\n')[0]}`);
  }
  const remove = () => {
    try {
      appendFileSync(`${root}/uprobe_events`, `-:corematrix/${event}\n`);
    } catch {
      // Best effort: the name carries our pid and start time, so it cannot collide later.
    }
  };
  try {
    const id = Number(readFileSync(`${root}/events/corematrix/${event}/id`, 'utf8').trim());
    return { id, remove };
  } catch (e) {
    remove();
    throw new CoreMatrixError(`${what}: ${root}/events/corematrix/${event}/id: ${(e as Error).message.split('\n')[0]}`);
  }
}

/**
 * Attaches a uprobe or uretprobe program. Link.via says how: "uprobe PMU" or "tracefs
 * uprobe_events", with ", BPF_LINK_CREATE" when a cookie made it a BPF perf link; Link.target
 * reads "uprobe /usr/lib/x86_64-linux-gnu/libc.so.6:malloc+0x0" (or ":0x1a2b" for a bare offset).
 */
export function attachUprobe(prog: Program, o: UprobeOptions): Link {
  const path = resolveBinaryPath(o.binary);
  const kind = o.retprobe ? 'uretprobe' : 'uprobe';
  const what = o.func ? `${kind} ${path}:${o.func}+0x${(o.offset ?? 0).toString(16)}` : `${kind} ${path}:0x${(o.offset ?? 0).toString(16)}`;
  let fileOffset: number;
  if (o.func) {
    try {
      fileOffset = readBinary(path).functionOffset(o.func).offset + (o.offset ?? 0);
    } catch (e) {
      if (e instanceof CoreMatrixError) e.message = `${what}: ${e.message}`;
      throw e;
    }
  } else {
    if (o.offset === undefined) throw new UsageError(`${kind} ${path}: neither a function nor an offset to probe`);
    fileOffset = o.offset;
  }

  const pmu = o.legacy ? undefined : uprobePmu();
  let perfFd: number;
  let via: string;
  let removeEvent: (() => void) | undefined;
  if (pmu) {
    let config = o.retprobe ? 1n << BigInt(pmu.retprobeBit) : 0n;
    if (o.refCtrOffset) {
      if (pmu.refCtrShift === undefined) throw new FeatureMissingError('uprobe ref_ctr_offset (USDT semaphores)', '4.20');
      config |= BigInt(o.refCtrOffset) << BigInt(pmu.refCtrShift);
    }
    perfFd = openProbeEvent({ type: pmu.type, config, config2: fileOffset }, o.pid, what, path);
    via = 'uprobe PMU';
  } else {
    const legacy = legacyUprobe(path, fileOffset, o, what);
    removeEvent = legacy.remove;
    try {
      perfFd = openProbeEvent({ type: Perf.TYPE_TRACEPOINT, config: legacy.id }, o.pid, what);
    } catch (e) {
      removeEvent();
      throw e;
    }
    via = 'tracefs uprobe_events';
  }

  if (o.cookie !== undefined) {
    let linkFd: number;
    try {
      linkFd = perfLinkCreate(prog, perfFd, BigInt(o.cookie), what);
    } catch (e) {
      close(perfFd);
      removeEvent?.();
      // Before 5.15 BPF_LINK_CREATE knows no perf events, and only a perf link carries a cookie.
      if (e instanceof SyscallError && e.errno === EINVAL) e.message = `${what}: ${e.message}: a BPF cookie on a uprobe needs BPF_LINK_CREATE for perf events (Linux 5.15 or later)`;
      throw e;
    }
    return new Link(linkFd, 'bpf_link', what, `${via}, BPF_LINK_CREATE`, () => {
      close(perfFd);
      removeEvent?.();
    });
  }
  try {
    ioctl(perfFd, Perf.IOC_SET_BPF, prog.fd, `PERF_EVENT_IOC_SET_BPF ${what}`);
    ioctl(perfFd, Perf.IOC_ENABLE, 0, `PERF_EVENT_IOC_ENABLE ${what}`);
  } catch (e) {
    close(perfFd);
    removeEvent?.();
    throw e;
  }
  return new Link(perfFd, 'perf_event', what, via, removeEvent);
}

/**
 * Attaches a program loaded for BPF_TRACE_UPROBE_MULTI to many offsets of one binary with one
 * BPF_LINK_CREATE (6.6): the functions matching `pattern`, or the `offsets` given. On a kernel
 * without such links the error is a FeatureMissingError naming the feature.
 */
export function attachUprobeMulti(prog: Program, o: UprobeMultiOptions): Link {
  const path = resolveBinaryPath(o.binary);
  const kind = o.session ? 'uprobe.session' : o.retprobe ? 'uretprobe.multi' : 'uprobe.multi';
  if (o.session && o.retprobe) throw new UsageError(`${kind} ${path}: a session program is both entry and return probe; retprobe does not apply`);
  const label = o.label ?? `${kind} ${path}:${o.pattern ?? `${o.offsets?.length ?? 0} offsets`}`;
  let offsets: readonly number[];
  if (o.pattern !== undefined) {
    if (o.offsets) throw new UsageError(`${label}: give a pattern or offsets, not both`);
    const found = readBinary(path).functionsMatching(o.pattern);
    if (!found.length) throw new CoreMatrixError(`${label}: no function in ${path} matches '${o.pattern}'`);
    offsets = found.map((f) => f.offset);
  } else if (o.offsets?.length) offsets = o.offsets;
  else throw new UsageError(`${label}: neither a pattern nor offsets to probe`);
  for (const [name, arr] of [['cookies', o.cookies], ['ref_ctr_offsets', o.refCtrOffsets]] as const)
    if (arr && arr.length !== offsets.length) throw new UsageError(`${label}: ${arr.length} ${name} for ${offsets.length} offsets`);

  const target = `${label} (${offsets.length} ${offsets.length === 1 ? 'offset' : 'offsets'})`;
  const fd = withScratch((s) => {
    const u64s = (values: readonly (bigint | number)[]) => {
      const m = s.alloc(8 * values.length);
      values.forEach((v, i) => m.view.setBigUint64(8 * i, BigInt.asUintN(64, BigInt(v)), true));
      return m.addr;
    };
    const attr = s.alloc(LINK_CREATE_UPROBE_MULTI.size);
    writeAttr(LINK_CREATE_UPROBE_MULTI, attr, {
      prog_fd: prog.fd,
      attach_type: o.session ? AttachType.TRACE_UPROBE_SESSION : AttachType.TRACE_UPROBE_MULTI,
      'uprobe_multi.path': s.cstring(path).addr,
      'uprobe_multi.offsets': u64s(offsets),
      'uprobe_multi.ref_ctr_offsets': o.refCtrOffsets?.some(Boolean) ? u64s(o.refCtrOffsets) : 0n,
      'uprobe_multi.cookies': o.cookies ? u64s(o.cookies) : 0n,
      'uprobe_multi.cnt': offsets.length,
      'uprobe_multi.flags': o.retprobe ? UPROBE_MULTI_RETURN : 0,
      'uprobe_multi.pid': o.pid !== undefined && o.pid > 0 ? o.pid : 0,
    });
    try {
      return trackFd(bpf(BpfCmd.LINK_CREATE, 'BPF_LINK_CREATE', attr, LINK_CREATE_UPROBE_MULTI.size), 'link', target);
    } catch (e) {
      if (e instanceof SyscallError && probeUprobeMultiLink() === 'missing') {
        const missing = new FeatureMissingError('BPF_TRACE_UPROBE_MULTI links', '6.6');
        missing.message = `${target}: ${e.message}: ${missing.message}`;
        throw missing;
      }
      if (e instanceof CoreMatrixError) e.message = `${target}: ${e.message}${o.session && e instanceof SyscallError && e.errno === EINVAL ? ': uprobe.session links need Linux 6.13 or later' : ''}`;
      throw e;
    }
  });
  return new Link(fd, 'bpf_link', target, `BPF_LINK_CREATE ${o.session ? 'uprobe_session' : 'uprobe_multi'}`);
}
