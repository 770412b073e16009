// SEC() names → program type, expected attach type, load flags and attach target: one table row
// per name libbpf knows (facts from libbpf's `section_defs[]` as of libbpf 1.8, July 2026), read
// by the loader (type, attach type, prog_flags, attach_btf_id) and by an auto-attacher (how to
// attach, and to what). test/core/sections.test.ts checks every row libbpf 1.1 has against
// Debian's libbpf.so.1 itself.
//
// libbpf ≥ 1.0 matching: a row written `name+` matches `name` and `name/<anything>`; any other
// row matches only its exact name (the old "any prefix" matching, SEC_SLOPPY_PFX, is gone, so
// `xdp/foo` or `socket/bar` are unknown). `SEC("?name")` is `SEC("name")` with autoload off.
// No two rows match the same name, so the order of the table does not matter.

export { ProgType, AttachType } from '../uapi.js';
import { AttachType, BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS, ProgType } from '../uapi.js';
import { oneLine } from '../errors.js';

/** What libbpf's row says beyond the types (its `SEC_*` flags). */
export interface SectionFlags {
  /** SEC_EXP_ATTACH_OPT: libbpf drops expected_attach_type on kernels that reject any (before 4.17). */
  expectedAttachOptional: boolean;
  /** SEC_ATTACHABLE: a BPF_PROG_ATTACH type (what libbpf_attach_type_by_name() answers for). */
  attachable: boolean;
  /** SEC_ATTACH_BTF: the load needs attach_btf_id, the BTF id of the target the section names. */
  attachBtf: boolean;
  /** SEC_SLEEPABLE: loaded with BPF_F_SLEEPABLE. */
  sleepable: boolean;
  /** SEC_XDP_FRAGS: loaded with BPF_F_XDP_HAS_FRAGS (multi-buffer XDP). */
  xdpFrags: boolean;
  /** SEC_USDT: libbpf loads it as BPF_TRACE_UPROBE_MULTI when the kernel has uprobe_multi links. */
  usdt: boolean;
}

/**
 * The auto-attach handler libbpf's row names. Rows without one (xdp, tc, cgroup/*, sk_*, ...)
 * need something only user space knows (an interface, a cgroup, a map) and are never auto-attached.
 */
export type AttachFn =
  | 'kprobe' | 'ksyscall' | 'kprobe_multi' | 'kprobe_session' | 'uprobe' | 'uprobe_multi' | 'usdt'
  | 'tracepoint' | 'raw_tracepoint' | 'tracing' | 'tracing_multi' | 'lsm' | 'iter';

/** The attach target written in the section name, parsed the way the handler reads it. */
export type AttachTarget =
  /** kprobe/func[+off], kretprobe/func: a kernel function and a byte offset into it. */
  | { kind: 'kprobe'; func: string; offset: number; retprobe: boolean }
  /** ksyscall/name, kretsyscall/name: a syscall; the attacher picks the arch's symbol for it. */
  | { kind: 'ksyscall'; syscall: string; retprobe: boolean }
  /** kprobe.multi/glob, kretprobe.multi/glob, kprobe.session/glob. */
  | { kind: 'kprobe_multi'; pattern: string; retprobe: boolean; session: boolean }
  /** uprobe/binary:func[+off] (and uretprobe, `.s`). */
  | { kind: 'uprobe'; binary: string; func: string; offset: number; retprobe: boolean }
  /** uprobe.multi/binary:glob (and uretprobe.multi, uprobe.session, `.s`). */
  | { kind: 'uprobe_multi'; binary: string; pattern: string; retprobe: boolean; session: boolean }
  /** usdt/binary:provider:name. */
  | { kind: 'usdt'; binary: string; provider: string; name: string }
  /** tracepoint/category/name, tp/category/name. */
  | { kind: 'tracepoint'; category: string; name: string }
  /** raw_tracepoint/name, raw_tp/name (and `.w`, `.s`). */
  | { kind: 'raw_tracepoint'; name: string }
  /**
   * A BTF-named target (tp_btf, fentry/fexit/fmod_ret/fsession, freplace, lsm, lsm_cgroup, iter):
   * `name` as written, `module` when written `module:name`, and the BTF type to look for:
   * `btf_trace_<name>` TYPEDEF for tp_btf, `bpf_lsm_<name>` / `bpf_iter_<name>` FUNC for lsm / iter.
   * freplace names a function in the BTF of the program it replaces, never a module.
   */
  | { kind: 'btf'; name: string; module?: string; btfName: string; btfKind: 'func' | 'typedef' }
  /** fentry.multi/[module:]glob (and fexit.multi, fsession.multi, `.s`). */
  | { kind: 'tracing_multi'; pattern: string; module?: string };

