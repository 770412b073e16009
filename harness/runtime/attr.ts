// Attribute layouts for bpf(2) and perf_event_open(2), all in one place.
//
// Offsets are those of the kernel UAPI header /usr/include/linux/bpf.h (and linux/perf_event.h);
// test/runtime/attr.test.ts compiles a C program with offsetof() for every field listed here and
// compares. The kernel copies min(size, sizeof(its union)) bytes and requires anything beyond
// what it knows to be zero, so an attribute buffer sized for a newer kernel works on an older one
// as long as the newer fields stay zero.

import type { NativeMem } from './sys.js';

/** [byte offset, byte size]; size 16 is a char[16] name. */
type Field = readonly [number, 1 | 2 | 4 | 8 | 16];
type Fields = Record<string, Field>;

export interface Layout<F extends Fields = Fields> {
  /** Name for messages ("BPF_PROG_LOAD"). */
  name: string;
  /** The C type and member prefix, for the offsetof check: e.g. ['union bpf_attr', 'test.']. */
  c: readonly [string, string];
  /** Bytes passed to the kernel as the attribute size. */
  size: number;
  fields: F;
  /** Fields whose C name differs from ours, or null for fields C cannot offsetof (bitfields). */
  cNames?: Partial<Record<keyof F, string | null>>;
}

/** A layout (for attribute structs defined next to their only user, as link-create variants are). */
export function layout<F extends Fields>(name: string, c: readonly [string, string], size: number, fields: F, cNames?: Partial<Record<keyof F, string | null>>): Layout<F> {
  return { name, c, size, fields, cNames };
}

/** bpf() command numbers (enum bpf_cmd). */
export const BpfCmd = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_DELETE_ELEM: 3,
  MAP_GET_NEXT_KEY: 4,
  PROG_LOAD: 5,
  OBJ_PIN: 6,
  OBJ_GET: 7,
  PROG_TEST_RUN: 10,
  OBJ_GET_INFO_BY_FD: 15,
  RAW_TRACEPOINT_OPEN: 17,
  BTF_LOAD: 18,
  BTF_GET_FD_BY_ID: 19,
  MAP_FREEZE: 22,
  BTF_GET_NEXT_ID: 23,
  LINK_CREATE: 28,
} as const;

// BPF_MAP_CREATE: the anonymous struct at the start of union bpf_attr.
export const MAP_CREATE = layout('BPF_MAP_CREATE', ['union bpf_attr', ''], 72, {
  map_type: [0, 4],
  key_size: [4, 4],
  value_size: [8, 4],
  max_entries: [12, 4],
  map_flags: [16, 4],
  inner_map_fd: [20, 4],
  numa_node: [24, 4],
  map_name: [28, 16],
  map_ifindex: [44, 4],
  btf_fd: [48, 4],
  btf_key_type_id: [52, 4],
  btf_value_type_id: [56, 4],
  btf_vmlinux_value_type_id: [60, 4],
  map_extra: [64, 8],
});

// BPF_MAP_*_ELEM and BPF_MAP_GET_NEXT_KEY: { map_fd; key; value|next_key; flags }.
export const MAP_ELEM = layout('BPF_MAP_*_ELEM', ['union bpf_attr', ''], 32, {
  map_fd: [0, 4],
  key: [8, 8],
  value: [16, 8],
  flags: [24, 8],
});
/** next_key shares value's slot. */
export const MAP_NEXT_KEY_OFFSET = 16;

// BPF_MAP_FREEZE uses map_fd only.
export const MAP_FREEZE = layout('BPF_MAP_FREEZE', ['union bpf_attr', ''], 4, { map_fd: [0, 4] });

// BPF_PROG_LOAD. 128 bytes: up to fd_array (5.14+); older kernels see zeros there and accept.
export const PROG_LOAD = layout('BPF_PROG_LOAD', ['union bpf_attr', ''], 128, {
  prog_type: [0, 4],
  insn_cnt: [4, 4],
  insns: [8, 8],
  license: [16, 8],
  log_level: [24, 4],
  log_size: [28, 4],
  log_buf: [32, 8],
  kern_version: [40, 4],
  prog_flags: [44, 4],
  prog_name: [48, 16],
  prog_ifindex: [64, 4],
  expected_attach_type: [68, 4],
  prog_btf_fd: [72, 4],
  func_info_rec_size: [76, 4],
  func_info: [80, 8],
  func_info_cnt: [88, 4],
  line_info_rec_size: [92, 4],
  line_info: [96, 8],
  line_info_cnt: [104, 4],
  attach_btf_id: [108, 4],
  attach_prog_fd: [112, 4],
  fd_array: [120, 8],
});

