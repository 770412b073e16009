// BTF reader: all 20 kinds, split BTF (base + module), lazy decoding.
//
// Parsing is one pass over the type section that records where each type starts (a Uint32Array
// of byte offsets) after checking every record lies inside the section and has a known kind.
// Nothing else is decoded until asked: names, members and the by-name index are built on demand.
// That keeps a 100k-type vmlinux cheap to open, which matters in the guest (TCG) and for the
// offline `relocate` command.

import { FormatError } from '../errors.js';
import { BTF_MAGIC, EXTRA_FIXED, EXTRA_PER, extraSize, Kind, KIND_NAMES } from './kinds.js';

export interface Member {
  name: string;
  type: number;
  /** Bit offset of the member within its struct/union. */
  bitOffset: number;
  /** Bitfield size in bits; 0 when the member is not a bitfield. */
  bitfieldSize: number;
}
export interface EnumValue {
  name: string;
  value: bigint;
}
export interface Param {
  name: string;
  type: number;
}
export interface VarSecinfo {
  type: number;
  offset: number;
  size: number;
}

interface Base {
  id: number;
  name: string;
}
export type BtfType =
  | (Base & { kind: Kind.UNKN })
  | (Base & { kind: Kind.INT; size: number; encoding: number; bitOffset: number; bits: number })
  | (Base & { kind: Kind.PTR | Kind.TYPEDEF | Kind.VOLATILE | Kind.CONST | Kind.RESTRICT | Kind.TYPE_TAG; type: number })
  | (Base & { kind: Kind.ARRAY; type: number; indexType: number; nelems: number })
  | (Base & { kind: Kind.STRUCT | Kind.UNION; size: number; members: Member[] })
  | (Base & { kind: Kind.ENUM | Kind.ENUM64; size: number; signed: boolean; values: EnumValue[] })
  | (Base & { kind: Kind.FWD; union: boolean })
  | (Base & { kind: Kind.FUNC; type: number; linkage: number })
  | (Base & { kind: Kind.FUNC_PROTO; type: number; params: Param[] })
  | (Base & { kind: Kind.VAR; type: number; linkage: number })
  | (Base & { kind: Kind.DATASEC; size: number; vars: VarSecinfo[] })
  | (Base & { kind: Kind.FLOAT; size: number })
  | (Base & { kind: Kind.DECL_TAG; type: number; componentIdx: number });

/** The decoded type variant(s) whose `kind` can be K (STRUCT and UNION share a variant). */
export type TypeOf<K extends Kind> = BtfType extends infer T ? (T extends { kind: infer TK } ? (K extends TK ? T : never) : never) : never;

const HEADER_MIN = 24;
/** Bound for chains of modifiers/typedefs and nested aggregates, so type loops cannot hang us. */
export const MAX_RESOLVE_DEPTH = 64;
/** Largest size a type may have (the kernel keeps sizes in a u32). */
export const MAX_TYPE_SIZE = 0xffff_ffff;

/** Fast ASCII/UTF-8 decoding of a NUL-terminated string at `off`. */
function readCString(bytes: Uint8Array, start: number, end: number): string {
  let i = start;
  let ascii = true;
  while (i < end && bytes[i] !== 0) {
    if (bytes[i]! >= 0x80) ascii = false;
    i++;
  }
  if (i >= end) return '\u0000'; // caller turns this into an error
  if (ascii) {
    if (i - start < 64) {
      let s = '';
      for (let j = start; j < i; j++) s += String.fromCharCode(bytes[j]!);
      return s;
    }
  }
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(start, i));
}

export interface ParseOptions {
  /** Base BTF for split BTF (module BTF on top of vmlinux). */
  base?: Btf;
  /** Name used in error messages (a file name). */
  source?: string;
  /**
   * Names to answer during the parse pass itself, as prefetchEssential(names) would afterwards:
   * the pass already reads every type's name offset, so a second walk over ~100k types is saved
   * (it matters in a guest, where the agent runs without a JIT under TCG). Base BTF only.
   */
  findNames?: Iterable<string>;
  /**
   * The parse pass's result for exactly these bytes, worked out before (`btf.index()` on the same
   * bytes, e.g. on the host for the kernel the guest boots): the pass is skipped. The caller
   * vouches that the bytes are the ones indexed (the agent compares them with the copy the index
   * was made from); the type count, the first record and the last one's end are still checked.
   * Base BTF only.
   */
  index?: BtfIndex;
}

/** What parsing a base BTF works out: where each type record starts, and essential-name answers. */
export interface BtfIndex {
  /** Length of the BTF the index was made from. */
  btfLength: number;
  /** offsets[i] = byte offset of type i + 1's record. */
  offsets: Uint32Array;
  /** Essential name → type ids, for the names asked when the index was made. */
  essential: Map<string, number[]>;
}