/** What a section name says about its programs. */
export interface ProgramKind {
  /** The SEC() name of the row that matched, without libbpf's `+` ('kprobe', 'xdp.frags/devmap', 'tc/ingress'), or 'unknown'. */
  kind: string;
  /** bpf_prog_type; 0 (UNSPEC) for an unknown section. */
  type: number;
  /** bpf_attach_type for BPF_PROG_LOAD's expected_attach_type, when the row names one. */
  expectedAttachType?: number;
  /** The text after `kind/` in the section name, unparsed (see `target` for its parts). */
  attachTo?: string;
  /** Loaded with BPF_F_SLEEPABLE (`.s` rows, syscall). */
  sleepable: boolean;
  /** False for `SEC("?...")`: libbpf does not load the program unless asked to. */
  autoload: boolean;
  flags: SectionFlags;
  /** prog_flags for BPF_PROG_LOAD that the row implies (BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS). */
  progFlags: number;
  /** libbpf's auto-attach handler for the row, if it has one. */
  attachFn?: AttachFn;
  /** libbpf's auto-attach would try this program (it has a handler and, where the handler needs one, a target). */
  autoAttach: boolean;
  /** The parsed target, when the section names one that parses. */
  target?: AttachTarget;
  /** Why the named target cannot be used (malformed, or missing where the load needs it); attach (or load, for attachBtf) fails with this. */
  targetError?: string;
  /** Unknown sections only: why the program cannot be loaded, one line for the loader to report after `program 'x': `. */
  reason?: string;
}

// Row flags, spelled as in libbpf's enum sec_def_flags.
const EXP_OPT = 1 << 0;
const ATTACHABLE = 1 << 1;
const ATTACH_BTF = 1 << 2;
const SLEEPABLE = 1 << 3;
const XDP_FRAGS = 1 << 4;
const USDT = 1 << 5;
const ATTACHABLE_OPT = ATTACHABLE | EXP_OPT;

export interface SectionDef {
  /** libbpf's spelling: `name+` takes an optional `/target`; anything else is an exact name. */
  sec: string;
  type: number;
  attachType?: number;
  flags?: number;
  attachFn?: AttachFn;
}

const P = ProgType;
const A = AttachType;