// BPF_BTF_LOAD.
export const BTF_LOAD = layout('BPF_BTF_LOAD', ['union bpf_attr', ''], 28, {
  btf: [0, 8],
  btf_log_buf: [8, 8],
  btf_size: [16, 4],
  btf_log_size: [20, 4],
  btf_log_level: [24, 4],
});

// BPF_PROG_TEST_RUN: struct `test`. 72 bytes: up to cpu (5.10 has flags and cpu).
export const PROG_TEST_RUN = layout('BPF_PROG_TEST_RUN', ['union bpf_attr', 'test.'], 72, {
  prog_fd: [0, 4],
  retval: [4, 4],
  data_size_in: [8, 4],
  data_size_out: [12, 4],
  data_in: [16, 8],
  data_out: [24, 8],
  repeat: [32, 4],
  duration: [36, 4],
  ctx_size_in: [40, 4],
  ctx_size_out: [44, 4],
  ctx_in: [48, 8],
  ctx_out: [56, 8],
  flags: [64, 4],
  cpu: [68, 4],
});

// BPF_OBJ_PIN and BPF_OBJ_GET: { pathname; bpf_fd; file_flags } (path_fd, 6.5+, stays zero).
export const OBJ_PIN = layout('BPF_OBJ_PIN/BPF_OBJ_GET', ['union bpf_attr', ''], 16, {
  pathname: [0, 8],
  bpf_fd: [8, 4],
  file_flags: [12, 4],
});

// BPF_OBJ_GET_INFO_BY_FD: struct `info`.
export const OBJ_INFO = layout('BPF_OBJ_GET_INFO_BY_FD', ['union bpf_attr', 'info.'], 16, {
  bpf_fd: [0, 4],
  info_len: [4, 4],
  info: [8, 8],
});

// BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID: { start_id | prog_id | map_id | btf_id | link_id; next_id; open_flags }.
export const OBJ_ID = layout('BPF_*_GET_NEXT_ID/FD_BY_ID', ['union bpf_attr', ''], 12, {
  id: [0, 4],
  next_id: [4, 4],
  open_flags: [8, 4],
}, { id: 'start_id' });

// BPF_RAW_TRACEPOINT_OPEN: struct `raw_tracepoint`.
export const RAW_TRACEPOINT_OPEN = layout('BPF_RAW_TRACEPOINT_OPEN', ['union bpf_attr', 'raw_tracepoint.'], 12, {
  name: [0, 8],
  prog_fd: [8, 4],
});

// BPF_LINK_CREATE: struct `link_create`. target_btf_id (16) is the fentry/fexit/freplace target.
export const LINK_CREATE = layout('BPF_LINK_CREATE', ['union bpf_attr', 'link_create.'], 32, {
  prog_fd: [0, 4],
  target_fd: [4, 4],
  attach_type: [8, 4],
  flags: [12, 4],
  target_btf_id: [16, 4],
});

// BPF_LINK_CREATE for BPF_TRACE_UPROBE_MULTI (6.6): `link_create.uprobe_multi` after the four
// common fields. Not in ALL_LAYOUTS: bookworm's linux/bpf.h (6.1) predates it; the offsets are
// those of include/uapi/linux/bpf.h from 6.6 on (path, offsets, ref_ctr_offsets, cookies: u64; cnt,
// flags, pid: u32).
export const LINK_CREATE_UPROBE_MULTI = layout('BPF_LINK_CREATE uprobe_multi', ['union bpf_attr', 'link_create.'], 64, {
  prog_fd: [0, 4],
  target_fd: [4, 4],
  attach_type: [8, 4],
  flags: [12, 4],
  'uprobe_multi.path': [16, 8],
  'uprobe_multi.offsets': [24, 8],
  'uprobe_multi.ref_ctr_offsets': [32, 8],
  'uprobe_multi.cookies': [40, 8],
  'uprobe_multi.cnt': [48, 4],
  'uprobe_multi.flags': [52, 4],
  'uprobe_multi.pid': [56, 4],
});

// struct bpf_prog_info (fields up to attach_btf_id; older kernels return a shorter info_len).
export const PROG_INFO = layout('struct bpf_prog_info', ['struct bpf_prog_info', ''], 228, {
  type: [0, 4],
  id: [4, 4],
  tag: [8, 8],
  jited_prog_len: [16, 4],
  xlated_prog_len: [20, 4],
  jited_prog_insns: [24, 8],
  xlated_prog_insns: [32, 8],
  load_time: [40, 8],
  created_by_uid: [48, 4],
  nr_map_ids: [52, 4],
  map_ids: [56, 8],
  name: [64, 16],
  ifindex: [80, 4],
  netns_dev: [88, 8],
  netns_ino: [96, 8],
  btf_id: [128, 4],
  run_time_ns: [192, 8],
  run_cnt: [200, 8],
  recursion_misses: [208, 8],
  verified_insns: [216, 4],
  attach_btf_obj_id: [220, 4],
  attach_btf_id: [224, 4],
});

