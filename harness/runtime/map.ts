// BpfMap: a kernel map handle (named BpfMap so it does not shadow JS's Map). Keys and values
// are Uint8Arrays of exactly keySize/valueSize bytes; per-CPU maps take and return
// round8(valueSize) * possibleCpus bytes, as the kernel does. A failed syscall names the map
// first: `map 'events': bpf(BPF_MAP_CREATE): EINVAL (Invalid argument)`.

import { existsSync, statfsSync } from 'node:fs';
import { CoreMatrixError, UsageError } from '../core/errors.js';
import { BPF_F_ALL_CPUS, BPF_F_CPU } from '../core/uapi.js';
import { getName, getU32, getU64, MAP_INFO } from './attr.js';
import { mapCreate, mapDelete, mapFreeze, mapLookup, mapNextKey, mapUpdate, objGet, objGetInfo, objPin, type MapCreateAttr } from './bpf.js';
import { MapFlag, MapType } from './consts.js';
import { possibleCpus } from './facts.js';
import { close, errnoNumber, Mapping, mmap, mount, NativeMem, pageSize, PROT_READ, PROT_WRITE, SyscallError } from './sys.js';

/** Runs a syscall of map `name`; a SyscallError it throws gets the map's name in front. */
function named<T>(name: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const prefix = `map '${name}': `;
    if (e instanceof SyscallError && !e.message.startsWith(prefix)) e.message = prefix + e.message;
    throw e;
  }
}

const ENOENT = errnoNumber('ENOENT');
const BPF_FS_MAGIC = 0xcafe4a11;

/** Is `dir` the root of a bpffs mount (or inside one)? */
export function isBpffs(dir: string): boolean {
  try {
    return statfsSync(dir).type >>> 0 === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Makes sure `dir` is on a bpffs, mounting one there when it is not (a guest's init may not
 * have). libbpf itself refuses to pin outside a bpffs; mounting first is ours.
 */
export function ensureBpffs(dir: string): void {
  if (isBpffs(dir)) return;
  if (!existsSync(dir)) throw new CoreMatrixError(`cannot pin maps under ${dir}: no such directory to mount bpffs on`);
  mount('bpf', dir, 'bpf');
  if (!isBpffs(dir)) throw new CoreMatrixError(`cannot pin maps under ${dir}: mounting bpffs there did not give a bpffs`);
}

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

  /**
   * BPF_MAP_CREATE. `name` is the map's own name, used in messages; the kernel gets it cut to
   * what it accepts (15 characters of [A-Za-z0-9_.]).
   */
  static create(o: MapOptions): BpfMap {
    const name = o.name ?? '';
    const fd = named(name, () => mapCreate(o));
    return new BpfMap(fd, o.mapType, o.keySize, o.valueSize, o.maxEntries, o.mapFlags ?? 0, name);
  }

  /**
   * BPF_OBJ_GET: the map pinned at `path`, its definition read back from the kernel; undefined
   * when nothing is pinned there. `name` is used in messages.
   */
  static fromPin(path: string, name: string): BpfMap | undefined {
    let fd: number;
    try {
      fd = named(name, () => objGet(path));
    } catch (e) {
      if (e instanceof SyscallError && e.errno === ENOENT) return undefined;
      throw e;
    }
    try {
      const i = new BpfMap(fd, MapType.UNSPEC, 0, 0, 0, 0, name).info();
      return new BpfMap(fd, i.type, i.keySize, i.valueSize, i.maxEntries, i.flags, name);
    } catch (e) {
      close(fd);
      throw e;
    }
  }

  /** BPF_OBJ_PIN at `path` (on a bpffs); the pin outlives this handle and the process. */
  pin(path: string): void {
    this.check();
    named(this.name, () => objPin(this.fd, path));
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
    return named(this.name, () => mapLookup(this.fd, key, this.userValueSize));
  }

  /**
   * BPF_MAP_UPDATE_ELEM. With BPF_F_ALL_CPUS (or BPF_F_CPU) a per-CPU map takes one value of
   * value_size bytes, not one per CPU (the kernel copies it to every CPU, or writes the one CPU).
   */
  update(key: Uint8Array, value: Uint8Array, flags = 0): void {
    this.check();
    this.checkKey(key);
    const want = flags & (BPF_F_CPU | BPF_F_ALL_CPUS) ? this.valueSize : this.userValueSize;
    if (value.length !== want) throw new UsageError(`map '${this.name}': value is ${value.length} bytes, expected ${want}`);
    named(this.name, () => mapUpdate(this.fd, key, value, flags));
  }

  /** false when the key was absent. */
  delete(key: Uint8Array): boolean {
    this.check();
    this.checkKey(key);
    return named(this.name, () => mapDelete(this.fd, key));
  }

  /** The key after `key` (first key when undefined), undefined at the end. */
  nextKey(key?: Uint8Array): Uint8Array | undefined {
    this.check();
    return named(this.name, () => mapNextKey(this.fd, key, this.keySize));
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
    named(this.name, () => mapFreeze(this.fd));
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
      const len = named(this.name, () => objGetInfo(this.fd, m));
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
