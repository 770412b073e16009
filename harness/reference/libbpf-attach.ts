// libbpf attaches what it loaded, in the same guest, so our attach verdicts have a witness: the
// sections libbpf auto-attaches go through `bpf_program__attach` (libbpf decides how and where);
// the hooks only user space can name get the same defaults our attacher uses (loader/attach.ts),
// through libbpf's own API for each (`bpf_program__attach_xdp` on lo, `_cgroup` on the root
// cgroup v2, `_netns` on this namespace, `_perf_event` on a cpu-clock per CPU). A family libbpf's
// version has no API for is said to be "not compared" rather than guessed.

import { openSync, closeSync } from 'node:fs';
import koffi from 'koffi';
import { CoreMatrixError } from '../core/errors.js';
import { AttachType, ProgType } from '../core/object/sections.js';
import type { ProgramSpec } from '../core/object/types.js';
import type { AttachVerdict } from '../loader/attach.js';
import { openCpuClock, readIterFd } from '../runtime/attach-trace.js';
import { onlineCpus } from '../runtime/facts.js';
import { Program } from '../runtime/program.js';
import { untrackFd } from '../runtime/fds.js';
import { close, errnoName } from '../runtime/sys.js';
import type { AttachResult, Check } from '../results.js';
import type { ReferenceLoad } from './libbpf.js';

export interface LibbpfAttachment {
  verdict: AttachVerdict;
  /** Set when libbpf's version offers no API for this family: the verdict is not a comparison. */
  notCompared?: string;
  exercise?: () => string;
}

interface AttachApi {
  attach: (prog: bigint) => bigint | null;
  attachXdp: (prog: bigint, ifindex: number) => bigint | null;
  attachCgroup: (prog: bigint, fd: number) => bigint | null;
  attachNetns: (prog: bigint, fd: number) => bigint | null;
  attachPerfEvent: (prog: bigint, pfd: number) => bigint | null;
  linkFd: (link: bigint) => number;
  destroy: (link: bigint) => number;
  programFd: (prog: bigint) => number;
}

const apis = new Map<string, AttachApi>();
function api(so: string): AttachApi {
  let a = apis.get(so);
  if (a) return a;
  const lib = koffi.load(so);
  a = {
    attach: lib.func('void *bpf_program__attach(void *prog)'),
    attachXdp: lib.func('void *bpf_program__attach_xdp(void *prog, int ifindex)'),
    attachCgroup: lib.func('void *bpf_program__attach_cgroup(void *prog, int cgroup_fd)'),
    attachNetns: lib.func('void *bpf_program__attach_netns(void *prog, int netns_fd)'),
    attachPerfEvent: lib.func('void *bpf_program__attach_perf_event(void *prog, int pfd)'),
    linkFd: lib.func('int bpf_link__fd(void *link)'),
    destroy: lib.func('int bpf_link__destroy(void *link)'),
    programFd: lib.func('int bpf_program__fd(void *prog)'),
  };
  apis.set(so, a);
  return a;
}

/** The failure of a libbpf call that returned NULL: libbpf ≥ 1.0 leaves the error in errno. */
function failure(call: string): string {
  const e = koffi.errno();
  return `${call}: ${errnoName(e)}`;
}

export interface LibbpfAttachEnv {
  ifindexLo: () => number;
  cgroupDir: string;
}

/**
 * Attaches every program libbpf loaded (ref.loaded), choosing the API per family from the section
 * table (`specs`: the object as our reader parsed it, for each program's kind). Returns the
 * verdicts and a detach() that destroys every link (libbpf closes what its links own).
 */
