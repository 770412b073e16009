// Section name → program type, expected attach type and attach target, following the section
// naming conventions libbpf documents (facts: prefixes and the UAPI enum values they map to).

/** bpf_prog_type values (include/uapi/linux/bpf.h). */
export const ProgType = {
  UNSPEC: 0, SOCKET_FILTER: 1, KPROBE: 2, SCHED_CLS: 3, SCHED_ACT: 4, TRACEPOINT: 5, XDP: 6, PERF_EVENT: 7,
  CGROUP_SKB: 8, CGROUP_SOCK: 9, LWT_IN: 10, LWT_OUT: 11, LWT_XMIT: 12, SOCK_OPS: 13, SK_SKB: 14,
  CGROUP_DEVICE: 15, SK_MSG: 16, RAW_TRACEPOINT: 17, CGROUP_SOCK_ADDR: 18, LWT_SEG6LOCAL: 19, LIRC_MODE2: 20,
  SK_REUSEPORT: 21, FLOW_DISSECTOR: 22, CGROUP_SYSCTL: 23, RAW_TRACEPOINT_WRITABLE: 24, CGROUP_SOCKOPT: 25,
  TRACING: 26, STRUCT_OPS: 27, EXT: 28, LSM: 29, SK_LOOKUP: 30, SYSCALL: 31, NETFILTER: 32,
} as const;

/** bpf_attach_type values (include/uapi/linux/bpf.h). */
export const AttachType = {
  CGROUP_INET_INGRESS: 0, CGROUP_INET_EGRESS: 1, CGROUP_INET_SOCK_CREATE: 2, CGROUP_SOCK_OPS: 3,
  SK_SKB_STREAM_PARSER: 4, SK_SKB_STREAM_VERDICT: 5, CGROUP_DEVICE: 6, SK_MSG_VERDICT: 7,
  CGROUP_INET4_BIND: 8, CGROUP_INET6_BIND: 9, CGROUP_INET4_CONNECT: 10, CGROUP_INET6_CONNECT: 11,
  CGROUP_INET4_POST_BIND: 12, CGROUP_INET6_POST_BIND: 13, CGROUP_UDP4_SENDMSG: 14, CGROUP_UDP6_SENDMSG: 15,
  LIRC_MODE2: 16, FLOW_DISSECTOR: 17, CGROUP_SYSCTL: 18, CGROUP_UDP4_RECVMSG: 19, CGROUP_UDP6_RECVMSG: 20,
  CGROUP_GETSOCKOPT: 21, CGROUP_SETSOCKOPT: 22, TRACE_RAW_TP: 23, TRACE_FENTRY: 24, TRACE_FEXIT: 25,
  MODIFY_RETURN: 26, LSM_MAC: 27, TRACE_ITER: 28, CGROUP_INET4_GETPEERNAME: 29, CGROUP_INET6_GETPEERNAME: 30,
  CGROUP_INET4_GETSOCKNAME: 31, CGROUP_INET6_GETSOCKNAME: 32, XDP_DEVMAP: 33, CGROUP_INET_SOCK_RELEASE: 34,
  XDP_CPUMAP: 35, SK_LOOKUP: 36, XDP: 37,
} as const;

interface SecDef {
  prefix: string;
  type: number;
  attach?: number;
  /** 'none': the name is exactly the prefix; 'required': `prefix/target`; 'optional': either. */
  target: 'none' | 'required' | 'optional';
  sleepable?: boolean;
}

