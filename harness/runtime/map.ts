// BpfMap: a kernel map handle (named BpfMap so it does not shadow JS's Map). Keys and values
// are Uint8Arrays of exactly keySize/valueSize bytes; per-CPU maps take and return
// round8(valueSize) * possibleCpus bytes, as the kernel does.

import { UsageError } from '../core/errors.js';
import { getName, getU32, getU64, MAP_INFO } from './attr.js';
import { mapCreate, mapDelete, mapFreeze, mapLookup, mapNextKey, mapUpdate, objGetInfo, type MapCreateAttr } from './bpf.js';
import { MapFlag, MapType } from './consts.js';
import { possibleCpus } from './facts.js';
import { close, Mapping, mmap, NativeMem, pageSize, PROT_READ, PROT_WRITE } from './sys.js';

const PERCPU_TYPES = new Set<number>([MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH, MapType.PERCPU_CGROUP_STORAGE]);

export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
  btfId: number;
  btfKeyTypeId: number;
  btfValueTypeId: number;
  mapExtra?: bigint;
}

export type MapOptions = MapCreateAttr;

export class BpfMap {
  private closed = false;
  /** Bytes of one value as user space sees it (per-CPU maps: one slot per possible CPU). */
  readonly userValueSize: number;

  constructor(
    readonly fd: number,
    readonly type: number,
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
    readonly flags: number,
    readonly name: string,
  ) {
    this.userValueSize = PERCPU_TYPES.has(type) ? Math.ceil(valueSize / 8) * 8 * possibleCpus().length : valueSize;
  }

  /** BPF_MAP_CREATE. */
  static create(o: MapOptions): BpfMap {
    const fd = mapCreate(o);
    return new BpfMap(fd, o.mapType, o.keySize, o.valueSize, o.maxEntries, o.mapFlags ?? 0, o.name ?? '');
  }

  private check(): void {
    if (this.closed) throw new UsageError(`map '${this.name}' used after close()`);
  }
  private checkKey(key: Uint8Array): void {
    if (key.length !== this.keySize) throw new UsageError(`map '${this.name}': key is ${key.length} bytes, expected ${this.keySize}`);
  }

  lookup(key: Uint8Array): Uint8Array | undefined {
    this.check();
    this.checkKey(key);
    return mapLookup(this.fd, key, this.userValueSize);
  }

  update(key: Uint8Array, value: Uint8Array, flags = 0): void {
    this.check();
    this.checkKey(key);
    if (value.length !== this.userValueSize) throw new UsageError(`map '${this.name}': value is ${value.length} bytes, expected ${this.userValueSize}`);
    mapUpdate(this.fd, key, value, flags);
  }

  /** false when the key was absent. */
  delete(key: Uint8Array): boolean {
    this.check();
    this.checkKey(key);
    return mapDelete(this.fd, key);
  }

  /** The key after `key` (first key when undefined), undefined at the end. */
  nextKey(key?: Uint8Array): Uint8Array | undefined {
    this.check();
    return mapNextKey(this.fd, key, this.keySize);
  }

  /** Iterates keys (a key deleted meanwhile may restart the walk, as the kernel defines it). */
  *keys(): Generator<Uint8Array> {
    let k = this.nextKey();
    while (k) {
      yield k;
      k = this.nextKey(k);
    }
  }

  /** Iterates [key, value] pairs; keys vanishing between next-key and lookup are skipped. */
  *entries(): Generator<[Uint8Array, Uint8Array]> {
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v) yield [k, v];
    }
  }

  /** BPF_MAP_FREEZE: user space can no longer write (programs still can, unless RDONLY_PROG). */
  freeze(): void {
    this.check();
    mapFreeze(this.fd);
  }

  /**
   * mmap()s an array map created with BPF_F_MMAPABLE: the values live at `bytes`, max_entries
   * × round8(value_size). Read-only when the map is frozen or read-only (pass writable=false).
   */
  mmap(writable = true): Mapping {
    this.check();
    if (this.type !== MapType.ARRAY || !(this.flags & MapFlag.MMAPABLE))
      throw new UsageError(`map '${this.name}': only array maps created with BPF_F_MMAPABLE can be mmap'd`);
    const ps = pageSize();
    const len = Math.ceil((Math.ceil(this.valueSize / 8) * 8 * this.maxEntries) / ps) * ps;
    return mmap(this.fd, len, writable ? PROT_READ | PROT_WRITE : PROT_READ, 0, `map '${this.name}'`);
  }

  /** BPF_OBJ_GET_INFO_BY_FD. */
  info(): MapInfo {
    this.check();
    const m = new NativeMem(MAP_INFO.size);
    try {
      const len = objGetInfo(this.fd, m);
      const info: MapInfo = {
        type: getU32(MAP_INFO, m, 'type'),
        id: getU32(MAP_INFO, m, 'id'),
        keySize: getU32(MAP_INFO, m, 'key_size'),
        valueSize: getU32(MAP_INFO, m, 'value_size'),
        maxEntries: getU32(MAP_INFO, m, 'max_entries'),
        flags: getU32(MAP_INFO, m, 'map_flags'),
        name: getName(MAP_INFO, m.bytes, 'name'),
        btfId: getU32(MAP_INFO, m, 'btf_id'),
        btfKeyTypeId: getU32(MAP_INFO, m, 'btf_key_type_id'),
        btfValueTypeId: getU32(MAP_INFO, m, 'btf_value_type_id'),
      };
      if (len >= MAP_INFO.fields.map_extra[0] + 8) info.mapExtra = getU64(MAP_INFO, m, 'map_extra');
      return info;
    } finally {
      m.free();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }
}

/** Little-endian u32 → 4 bytes (keys of array maps). */
export function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}
/** Little-endian u64 → 8 bytes. */
export function u64(n: bigint | number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(n)), true);
  return b;
}
/** Reads a little-endian u32 / u64 at `off`. */
export function readU32(b: Uint8Array, off = 0): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(off, true);
}
export function readU64(b: Uint8Array, off = 0): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, true);
}