export function attachWithLibbpf(ref: ReferenceLoad, specs: readonly ProgramSpec[], env: LibbpfAttachEnv): { attachments: Map<string, LibbpfAttachment>; detach: () => void } {
  const a = api(ref.so);
  const links: bigint[] = [];
  const attachments = new Map<string, LibbpfAttachment>();
  const keep = (link: bigint | null, call: string, target: string): LibbpfAttachment => {
    if (!link) {
      const reason = failure(call);
      // libbpf's answer for a section without an auto-attach target (SEC("kprobe")), as ours says not-attachable.
      if (/EOPNOTSUPP/.test(reason) && call === 'bpf_program__attach') return { verdict: { status: 'not-attachable', via: call, reason } };
      return { verdict: { status: 'failed', via: call, reason } };
    }
    links.push(link);
    return { verdict: { status: 'attached', via: call, target } };
  };
  for (const { name, prog } of ref.loaded) {
    const p = specs.find((s) => s.name === name);
    if (!p) continue;
    let r: LibbpfAttachment;
    try {
      r = attachOne(p, prog);
    } catch (e) {
      if (!(e instanceof CoreMatrixError)) throw e;
      r = { verdict: { status: 'failed', reason: e.message.split('\n')[0]! } };
    }
    attachments.set(name, r);
  }
  return {
    attachments,
    detach() {
      for (const l of links.splice(0)) a.destroy(l);
    },
  };

  function attachOne(p: ProgramSpec, prog: bigint): LibbpfAttachment {
    if (p.attachFn) {
      const r = keep(a.attach(prog), 'bpf_program__attach', `${p.section}`);
      if (r.verdict.status === 'attached' && p.expectedAttachType === AttachType.TRACE_ITER) {
        const link = links.at(-1)!;
        r.exercise = () => {
          const got = readIterFd(a.linkFd(link), `iter ${p.attachTo ?? ''}`);
          return `read ${got.bytes} byte${got.bytes === 1 ? '' : 's'} from the iterator`;
        };
      }
      return r;
    }
    switch (p.type) {
      case ProgType.PERF_EVENT: {
        let last: LibbpfAttachment | undefined;
        for (const cpu of onlineCpus()) {
          const pfd = openCpuClock(cpu);
          last = keep(a.attachPerfEvent(prog, pfd), 'bpf_program__attach_perf_event', `cpu-clock on ${onlineCpus().length} CPU(s)`);
          // libbpf's perf-event link owns the fd from here on (bpf_link__destroy closes it).
          if (last.verdict.status === 'attached') untrackFd(pfd);
          else {
            close(pfd);
            return last;
          }
        }
        return last!;
      }
      case ProgType.SYSCALL:
        return {
          verdict: { status: 'attached', via: 'BPF_PROG_TEST_RUN', target: 'run on demand (syscall program)' },
          exercise: () => `BPF_PROG_TEST_RUN returned ${new Program(a.programFd(prog), p.type, p.name, '').testRun({}).retval}`,
        };
      case ProgType.XDP:
        if (p.expectedAttachType === AttachType.XDP_DEVMAP || p.expectedAttachType === AttachType.XDP_CPUMAP) break;
        return keep(a.attachXdp(prog, env.ifindexLo()), 'bpf_program__attach_xdp', 'xdp lo');
      case ProgType.CGROUP_SKB:
      case ProgType.CGROUP_SOCK:
      case ProgType.CGROUP_SOCK_ADDR:
      case ProgType.SOCK_OPS:
      case ProgType.CGROUP_DEVICE:
      case ProgType.CGROUP_SYSCTL:
      case ProgType.CGROUP_SOCKOPT: {
        const fd = openSync(env.cgroupDir, 'r');
        try {
          return keep(a.attachCgroup(prog, fd), 'bpf_program__attach_cgroup', `cgroup ${env.cgroupDir}`);
        } finally {
          closeSync(fd);
        }
      }
      case ProgType.SK_LOOKUP:
      case ProgType.FLOW_DISSECTOR: {
        const fd = openSync('/proc/self/ns/net', 'r');
        try {
          return keep(a.attachNetns(prog, fd), 'bpf_program__attach_netns', 'netns /proc/self/ns/net');
        } finally {
          closeSync(fd);
        }
      }
      case ProgType.SCHED_CLS:
      case ProgType.SK_SKB:
      case ProgType.SK_MSG:
      case ProgType.NETFILTER:
        return { verdict: { status: 'not-attachable', reason: 'not attached with libbpf by corematrix yet' }, notCompared: `${p.kind}: libbpf's attach for this family is not driven yet` };
    }
    return { verdict: { status: 'not-attachable', reason: 'needs what only its tool supplies (ours does not attach it either)' } };
  }
}

/** How often each program libbpf loaded has run (bpf_prog_info run_cnt / run_time_ns). */
export function libbpfRunCounts(ref: ReferenceLoad): Map<string, { runCount?: number; runTimeNs?: number }> {
  const a = api(ref.so);
  const out = new Map<string, { runCount?: number; runTimeNs?: number }>();
  for (const { name, prog } of ref.loaded) {
    // A handle over libbpf's fd for BPF_OBJ_GET_INFO_BY_FD only: never closed here (libbpf owns it).
    const info = new Program(a.programFd(prog), 0, name, '').info();
    out.set(name, { ...(info.runCnt !== undefined ? { runCount: Number(info.runCnt) } : {}), ...(info.runTimeNs !== undefined ? { runTimeNs: Number(info.runTimeNs) } : {}) });
  }
  return out;
}

/**
 * libbpf's attach verdict held against ours for the same program in the same guest: a check on the
 * libbpf cell. Equal statuses agree; whether each ran under its own run of the workload is shown,
 * not judged (a hook may fire in one run and not the other).
 */
export function attachCheck(ours: AttachResult | undefined, theirs: AttachResult, notCompared?: string): Check | undefined {
  if (!ours || notCompared) return undefined;
  const word = (a: AttachResult) => `${a.status}${a.status === 'attached' && a.runCount !== undefined ? (a.runCount ? ', ran' : ', never ran') : ''}`;
  return {
    name: 'same attach verdict as our loader',
    observed: word(theirs),
    truth: word(ours),
    ok: ours.status === theirs.status,
    source: `libbpf ${theirs.via ?? ''} vs our ${ours.via ?? 'attacher'}, in this guest`.replace(/\s+/g, ' '),
  };
}
