// Attaching a loaded program in the running kernel, the way its tool would: what libbpf's
// auto-attach does for the sections that name their target (kprobes, tracepoints, fentry, ...),
// and, for the hooks only user space can name (an interface, a cgroup, a map), the defaults a
// guest has: a veth pair (XDP in driver mode), the loopback, a netkit pair, the root cgroup v2,
// this network namespace, the object's own sockmap.
// Every program gets a verdict: attached (via what, to what), failed (why), or not attachable
// here (why: what its tool would have to supply).
//
// The section table (core/object/sections.ts) says what a program is; this module only decides
// where it goes and calls the runtime's attach functions.

import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { CoreMatrixError } from '../core/errors.js';
import { ProgType, AttachType } from '../core/object/sections.js';
import type { ProgramSpec } from '../core/object/types.js';
import type { AttachResult } from '../results.js';
import { MapType } from '../core/object/maps.js';
import {
  attachCgroup, attachNetfilter, attachNetkit, attachNetns, attachSockmap, attachTc, attachXdp, DEFAULT_CGROUP, ensureCgroup2, ensureNetkitPair, ensureVethPair, NETKIT_PAIR, NFPROTO_IPV4, NfHook,
  sendProbeFrames, VETH_PAIR, type XdpMode,
} from '../runtime/attach-net.js';
import { interfaceIndex } from '../runtime/netlink.js';
import { memoryCallsRefused } from '../runtime/sys.js';
import { attachIter, attachKprobeMulti, attachPerfClock, attachTracingMulti, readIter } from '../runtime/attach-trace.js';
import type { Btf } from '../core/btf/btf.js';
import { tracingMultiIds } from './tracing-multi.js';
import { attachKprobe, attachRawTracepoint, attachTracepoint, attachTracing, type BpfMap, kconfigSpecial, type Link, probeUprobeMultiLink, type Program, syscallPrefix } from '../runtime/index.js';
import { attachUprobe, attachUprobeMulti } from '../runtime/uprobe.js';
import { attachUsdt } from '../runtime/usdt.js';

/** The maps usdt.bpf.h declares: spec id → spec, and (without BPF cookies) ip → spec id. */
const USDT_SPECS = '__bpf_usdt_specs';
const USDT_IP_TO_SPEC_ID = '__bpf_usdt_ip_to_spec_id';

/** What happened when the program was attached (the cell's `attach`, before the run counts). */
export type AttachVerdict = Pick<AttachResult, 'status' | 'via' | 'target' | 'reason'>;

export interface Attachment {
  verdict: AttachVerdict;
  link?: Link;
  /**
   * Programs that run when asked rather than on an event (iterators are read, syscall programs are
   * test-run): called after the workload; returns a note on what it did.
   */
  exercise?: () => string;
  /** The sockmap or sockhash an sk_skb/sk_msg program was attached to: the workload puts its connections there. */
  sockmap?: SocketMap;
  /**
   * freplace: the program it runs inside of. The kernel jumps into a replacement from its target
   * and keeps no run statistics for it, so its runs are told by the target's.
   */
  runsInside?: string;
}

/** A map the workload's TCP sockets can be put into (fds as values, consecutive integers as keys). */
export interface SocketMap {
  name: string;
  keySize: number;
  valueSize: number;
  update(key: Uint8Array, value: Uint8Array): void;
}

/** The attach failures among `verdicts` (what suites check). */
export function attachFailures(verdicts: ReadonlyMap<string, Attachment>): { program: string; reason: string }[] {
  return [...verdicts].filter(([, a]) => a.verdict.status === 'failed').map(([program, a]) => ({ program, reason: a.verdict.reason ?? 'attach failed' }));
}

