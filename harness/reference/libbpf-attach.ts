// libbpf attaches what it loaded, in the same guest, so our attach verdicts have a witness: the
// sections libbpf auto-attaches go through `bpf_program__attach` (libbpf decides how and where);
// the hooks only user space can name get the same defaults our attacher uses (loader/attach.ts),
// through libbpf's own API for each (`bpf_program__attach_xdp` on the guest's veth pair, then lo;
// `_cgroup` on the root cgroup v2, `_netns` on this namespace, `_perf_event` on a cpu-clock per
// CPU). A family libbpf's version has no API for is said to be "not compared" rather than guessed.

import { openSync, closeSync } from 'node:fs';
import koffi from 'koffi';
import { CoreMatrixError } from '../core/errors.js';
import { MapType } from '../core/object/maps.js';
import { AttachType, ProgType } from '../core/object/sections.js';
import type { ProgramSpec } from '../core/object/types.js';
import { CGROUP_PROGRAM_TYPES, deniedNote, deniesTheAgent, exclusively, feedXdpHook, freeXdpHook, NETKIT_FRAMES, sockmapHook, xdpHookKey, type Attachment } from '../loader/attach.js';
import { ensureCgroup2, ensureNetkitPair, NETKIT_PAIR, sendProbeFrames, xdpModeOf } from '../runtime/attach-net.js';
import { openCpuClock, readIterFd } from '../runtime/attach-trace.js';
import { onlineCpus } from '../runtime/facts.js';
import { BpfMap } from '../runtime/map.js';
import { Program } from '../runtime/program.js';
import { untrackFd } from '../runtime/fds.js';
import { close, errnoName, errnoNumber, NativeMem } from '../runtime/sys.js';
import type { ReferenceLoad } from './libbpf.js';

/** An attachment made by libbpf (what ours makes, loader/attach.ts), maybe marked as not comparable. */
export interface LibbpfAttachment extends Attachment {
  /** Set when libbpf's version offers no API for this family: the verdict is not a comparison. */
  notCompared?: string;
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
  progAttach: (progFd: number, targetFd: number, type: number, flags: number) => number;
  progDetach2: (progFd: number, targetFd: number, type: number) => number;
  tcHookCreate: (hook: bigint) => number;
  tcAttach: (hook: bigint, opts: bigint) => number;
  tcDetach: (hook: bigint, opts: bigint) => number;
  /** libbpf ≥ 1.3 only. */
  attachTcx?: (prog: bigint, ifindex: number, opts: bigint | null) => bigint | null;
  attachNetkit?: (prog: bigint, ifindex: number, opts: bigint | null) => bigint | null;
  /** libbpf ≥ 1.2 only. */
  attachNetfilter?: (prog: bigint, opts: bigint) => bigint | null;
  attachStructOps: (map: bigint) => bigint | null;
}

/** `struct bpf_tc_hook` (libbpf.h): checked against both headers by test/reference/libbpf-layout.test.ts. */
export const TC_HOOK = { size: 24, fields: { sz: [0, 8], ifindex: [8, 4], attach_point: [12, 4], parent: [16, 4] } } as const;
/** `struct bpf_tc_opts`. */
export const TC_OPTS = { size: 32, fields: { sz: [0, 8], prog_fd: [8, 4], flags: [12, 4], prog_id: [16, 4], handle: [20, 4], priority: [24, 4] } } as const;
/** `struct bpf_netfilter_opts` (libbpf ≥ 1.2). */
export const NETFILTER_OPTS = { size: 24, fields: { sz: [0, 8], pf: [8, 4], hooknum: [12, 4], priority: [16, 4], flags: [20, 4] } } as const;
/** enum bpf_tc_attach_point. */
const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;

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
    progAttach: lib.func('int bpf_prog_attach(int prog_fd, int attachable_fd, int type, unsigned int flags)'),
    progDetach2: lib.func('int bpf_prog_detach2(int prog_fd, int attachable_fd, int type)'),
    tcHookCreate: lib.func('int bpf_tc_hook_create(void *hook)'),
    tcAttach: lib.func('int bpf_tc_attach(void *hook, void *opts)'),
    tcDetach: lib.func('int bpf_tc_detach(void *hook, void *opts)'),
    attachStructOps: lib.func('void *bpf_map__attach_struct_ops(void *map)'),
  };
  // Functions newer than Debian's libbpf 1.1: bound where the library has them.
  const optional = <T>(proto: string): T | undefined => {
    try {
      return lib.func(proto) as T;
    } catch {
      return undefined;
    }
  };
  a.attachTcx = optional('void *bpf_program__attach_tcx(void *prog, int ifindex, void *opts)');
  a.attachNetkit = optional('void *bpf_program__attach_netkit(void *prog, int ifindex, void *opts)');
  a.attachNetfilter = optional('void *bpf_program__attach_netfilter(void *prog, void *opts)');
  apis.set(so, a);
  return a;
}

