// Kernel UAPI constants the runtime uses (values from /usr/include/linux/bpf.h and
// linux/perf_event.h; test/runtime/attr.test.ts checks each against the header with a C compiler).

/** enum bpf_map_type (the C name is BPF_MAP_TYPE_<key>). */
export const MapType = {
  HASH: 1,
  ARRAY: 2,
  PROG_ARRAY: 3,
  PERF_EVENT_ARRAY: 4,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  STACK_TRACE: 7,
  CGROUP_ARRAY: 8,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12,
  HASH_OF_MAPS: 13,
  DEVMAP: 14,
  SOCKMAP: 15,
  CPUMAP: 16,
  XSKMAP: 17,
  SOCKHASH: 18,
  CGROUP_STORAGE: 19,
  REUSEPORT_SOCKARRAY: 20,
  PERCPU_CGROUP_STORAGE: 21,
  QUEUE: 22,
  STACK: 23,
  SK_STORAGE: 24,
  DEVMAP_HASH: 25,
  STRUCT_OPS: 26,
  RINGBUF: 27,
  INODE_STORAGE: 28,
  TASK_STORAGE: 29,
  BLOOM_FILTER: 30,
  USER_RINGBUF: 31,
} as const;
export type MapTypeName = keyof typeof MapType;

/** enum bpf_prog_type (BPF_PROG_TYPE_<key>). */
export const ProgType = {
  SOCKET_FILTER: 1,
  KPROBE: 2,
  SCHED_CLS: 3,
  SCHED_ACT: 4,
  TRACEPOINT: 5,
  XDP: 6,
  PERF_EVENT: 7,
  CGROUP_SKB: 8,
  CGROUP_SOCK: 9,
  LWT_IN: 10,
  LWT_OUT: 11,
  LWT_XMIT: 12,
  SOCK_OPS: 13,
  SK_SKB: 14,
  CGROUP_DEVICE: 15,
  SK_MSG: 16,
  RAW_TRACEPOINT: 17,
  CGROUP_SOCK_ADDR: 18,
  LWT_SEG6LOCAL: 19,
  LIRC_MODE2: 20,
  SK_REUSEPORT: 21,
  FLOW_DISSECTOR: 22,
  CGROUP_SYSCTL: 23,
  RAW_TRACEPOINT_WRITABLE: 24,
  CGROUP_SOCKOPT: 25,
  TRACING: 26,
  STRUCT_OPS: 27,
  EXT: 28,
  LSM: 29,
  SK_LOOKUP: 30,
  SYSCALL: 31,
} as const;
export type ProgTypeName = keyof typeof ProgType;

/** enum bpf_attach_type (BPF_<key>): the ones the runtime uses. */
export const AttachType = {
  CGROUP_INET_INGRESS: 0,
  TRACE_RAW_TP: 23,
  TRACE_FENTRY: 24,
  TRACE_FEXIT: 25,
  MODIFY_RETURN: 26,
  LSM_MAC: 27,
  TRACE_ITER: 28,
} as const;

/** Map flags (BPF_F_<key>). */
export const MapFlag = {
  NO_PREALLOC: 1 << 0,
  RDONLY_PROG: 1 << 7,
  MMAPABLE: 1 << 10,
} as const;

/** Update flags (BPF_<key>). */
export const UpdateFlag = { ANY: 0, NOEXIST: 1, EXIST: 2 } as const;

/** Helper ids (enum bpf_func_id, BPF_FUNC_<key>) used by probes and self-tests. */
export const Helper = {
  map_lookup_elem: 1,
  map_update_elem: 2,
  skb_store_bytes: 9,
  ktime_get_ns: 5,
  trace_printk: 6,
  get_current_pid_tgid: 14,
  perf_event_output: 25,
  probe_read_kernel: 113,
  ringbuf_output: 130,
  ringbuf_reserve: 131,
  ringbuf_submit: 132,
  ringbuf_discard: 133,
  get_current_task_btf: 158,
  loop: 181,
} as const;

/** perf_event_attr / ioctl constants. */
export const Perf = {
  TYPE_SOFTWARE: 1,
  TYPE_TRACEPOINT: 2,
  COUNT_SW_BPF_OUTPUT: 10,
  SAMPLE_RAW: 1 << 10,
  FLAG_FD_CLOEXEC: 8,
  RECORD_LOST: 2,
  RECORD_SAMPLE: 9,
  /** _IO('$', 0) */
  IOC_ENABLE: 0x2400,
  /** _IO('$', 1) */
  IOC_DISABLE: 0x2401,
  /** _IOW('$', 8, __u32) */
  IOC_SET_BPF: 0x40042408,
} as const;

/** Ring buffer record header bits (BPF_RINGBUF_*). */
export const Ringbuf = {
  BUSY_BIT: 1 << 31,
  DISCARD_BIT: 1 << 30,
  HDR_SZ: 8,
} as const;
