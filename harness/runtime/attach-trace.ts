// Attachments of tracing families beyond one kprobe or tracepoint: kprobe.multi and
// kprobe.session links (a glob resolved against the kernel's traceable functions), BPF
// iterators (a link, then an iterator fd read to its end), perf_event programs on a software
// clock on every online CPU, and the kernel's run statistics that say whether any of it ran.

import { globToRegExp } from '../core/glob.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { CoreMatrixError } from '../core/errors.js';
import { layout, PERF_EVENT_ATTR, writeAttr } from './attr.js';
import { AttachType, Perf } from './consts.js';
import { onlineCpus } from './facts.js';
import { trackFd } from './fds.js';
import { Link, tracefs } from './link.js';
import type { Program } from './program.js';
import { bpf, close, errnoNumber, ioctl, perfEventOpen, read, SyscallError, withScratch } from './sys.js';

const BPF_LINK_CREATE = 28;
const BPF_ITER_CREATE = 33;
const BPF_ENABLE_STATS = 32;
const BPF_F_KPROBE_MULTI_RETURN = 1;

// BPF_LINK_CREATE for BPF_TRACE_KPROBE_MULTI / _SESSION (5.18 / 6.10): `link_create.kprobe_multi`.
const LINK_CREATE_KPROBE_MULTI = layout('BPF_LINK_CREATE kprobe_multi', ['union bpf_attr', 'link_create.'], 48, {
  prog_fd: [0, 4],
  target_fd: [4, 4],
  attach_type: [8, 4],
  flags: [12, 4],
  'kprobe_multi.flags': [16, 4],
  'kprobe_multi.cnt': [20, 4],
  'kprobe_multi.syms': [24, 8],
  'kprobe_multi.addrs': [32, 8],
  'kprobe_multi.cookies': [40, 8],
});

// BPF_LINK_CREATE for BPF_TRACE_ITER: `link_create.iter_info`, `iter_info_len`.
const LINK_CREATE_ITER = layout('BPF_LINK_CREATE iter', ['union bpf_attr', 'link_create.'], 28, {
  prog_fd: [0, 4],
  target_fd: [4, 4],
  attach_type: [8, 4],
  flags: [12, 4],
  iter_info: [16, 8],
  iter_info_len: [24, 4],
});

const ITER_CREATE = layout('BPF_ITER_CREATE', ['union bpf_attr', 'iter_create.'], 8, { link_fd: [0, 4], flags: [4, 4] });
const ENABLE_STATS = layout('BPF_ENABLE_STATS', ['union bpf_attr', 'enable_stats.'], 4, { type: [0, 4] });


let traceable: string[] | undefined;
/**
 * The kernel's traceable functions (tracefs available_filter_functions, "name" or "name [module]"),
 * each once, read once per process: the file is megabytes, and an object may hold many multi-probes.
 * Names with a '.' are compiler clones (foo.isra.0), which the multi-kprobe interface refuses.
 */