const INDEX_MAGIC = 'CMBTFIX1';
/**
 * The index format, for caches of indexes: bump it (with the magic) when the parse pass's answers
 * change for the same BTF and names.
 */
export const BTF_INDEX_FORMAT = INDEX_MAGIC;

/** BtfIndex → bytes: magic, u32 btfLength, u32 count, u32 JSON length, the offsets (u32 LE), the names as JSON. */
export function encodeBtfIndex(idx: BtfIndex): Uint8Array {
  const names = new TextEncoder().encode(JSON.stringify(Object.fromEntries(idx.essential)));
  const out = new Uint8Array(20 + idx.offsets.length * 4 + names.length);
  const dv = new DataView(out.buffer);
  out.set(new TextEncoder().encode(INDEX_MAGIC));
  dv.setUint32(8, idx.btfLength, true);
  dv.setUint32(12, idx.offsets.length, true);
  dv.setUint32(16, names.length, true);
  for (let i = 0; i < idx.offsets.length; i++) dv.setUint32(20 + i * 4, idx.offsets[i]!, true);
  out.set(names, 20 + idx.offsets.length * 4);
  return out;
}

/** Bytes → BtfIndex; a one-line FormatError naming `source` when they are not one. */
export function decodeBtfIndex(bytes: Uint8Array, source = 'BTF index'): BtfIndex {
  if (bytes.length < 20 || new TextDecoder().decode(bytes.subarray(0, 8)) !== INDEX_MAGIC) throw new FormatError(`${source}: not a BTF index (no ${INDEX_MAGIC} magic)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const btfLength = dv.getUint32(8, true);
  const n = dv.getUint32(12, true);
  const namesLen = dv.getUint32(16, true);
  if (20 + n * 4 + namesLen !== bytes.length) throw new FormatError(`${source}: ${bytes.length} bytes, but its header says ${20 + n * 4 + namesLen}`);
  // A view when the offsets are 4-byte aligned in memory, else a copy into a buffer of their own
  // (a Buffer's slice is a view of its pool). Native byte order: x86-64 only, as the matrix.
  const at = bytes.byteOffset + 20;
  const offsets = at % 4 === 0 ? new Uint32Array(bytes.buffer, at, n) : new Uint32Array(new Uint8Array(bytes.subarray(20, 20 + n * 4)).buffer);
  let names: Record<string, number[]>;
  try {
    names = JSON.parse(new TextDecoder().decode(bytes.subarray(20 + n * 4))) as Record<string, number[]>;
  } catch {
    throw new FormatError(`${source}: its name table is not JSON`);
  }
  return { btfLength, offsets, essential: new Map(Object.entries(names)) };
}

/** Table of the first two bytes of `names` (a 1-byte name also as "x_", for flavoured names). */
function twoByteTable(names: string[]): Uint8Array | undefined {
  const t = new Uint8Array(65536);
  const enc = new TextEncoder();
  let any = false;
  for (const n of names) {
    const q = enc.encode(n);
    if (q.length === 0) continue;
    any = true;
    if (q.length === 1) {
      t[q[0]! << 8] = 1;
      t[(q[0]! << 8) | 0x5f] = 1;
    } else t[(q[0]! << 8) | q[1]!] = 1;
  }
  return any ? t : undefined;
}

export class Btf {
  readonly source: string;
  readonly base: Btf | undefined;
  /** First type id described by this BTF (1 for base BTF; base.count for split BTF). */
  readonly startId: number;
  /** Offset added to string offsets in this BTF's own string section (base strings come first). */
  readonly startStr: number;
  readonly bytes: Uint8Array;
  private readonly dv: DataView;
  private readonly typeStart: number;
  private readonly strStart: number;
  private readonly strLen: number;
  /** offsets[i] = absolute byte offset of type (startId + i). */
  private readonly offsets: Uint32Array;
  private readonly nTypes: number;
  private readonly strCache = new Map<number, string>();
  private nameIdx: NameIndex | undefined;
  private essIdx: NameIndex | undefined;

  constructor(bytes: Uint8Array, opts: ParseOptions = {}) {
    this.source = opts.source ?? 'BTF';
    this.base = opts.base;
    this.bytes = bytes;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const src = this.source;
    if (bytes.length < HEADER_MIN) throw new FormatError(`${src}: BTF too short for a header (${bytes.length} bytes)`);
    const magic = this.dv.getUint16(0, true);
    if (magic !== BTF_MAGIC) {
      if (magic === 0x9feb) throw new FormatError(`${src}: big-endian BTF is not supported`);
      throw new FormatError(`${src}: bad BTF magic 0x${magic.toString(16)}`, 0);
    }
    const version = bytes[2];
    if (version !== 1) throw new FormatError(`${src}: unsupported BTF version ${version}`, 2);
    const hdrLen = this.dv.getUint32(4, true);
    if (hdrLen < HEADER_MIN || hdrLen > bytes.length) throw new FormatError(`${src}: bad BTF header length ${hdrLen}`, 4);
    const typeOff = this.dv.getUint32(8, true);
    const typeLen = this.dv.getUint32(12, true);
    const strOff = this.dv.getUint32(16, true);
    const strLen = this.dv.getUint32(20, true);
    const avail = bytes.length - hdrLen;
    if (typeOff + typeLen > avail || typeOff % 4 !== 0) throw new FormatError(`${src}: BTF type section out of bounds`, 8);
    if (strOff + strLen > avail) throw new FormatError(`${src}: BTF string section out of bounds`, 16);
    if (typeLen > 0 && strOff < typeOff + typeLen && strOff + strLen > typeOff) throw new FormatError(`${src}: BTF type and string sections overlap`, 16);
    this.typeStart = hdrLen + typeOff;
    this.strStart = hdrLen + strOff;
    this.strLen = strLen;
    if (this.base) {
      this.startId = this.base.count;
      this.startStr = this.base.startStr + this.base.strLen;
    } else {
      this.startId = 1;
      this.startStr = 0;
      if (strLen === 0 || bytes[this.strStart] !== 0) throw new FormatError(`${src}: BTF string section must start with an empty string`, this.strStart);
    }
    if (strLen > 0 && bytes[this.strStart + strLen - 1] !== 0) throw new FormatError(`${src}: BTF string section is not NUL-terminated`, this.strStart + strLen - 1);

    const end = this.typeStart + typeLen;
    const findNames = opts.findNames && !this.base ? [...new Set(opts.findNames)].filter((x) => x !== '') : [];
    if (opts.index) {
      const idx = opts.index;
      if (this.base) throw new FormatError(`${src}: a precomputed index is for base BTF only`);
      this.offsets = this.checkIndex(idx, end);
      this.nTypes = idx.offsets.length;
      for (const [name, ids] of idx.essential) this.essCache.set(name, ids);
      this.prefetchEssential(findNames); // names the index does not answer: one scan
      return;
    }
    // One pass: record offsets, check bounds and kinds. A record is at least 12 bytes.
    let offsets = new Uint32Array(Math.max(16, (typeLen / 16) | 0));
    let n = 0;
    let p = this.typeStart;
    const dv = this.dv;
    const strTotal = this.startStr + strLen;
    const strStart = this.strStart;
    // findNames: types whose name starts with a wanted name's first two bytes, compared in full below.
    const want = findNames.length ? twoByteTable(findNames) : undefined;
    const cands: number[] = [];
    while (p < end) {
      if (p + 12 > end) throw new FormatError(`${src}: truncated BTF type #${this.startId + n}`, p);
      const info = dv.getUint32(p + 4, true);
      const kind = (info >>> 24) & 0x1f;
      // extraSize(kind, vlen) without a call per type; -1 for a kind that does not exist.
      const extra = EXTRA_FIXED[kind]! + (info & 0xffff) * EXTRA_PER[kind]!;
      if (extra < 0) throw new FormatError(`${src}: BTF type #${this.startId + n} has unknown kind ${kind}`, p);
      const nameOff = dv.getUint32(p, true);
      if (nameOff >= strTotal) throw new FormatError(`${src}: BTF type #${this.startId + n} name offset ${nameOff} is outside the string section`, p);
      if (want !== undefined && nameOff !== 0) {
        const q = strStart + nameOff;
        if (want[(bytes[q]! << 8) | (bytes[q + 1] ?? 0)] === 1) cands.push(n);
      }
      if (n === offsets.length) {
        const grown = new Uint32Array(offsets.length * 2);
        grown.set(offsets);
        offsets = grown;
      }
      offsets[n++] = p;
      p += 12 + extra;
    }
    if (p !== end) throw new FormatError(`${src}: BTF type #${this.startId + n - 1} runs past the type section`, p);
    this.offsets = offsets.subarray(0, n);
    this.nTypes = n;
    if (want !== undefined) {
      const found = this.scan(findNames, true, cands);
      for (const name of findNames) this.essCache.set(name, found.get(name) ?? []);
    }
  }

  /** A precomputed index's offsets, after the checks that cost nothing: length, first record, the last one's end. */
  private checkIndex(idx: BtfIndex, end: number): Uint32Array {
    const src = this.source;
    const n = idx.offsets.length;
    if (idx.btfLength !== this.bytes.length) throw new FormatError(`${src}: the BTF index was made for ${idx.btfLength} bytes of BTF, this is ${this.bytes.length}`);
    if (n === 0) {
      if (end !== this.typeStart) throw new FormatError(`${src}: the BTF index lists no types, the type section is not empty`);
      return idx.offsets;
    }
    const last = idx.offsets[n - 1]!;
    if (idx.offsets[0] !== this.typeStart || last + 12 > end) throw new FormatError(`${src}: the BTF index does not fit this BTF's type section`);
    const info = this.dv.getUint32(last + 4, true);
    const extra = extraSize((info >>> 24) & 0x1f, info & 0xffff);
    if (extra < 0 || last + 12 + extra !== end) throw new FormatError(`${src}: the BTF index's last record does not end the type section`);
    return idx.offsets;
  }

  /** The parse pass's result, to give a later parse of the same bytes (ParseOptions.index); `names` are answered too. */
  index(names: Iterable<string> = []): BtfIndex {
    if (this.base) throw new FormatError(`${this.source}: an index is made for base BTF only`);
    const want = [...new Set(names)].filter((x) => x !== '');
    this.prefetchEssential(want);
    return { btfLength: this.bytes.length, offsets: this.offsets.slice(), essential: new Map(want.map((n) => [n, [...this.byEssentialName(n)]])) };
  }

  /** Total number of type ids, including void (0) and base types: valid ids are [0, count). */
  get count(): number {
    return this.startId + this.nTypes;
  }
  /** Number of types described by this (split) BTF itself. */
  get ownCount(): number {
    return this.nTypes;
  }
  get stringsLength(): number {
    return this.strLen;
  }

  private own(id: number): number {
    const i = id - this.startId;
    if (i < 0 || i >= this.nTypes || !Number.isInteger(id)) throw new FormatError(`${this.source}: type id ${id} out of range (BTF has ${this.count} types)`);
    return this.offsets[i]!;
  }

  /** Byte offset of a type's record (for hostile-input error messages). */
  recordOffset(id: number): number | undefined {
    if (id >= this.startId && id < this.count) return this.offsets[id - this.startId];
    return this.base?.recordOffset(id);
  }

  /** The string at a string-section offset (offsets below startStr live in the base). */
  str(off: number): string {
    if (off < this.startStr) {
      if (!this.base) throw new FormatError(`${this.source}: string offset ${off} out of range`);
      return this.base.str(off);
    }
    const cached = this.strCache.get(off);
    if (cached !== undefined) return cached;
    const rel = off - this.startStr;
    if (rel >= this.strLen) throw new FormatError(`${this.source}: string offset ${off} is outside the string section (${this.strLen} bytes)`);
    const s = readCString(this.bytes, this.strStart + rel, this.strStart + this.strLen);
    if (s === '\u0000') throw new FormatError(`${this.source}: unterminated string at offset ${off}`);
    this.strCache.set(off, s);
    return s;
  }

  // --- raw accessors: no allocation, used by hot loops ---

  kind(id: number): Kind {
    if (id === 0) return Kind.UNKN;
    if (id < this.startId) return this.base!.kind(id);
    return ((this.dv.getUint32(this.own(id) + 4, true) >>> 24) & 0x1f) as Kind;
  }
  vlen(id: number): number {
    if (id === 0) return 0;
    if (id < this.startId) return this.base!.vlen(id);
    return this.dv.getUint32(this.own(id) + 4, true) & 0xffff;
  }
  kindFlag(id: number): boolean {
    if (id === 0) return false;
    if (id < this.startId) return this.base!.kindFlag(id);
    return (this.dv.getUint32(this.own(id) + 4, true) >>> 31) === 1;
  }
  nameOff(id: number): number {
    if (id === 0) return 0;
    if (id < this.startId) return this.base!.nameOff(id);
    return this.dv.getUint32(this.own(id), true);
  }
  name(id: number): string {
    return id === 0 ? '' : this.str(this.nameOff(id));
  }
  /** The size/type word of the common header. */
  sizeOrType(id: number): number {
    if (id === 0) return 0;
    if (id < this.startId) return this.base!.sizeOrType(id);
    return this.dv.getUint32(this.own(id) + 8, true);
  }

  /** Decodes one type. */
  type(id: number): BtfType {
    if (id === 0) return { kind: Kind.UNKN, id: 0, name: 'void' };
    if (id < this.startId) {
      if (!this.base) throw new FormatError(`${this.source}: type id ${id} out of range`);
      return this.base.type(id);
    }
    const p = this.own(id);
    const dv = this.dv;
    const info = dv.getUint32(p + 4, true);
    const kind = ((info >>> 24) & 0x1f) as Kind;
    const vlen = info & 0xffff;
    const kflag = info >>> 31 === 1;
    const name = this.str(dv.getUint32(p, true));
    const st = dv.getUint32(p + 8, true);
    const q = p + 12;
    switch (kind) {
      case Kind.INT: {
        const v = dv.getUint32(q, true);
        return { kind, id, name, size: st, encoding: (v >>> 24) & 0x0f, bitOffset: (v >>> 16) & 0xff, bits: v & 0xff };
      }
      case Kind.PTR: case Kind.TYPEDEF: case Kind.VOLATILE: case Kind.CONST: case Kind.RESTRICT: case Kind.TYPE_TAG:
        return { kind, id, name, type: st };
      case Kind.ARRAY:
        return { kind, id, name, type: dv.getUint32(q, true), indexType: dv.getUint32(q + 4, true), nelems: dv.getUint32(q + 8, true) };
      case Kind.STRUCT: case Kind.UNION: {
        const members: Member[] = new Array(vlen);
        for (let i = 0; i < vlen; i++) {
          const m = q + i * 12;
          const off = dv.getUint32(m + 8, true);
          members[i] = {
            name: this.str(dv.getUint32(m, true)),
            type: dv.getUint32(m + 4, true),
            bitOffset: kflag ? off & 0xffffff : off,
            bitfieldSize: kflag ? off >>> 24 : 0,
          };
        }
        return { kind, id, name, size: st, members };
      }
      case Kind.ENUM: {
        const values: EnumValue[] = new Array(vlen);
        for (let i = 0; i < vlen; i++) {
          const m = q + i * 8;
          values[i] = { name: this.str(dv.getUint32(m, true)), value: BigInt(kflag ? dv.getInt32(m + 4, true) : dv.getUint32(m + 4, true)) };
        }
        return { kind, id, name, size: st, signed: kflag, values };
      }
      case Kind.ENUM64: {
        const values: EnumValue[] = new Array(vlen);
        for (let i = 0; i < vlen; i++) {
          const m = q + i * 12;
          const raw = (BigInt(dv.getUint32(m + 8, true)) << 32n) | BigInt(dv.getUint32(m + 4, true));
          values[i] = { name: this.str(dv.getUint32(m, true)), value: kflag ? BigInt.asIntN(64, raw) : raw };
        }
        return { kind, id, name, size: st, signed: kflag, values };
      }
      case Kind.FWD:
        return { kind, id, name, union: kflag };
      case Kind.FUNC:
        return { kind, id, name, type: st, linkage: vlen };
      case Kind.FUNC_PROTO: {
        const params: Param[] = new Array(vlen);
        for (let i = 0; i < vlen; i++) params[i] = { name: this.str(dv.getUint32(q + i * 8, true)), type: dv.getUint32(q + i * 8 + 4, true) };
        return { kind, id, name, type: st, params };
      }
      case Kind.VAR:
        return { kind, id, name, type: st, linkage: dv.getUint32(q, true) };
      case Kind.DATASEC: {
        const vars: VarSecinfo[] = new Array(vlen);
        for (let i = 0; i < vlen; i++) {
          const m = q + i * 12;
          vars[i] = { type: dv.getUint32(m, true), offset: dv.getUint32(m + 4, true), size: dv.getUint32(m + 8, true) };
        }
        return { kind, id, name, size: st, vars };
      }
      case Kind.FLOAT:
        return { kind, id, name, size: st };
      case Kind.DECL_TAG:
        return { kind, id, name, type: st, componentIdx: dv.getInt32(q, true) };
      default:
        throw new FormatError(`${this.source}: type #${id} has unknown kind ${kind}`, p);
    }
  }

  /** Decodes a type and checks its kind. */
  typeOf<K extends Kind>(id: number, ...kinds: K[]): TypeOf<K> {
    const t = this.type(id);
    if (!(kinds as Kind[]).includes(t.kind)) {
      throw new FormatError(`${this.source}: type #${id} is ${KIND_NAMES[t.kind]}, expected ${kinds.map((k) => KIND_NAMES[k]).join(' or ')}`);
    }
    return t as TypeOf<K>;
  }

  /** Type ids with exactly this name (all kinds), including base types, ascending. */
  byName(name: string): readonly number[] {
    const own = this.lookupOwn(name, false);
    return this.base ? [...this.base.byName(name), ...own] : own;
  }

  /** Type ids whose essential name (the part before any `___suffix`) equals `ess`, ascending. */
  byEssentialName(ess: string): readonly number[] {
    const own = this.lookupOwn(ess, true);
    return this.base ? [...this.base.byEssentialName(ess), ...own] : own;
  }

  private scans = 0;
  private readonly essCache = new Map<string, number[]>();
  private readonly nameCache = new Map<string, number[]>();
  /**
   * The first few look-ups scan the names in place (a relocation typically asks for a handful of
   * root types); later ones build a hash index. `prefetchEssential` answers many names in one scan.
   */
  private lookupOwn(name: string, essential: boolean): number[] {
    const idx = essential ? this.essIdx : this.nameIdx;
    if (idx) return idx.lookup(name);
    if (essential) {
      const hit = this.essCache.get(name);
      if (hit) return hit;
    } else {
      const hit = this.nameCache.get(name);
      if (hit) return hit;
      // A name without a ___flavour is its own essential name: its exact matches are among the
      // essential answers already at hand (the host's index, a prefetch), no walk needed.
      const ess = name.includes('___') ? undefined : (this.essIdx?.lookup(name) ?? this.essCache.get(name));
      if (ess) {
        const exact = ess.filter((id) => this.name(id) === name);
        this.nameCache.set(name, exact);
        return exact;
      }
    }
    if (++this.scans <= 8) {
      const found = this.scan([name], essential).get(name) ?? [];
      (essential ? this.essCache : this.nameCache).set(name, found);
      return found;
    }
    if (essential) return (this.essIdx = new NameIndex(this, true)).lookup(name);
    return (this.nameIdx = new NameIndex(this, false)).lookup(name);
  }

  /** Resolves many essential names in one pass over the types (used before relocating an object). */
  prefetchEssential(names: Iterable<string>): void {
    if (this.essIdx) return;
    const want = [...new Set(names)].filter((n) => n !== '' && !this.essCache.has(n));
    if (want.length === 0) return;
    const found = this.scan(want, true);
    for (const n of want) this.essCache.set(n, found.get(n) ?? []);
    this.base?.prefetchEssential(want);
  }

  /** Types (all, or the indices in `only`) whose name is one of `names` (essential: minus its ___flavour). */
  private scan(names: string[], essential: boolean, only?: readonly number[]): Map<string, number[]> {
    const enc = new TextEncoder();
    // Candidates by first byte, so most types are dismissed after one comparison.
    const byFirst = new Map<number, { name: string; q: Uint8Array }[]>();
    for (const name of names) {
      const q = enc.encode(name);
      if (q.length === 0) continue;
      let l = byFirst.get(q[0]!);
      if (!l) byFirst.set(q[0]!, (l = []));
      l.push({ name, q });
    }
    const out = new Map<string, number[]>();
    const { bytes, dv, offsets, strStart, strLen, startStr } = this.internals();
    const end = strStart + strLen;
    const count = only ? only.length : this.nTypes;
    for (let k = 0; k < count; k++) {
      const i = only ? only[k]! : k;
      const off = dv.getUint32(offsets[i]!, true);
      if (off === 0) continue;
      let b = bytes;
      let p: number;
      let e = end;
      if (off >= startStr) p = strStart + off - startStr;
      else [b, p, e] = this.strLoc(off);
      const cands = byFirst.get(b[p]!);
      if (!cands) continue;
      for (const { name, q } of cands) {
        let j = 1;
        while (j < q.length && p + j < e && b[p + j] === q[j]) j++;
        if (j < q.length) continue;
        const next = b[p + j];
        let match: boolean;
        if (next === 0) match = !essential || essentialLength(b, p, j) === j;
        else if (!essential) match = false;
        else {
          let n = j;
          while (p + n < e && b[p + n] !== 0) n++;
          match = essentialLength(b, p, n) === j;
        }
        if (match) {
          let l = out.get(name);
          if (!l) out.set(name, (l = []));
          l.push(this.startId + i);
        }
      }
    }
    return out;
  }

  /** This BTF's own string section, as stored. */
  stringSection(): Uint8Array {
    return this.bytes.subarray(this.strStart, this.strStart + this.strLen);
  }

  /** Raw views for the name index (same module; not part of the public surface). */
  internals() {
    return { bytes: this.bytes, dv: this.dv, offsets: this.offsets, strStart: this.strStart, strLen: this.strLen, startStr: this.startStr };
  }

  /** Where a string lives: the bytes, its start, and the end of its string section. */
  strLoc(off: number): [Uint8Array, number, number] {
    if (off < this.startStr) {
      if (!this.base) throw new FormatError(`${this.source}: string offset ${off} out of range`);
      return this.base.strLoc(off);
    }
    const rel = off - this.startStr;
    if (rel >= this.strLen) throw new FormatError(`${this.source}: string offset ${off} is outside the string section (${this.strLen} bytes)`);
    return [this.bytes, this.strStart + rel, this.strStart + this.strLen];
  }

  /** Skips typedefs, const/volatile/restrict and type tags. */
  skipModsAndTypedefs(id: number): number {
    for (let depth = 0; depth < MAX_RESOLVE_DEPTH; depth++) {
      const k = this.kind(id);
      if (k !== Kind.TYPEDEF && k !== Kind.CONST && k !== Kind.VOLATILE && k !== Kind.RESTRICT && k !== Kind.TYPE_TAG) return id;
      id = this.sizeOrType(id);
    }
    throw new FormatError(`${this.source}: type loop or chain too deep at type #${id}`);
  }

  /** Skips const/volatile/restrict and type tags (keeps typedefs). */
  skipMods(id: number): number {
    for (let depth = 0; depth < MAX_RESOLVE_DEPTH; depth++) {
      const k = this.kind(id);
      if (k !== Kind.CONST && k !== Kind.VOLATILE && k !== Kind.RESTRICT && k !== Kind.TYPE_TAG) return id;
      id = this.sizeOrType(id);
    }
    throw new FormatError(`${this.source}: type loop or chain too deep at type #${id}`);
  }

  /**
   * sizeof(type) in bytes, following typedefs, modifiers and arrays. Like the kernel, a size must
   * fit in 32 bits: nested arrays whose element counts multiply past that are malformed (and would
   * otherwise come back as an inexact float past 2^53).
   */
  sizeOf(id: number): number {
    const start = id;
    let mult = 1;
    const sized = (n: number): number => {
      const size = mult * n;
      if (size > MAX_TYPE_SIZE) throw new FormatError(`${this.source}: type #${start} is larger than 4 GiB (array element counts multiply past 32 bits)`, this.recordOffset(start));
      return size;
    };
    for (let depth = 0; depth < MAX_RESOLVE_DEPTH; depth++) {
      switch (this.kind(id)) {
        case Kind.INT: case Kind.STRUCT: case Kind.UNION: case Kind.ENUM: case Kind.ENUM64: case Kind.DATASEC: case Kind.FLOAT:
          return sized(this.sizeOrType(id));
        case Kind.PTR:
          return sized(8);
        case Kind.TYPEDEF: case Kind.VOLATILE: case Kind.CONST: case Kind.RESTRICT: case Kind.TYPE_TAG: case Kind.VAR:
          id = this.sizeOrType(id);
          break;
        case Kind.ARRAY: {
          const a = this.typeOf(id, Kind.ARRAY);
          // Saturate: past 2^32 only a later zero count matters, and Infinity * 0 would be NaN.
          mult = Math.min(mult * a.nelems, 2 * MAX_TYPE_SIZE + 2);
          id = a.type;
          break;
        }
        default:
          throw new FormatError(`${this.source}: type #${id} (${KIND_NAMES[this.kind(id)]}) has no size`);
      }
    }
    throw new FormatError(`${this.source}: type loop or chain too deep at type #${id}`);
  }

  /** The type as C would spell it: `struct task_struct`, `unsigned int`, `char *`, `int[4]`. */
  typeName(id: number, depth = 0): string {
    if (depth > MAX_RESOLVE_DEPTH) throw new FormatError(`${this.source}: type loop at type #${id}`);
    const t = this.type(id);
    const anon = (what: string) => (t.name ? `${what} ${t.name}` : `${what} (anon #${id})`);
    switch (t.kind) {
      case Kind.UNKN: return 'void';
      case Kind.STRUCT: return anon('struct');
      case Kind.UNION: return anon('union');
      case Kind.ENUM: case Kind.ENUM64: return anon('enum');
      case Kind.FWD: return `${t.union ? 'union' : 'struct'} ${t.name}`;
      case Kind.PTR: return `${this.typeName(t.type, depth + 1)} *`;
      case Kind.CONST: return `const ${this.typeName(t.type, depth + 1)}`;
      case Kind.VOLATILE: return `volatile ${this.typeName(t.type, depth + 1)}`;
      case Kind.RESTRICT: return `${this.typeName(t.type, depth + 1)} restrict`;
      case Kind.TYPE_TAG: return `${this.typeName(t.type, depth + 1)} __tag(${t.name})`;
      case Kind.ARRAY: return `${this.typeName(t.type, depth + 1)}[${t.nelems}]`;
      case Kind.FUNC_PROTO: return `${this.typeName(t.type, depth + 1)} (*)(${t.params.map((p) => this.typeName(p.type, depth + 1)).join(', ')})`;
      case Kind.FUNC: return `func ${t.name}`;
      case Kind.VAR: return `var ${t.name}`;
      case Kind.DATASEC: return `datasec ${t.name}`;
      case Kind.DECL_TAG: return `decl_tag ${t.name}`;
      default: return t.name;
    }
  }
}