/** Every SEC() name libbpf 1.8 knows. */
export const SECTION_DEFS: readonly SectionDef[] = [
  { sec: 'socket', type: P.SOCKET_FILTER },
  { sec: 'sk_reuseport/migrate', type: P.SK_REUSEPORT, attachType: A.SK_REUSEPORT_SELECT_OR_MIGRATE, flags: ATTACHABLE },
  { sec: 'sk_reuseport', type: P.SK_REUSEPORT, attachType: A.SK_REUSEPORT_SELECT, flags: ATTACHABLE },

  // Kernel and user probes (perf-event or multi links).
  { sec: 'kprobe+', type: P.KPROBE, attachFn: 'kprobe' },
  { sec: 'kretprobe+', type: P.KPROBE, attachFn: 'kprobe' },
  { sec: 'uprobe+', type: P.KPROBE, attachFn: 'uprobe' },
  { sec: 'uprobe.s+', type: P.KPROBE, flags: SLEEPABLE, attachFn: 'uprobe' },
  { sec: 'uretprobe+', type: P.KPROBE, attachFn: 'uprobe' },
  { sec: 'uretprobe.s+', type: P.KPROBE, flags: SLEEPABLE, attachFn: 'uprobe' },
  { sec: 'kprobe.multi+', type: P.KPROBE, attachType: A.TRACE_KPROBE_MULTI, attachFn: 'kprobe_multi' },
  { sec: 'kretprobe.multi+', type: P.KPROBE, attachType: A.TRACE_KPROBE_MULTI, attachFn: 'kprobe_multi' },
  { sec: 'kprobe.session+', type: P.KPROBE, attachType: A.TRACE_KPROBE_SESSION, attachFn: 'kprobe_session' },
  { sec: 'uprobe.multi+', type: P.KPROBE, attachType: A.TRACE_UPROBE_MULTI, attachFn: 'uprobe_multi' },
  { sec: 'uretprobe.multi+', type: P.KPROBE, attachType: A.TRACE_UPROBE_MULTI, attachFn: 'uprobe_multi' },
  { sec: 'uprobe.session+', type: P.KPROBE, attachType: A.TRACE_UPROBE_SESSION, attachFn: 'uprobe_multi' },
  { sec: 'uprobe.multi.s+', type: P.KPROBE, attachType: A.TRACE_UPROBE_MULTI, flags: SLEEPABLE, attachFn: 'uprobe_multi' },
  { sec: 'uretprobe.multi.s+', type: P.KPROBE, attachType: A.TRACE_UPROBE_MULTI, flags: SLEEPABLE, attachFn: 'uprobe_multi' },
  { sec: 'uprobe.session.s+', type: P.KPROBE, attachType: A.TRACE_UPROBE_SESSION, flags: SLEEPABLE, attachFn: 'uprobe_multi' },
  { sec: 'ksyscall+', type: P.KPROBE, attachFn: 'ksyscall' },
  { sec: 'kretsyscall+', type: P.KPROBE, attachFn: 'ksyscall' },
  { sec: 'usdt+', type: P.KPROBE, flags: USDT, attachFn: 'usdt' },
  { sec: 'usdt.s+', type: P.KPROBE, flags: USDT | SLEEPABLE, attachFn: 'usdt' },

  // Traffic control: tcx and netkit links; `tc`, `classifier`, `action` are the legacy netlink kind.
  { sec: 'tc/ingress', type: P.SCHED_CLS, attachType: A.TCX_INGRESS },
  { sec: 'tc/egress', type: P.SCHED_CLS, attachType: A.TCX_EGRESS },
  { sec: 'tcx/ingress', type: P.SCHED_CLS, attachType: A.TCX_INGRESS },
  { sec: 'tcx/egress', type: P.SCHED_CLS, attachType: A.TCX_EGRESS },
  { sec: 'tc', type: P.SCHED_CLS },
  { sec: 'classifier', type: P.SCHED_CLS },
  { sec: 'action', type: P.SCHED_ACT },
  { sec: 'netkit/primary', type: P.SCHED_CLS, attachType: A.NETKIT_PRIMARY },
  { sec: 'netkit/peer', type: P.SCHED_CLS, attachType: A.NETKIT_PEER },

  // Tracepoints.
  { sec: 'tracepoint+', type: P.TRACEPOINT, attachFn: 'tracepoint' },
  { sec: 'tp+', type: P.TRACEPOINT, attachFn: 'tracepoint' },
  { sec: 'tracepoint.s+', type: P.TRACEPOINT, flags: SLEEPABLE, attachFn: 'tracepoint' },
  { sec: 'tp.s+', type: P.TRACEPOINT, flags: SLEEPABLE, attachFn: 'tracepoint' },
  { sec: 'raw_tracepoint+', type: P.RAW_TRACEPOINT, attachFn: 'raw_tracepoint' },
  { sec: 'raw_tp+', type: P.RAW_TRACEPOINT, attachFn: 'raw_tracepoint' },
  { sec: 'raw_tracepoint.s+', type: P.RAW_TRACEPOINT, flags: SLEEPABLE, attachFn: 'raw_tracepoint' },
  { sec: 'raw_tp.s+', type: P.RAW_TRACEPOINT, flags: SLEEPABLE, attachFn: 'raw_tracepoint' },
  { sec: 'raw_tracepoint.w+', type: P.RAW_TRACEPOINT_WRITABLE, attachFn: 'raw_tracepoint' },
  { sec: 'raw_tp.w+', type: P.RAW_TRACEPOINT_WRITABLE, attachFn: 'raw_tracepoint' },

  // BTF-attached tracing.
  { sec: 'tp_btf+', type: P.TRACING, attachType: A.TRACE_RAW_TP, flags: ATTACH_BTF, attachFn: 'tracing' },
  { sec: 'tp_btf.s+', type: P.TRACING, attachType: A.TRACE_RAW_TP, flags: ATTACH_BTF | SLEEPABLE, attachFn: 'tracing' },
  { sec: 'fentry+', type: P.TRACING, attachType: A.TRACE_FENTRY, flags: ATTACH_BTF, attachFn: 'tracing' },
  { sec: 'fmod_ret+', type: P.TRACING, attachType: A.MODIFY_RETURN, flags: ATTACH_BTF, attachFn: 'tracing' },
  { sec: 'fexit+', type: P.TRACING, attachType: A.TRACE_FEXIT, flags: ATTACH_BTF, attachFn: 'tracing' },
  { sec: 'fentry.s+', type: P.TRACING, attachType: A.TRACE_FENTRY, flags: ATTACH_BTF | SLEEPABLE, attachFn: 'tracing' },
  { sec: 'fmod_ret.s+', type: P.TRACING, attachType: A.MODIFY_RETURN, flags: ATTACH_BTF | SLEEPABLE, attachFn: 'tracing' },
  { sec: 'fexit.s+', type: P.TRACING, attachType: A.TRACE_FEXIT, flags: ATTACH_BTF | SLEEPABLE, attachFn: 'tracing' },
  { sec: 'fsession+', type: P.TRACING, attachType: A.TRACE_FSESSION, flags: ATTACH_BTF, attachFn: 'tracing' },
  { sec: 'fsession.s+', type: P.TRACING, attachType: A.TRACE_FSESSION, flags: ATTACH_BTF | SLEEPABLE, attachFn: 'tracing' },
  // The multi variants name a glob, not one BTF id: no ATTACH_BTF.
  { sec: 'fsession.multi+', type: P.TRACING, attachType: A.TRACE_FSESSION_MULTI, attachFn: 'tracing_multi' },
  { sec: 'fsession.multi.s+', type: P.TRACING, attachType: A.TRACE_FSESSION_MULTI, flags: SLEEPABLE, attachFn: 'tracing_multi' },
  { sec: 'fentry.multi+', type: P.TRACING, attachType: A.TRACE_FENTRY_MULTI, attachFn: 'tracing_multi' },
  { sec: 'fexit.multi+', type: P.TRACING, attachType: A.TRACE_FEXIT_MULTI, attachFn: 'tracing_multi' },
  { sec: 'fentry.multi.s+', type: P.TRACING, attachType: A.TRACE_FENTRY_MULTI, flags: SLEEPABLE, attachFn: 'tracing_multi' },
  { sec: 'fexit.multi.s+', type: P.TRACING, attachType: A.TRACE_FEXIT_MULTI, flags: SLEEPABLE, attachFn: 'tracing_multi' },
  { sec: 'freplace+', type: P.EXT, flags: ATTACH_BTF, attachFn: 'tracing' },
  { sec: 'lsm+', type: P.LSM, attachType: A.LSM_MAC, flags: ATTACH_BTF, attachFn: 'lsm' },
  { sec: 'lsm.s+', type: P.LSM, attachType: A.LSM_MAC, flags: ATTACH_BTF | SLEEPABLE, attachFn: 'lsm' },
  { sec: 'lsm_cgroup+', type: P.LSM, attachType: A.LSM_CGROUP, flags: ATTACH_BTF },
  { sec: 'iter+', type: P.TRACING, attachType: A.TRACE_ITER, flags: ATTACH_BTF, attachFn: 'iter' },
  { sec: 'iter.s+', type: P.TRACING, attachType: A.TRACE_ITER, flags: ATTACH_BTF | SLEEPABLE, attachFn: 'iter' },
  { sec: 'syscall', type: P.SYSCALL, flags: SLEEPABLE },

  // XDP.
  { sec: 'xdp.frags/devmap', type: P.XDP, attachType: A.XDP_DEVMAP, flags: XDP_FRAGS },
  { sec: 'xdp/devmap', type: P.XDP, attachType: A.XDP_DEVMAP, flags: ATTACHABLE },
  { sec: 'xdp.frags/cpumap', type: P.XDP, attachType: A.XDP_CPUMAP, flags: XDP_FRAGS },
  { sec: 'xdp/cpumap', type: P.XDP, attachType: A.XDP_CPUMAP, flags: ATTACHABLE },
  { sec: 'xdp.frags', type: P.XDP, attachType: A.XDP, flags: XDP_FRAGS },
  { sec: 'xdp', type: P.XDP, attachType: A.XDP, flags: ATTACHABLE_OPT },

  { sec: 'perf_event', type: P.PERF_EVENT },
  { sec: 'lwt_in', type: P.LWT_IN },
  { sec: 'lwt_out', type: P.LWT_OUT },
  { sec: 'lwt_xmit', type: P.LWT_XMIT },
  { sec: 'lwt_seg6local', type: P.LWT_SEG6LOCAL },

  // Sockets, sockmaps, lirc, flow dissector.
  { sec: 'sockops', type: P.SOCK_OPS, attachType: A.CGROUP_SOCK_OPS, flags: ATTACHABLE_OPT },
  { sec: 'sk_skb/stream_parser', type: P.SK_SKB, attachType: A.SK_SKB_STREAM_PARSER, flags: ATTACHABLE_OPT },
  { sec: 'sk_skb/stream_verdict', type: P.SK_SKB, attachType: A.SK_SKB_STREAM_VERDICT, flags: ATTACHABLE_OPT },
  { sec: 'sk_skb/verdict', type: P.SK_SKB, attachType: A.SK_SKB_VERDICT, flags: ATTACHABLE_OPT },
  { sec: 'sk_skb', type: P.SK_SKB },
  { sec: 'sk_msg', type: P.SK_MSG, attachType: A.SK_MSG_VERDICT, flags: ATTACHABLE_OPT },
  { sec: 'lirc_mode2', type: P.LIRC_MODE2, attachType: A.LIRC_MODE2, flags: ATTACHABLE_OPT },
  { sec: 'flow_dissector', type: P.FLOW_DISSECTOR, attachType: A.FLOW_DISSECTOR, flags: ATTACHABLE_OPT },

  // Cgroups.
  { sec: 'cgroup_skb/ingress', type: P.CGROUP_SKB, attachType: A.CGROUP_INET_INGRESS, flags: ATTACHABLE_OPT },
  { sec: 'cgroup_skb/egress', type: P.CGROUP_SKB, attachType: A.CGROUP_INET_EGRESS, flags: ATTACHABLE_OPT },
  { sec: 'cgroup/skb', type: P.CGROUP_SKB },
  { sec: 'cgroup/sock_create', type: P.CGROUP_SOCK, attachType: A.CGROUP_INET_SOCK_CREATE, flags: ATTACHABLE },
  { sec: 'cgroup/sock_release', type: P.CGROUP_SOCK, attachType: A.CGROUP_INET_SOCK_RELEASE, flags: ATTACHABLE },
  { sec: 'cgroup/sock', type: P.CGROUP_SOCK, attachType: A.CGROUP_INET_SOCK_CREATE, flags: ATTACHABLE_OPT },
  { sec: 'cgroup/post_bind4', type: P.CGROUP_SOCK, attachType: A.CGROUP_INET4_POST_BIND, flags: ATTACHABLE },
  { sec: 'cgroup/post_bind6', type: P.CGROUP_SOCK, attachType: A.CGROUP_INET6_POST_BIND, flags: ATTACHABLE },
  { sec: 'cgroup/bind4', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_INET4_BIND, flags: ATTACHABLE },
  { sec: 'cgroup/bind6', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_INET6_BIND, flags: ATTACHABLE },
  { sec: 'cgroup/connect4', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_INET4_CONNECT, flags: ATTACHABLE },
  { sec: 'cgroup/connect6', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_INET6_CONNECT, flags: ATTACHABLE },
  { sec: 'cgroup/connect_unix', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_UNIX_CONNECT, flags: ATTACHABLE },
  { sec: 'cgroup/sendmsg4', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_UDP4_SENDMSG, flags: ATTACHABLE },
  { sec: 'cgroup/sendmsg6', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_UDP6_SENDMSG, flags: ATTACHABLE },
  { sec: 'cgroup/sendmsg_unix', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_UNIX_SENDMSG, flags: ATTACHABLE },
  { sec: 'cgroup/recvmsg4', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_UDP4_RECVMSG, flags: ATTACHABLE },
  { sec: 'cgroup/recvmsg6', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_UDP6_RECVMSG, flags: ATTACHABLE },
  { sec: 'cgroup/recvmsg_unix', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_UNIX_RECVMSG, flags: ATTACHABLE },
  { sec: 'cgroup/getpeername4', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_INET4_GETPEERNAME, flags: ATTACHABLE },
  { sec: 'cgroup/getpeername6', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_INET6_GETPEERNAME, flags: ATTACHABLE },
  { sec: 'cgroup/getpeername_unix', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_UNIX_GETPEERNAME, flags: ATTACHABLE },
  { sec: 'cgroup/getsockname4', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_INET4_GETSOCKNAME, flags: ATTACHABLE },
  { sec: 'cgroup/getsockname6', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_INET6_GETSOCKNAME, flags: ATTACHABLE },
  { sec: 'cgroup/getsockname_unix', type: P.CGROUP_SOCK_ADDR, attachType: A.CGROUP_UNIX_GETSOCKNAME, flags: ATTACHABLE },
  { sec: 'cgroup/sysctl', type: P.CGROUP_SYSCTL, attachType: A.CGROUP_SYSCTL, flags: ATTACHABLE },
  { sec: 'cgroup/getsockopt', type: P.CGROUP_SOCKOPT, attachType: A.CGROUP_GETSOCKOPT, flags: ATTACHABLE },
  { sec: 'cgroup/setsockopt', type: P.CGROUP_SOCKOPT, attachType: A.CGROUP_SETSOCKOPT, flags: ATTACHABLE },
  { sec: 'cgroup/dev', type: P.CGROUP_DEVICE, attachType: A.CGROUP_DEVICE, flags: ATTACHABLE_OPT },

  // struct_ops programs are attached through their struct_ops map, not by name.
  { sec: 'struct_ops+', type: P.STRUCT_OPS },
  { sec: 'struct_ops.s+', type: P.STRUCT_OPS, flags: SLEEPABLE },
  { sec: 'sk_lookup', type: P.SK_LOOKUP, attachType: A.SK_LOOKUP, flags: ATTACHABLE },
  { sec: 'netfilter', type: P.NETFILTER, attachType: A.NETFILTER },
];