export interface AttachEnv {
  /** The object's maps by name (sockmaps for sk_skb/sk_msg, the USDT spec maps). */
  maps: ReadonlyMap<string, BpfMap>;
  /**
   * Hooks that hold one program only (XDP on an interface, a namespace's flow dissector) → the
   * program of this object already there: a second one is not attachable beside it.
   */
  exclusive: Map<string, string>;
  /** The object was loaded with LINUX_HAS_BPF_COOKIE = 1 (usdt.bpf.h then reads spec ids from cookies). */
  cookies: boolean;
  /** The kernel's BTF (no module), or a loaded module's (split on it): where multi-function tracing finds its functions. */
  kernelBtf?: (module?: string) => Btf | undefined;
}

/**
 * fentry.multi and friends (tracing-multi.ts): the section's glob over the kernel's (or the named
 * module's) traceable functions, one link. A bare section is its tool's to attach, as libbpf leaves it.
 */
function attachTracingMultiProgram(p: ProgramSpec, prog: Program, env: AttachEnv): Attachment {
  const t = p.target;
  if (t?.kind !== 'tracing_multi') return notAttachable(`SEC("${p.section}") names no functions: its tool attaches it (an object config can name them: programs.${p.name}.attach)`);
  const what = `${p.kind} ${t.module ? `${t.module}:` : ''}${t.pattern}`;
  const btf = env.kernelBtf?.(t.module);
  if (!btf) throw new CoreMatrixError(`${what}: ${t.module ? `no BTF for module '${t.module}' in this kernel` : 'this kernel has no BTF'}`);
  return attached(attachTracingMulti(prog, p.expectedAttachType!, tracingMultiIds(btf, t.pattern), what));
}

/** Program types that attach to a cgroup (every `cgroup/*`, `cgroup_skb/*`, `sockops`). */
export const CGROUP_PROGRAM_TYPES: ReadonlySet<number> = new Set([
  ProgType.CGROUP_SKB, ProgType.CGROUP_SOCK, ProgType.CGROUP_SOCK_ADDR, ProgType.SOCK_OPS, ProgType.CGROUP_DEVICE, ProgType.CGROUP_SYSCTL, ProgType.CGROUP_SOCKOPT,
]);

/** Where hooks that only user space can name are attached in a guest. */
export const DEFAULTS = { interface: 'lo', cgroup: DEFAULT_CGROUP, netfilter: { pf: NFPROTO_IPV4, hooknum: NfHook.LOCAL_IN, priority: 1000 } } as const;

const notAttachable = (reason: string): Attachment => ({ verdict: { status: 'not-attachable', reason } });

/** Attaches one loaded program; never throws for a kernel's refusal (that is a `failed` verdict). */
export function attachProgram(p: ProgramSpec, prog: Program, env: AttachEnv): Attachment {
  try {
    const a = attachOne(p, prog, env);
    if (a.link && a.verdict.status === 'attached') {
      a.verdict.via ??= a.link.via;
      a.verdict.target ??= a.link.target;
    }
    return a;
  } catch (e) {
    if (!(e instanceof CoreMatrixError)) throw e;
    return { verdict: { status: 'failed', reason: e.message.split('\n')[0]! } };
  }
}

const attached = (link: Link, exercise?: () => string): Attachment => ({ verdict: { status: 'attached' }, link, ...(exercise ? { exercise } : {}) });


