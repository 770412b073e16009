// Section name → program type, expected attach type and attach target, following the section
// naming conventions libbpf documents (facts: prefixes and the UAPI enum values they map to).

/** bpf_prog_type values (include/uapi/linux/bpf.h). */
export { ProgType, AttachType } from '../uapi.js';
import { ProgType, AttachType } from '../uapi.js';

/** bpf_attach_type values (include/uapi/linux/bpf.h). */


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