/** The row's name without libbpf's `+`, and whether it takes `/target`. */
const rowName = (d: SectionDef) => (d.sec.endsWith('+') ? d.sec.slice(0, -1) : d.sec);
const takesTarget = (d: SectionDef) => d.sec.endsWith('+');

// Exact names in one map, `name+` rows by name in another. A `name+` row's name never holds a
// '/', so "the text before the first '/'" finds it; the test checks no name matches two rows.
const EXACT = new Map(SECTION_DEFS.filter((d) => !takesTarget(d)).map((d) => [d.sec, d]));
const WITH_TARGET = new Map(SECTION_DEFS.filter(takesTarget).map((d) => [rowName(d), d]));

/** The row libbpf (≥ 1.0) matches for a section name (without the `?`), if any. */
export function findSectionDef(name: string): SectionDef | undefined {
  const exact = EXACT.get(name);
  if (exact) return exact;
  const slash = name.indexOf('/');
  return WITH_TARGET.get(slash < 0 ? name : name.slice(0, slash));
}

/** Attach functions that leave a section without a target alone (SEC("kprobe"): the user attaches it). */
const SKIPS_BARE = new Set<AttachFn>(['kprobe', 'ksyscall', 'kprobe_multi', 'kprobe_session', 'uprobe', 'uprobe_multi', 'usdt', 'tracepoint', 'raw_tracepoint', 'tracing_multi']);

