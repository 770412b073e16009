// Map definitions: BTF-defined maps in `.maps` (the libbpf convention: an anonymous struct whose
// members encode attributes as `int (*name)[value]`, `typeof(T) *key`, `typeof(struct inner) *values[]`),
// legacy `struct bpf_map_def` in `maps`, and one array map per global data section.

import type { Btf } from '../btf/btf.js';
import { Kind } from '../btf/kinds.js';
import { FormatError } from '../errors.js';
import type { MapSpec } from './types.js';

/** bpf_map_type values (include/uapi/linux/bpf.h). */
export { MapType, BPF_F_NO_PREALLOC, BPF_F_RDONLY_PROG, BPF_F_MMAPABLE } from '../uapi.js';
import { MapType } from '../uapi.js';

/** Map flags used for global data maps (include/uapi/linux/bpf.h). */

export const isMapInMap = (type: number) => type === MapType.ARRAY_OF_MAPS || type === MapType.HASH_OF_MAPS;

export function emptyMap(name: string, kind: MapSpec['kind'], section: string): MapSpec {
  return {
    name, kind, section, type: 0, keySize: 0, valueSize: 0, maxEntries: 0, flags: 0, numaNode: 0, pinning: 0,
    mapExtra: 0n, keyTypeId: 0, valueTypeId: 0, frozen: false, offset: 0,
  };
}

/** Result of parsing one BTF map definition struct. */
export interface BtfMapDef {
  spec: MapSpec;
  /** Byte offset of the `values` member inside the definition (map-in-map / prog-array initialisers). */
  valuesOffset?: number;
}

/**
 * Parses a BTF map definition (the struct a `.maps` VAR points to). `where` names it in errors
 * (`a.o: map 'events'`). Inner maps are parsed recursively (one level: an inner map cannot have inner maps).
 */
export function parseBtfMapDef(btf: Btf, structId: number, name: string, where: string, depth = 0): BtfMapDef {
  const id = btf.skipModsAndTypedefs(structId);
  const t = btf.type(id);
  if (t.kind !== Kind.STRUCT) throw new FormatError(`${where}: definition is ${btf.typeName(id)}, expected a struct`);
  const spec = emptyMap(name, 'btf', '.maps');
  const out: BtfMapDef = { spec };
  let keySize: number | undefined;
  let valueSize: number | undefined;

  /** `int (*name)[N]` → N (or an enum's single value, for `__ulong`). */
  const uint = (m: { name: string; type: number }): number | bigint => {
    const p = btf.skipModsAndTypedefs(m.type);
    const pt = btf.type(p);
    if (pt.kind === Kind.PTR) {
      const a = btf.type(btf.skipModsAndTypedefs(pt.type));
      if (a.kind === Kind.ARRAY) return a.nelems;
    }
    if ((pt.kind === Kind.ENUM || pt.kind === Kind.ENUM64) && pt.values.length === 1) return pt.values[0]!.value;
    throw new FormatError(`${where}: attribute '${m.name}' is ${btf.typeName(p)}, expected __uint(${m.name}, N)`);
  };
  const num = (m: { name: string; type: number }): number => {
    const v = uint(m);
    if (typeof v === 'bigint') {
      if (v < 0n || v > 0xffffffffn) throw new FormatError(`${where}: attribute '${m.name}' value ${v} does not fit 32 bits`);
      return Number(v);
    }
    return v;
  };
  /** `typeof(T) *name` → T. */
  const pointee = (m: { name: string; type: number }): number => {
    const p = btf.skipModsAndTypedefs(m.type);
    const pt = btf.type(p);
    if (pt.kind !== Kind.PTR) throw new FormatError(`${where}: attribute '${m.name}' is ${btf.typeName(p)}, expected __type(${m.name}, T)`);
    return pt.type;
  };

  /** The size of T in `__type(key|value, T)`; a type without one (a struct only declared) fails naming the map, as in libbpf. */
  const sizeOfAttr = (attr: string, id: number): number => {
    try {
      return btf.sizeOf(id);
    } catch (e) {
      if (!(e instanceof FormatError)) throw e;
      throw new FormatError(`${where}: cannot size its ${attr} type ${btf.typeName(id)} (${e.message.replace(/^.*: /, '')})`);
    }
  };

  for (const m of t.members) {
    switch (m.name) {
      case 'type': spec.type = num(m); break;
      case 'max_entries': spec.maxEntries = num(m); break;
      case 'map_flags': spec.flags = num(m); break;
      case 'numa_node': spec.numaNode = num(m); break;
      case 'pinning': spec.pinning = num(m); break;
      case 'key_size': keySize = num(m); break;
      case 'value_size': valueSize = num(m); break;
      case 'map_extra': {
        const v = uint(m);
        spec.mapExtra = BigInt(v);
        break;
      }
      case 'key':
        spec.keyTypeId = pointee(m);
        spec.keySize = sizeOfAttr('key', spec.keyTypeId);
        break;
      case 'value':
        spec.valueTypeId = pointee(m);
        spec.valueSize = sizeOfAttr('value', spec.valueTypeId);
        break;
      case 'values': {
        const a = btf.type(btf.skipModsAndTypedefs(m.type));
        if (a.kind !== Kind.ARRAY || a.nelems !== 0) throw new FormatError(`${where}: attribute 'values' must be a flexible array (__array(values, ...))`);
        const elem = btf.type(btf.skipModsAndTypedefs(a.type));
        if (elem.kind !== Kind.PTR) throw new FormatError(`${where}: 'values' elements must be pointers`);
        const target = btf.skipModsAndTypedefs(elem.type);
        out.valuesOffset = m.bitOffset / 8;
        if (btf.kind(target) === Kind.STRUCT) {
          if (depth > 0) throw new FormatError(`${where}: an inner map cannot itself hold maps`);
          spec.inner = parseBtfMapDef(btf, target, `${name}.inner`, `${where}: inner map`, depth + 1).spec;
        } else if (btf.kind(target) !== Kind.FUNC_PROTO) {
          throw new FormatError(`${where}: 'values' must point to a map definition struct or a function (prog array)`);
        }
        break;
      }
      default:
        throw new FormatError(`${where}: unknown map attribute '${m.name}'`);
    }
  }
  if (keySize !== undefined) {
    if (spec.keyTypeId && keySize !== spec.keySize) throw new FormatError(`${where}: key_size ${keySize} disagrees with sizeof(key) ${spec.keySize}`);
    spec.keySize = keySize;
  }
  if (valueSize !== undefined) {
    if (spec.valueTypeId && valueSize !== spec.valueSize) throw new FormatError(`${where}: value_size ${valueSize} disagrees with sizeof(value) ${spec.valueSize}`);
    spec.valueSize = valueSize;
  }
  if (spec.inner || isMapInMap(spec.type)) {
    if (valueSize === undefined && !spec.valueTypeId) spec.valueSize = 4;
    // Without an inner definition a map-in-map is still a valid object (libbpf opens it; its tool
    // gives the inner map's fd before load, bpf_map__set_inner_map_fd); creating it without one
    // fails in the kernel, naming the map.
  }
  // Perf event arrays hold fds: libbpf's documented defaults are 4-byte keys and values.
  if (spec.type === MapType.PERF_EVENT_ARRAY) {
    if (!spec.keySize) spec.keySize = 4;
    if (!spec.valueSize) spec.valueSize = 4;
  }
  if (spec.type === MapType.PROG_ARRAY && !spec.valueSize && out.valuesOffset !== undefined) spec.valueSize = 4;
  return out;
}

