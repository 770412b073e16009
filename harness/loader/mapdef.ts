// A map's definition as libbpf finalizes it just before BPF_MAP_CREATE, and whether a map already
// pinned under its name can stand in for it. Pure: the running kernel's facts (page size, possible
// CPUs) and the pinned map's definition come in as plain numbers.

import { BPF_F_RDONLY_PROG, MapType } from '../core/uapi.js';

/** What BPF_MAP_CREATE is given, and what BPF_OBJ_GET_INFO_BY_FD reports back. */
export interface MapDef {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** Absent in map info before 5.16 (the field did not exist): read as 0. */
  mapExtra?: bigint;
}

export interface HostFacts {
  pageSize: number;
  /** libbpf_num_possible_cpus(): how many CPUs /sys/devices/system/cpu/possible lists. */
  possibleCpus: () => number;
}

const UINT_MAX = 0xffff_ffff;

/**
 * libbpf's ring buffer size rule: the kernel wants max_entries to be a power-of-2 multiple of the
 * page size, so any other size becomes the smallest such product strictly above it. 0 stays 0 (the
 * kernel then says the size is missing), and so does a size no u32 product can exceed.
 */
export function ringbufSize(size: number, pageSize: number): number {
  if (size === 0) return 0;
  const pages = size / pageSize;
  if (Number.isInteger(pages) && (pages & (pages - 1)) === 0) return size;
  for (let mul = 1; mul <= Math.floor(UINT_MAX / pageSize); mul *= 2) {
    if (mul * pageSize > size) return mul * pageSize;
  }
  return size;
}

const isRingbuf = (type: number) => type === MapType.RINGBUF || type === MapType.USER_RINGBUF;

/**
 * max_entries as libbpf creates the map: ring buffers rounded by ringbufSize, and a perf event
 * array declared without max_entries (the usual way) sized to one slot per possible CPU.
 */
export function createMaxEntries(m: { type: number; maxEntries: number }, facts: HostFacts): number {
  if (isRingbuf(m.type)) return ringbufSize(m.maxEntries, facts.pageSize);
  if (m.type === MapType.PERF_EVENT_ARRAY && m.maxEntries === 0) return facts.possibleCpus();
  return m.maxEntries;
}

/**
 * Why a pinned map cannot be reused for `want`, or undefined when it can: libbpf reuses it only
 * when type, key and value size, max_entries, flags and map_extra all match. A devmap reports
 * BPF_F_RDONLY_PROG in its info although nobody created it so; that bit is not compared for them.
 */
export function pinnedMismatch(want: MapDef, pinned: MapDef): string | undefined {
  const devmap = want.type === MapType.DEVMAP || want.type === MapType.DEVMAP_HASH;
  const flags = devmap ? pinned.flags & ~BPF_F_RDONLY_PROG : pinned.flags;
  const diffs: string[] = [];
  const cmp = (what: string, here: number | bigint, there: number | bigint, show: (v: number | bigint) => string = String) => {
    if (here !== there) diffs.push(`${what} ${show(here)} here, ${show(there)} pinned`);
  };
  const hex = (v: number | bigint) => `0x${v.toString(16)}`;
  cmp('type', want.type, pinned.type);
  cmp('key_size', want.keySize, pinned.keySize);
  cmp('value_size', want.valueSize, pinned.valueSize);
  cmp('max_entries', want.maxEntries, pinned.maxEntries);
  cmp('map_flags', want.flags, flags, hex);
  cmp('map_extra', want.mapExtra ?? 0n, pinned.mapExtra ?? 0n, hex);
  return diffs.length ? diffs.join(', ') : undefined;
}

/** LIBBPF_PIN_BY_NAME: the map is pinned at <root>/<map name>. */
export const PIN_BY_NAME = 1;

/** Where libbpf pins a map with `pinning = LIBBPF_PIN_BY_NAME` (its default root is /sys/fs/bpf). */
export function pinPath(root: string, mapName: string): string {
  return `${root.replace(/\/+$/, '')}/${mapName}`;
}