/** Classifies a program's section name; `SEC("?name")` is `name` with autoload off. `.text` is never a program. */
export function classifySection(section: string): ProgramKind {
  const autoload = !section.startsWith('?');
  const name = autoload ? section : section.slice(1);
  const def = findSectionDef(name);
  if (!def) {
    return {
      kind: 'unknown', type: ProgType.UNSPEC, sleepable: false, autoload, flags: flagsOf(0), progFlags: 0, autoAttach: false,
      reason: unknownReason(name),
    };
  }
  const kind = rowName(def);
  const flags = flagsOf(def.flags ?? 0);
  // undefined: the name is the row's name alone; '' for `kind/` with nothing after it.
  const rest = name.length > kind.length ? name.slice(kind.length + 1) : undefined;
  const out: ProgramKind = {
    kind, type: def.type, sleepable: flags.sleepable, autoload, flags,
    progFlags: (flags.sleepable ? BPF_F_SLEEPABLE : 0) | (flags.xdpFrags ? BPF_F_XDP_HAS_FRAGS : 0),
    autoAttach: def.attachFn !== undefined && (rest !== undefined || !SKIPS_BARE.has(def.attachFn)),
  };
  if (def.attachType !== undefined) out.expectedAttachType = def.attachType;
  if (def.attachFn) out.attachFn = def.attachFn;
  if (rest) out.attachTo = rest;
  const parsed = parseTarget(def, kind, rest);
  if (typeof parsed === 'string') out.targetError = oneLine(`section '${name}': ${parsed}`);
  else if (parsed) out.target = parsed;
  return out;
}