/** The failure of a libbpf call that returned NULL: libbpf ≥ 1.0 leaves the error in errno. */
function failure(call: string): string {
  const e = koffi.errno();
  return `${call}: ${errnoName(e)}`;
}

export interface LibbpfAttachEnv {
  /** The object's struct_ops tables (our reader's ObjectSpec.structOps): each registered as one map. */
  structOps: readonly { name: string; programs: readonly { program: string }[] }[];
  ifindexLo: () => number;
  cgroupDir: string;
  netfilter: { pf: number; hooknum: number; priority: number };
}

/**
 * Attaches every program libbpf loaded (ref.loaded), choosing the API per family from the section
 * table (`specs`: the object as our reader parsed it, for each program's kind). Returns the
 * verdicts and a detach() that destroys every link (libbpf closes what its links own).
 */
export function attachWithLibbpf(ref: ReferenceLoad, specs: readonly ProgramSpec[], env: LibbpfAttachEnv): { attachments: Map<string, LibbpfAttachment>; detach: () => void } {
  const a = api(ref.so);
  const links: bigint[] = [];
  /** Attachments that are not libbpf links (tc filters, sockmap attachments): their detach. */
  const undo: (() => void)[] = [];
  const mems: NativeMem[] = [];
  const attachments = new Map<string, LibbpfAttachment>();
  let current: ProgramSpec | undefined;
  const keep = (link: bigint | null, call: string, target: string): LibbpfAttachment => {
    if (!link) {
      const reason = failure(call);
      // libbpf's answer for a section without an auto-attach target (SEC("kprobe")): as ours, not attachable.
      if (/\bE(OPNOTSUPP|NOTSUP)\b/.test(reason) && call === 'bpf_program__attach' && current && !current.autoAttach) return { verdict: { status: 'not-attachable', via: call, reason } };
      return { verdict: { status: 'failed', via: call, reason } };
    }
    links.push(link);
    return { verdict: { status: 'attached', via: call, target } };
  };
  const exclusive = new Map<string, string>();
  // struct_ops tables: each map registered once (bpf_map__attach_struct_ops); its programs share its verdict.
  for (const table of env.structOps) {
    const owner = ref.loaded.find((l) => table.programs.some((x) => x.program === l.name));
    if (!owner) continue;
    const map = ref.mapHandle(owner.name, table.name);
    const r: LibbpfAttachment = map
      ? keep(a.attachStructOps(map), 'bpf_map__attach_struct_ops', `struct_ops ${table.name}`)
      : { verdict: { status: 'failed', reason: `libbpf has no map '${table.name}'` } };
    for (const x of table.programs) if (ref.loaded.some((l) => l.name === x.program)) attachments.set(x.program, { verdict: { ...r.verdict } });
  }
  for (const { name, prog } of ref.loaded) {
    const p = specs.find((s) => s.name === name);
    if (!p || attachments.has(name)) continue;
    current = p;
    let r: LibbpfAttachment;
    try {
      r = attachOne(p, prog);
    } catch (e) {
      if (!(e instanceof CoreMatrixError)) throw e;
      r = { verdict: { status: 'failed', reason: e.message.split('\n')[0]! } };
    }
    if (p.attachProgram && r.verdict.status === 'attached') r.runsInside = p.attachProgram;
    attachments.set(name, r);
  }
  return {
    attachments,
    detach() {
      for (const l of links.splice(0)) a.destroy(l);
      for (const u of undo.splice(0)) u();
      for (const m of mems.splice(0)) m.free();
    },
  };

  function alloc(size: number): NativeMem {
    const m = new NativeMem(size);
    mems.push(m);
    return m;
  }

  /** The object's sockmap or sockhash as libbpf created it: a view over libbpf's fd (libbpf owns it: never closed here). */
  function sockmapOf(): BpfMap | undefined {
    const name = ref.maps.find((m) => m.type === MapType.SOCKMAP || m.type === MapType.SOCKHASH)?.name;
    const fd = name === undefined || !current ? undefined : ref.mapFd(current.name, name);
    if (fd === undefined || fd < 0) return undefined;
    const i = new BpfMap(fd, MapType.UNSPEC, 0, 0, 0, 0, name!).info();
    return new BpfMap(fd, i.type, i.keySize, i.valueSize, i.maxEntries, i.flags, name!);
  }

  /** tc on lo: `SEC("tcx/…")` through bpf_program__attach_tcx, `SEC("tc")` through libbpf's clsact hook + cls_bpf filter (as their tools do). */
  function attachTc(p: ProgramSpec, prog: bigint): LibbpfAttachment {
    const egress = p.expectedAttachType === AttachType.TCX_EGRESS || /egress/.test(p.section);
    if (p.expectedAttachType === AttachType.TCX_INGRESS || p.expectedAttachType === AttachType.TCX_EGRESS) {
      if (!a.attachTcx) return { verdict: { status: 'not-attachable', reason: `${ref.libbpf} has no bpf_program__attach_tcx` }, notCompared: 'libbpf before 1.3 cannot attach tcx links' };
      return keep(a.attachTcx(prog, env.ifindexLo(), null), 'bpf_program__attach_tcx', `tc lo ${egress ? 'egress' : 'ingress'}`);
    }
    const hook = alloc(TC_HOOK.size);
    hook.view.setBigUint64(TC_HOOK.fields.sz[0], BigInt(TC_HOOK.size), true);
    hook.view.setInt32(TC_HOOK.fields.ifindex[0], env.ifindexLo(), true);
    hook.view.setUint32(TC_HOOK.fields.attach_point[0], egress ? BPF_TC_EGRESS : BPF_TC_INGRESS, true);
    const created = a.tcHookCreate(hook.addr);
    if (created < 0 && -created !== errnoNumber('EEXIST')) return { verdict: { status: 'failed', via: 'bpf_tc_hook_create', reason: `bpf_tc_hook_create lo: ${errnoName(-created)}` } };
    const opts = alloc(TC_OPTS.size);
    opts.view.setBigUint64(TC_OPTS.fields.sz[0], BigInt(TC_OPTS.size), true);
    opts.view.setInt32(TC_OPTS.fields.prog_fd[0], a.programFd(prog), true);
    const rc = a.tcAttach(hook.addr, opts.addr);
    if (rc < 0) return { verdict: { status: 'failed', via: 'bpf_tc_attach', reason: `bpf_tc_attach lo: ${errnoName(-rc)}` } };
    undo.push(() => {
      // Detach names the filter by handle and priority only (what attach filled in).
      opts.view.setInt32(TC_OPTS.fields.prog_fd[0], 0, true);
      opts.view.setUint32(TC_OPTS.fields.prog_id[0], 0, true);
      a.tcDetach(hook.addr, opts.addr);
    });
    return { verdict: { status: 'attached', via: 'bpf_tc_attach', target: `tc lo ${egress ? 'egress' : 'ingress'}` } };
  }

  /** netkit on the guest's pair (loader/attach.ts), through bpf_program__attach_netkit, then the same frames out of the program's end. */
  function attachNetkit(p: ProgramSpec, prog: bigint): LibbpfAttachment {
    if (!a.attachNetkit) return { verdict: { status: 'not-attachable', reason: `${ref.libbpf} has no bpf_program__attach_netkit` }, notCompared: 'libbpf before 1.3 cannot attach netkit programs' };
    const side = p.expectedAttachType === AttachType.NETKIT_PEER ? 'peer' : 'primary';
    const pair = ensureNetkitPair();
    const r = keep(a.attachNetkit(prog, pair.primary, null), 'bpf_program__attach_netkit', `netkit ${NETKIT_PAIR.primary} ${side}`);
    if (r.verdict.status === 'attached') r.exercise = () => `${sendProbeFrames(side === 'peer' ? pair.peer : pair.primary, NETKIT_FRAMES, NETKIT_PAIR[side])} frames sent out of ${NETKIT_PAIR[side]}`;
    return r;
  }

  /**
   * xdp on the same hooks as ours, in turn (loader/attach.ts XDP_HOOKS: the veth end, then lo),
   * through bpf_program__attach_xdp, which passes no mode flags: the kernel picks driver mode where
   * the driver has one (veth), generic where not (lo). The target names the mode the kernel then
   * reports for the program on that interface (IFLA_XDP), and the veth end gets the same frames.
   */
  function attachXdp(p: ProgramSpec, prog: bigint): LibbpfAttachment {
    const free = freeXdpHook(exclusive);
    if ('reason' in free) return { verdict: { status: 'not-attachable', reason: free.reason } };
    const { hook, ifindex } = free;
    return exclusively(xdpHookKey(hook), p, { exclusive }, (): LibbpfAttachment => {
      const r = keep(a.attachXdp(prog, ifindex), 'bpf_program__attach_xdp', `xdp ${hook.ifname}`);
      if (r.verdict.status !== 'attached') return r;
      const progId = new Program(a.programFd(prog), p.type, p.name, '').info().id;
      r.verdict.target = `xdp ${hook.ifname} (${xdpModeOf(ifindex, progId) ?? 'not listed on the interface'})`;
      const feed = feedXdpHook(hook);
      if (feed) r.exercise = feed;
      return r;
    });
  }

  /** As ours (loader/attach.ts): an LSM attachment that denies the agent its own file or memory calls goes at once, saying so. */
  function unlessDenying(r: LibbpfAttachment): LibbpfAttachment {
    if (r.verdict.status !== 'attached') return r;
    const denied = deniesTheAgent();
    if (denied) {
      a.destroy(links.pop()!);
      r.exercise = () => deniedNote(denied);
    }
    return r;
  }

  function attachOne(p: ProgramSpec, prog: bigint): LibbpfAttachment {
    if (p.attachFn) {
      const r = keep(a.attach(prog), 'bpf_program__attach', `${p.section}`);
      if (p.type === ProgType.LSM) unlessDenying(r);
      if (r.verdict.status === 'attached' && p.expectedAttachType === AttachType.TRACE_ITER) {
        const link = links.at(-1)!;
        r.exercise = () => {
          const got = readIterFd(a.linkFd(link), `iter ${p.attachTo ?? ''}`);
          return `read ${got.bytes} byte${got.bytes === 1 ? '' : 's'} from the iterator`;
        };
      }
      return r;
    }
    if (CGROUP_PROGRAM_TYPES.has(p.type) || p.expectedAttachType === AttachType.LSM_CGROUP) {
      ensureCgroup2(env.cgroupDir);
      const fd = openSync(env.cgroupDir, 'r');
      try {
        const r = keep(a.attachCgroup(prog, fd), 'bpf_program__attach_cgroup', `cgroup ${env.cgroupDir}`);
        return p.expectedAttachType === AttachType.LSM_CGROUP ? unlessDenying(r) : r;
      } finally {
        closeSync(fd);
      }
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
        return attachXdp(p, prog);
      case ProgType.SK_LOOKUP:
      case ProgType.FLOW_DISSECTOR: {
        const netns = () => {
          const fd = openSync('/proc/self/ns/net', 'r');
          try {
            return keep(a.attachNetns(prog, fd), 'bpf_program__attach_netns', 'netns /proc/self/ns/net');
          } finally {
            closeSync(fd);
          }
        };
        return p.type === ProgType.FLOW_DISSECTOR ? exclusively('flow_dissector netns', p, { exclusive }, netns) : netns();
      }
      case ProgType.SCHED_CLS:
        if (p.expectedAttachType === AttachType.NETKIT_PRIMARY || p.expectedAttachType === AttachType.NETKIT_PEER) return attachNetkit(p, prog);
        return attachTc(p, prog);
      case ProgType.SK_SKB:
      case ProgType.SK_MSG: {
        const map = sockmapOf();
        if (!map) break;
        const type = p.expectedAttachType ?? (p.type === ProgType.SK_MSG ? AttachType.SK_MSG_VERDICT : AttachType.SK_SKB_STREAM_VERDICT);
        const progFd = a.programFd(prog);
        return exclusively(sockmapHook(map.name, type), p, { exclusive }, (): LibbpfAttachment => {
          const rc = a.progAttach(progFd, map.fd, type, 0);
          if (rc < 0) return { verdict: { status: 'failed', via: 'bpf_prog_attach', reason: `bpf_prog_attach to map ${map.name}: ${errnoName(-rc)}` } };
          undo.push(() => a.progDetach2(progFd, map.fd, type));
          return { verdict: { status: 'attached', via: 'bpf_prog_attach', target: `sockmap ${map.name}` }, sockmap: map };
        });
      }
      case ProgType.NETFILTER: {
        if (!a.attachNetfilter) return { verdict: { status: 'not-attachable', reason: `${ref.libbpf} has no bpf_program__attach_netfilter` }, notCompared: 'libbpf before 1.2 cannot attach netfilter programs' };
        const o = alloc(NETFILTER_OPTS.size);
        const f = NETFILTER_OPTS.fields;
        o.view.setBigUint64(f.sz[0], BigInt(NETFILTER_OPTS.size), true);
        o.view.setUint32(f.pf[0], env.netfilter.pf, true);
        o.view.setUint32(f.hooknum[0], env.netfilter.hooknum, true);
        o.view.setInt32(f.priority[0], env.netfilter.priority, true);
        return keep(a.attachNetfilter(prog, o.addr), 'bpf_program__attach_netfilter', 'netfilter ipv4 local_in');
      }
    }
    return { verdict: { status: 'not-attachable', reason: 'needs what only its tool supplies (ours does not attach it either)' } };
  }
}

/** The fd of a program libbpf loaded (bpf_program__fd; libbpf owns it), or undefined: a freplace target in another object. */
export function libbpfProgramFd(ref: ReferenceLoad, program: string): number | undefined {
  const loaded = ref.loaded.find((l) => l.name === program);
  return loaded ? api(ref.so).programFd(loaded.prog) : undefined;
}

/** The kernel's info on a program libbpf loaded (its run counts among it), or undefined. */
export function libbpfProgramInfo(ref: ReferenceLoad, program: string): ReturnType<Program['info']> | undefined {
  const loaded = ref.loaded.find((l) => l.name === program);
  // A handle over libbpf's fd for BPF_OBJ_GET_INFO_BY_FD only: never closed here (libbpf owns it).
  return loaded ? new Program(api(ref.so).programFd(loaded.prog), 0, program, '').info() : undefined;
}