// struct bpf_btf_info (BPF_OBJ_GET_INFO_BY_FD on a BTF fd); name and kernel_btf came in 5.11.
export const BTF_INFO = layout('struct bpf_btf_info', ['struct bpf_btf_info', ''], 32, {
  btf: [0, 8],
  btf_size: [8, 4],
  id: [12, 4],
  name: [16, 8],
  name_len: [24, 4],
  kernel_btf: [28, 4],
});

// struct bpf_map_info.
export const MAP_INFO = layout('struct bpf_map_info', ['struct bpf_map_info', ''], 88, {
  type: [0, 4],
  id: [4, 4],
  key_size: [8, 4],
  value_size: [12, 4],
  max_entries: [16, 4],
  map_flags: [20, 4],
  name: [24, 16],
  ifindex: [40, 4],
  btf_vmlinux_value_type_id: [44, 4],
  netns_dev: [48, 8],
  netns_ino: [56, 8],
  btf_id: [64, 4],
  btf_key_type_id: [68, 4],
  btf_value_type_id: [72, 4],
  map_extra: [80, 8],
});

// struct perf_event_attr, PERF_ATTR_SIZE_VER5 (112 bytes, accepted since 4.1).
// `flags` is the u64 of bitfields after read_format (disabled = bit 0, ..., watermark = bit 14).
export const PERF_EVENT_ATTR = layout(
  'struct perf_event_attr',
  ['struct perf_event_attr', ''],
  112,
  {
    type: [0, 4],
    size: [4, 4],
    config: [8, 8],
    sample_period: [16, 8],
    sample_type: [24, 8],
    read_format: [32, 8],
    flags: [40, 8],
    wakeup_events: [48, 4],
    bp_type: [52, 4],
    config1: [56, 8],
    config2: [64, 8],
  },
  { flags: null },
);

// struct perf_event_mmap_page: the fields a ring reader needs.
export const PERF_MMAP_PAGE = layout('struct perf_event_mmap_page', ['struct perf_event_mmap_page', ''], 1056, {
  data_head: [1024, 8],
  data_tail: [1032, 8],
  data_offset: [1040, 8],
  data_size: [1048, 8],
});

export type Values<F extends Fields> = { [K in keyof F]?: number | bigint | string };

/** Writes `values` into `mem` (already zeroed) at the layout's offsets. Strings go to char[16]. */
export function writeAttr<F extends Fields>(l: Layout<F>, mem: NativeMem, values: Values<F>): void {
  const dv = mem.view;
  for (const key of Object.keys(values) as (keyof F & string)[]) {
    const v = values[key];
    if (v === undefined) continue;
    const [off, size] = l.fields[key]!;
    if (size === 16) {
      const s = new TextEncoder().encode(String(v)).subarray(0, 15);
      mem.bytes.fill(0, off, off + 16);
      mem.bytes.set(s, off);
    } else if (size === 8) dv.setBigUint64(off, BigInt.asUintN(64, BigInt(v)), true);
    else if (size === 4) dv.setUint32(off, Number(v) >>> 0, true);
    else if (size === 2) dv.setUint16(off, Number(v), true);
    else dv.setUint8(off, Number(v));
  }
}

/** Reads a u32 field. */
export function getU32<F extends Fields>(l: Layout<F>, mem: NativeMem | DataView, key: keyof F): number {
  const dv = 'view' in mem ? mem.view : mem;
  return dv.getUint32(l.fields[key]![0], true);
}
/** Reads a u64 field. */
export function getU64<F extends Fields>(l: Layout<F>, mem: NativeMem | DataView, key: keyof F): bigint {
  const dv = 'view' in mem ? mem.view : mem;
  return dv.getBigUint64(l.fields[key]![0], true);
}
/** Reads a char[16] field up to its NUL. */
export function getName<F extends Fields>(l: Layout<F>, bytes: Uint8Array, key: keyof F): string {
  const off = l.fields[key]![0];
  const raw = bytes.subarray(off, off + 16);
  const end = raw.indexOf(0);
  return new TextDecoder().decode(raw.subarray(0, end < 0 ? 16 : end));
}

/** Every layout, for the offsetof check. */
export const ALL_LAYOUTS: readonly Layout[] = [
  MAP_CREATE,
  MAP_ELEM,
  MAP_FREEZE,
  PROG_LOAD,
  BTF_LOAD,
  PROG_TEST_RUN,
  OBJ_INFO,
  OBJ_PIN,
  OBJ_ID,
  RAW_TRACEPOINT_OPEN,
  LINK_CREATE,
  PROG_INFO,
  MAP_INFO,
  BTF_INFO,
  PERF_EVENT_ATTR,
  PERF_MMAP_PAGE,
];