function attachOne(p: ProgramSpec, prog: Program, env: AttachEnv): Attachment {
  if (p.targetError) return { verdict: { status: 'failed', reason: p.targetError } };
  const t = p.target;
  if (CGROUP_PROGRAM_TYPES.has(p.type)) return attachToCgroup(p, prog);
  switch (p.type) {
    case ProgType.KPROBE:
      switch (t?.kind) {
        case 'kprobe':
          return attached(attachKprobe(prog, t.func, { retprobe: t.retprobe, ...(t.offset ? { offset: t.offset } : {}) }));
        case 'ksyscall': {
          // As libbpf: the arch's wrapper (__x64_sys_openat) where the kernel has syscall wrappers, else __se_sys_openat.
          const prefix = syscallPrefix();
          const func = prefix && kconfigSpecial('LINUX_HAS_SYSCALL_WRAPPER') === 1 ? `__${prefix}_sys_${t.syscall}` : `__se_sys_${t.syscall}`;
          return attached(attachKprobe(prog, func, { retprobe: t.retprobe }));
        }
        case 'kprobe_multi':
          return attached(attachKprobeMulti(prog, t.pattern, { retprobe: t.retprobe, session: t.session }));
        case 'uprobe':
          return attached(attachUprobe(prog, { binary: t.binary, func: t.func, offset: t.offset, retprobe: t.retprobe }));
        case 'uprobe_multi':
          return attached(attachUprobeMulti(prog, { binary: t.binary, pattern: t.pattern, retprobe: t.retprobe, session: t.session }));
        case 'usdt':
          return attached(attachUsdt(prog, { specs: env.maps.get(USDT_SPECS), ipToSpecId: env.maps.get(USDT_IP_TO_SPEC_ID) }, { binary: t.binary, provider: t.provider, name: t.name }, {
            cookies: env.cookies,
            // The same decision the load made (collection.ts): usdt programs load as uprobe_multi where the kernel has those links.
            multi: p.flags.usdt && probeUprobeMultiLink() === 'supported',
          }));
        default:
          return notAttachable(`SEC("${p.section}") names no target: its tool attaches it (an object config can name one: programs.${p.name}.attach)`);
      }
    case ProgType.TRACEPOINT: {
      if (t?.kind !== 'tracepoint') return notAttachable(`SEC("${p.section}") names no tracepoint: its tool attaches it (programs.${p.name}.attach in an object config)`);
      return attached(attachTracepoint(prog, t.category, t.name));
    }
    case ProgType.RAW_TRACEPOINT:
    case ProgType.RAW_TRACEPOINT_WRITABLE:
      if (t?.kind !== 'raw_tracepoint') return notAttachable(`SEC("${p.section}") names no tracepoint: its tool attaches it`);
      return attached(attachRawTracepoint(prog, t.name));
    case ProgType.TRACING:
      if (p.expectedAttachType === AttachType.TRACE_ITER) return attachIterProgram(p, prog);
      if (p.attachFn === 'tracing_multi') return attachTracingMultiProgram(p, prog, env);
      return attached(attachTracing(prog, p.expectedAttachType, `${p.kind} ${p.attachTo ?? ''}`.trim()));
    case ProgType.LSM: {
      if (p.expectedAttachType === AttachType.LSM_CGROUP) return attachToCgroup(p, prog);
      return keptUnlessDenying(attachTracing(prog, p.expectedAttachType, `lsm ${p.attachTo ?? ''}`.trim()));
    }
    case ProgType.PERF_EVENT:
      return attached(attachPerfClock(prog));
    case ProgType.SYSCALL:
      return runOnDemand(prog);
    case ProgType.XDP:
      if (p.expectedAttachType === AttachType.XDP_DEVMAP || p.expectedAttachType === AttachType.XDP_CPUMAP)
        return notAttachable(`${p.kind}: runs from the devmap/cpumap entry its tool fills, not from an interface`);
      return attachToXdpHook(p, prog, env);
    case ProgType.SCHED_CLS:
      return attachSchedCls(p, prog);
    case ProgType.SK_SKB:
    case ProgType.SK_MSG:
      return attachToSockmap(p, prog, env);
    case ProgType.SK_LOOKUP:
      return attached(attachNetns(prog, AttachType.SK_LOOKUP));
    case ProgType.FLOW_DISSECTOR:
      return exclusively('flow_dissector netns', p, env, () => attached(attachNetns(prog, AttachType.FLOW_DISSECTOR)));
    case ProgType.NETFILTER:
      return attached(attachNetfilter(prog, DEFAULTS.netfilter));
    case ProgType.SOCKET_FILTER:
      return notAttachable('socket filters attach to a socket of their tool (SO_ATTACH_BPF)');
    case ProgType.SK_REUSEPORT:
      return notAttachable('sk_reuseport programs attach to a reuseport socket group of their tool (SO_ATTACH_REUSEPORT_EBPF)');
    case ProgType.SCHED_ACT:
      return notAttachable('tc actions run from a tc filter chain their tool builds');
    case ProgType.LWT_IN:
    case ProgType.LWT_OUT:
    case ProgType.LWT_XMIT:
    case ProgType.LWT_SEG6LOCAL:
      return notAttachable(`${p.kind}: runs from a route with 'encap bpf' that its tool creates`);
    case ProgType.LIRC_MODE2:
      return notAttachable('lirc_mode2 programs need an infrared receiver device');
    case ProgType.STRUCT_OPS:
      return notAttachable('struct_ops programs are registered through their struct_ops map (not attached one by one)');
    case ProgType.EXT:
      // Loaded against its target program (an object config's target-program): the link replaces the function there.
      if (!p.attachProgram) return notAttachable('freplace programs replace a function of a program their tool loads');
      return { ...attached(attachTracing(prog, 0, `freplace ${p.attachTo ?? ''} in ${p.attachProgram}`)), runsInside: p.attachProgram };
    default:
      return notAttachable(`program type ${p.type} (SEC("${p.section}")): no attach known`);
  }
}