function traceableFunctions(): string[] {
  if (traceable) return traceable;
  const file = `${tracefs()}/available_filter_functions`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CoreMatrixError(`cannot read ${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const name = line.split(/\s/, 1)[0]!;
    if (name && !name.includes('.')) names.add(name);
  }
  return (traceable = [...names]);
}

/** The kernel functions a kprobe.multi pattern names, as libbpf resolves a pattern. */
export function kprobeMultiSymbols(pattern: string): string[] {
  const re = globToRegExp(pattern);
  try {
    return traceableFunctions().filter((n) => re.test(n));
  } catch (e) {
    throw new CoreMatrixError(`kprobe.multi ${pattern}: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** kprobe.multi / kretprobe.multi / kprobe.session on every function the pattern matches, one link. */
export function attachKprobeMulti(prog: Program, pattern: string, o: { retprobe: boolean; session: boolean }): Link {
  const kind = o.session ? 'kprobe.session' : o.retprobe ? 'kretprobe.multi' : 'kprobe.multi';
  const syms = kprobeMultiSymbols(pattern);
  if (!syms.length) throw new CoreMatrixError(`${kind} ${pattern}: no traceable kernel function matches`);
  const attachType = o.session ? AttachType.TRACE_KPROBE_SESSION : AttachType.TRACE_KPROBE_MULTI;
  const fd = withScratch((s) => {
    const names = syms.map((n) => s.cstring(n).addr);
    const arr = s.alloc(8 * names.length);
    names.forEach((a, i) => arr.view.setBigUint64(8 * i, a, true));
    const attr = s.alloc(LINK_CREATE_KPROBE_MULTI.size);
    writeAttr(LINK_CREATE_KPROBE_MULTI, attr, {
      prog_fd: prog.fd, attach_type: attachType,
      'kprobe_multi.flags': o.retprobe && !o.session ? BPF_F_KPROBE_MULTI_RETURN : 0,
      'kprobe_multi.cnt': names.length, 'kprobe_multi.syms': arr.addr,
    });
    try {
      return trackFd(bpf(BPF_LINK_CREATE, 'BPF_LINK_CREATE', attr, LINK_CREATE_KPROBE_MULTI.size), 'link', `${kind} ${pattern}`);
    } catch (e) {
      if (e instanceof SyscallError && (e.errno === errnoNumber('EINVAL') || e.errno === errnoNumber('EOPNOTSUPP')))
        throw new CoreMatrixError(`${kind} ${pattern} (${syms.length} functions): BPF_LINK_CREATE: ${e.code} (${o.session ? 'kprobe.session links need Linux 6.10' : 'kprobe.multi links need Linux 5.18 with CONFIG_FPROBE'})`);
      throw e;
    }
  });
  return new Link(fd, 'bpf_link', `${kind} ${pattern} (${syms.length} function${syms.length === 1 ? '' : 's'})`, 'BPF_LINK_CREATE kprobe_multi');
}

// BPF_LINK_CREATE for BPF_TRACE_{FENTRY,FEXIT,FSESSION}_MULTI (7.x): `link_create.tracing_multi`.
const LINK_CREATE_TRACING_MULTI = layout('BPF_LINK_CREATE tracing_multi', ['union bpf_attr', 'link_create.'], 48, {
  prog_fd: [0, 4],
  target_fd: [4, 4],
  attach_type: [8, 4],
  flags: [12, 4],
  'tracing_multi.ids': [16, 8],
  'tracing_multi.cookies': [24, 8],
  'tracing_multi.cnt': [32, 4],
});

/** One tracing_multi link over the kernel functions `btfIds` (of vmlinux's or a module's BTF), `what` naming the section's pattern. */
export function attachTracingMulti(prog: Program, attachType: number, btfIds: readonly number[], what: string): Link {
  if (!btfIds.length) throw new CoreMatrixError(`${what}: no traceable kernel function matches (EINVAL, as libbpf)`);
  const fd = withScratch((s) => {
    const ids = s.alloc(4 * btfIds.length);
    btfIds.forEach((id, i) => ids.view.setUint32(4 * i, id, true));
    const attr = s.alloc(LINK_CREATE_TRACING_MULTI.size);
    writeAttr(LINK_CREATE_TRACING_MULTI, attr, { prog_fd: prog.fd, attach_type: attachType, 'tracing_multi.ids': ids.addr, 'tracing_multi.cnt': btfIds.length });
    return trackFd(bpf(BPF_LINK_CREATE, 'BPF_LINK_CREATE', attr, LINK_CREATE_TRACING_MULTI.size), 'link', what);
  });
  return new Link(fd, 'bpf_link', `${what} (${btfIds.length} function${btfIds.length === 1 ? '' : 's'})`, 'BPF_LINK_CREATE tracing_multi');
}

/** An iterator link (BPF_TRACE_ITER) for iterators that need no parameter (task, task_file, tcp, ...). */
export function attachIter(prog: Program, name: string): Link {
  const fd = withScratch((s) => {
    const attr = s.alloc(LINK_CREATE_ITER.size);
    writeAttr(LINK_CREATE_ITER, attr, { prog_fd: prog.fd, attach_type: AttachType.TRACE_ITER });
    return trackFd(bpf(BPF_LINK_CREATE, 'BPF_LINK_CREATE', attr, LINK_CREATE_ITER.size), 'link', `iter ${name}`);
  });
  return new Link(fd, 'bpf_link', `iter ${name}`, 'BPF_LINK_CREATE iter');
}

/** Creates an iterator from an iter link and reads it to its end: the bytes the program wrote. */
export function readIter(link: Link, limit = 16 << 20): { bytes: number; text: string } {
  return readIterFd(link.fd, link.target, limit);
}

/** readIter for an iter link fd held by someone else (libbpf's bpf_link__fd). */
export function readIterFd(linkFd: number, label: string, limit = 16 << 20): { bytes: number; text: string } {
  const fd = withScratch((s) => {
    const attr = s.alloc(ITER_CREATE.size);
    writeAttr(ITER_CREATE, attr, { link_fd: linkFd });
    return trackFd(bpf(BPF_ITER_CREATE, 'BPF_ITER_CREATE', attr, ITER_CREATE.size), 'other', label);
  });
  try {
    const chunks: Uint8Array[] = [];
    let bytes = 0;
    for (;;) {
      const b = read(fd, 64 << 10);
      if (!b.length) break;
      bytes += b.length;
      if (bytes <= limit) chunks.push(b);
      else break;
    }
    return { bytes, text: Buffer.concat(chunks).subarray(0, 4096).toString('utf8') };
  } finally {
    close(fd);
  }
}

/** A software cpu-clock perf event on `cpu` for all tasks, sampling every `periodNs` of CPU time (not yet carrying a program). */
export function openCpuClock(cpu: number, periodNs = 10_000_000): number {
  const PERF_COUNT_SW_CPU_CLOCK = 0;
  return withScratch((s) => {
    const attr = s.alloc(PERF_EVENT_ATTR.size);
    writeAttr(PERF_EVENT_ATTR, attr, { size: PERF_EVENT_ATTR.size, type: Perf.TYPE_SOFTWARE, config: PERF_COUNT_SW_CPU_CLOCK, sample_period: periodNs });
    return trackFd(perfEventOpen(attr, -1, cpu, -1, Perf.FLAG_FD_CLOEXEC, `cpu-clock on CPU ${cpu}`), 'perf_event', `cpu-clock ${cpu}`);
  });
}

/** One software cpu-clock perf event per online CPU carrying the program (every `periodNs` of CPU time). */
export function attachPerfClock(prog: Program, periodNs = 10_000_000): Link {
  const fds: number[] = [];
  try {
    for (const cpu of onlineCpus()) {
      const fd = openCpuClock(cpu, periodNs);
      fds.push(fd);
      ioctl(fd, Perf.IOC_SET_BPF, prog.fd, `PERF_EVENT_IOC_SET_BPF cpu-clock on CPU ${cpu}`);
      ioctl(fd, Perf.IOC_ENABLE, 0, `PERF_EVENT_IOC_ENABLE cpu-clock on CPU ${cpu}`);
    }
  } catch (e) {
    for (const fd of fds) close(fd);
    throw e;
  }
  const [first, ...rest] = fds;
  const closeRest = () => {
    for (const fd of rest) {
      try {
        ioctl(fd, Perf.IOC_DISABLE, 0, 'PERF_EVENT_IOC_DISABLE cpu-clock');
      } finally {
        close(fd);
      }
    }
  };
  return new Link(first!, 'perf_event', `cpu-clock every ${periodNs / 1e6} ms on ${fds.length} CPU${fds.length === 1 ? '' : 's'}`, 'perf_event_open software cpu-clock', closeRest);
}

/**
 * Turns on the kernel's per-program run statistics (run_cnt, run_time_ns): BPF_ENABLE_STATS
 * (5.8+; on while the returned fd stays open), else the kernel.bpf_stats_enabled sysctl (5.1+).
 * Returns how, and a function that turns them off again.
 */
export function enableRunStats(): { via: string; disable: () => void } {
  try {
    const fd = withScratch((s) => {
      const attr = s.alloc(ENABLE_STATS.size);
      writeAttr(ENABLE_STATS, attr, { type: 0 /* BPF_STATS_RUN_TIME */ });
      return trackFd(bpf(BPF_ENABLE_STATS, 'BPF_ENABLE_STATS', attr, ENABLE_STATS.size), 'other', 'run statistics');
    });
    return { via: 'BPF_ENABLE_STATS', disable: () => close(fd) };
  } catch (e) {
    if (!(e instanceof SyscallError)) throw e;
    const sysctl = '/proc/sys/kernel/bpf_stats_enabled';
    try {
      writeFileSync(sysctl, '1');
    } catch (e2) {
      throw new CoreMatrixError(`run statistics: BPF_ENABLE_STATS failed (${e.code}) and ${sysctl} cannot be written (${(e2 as Error).message.split('\n')[0]})`);
    }
    return { via: 'kernel.bpf_stats_enabled', disable: () => writeFileSync(sysctl, '0') };
  }
}