function flagsOf(f: number): SectionFlags {
  return {
    expectedAttachOptional: (f & EXP_OPT) !== 0,
    attachable: (f & ATTACHABLE) !== 0,
    attachBtf: (f & ATTACH_BTF) !== 0,
    sleepable: (f & SLEEPABLE) !== 0,
    xdpFrags: (f & XDP_FRAGS) !== 0,
    usdt: (f & USDT) !== 0,
  };
}

function unknownReason(name: string): string {
  // Before libbpf 1.0 `xdp/anything` meant `xdp`; name the row such a name was probably meant for.
  const slash = name.indexOf('/');
  const head = slash < 0 ? undefined : EXACT.get(name.slice(0, slash));
  const hint = head ? `; '${head.sec}' takes no '/target' since libbpf 1.0` : '';
  return oneLine(`unknown section '${name}': libbpf ≥ 1.0 knows no SEC() by that name, leaves the program BPF_PROG_TYPE_UNSPEC and fails its load${hint}`);
}

/** The target the handler reads from the section name: parsed, absent (undefined), or what is wrong with it. */
function parseTarget(def: SectionDef, kind: string, rest: string | undefined): AttachTarget | string | undefined {
  if ((def.flags ?? 0) & ATTACH_BTF) return btfTarget(def, rest);
  if (rest === undefined || !def.attachFn) return undefined;
  const retprobe = kind.startsWith('kret') || kind.startsWith('uret');
  switch (def.attachFn) {
    case 'kprobe': {
      const m = /^([A-Za-z0-9_.]+)(?:\+(.+))?$/.exec(rest);
      if (!m) return `'${rest}' is not a kernel function name with an optional +offset`;
      const offset = m[2] === undefined ? 0 : parseOffset(m[2]);
      if (offset === undefined) return `'${m[2]}' is not a non-negative offset`;
      if (retprobe && offset !== 0) return 'a kretprobe takes no offset';
      return { kind: 'kprobe', func: m[1]!, offset, retprobe };
    }
    case 'ksyscall':
      return rest ? { kind: 'ksyscall', syscall: rest, retprobe } : 'no syscall name';
    case 'kprobe_multi':
    case 'kprobe_session':
      return /^[A-Za-z0-9_.*?]+$/.test(rest)
        ? { kind: 'kprobe_multi', pattern: rest, retprobe, session: def.attachFn === 'kprobe_session' }
        : `'${rest}' is not a kernel function glob`;
    case 'uprobe': {
      const colon = rest.indexOf(':');
      if (colon <= 0 || colon === rest.length - 1) return `'${rest}' is not binary:function[+offset]`;
      let func = rest.slice(colon + 1);
      let offset = 0;
      // A trailing +offset is an offset only when all of it parses; otherwise it is part of the name.
      const plus = func.lastIndexOf('+');
      const off = plus < 0 ? undefined : parseOffset(func.slice(plus + 1));
      if (off !== undefined) [func, offset] = [func.slice(0, plus), off];
      if (retprobe && offset !== 0) return 'a uretprobe takes no offset';
      return { kind: 'uprobe', binary: rest.slice(0, colon), func, offset, retprobe };
    }
    case 'uprobe_multi': {
      const colon = rest.indexOf(':');
      if (colon <= 0 || colon === rest.length - 1) return `'${rest}' is not binary:function-glob`;
      return { kind: 'uprobe_multi', binary: rest.slice(0, colon), pattern: rest.slice(colon + 1), retprobe, session: kind.startsWith('uprobe.session') };
    }
    case 'usdt': {
      const parts = rest.split(':');
      if (parts.length !== 3 || parts.some((x) => !x)) return `'${rest}' is not binary:provider:name`;
      return { kind: 'usdt', binary: parts[0]!, provider: parts[1]!, name: parts[2]! };
    }
    case 'tracepoint': {
      const slash = rest.indexOf('/');
      if (slash <= 0 || slash === rest.length - 1) return `'${rest}' is not category/name`;
      return { kind: 'tracepoint', category: rest.slice(0, slash), name: rest.slice(slash + 1) };
    }
    case 'raw_tracepoint':
      return rest ? { kind: 'raw_tracepoint', name: rest } : 'no tracepoint name';
    case 'tracing_multi': {
      if (!/^[A-Za-z0-9_.*?:]+$/.test(rest)) return `'${rest}' is not a [module:]function glob`;
      const colon = rest.indexOf(':');
      return colon < 0 ? { kind: 'tracing_multi', pattern: rest } : { kind: 'tracing_multi', module: rest.slice(0, colon), pattern: rest.slice(colon + 1) };
    }
    default:
      return undefined;
  }
}