/**
 * Iterators are attached as libbpf's auto-attach does (no iter_info) and read. One over a map
 * (bpf_map_elem, sk_storage, sockmap) fails there as under libbpf: its tool passes the map.
 */
function attachIterProgram(p: ProgramSpec, prog: Program): Attachment {
  const name = p.attachTo ?? '';
  let link: Link;
  try {
    link = attachIter(prog, name);
  } catch (e) {
    if (e instanceof CoreMatrixError && /^(bpf_map_elem|bpf_sk_storage_map|sockmap)$/.test(name)) throw new CoreMatrixError(`${e.message.split('\n')[0]} (iter/${name} iterates a map its tool passes in iter_info)`);
    throw e;
  }
  return attached(link, () => {
    const r = readIter(link);
    return `read ${r.bytes} byte${r.bytes === 1 ? '' : 's'} from the iterator`;
  });
}

/**
 * A BPF LSM program acts on every task, the agent too: one that denies file access (a
 * file_permission hook returning an error) would leave the agent unable to read, write or report,
 * and one that denies mmap or mprotect (mmap_file, file_mprotect) would make node's JavaScript
 * engine abort the agent at its next code page. Right after attaching one, the agent checks that
 * it can still map and mprotect a page, open, write and read a file of its own and read /proc:
 * why not, or undefined. The caller then detaches it at once, before anything else runs, and says
 * so in the cell (its runs so far, the check's, are the kernel's count). The engine can still
 * mprotect between the attach and the check; a guest that dies there loses only this object
 * (matrix/resume.ts).
 */