/** `struct bpf_map_def` (legacy `maps` section): type, key_size, value_size, max_entries, map_flags (u32 each). */
export function parseLegacyMapDef(data: Uint8Array, offset: number, size: number, name: string, where: string): MapSpec {
  const n = Math.min(size || 20, 20);
  if (n < 16 || offset + n > data.length) throw new FormatError(`${where}: legacy map definition (${n} bytes at ${offset}) does not fit the 'maps' section`);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const spec = emptyMap(name, 'legacy', 'maps');
  spec.type = dv.getUint32(offset, true);
  spec.keySize = dv.getUint32(offset + 4, true);
  spec.valueSize = dv.getUint32(offset + 8, true);
  spec.maxEntries = dv.getUint32(offset + 12, true);
  if (n >= 20) spec.flags = dv.getUint32(offset + 16, true);
  spec.offset = offset;
  return spec;
}

/**
 * libbpf's POISON_LDIMM64_MAP_BASE: a load of a map that was not created (global per-CPU data on a
 * kernel without it) becomes two calls of helper #(base + the map's index), which the verifier
 * names if reached (`invalid func unknown#2001000003`).
 */
export const POISON_LDIMM64_MAP_BASE = 2001000000;

/**
 * Global per-CPU data (`SEC(".percpu")` variables, and `.percpu.<name>`): libbpf makes each such
 * section a BPF_MAP_TYPE_PERCPU_ARRAY of one entry, whatever the section's ELF flags say.
 */
export function isPercpuDataSection(name: string): boolean {
  return name === '.percpu' || name.startsWith('.percpu.');
}

/** Global data section names that become array maps. */
export function isDataSection(name: string): boolean {
  return name === '.data' || name === '.rodata' || name === '.bss' ||
    name.startsWith('.data.') || name.startsWith('.rodata.') || name.startsWith('.bss.');
}