const P = ProgType;
const A = AttachType;
const DEFS: SecDef[] = [
  { prefix: 'socket', type: P.SOCKET_FILTER, target: 'optional' },
  { prefix: 'kprobe', type: P.KPROBE, target: 'optional' },
  { prefix: 'kretprobe', type: P.KPROBE, target: 'optional' },
  { prefix: 'uprobe', type: P.KPROBE, target: 'optional' },
  { prefix: 'uretprobe', type: P.KPROBE, target: 'optional' },
  { prefix: 'ksyscall', type: P.KPROBE, target: 'required' },
  { prefix: 'kretsyscall', type: P.KPROBE, target: 'required' },
  { prefix: 'tracepoint', type: P.TRACEPOINT, target: 'optional' },
  { prefix: 'tp', type: P.TRACEPOINT, target: 'optional' },
  { prefix: 'raw_tracepoint', type: P.RAW_TRACEPOINT, target: 'optional' },
  { prefix: 'raw_tp', type: P.RAW_TRACEPOINT, target: 'optional' },
  { prefix: 'raw_tracepoint.w', type: P.RAW_TRACEPOINT_WRITABLE, target: 'optional' },
  { prefix: 'raw_tp.w', type: P.RAW_TRACEPOINT_WRITABLE, target: 'optional' },
  { prefix: 'tp_btf', type: P.TRACING, attach: A.TRACE_RAW_TP, target: 'required' },
  { prefix: 'fentry', type: P.TRACING, attach: A.TRACE_FENTRY, target: 'required' },
  { prefix: 'fexit', type: P.TRACING, attach: A.TRACE_FEXIT, target: 'required' },
  { prefix: 'fmod_ret', type: P.TRACING, attach: A.MODIFY_RETURN, target: 'required' },
  { prefix: 'fentry.s', type: P.TRACING, attach: A.TRACE_FENTRY, target: 'required', sleepable: true },
  { prefix: 'fexit.s', type: P.TRACING, attach: A.TRACE_FEXIT, target: 'required', sleepable: true },
  { prefix: 'fmod_ret.s', type: P.TRACING, attach: A.MODIFY_RETURN, target: 'required', sleepable: true },
  { prefix: 'freplace', type: P.EXT, target: 'required' },
  { prefix: 'lsm', type: P.LSM, attach: A.LSM_MAC, target: 'required' },
  { prefix: 'lsm.s', type: P.LSM, attach: A.LSM_MAC, target: 'required', sleepable: true },
  { prefix: 'iter', type: P.TRACING, attach: A.TRACE_ITER, target: 'required' },
  { prefix: 'iter.s', type: P.TRACING, attach: A.TRACE_ITER, target: 'required', sleepable: true },
  { prefix: 'syscall', type: P.SYSCALL, target: 'none', sleepable: true },
  { prefix: 'xdp', type: P.XDP, target: 'none' },
  { prefix: 'tc', type: P.SCHED_CLS, target: 'none' },
  { prefix: 'classifier', type: P.SCHED_CLS, target: 'optional' },
  { prefix: 'action', type: P.SCHED_ACT, target: 'optional' },
  { prefix: 'perf_event', type: P.PERF_EVENT, target: 'none' },
  { prefix: 'cgroup_skb/ingress', type: P.CGROUP_SKB, attach: A.CGROUP_INET_INGRESS, target: 'none' },
  { prefix: 'cgroup_skb/egress', type: P.CGROUP_SKB, attach: A.CGROUP_INET_EGRESS, target: 'none' },
  { prefix: 'cgroup/skb', type: P.CGROUP_SKB, target: 'none' },
  { prefix: 'cgroup/sock_create', type: P.CGROUP_SOCK, attach: A.CGROUP_INET_SOCK_CREATE, target: 'none' },
  { prefix: 'cgroup/sock_release', type: P.CGROUP_SOCK, attach: A.CGROUP_INET_SOCK_RELEASE, target: 'none' },
  { prefix: 'cgroup/sock', type: P.CGROUP_SOCK, attach: A.CGROUP_INET_SOCK_CREATE, target: 'none' },
  { prefix: 'cgroup/dev', type: P.CGROUP_DEVICE, attach: A.CGROUP_DEVICE, target: 'none' },
  { prefix: 'cgroup/sysctl', type: P.CGROUP_SYSCTL, attach: A.CGROUP_SYSCTL, target: 'none' },
  { prefix: 'cgroup/getsockopt', type: P.CGROUP_SOCKOPT, attach: A.CGROUP_GETSOCKOPT, target: 'none' },
  { prefix: 'cgroup/setsockopt', type: P.CGROUP_SOCKOPT, attach: A.CGROUP_SETSOCKOPT, target: 'none' },
  { prefix: 'cgroup/connect4', type: P.CGROUP_SOCK_ADDR, attach: A.CGROUP_INET4_CONNECT, target: 'none' },
  { prefix: 'cgroup/connect6', type: P.CGROUP_SOCK_ADDR, attach: A.CGROUP_INET6_CONNECT, target: 'none' },
  { prefix: 'sockops', type: P.SOCK_OPS, attach: A.CGROUP_SOCK_OPS, target: 'none' },
  { prefix: 'sk_skb/stream_parser', type: P.SK_SKB, attach: A.SK_SKB_STREAM_PARSER, target: 'none' },
  { prefix: 'sk_skb/stream_verdict', type: P.SK_SKB, attach: A.SK_SKB_STREAM_VERDICT, target: 'none' },
  { prefix: 'sk_skb', type: P.SK_SKB, target: 'none' },
  { prefix: 'sk_msg', type: P.SK_MSG, attach: A.SK_MSG_VERDICT, target: 'none' },
  { prefix: 'sk_lookup', type: P.SK_LOOKUP, attach: A.SK_LOOKUP, target: 'none' },
  { prefix: 'flow_dissector', type: P.FLOW_DISSECTOR, attach: A.FLOW_DISSECTOR, target: 'none' },
];

export interface ProgramKind {
  kind: string;
  type: number;
  expectedAttachType?: number;
  attachTo?: string;
  sleepable: boolean;
}

/** Classifies a program section name; the longest matching prefix wins. `.text` is never a program. */
export function classifySection(section: string): ProgramKind {
  let best: SecDef | undefined;
  let target: string | undefined;
  for (const d of DEFS) {
    let t: string | undefined;
    if (section === d.prefix) {
      if (d.target === 'required') continue;
    } else if (section.startsWith(`${d.prefix}/`) && d.target !== 'none') {
      t = section.slice(d.prefix.length + 1);
      if (t === '' && d.target === 'required') continue;
    } else {
      continue;
    }
    if (!best || d.prefix.length > best.prefix.length) {
      best = d;
      target = t || undefined;
    }
  }
  if (!best) return { kind: 'unknown', type: ProgType.UNSPEC, sleepable: false };
  const out: ProgramKind = { kind: best.prefix, type: best.type, sleepable: best.sleepable ?? false };
  if (best.attach !== undefined) out.expectedAttachType = best.attach;
  if (target !== undefined) out.attachTo = target;
  return out;
}
