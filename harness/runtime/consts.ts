// Kernel UAPI constants the runtime uses (values from /usr/include/linux/bpf.h and
// linux/perf_event.h; test/runtime/attr.test.ts checks each against the header with a C compiler).
// The program/attach/map type enums live in the pure core (harness/core/uapi.ts), shared.
import { MapType, ProgType } from '../core/uapi.js';
export { MapType, ProgType, AttachType } from '../core/uapi.js';

export type MapTypeName = keyof typeof MapType;
export type ProgTypeName = keyof typeof ProgType;

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