/** SEC_ATTACH_BTF rows: the load itself needs the target's BTF id, so a missing target is an error now. */
function btfTarget(def: SectionDef, rest: string | undefined): AttachTarget | string {
  if (!rest) return 'no attach target after the prefix: the load needs one (libbpf: bpf_program__set_attach_target())';
  // freplace names a function of another BPF program; kernel targets may be `module:name`.
  const colon = def.type === ProgType.EXT ? -1 : rest.indexOf(':');
  const name = colon < 0 ? rest : rest.slice(colon + 1);
  if (!name) return `'${rest}' names no function`;
  const [prefix, btfKind] = def.attachType === AttachType.TRACE_RAW_TP ? ['btf_trace_', 'typedef' as const]
    : def.attachType === AttachType.LSM_MAC || def.attachType === AttachType.LSM_CGROUP ? ['bpf_lsm_', 'func' as const]
      : def.attachType === AttachType.TRACE_ITER ? ['bpf_iter_', 'func' as const]
        : ['', 'func' as const];
  const t: AttachTarget = { kind: 'btf', name, btfName: prefix + name, btfKind };
  if (colon > 0) t.module = rest.slice(0, colon);
  return t;
}

/** A C integer literal as strtol(…, 0) reads it (decimal, 0x hex, 0 octal); undefined unless it is all digits and ≥ 0. */
function parseOffset(s: string): number | undefined {
  if (/^0[xX][0-9a-fA-F]+$/.test(s)) return parseInt(s.slice(2), 16);
  if (/^0[0-7]*$/.test(s)) return parseInt(s, 8);
  if (/^[1-9][0-9]*$/.test(s)) return parseInt(s, 10);
  return undefined;
}