export function deniesTheAgent(): string | undefined {
  const memory = memoryCallsRefused();
  if (memory) return memory;
  const file = `/tmp/cm-lsm-canary-${process.pid}`;
  try {
    writeFileSync(file, 'canary');
    if (readFileSync(file, 'utf8') !== 'canary') return `reading ${file} back gave other bytes`;
    readFileSync('/proc/self/stat');
    rmSync(file, { force: true });
    return undefined;
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
}

/** The note of an LSM program detached because it denied the agent its own file or memory calls. */
export function deniedNote(why: string): string {
  return `detached right after attaching, before the workload: it denied the agent its own file or memory calls (${why})`;
}

/** Syscall programs run when user space asks (BPF_PROG_TEST_RUN), as their tool runs them. */
function runOnDemand(prog: Program): Attachment {
  return {
    verdict: { status: 'attached', via: 'BPF_PROG_TEST_RUN', target: 'run on demand (syscall program)' },
    exercise: () => {
      const r = prog.testRun({});
      return `BPF_PROG_TEST_RUN returned ${r.retval}`;
    },
  };
}

/** cgroup programs (and lsm_cgroup) on the root cgroup v2, which every guest process is in. */
function attachToCgroup(p: ProgramSpec, prog: Program): Attachment {
  ensureCgroup2(DEFAULTS.cgroup);
  // `cgroup/skb` and friends name no attach type: 0 is BPF_CGROUP_INET_INGRESS, as libbpf takes it.
  const link = attachCgroup(prog, p.expectedAttachType ?? AttachType.CGROUP_INET_INGRESS, DEFAULTS.cgroup);
  // An lsm_cgroup program denies by returning 0 (the selftests' returns 0 on file_open): the agent is in this cgroup too.
  return p.expectedAttachType === AttachType.LSM_CGROUP ? keptUnlessDenying(link) : attached(link);
}

/** An LSM attachment, kept unless it denies the agent its own file or memory calls (deniesTheAgent): then detached at once, saying so. */
function keptUnlessDenying(link: Link): Attachment {
  const denied = deniesTheAgent();
  if (!denied) return attached(link);
  link.close();
  return { verdict: { status: 'attached', via: link.via, target: link.target }, exercise: () => deniedNote(denied) };
}

/**
 * tc programs on the loopback, the way their tool attaches them with libbpf: `SEC("tcx/…")` through
 * a tcx link (bpf_program__attach_tcx: Linux 6.6+, and nothing else), `SEC("tc")` and the classifier
 * names through clsact + cls_bpf (bpf_tc_attach), on every kernel. netkit programs go to the guest's
 * netkit pair (below).
 */
function attachSchedCls(p: ProgramSpec, prog: Program): Attachment {
  if (p.expectedAttachType === AttachType.NETKIT_PRIMARY || p.expectedAttachType === AttachType.NETKIT_PEER) return attachToNetkit(p, prog);
  const tcx = p.expectedAttachType === AttachType.TCX_INGRESS || p.expectedAttachType === AttachType.TCX_EGRESS;
  const direction = p.expectedAttachType === AttachType.TCX_EGRESS || /egress/.test(p.section) ? 'egress' : 'ingress';
  return attached(attachTc(prog, DEFAULTS.interface, direction, { via: tcx ? 'link' : 'legacy' }));
}

/** Frames sent out of a netkit program's device after the workload: its run count (the kernel's) is this exactly. */
export const NETKIT_FRAMES = 5;

/**
 * netkit programs (Linux 6.7) on the guest's netkit pair, created as their tool creates one:
 * `netkit/primary` on the primary end, `netkit/peer` on the peer (both attached through the
 * primary, as bpf_program__attach_netkit does). netkit runs a device's programs on what it
 * transmits, and the workload's traffic stays on lo: so after the workload, NETKIT_FRAMES frames
 * are sent out of the program's own end.
 */
function attachToNetkit(p: ProgramSpec, prog: Program): Attachment {
  const side = p.expectedAttachType === AttachType.NETKIT_PEER ? 'peer' : 'primary';
  const pair = ensureNetkitPair();
  const out = side === 'peer' ? pair.peer : pair.primary;
  return attached(attachNetkit(prog, NETKIT_PAIR.primary, side), () => `${sendProbeFrames(out, NETKIT_FRAMES, NETKIT_PAIR[side])} frames sent out of ${NETKIT_PAIR[side]}`);
}

/** Frames sent into an XDP program's veth end after the workload: its run count (the kernel's) is this exactly. */
export const XDP_FRAMES = 5;

/** An interface an object's XDP programs can go to, in the mode they run in there. */
export interface XdpHook {
  ifname: string;
  mode: XdpMode;
  /** The veth end whose transmits the hook receives: XDP_FRAMES are sent out of it after the workload. */
  fedFrom?: string;
}

/**
 * Where an object's XDP programs go, in turn (an interface holds one XDP program, and attaching
 * another would replace it): the first to the guest's veth pair in driver mode, the XDP a NIC's
 * driver runs (veth has its own), fed XDP_FRAMES frames from the other end after the workload;
 * the second to lo in generic (skb) mode, where the workload's loopback traffic runs it; a third
 * is not attachable beside them.
 */
export const XDP_HOOKS: readonly XdpHook[] = [
  { ifname: VETH_PAIR.peer, mode: 'drv', fedFrom: VETH_PAIR.name },
  { ifname: DEFAULTS.interface, mode: 'skb' },
];

/** The exclusive-hook key of an XDP hook (AttachEnv.exclusive). */
export const xdpHookKey = (h: XdpHook): string => `xdp ${h.ifname}`;

/**
 * The first XDP hook no program of this object holds, made ready (the veth pair created, both
 * ends up) with its interface's index; else why none is left.
 */
export function freeXdpHook(exclusive: ReadonlyMap<string, string>): { hook: XdpHook; ifindex: number } | { reason: string } {
  const hook = XDP_HOOKS.find((h) => !exclusive.has(xdpHookKey(h)));
  if (!hook) return { reason: `${XDP_HOOKS.map((h) => `${xdpHookKey(h)} (${h.mode})`).join(' and ')} hold one program each, and ${XDP_HOOKS.map((h) => exclusive.get(xdpHookKey(h))).join(' and ')} of this object are attached there` };
  if (hook.fedFrom) ensureVethPair();
  return { hook, ifindex: interfaceIndex(hook.ifname) };
}

/** After the workload, what runs a program on `hook`: XDP_FRAMES frames into its veth end (lo's program runs on the workload's own traffic). */
export function feedXdpHook(hook: XdpHook): (() => string) | undefined {
  const from = hook.fedFrom;
  if (!from) return undefined;
  return () => `${sendProbeFrames(interfaceIndex(from), XDP_FRAMES, from)} frames sent out of ${from} into ${hook.ifname}`;
}

/** xdp programs (and xdp.frags) on the next free XDP_HOOKS entry, in its mode. */
function attachToXdpHook(p: ProgramSpec, prog: Program, env: AttachEnv): Attachment {
  const free = freeXdpHook(env.exclusive);
  if ('reason' in free) return notAttachable(free.reason);
  const { hook } = free;
  return exclusively(xdpHookKey(hook), p, env, () => attached(attachXdp(prog, hook.ifname, { mode: hook.mode }), feedXdpHook(hook)));
}

/** sk_skb / sk_msg programs on the object's own sockmap or sockhash (their tool adds the sockets). */
function attachToSockmap(p: ProgramSpec, prog: Program, env: AttachEnv): Attachment {
  const map = [...env.maps.values()].find((m) => m.type === MapType.SOCKMAP || m.type === MapType.SOCKHASH);
  if (!map) return notAttachable(`${p.kind}: attaches to a sockmap or sockhash, and the object has none`);
  const type = p.expectedAttachType ?? (p.type === ProgType.SK_MSG ? AttachType.SK_MSG_VERDICT : AttachType.SK_SKB_STREAM_VERDICT);
  // A map holds one program per attach type: a second would replace the first (as libbpf's bpf_prog_attach does).
  return exclusively(sockmapHook(map.name, type), p, env, () => ({ ...attached(attachSockmap(prog, { fd: map.fd, name: map.name }, type)), sockmap: map }));
}

/** The hook of a sockmap program: the map and the attach type (one program each). */
export function sockmapHook(map: string, attachType: number): string {
  const name = Object.entries(AttachType).find(([, v]) => v === attachType)?.[0]?.toLowerCase() ?? String(attachType);
  return `sockmap ${map} ${name}`;
}

/** Attaches to a hook that holds one program, unless another program of the object holds it already. */
export function exclusively<A extends Attachment>(hook: string, p: ProgramSpec, env: Pick<AttachEnv, 'exclusive'>, attach: () => A): A | Attachment {
  const holder = env.exclusive.get(hook);
  if (holder) return notAttachable(`${hook} holds one program, and ${holder} of this object is attached there`);
  const a = attach();
  if (a.verdict.status === 'attached') env.exclusive.set(hook, p.name);
  return a;
}