/** `task_struct___old` → `task_struct`; names without a flavour are returned unchanged. */
/** The flavour separator is the last `X___Y` where neither X nor Y is an underscore. */
export function essentialName(name: string): string {
  for (let i = name.length - 5; i >= 0; i--) {
    if (name.charCodeAt(i) !== 95 && name.charCodeAt(i + 1) === 95 && name.charCodeAt(i + 2) === 95 &&
        name.charCodeAt(i + 3) === 95 && name.charCodeAt(i + 4) !== 95) return name.slice(0, i + 1);
  }
  return name;
}

export function parseBtf(bytes: Uint8Array, opts: ParseOptions = {}): Btf {
  return new Btf(bytes, opts);
}

/** Length in bytes of the essential part of the NUL-terminated name at bytes[start..end). */
function essentialLength(bytes: Uint8Array, start: number, len: number): number {
  for (let i = start + len - 5; i >= start; i--) {
    if (bytes[i] !== 95 && bytes[i + 1] === 95 && bytes[i + 2] === 95 && bytes[i + 3] === 95 && bytes[i + 4] !== 95) return i + 1 - start;
  }
  return len;
}

function fnv1a(bytes: Uint8Array, start: number, len: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < start + len; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}

/**
 * A hash index from (essential) name bytes to type ids, built without decoding any string:
 * one pass hashing each type's name in place, chained buckets in typed arrays. Building it over
 * a 126k-type vmlinux takes a few milliseconds; a Map of decoded strings took over 100.
 */
class NameIndex {
  private readonly head: Int32Array;
  private readonly next: Int32Array;
  private readonly loc: Uint32Array; // per own type: string start (absolute), 0 = unnamed
  private readonly len: Uint16Array;
  private readonly src: (Uint8Array | undefined)[];
  private readonly mask: number;

  constructor(private readonly btf: Btf, essential: boolean) {
    const n = btf.ownCount;
    let size = 16;
    while (size < n * 2) size <<= 1;
    this.mask = size - 1;
    this.head = new Int32Array(size).fill(-1);
    this.next = new Int32Array(n);
    this.loc = new Uint32Array(n);
    this.len = new Uint16Array(n);
    this.src = new Array(n);
    const { bytes: own, dv, offsets, strStart, strLen, startStr } = btf.internals();
    const strEnd = strStart + strLen;
    for (let i = n - 1; i >= 0; i--) {
      const off = dv.getUint32(offsets[i]!, true);
      if (off === 0) continue;
      let bytes = own;
      let start: number;
      let end = strEnd;
      if (off >= startStr) start = strStart + off - startStr;
      else [bytes, start, end] = btf.strLoc(off); // split BTF naming a base string
      // One pass: find the NUL, hash as we go, and notice a `___` that may start a flavour.
      let e = start;
      let h = 0x811c9dc5;
      let run = 0;
      let flavour = false;
      for (let c = bytes[e]; e < end && c !== 0; c = bytes[++e]) {
        h = Math.imul(h ^ c!, 0x01000193);
        if (c === 95) {
          if (++run === 3) flavour = true;
        } else run = 0;
      }
      if (e >= end) throw new FormatError(`${btf.source}: unterminated string at offset ${off}`);
      let l = e - start;
      if (essential && flavour) {
        const el = essentialLength(bytes, start, l);
        if (el !== l) {
          l = el;
          h = 0x811c9dc5;
          for (let j = start; j < start + l; j++) h = Math.imul(h ^ bytes[j]!, 0x01000193);
        }
      }
      if (l > 0xffff) continue;
      h = (h >>> 0) & this.mask;
      this.loc[i] = start;
      this.len[i] = l;
      this.src[i] = bytes;
      this.next[i] = this.head[h]!;
      this.head[h] = i; // inserted in reverse, so chains come out ascending
    }
  }

  lookup(name: string): number[] {
    const q = new TextEncoder().encode(name);
    const h = fnv1a(q, 0, q.length) & this.mask;
    const out: number[] = [];
    for (let i = this.head[h]!; i >= 0; i = this.next[i]!) {
      if (this.len[i] !== q.length) continue;
      const b = this.src[i]!;
      const s = this.loc[i]!;
      let same = true;
      for (let j = 0; j < q.length; j++) if (b[s + j] !== q[j]) { same = false; break; }
      if (same) out.push(this.btf.startId + i);
    }
    return out;
  }
}
