// BTF writer: encodes decoded types back to the wire format. Used to sanitize an object's BTF
// for older kernels and to hand BTF to BPF_BTF_LOAD. Type ids are positions: the n-th type
// added gets id n (void is 0), so callers that rewrite types in place keep every reference valid.

import { FormatError } from '../errors.js';
import type { BtfType } from './btf.js';
import { BTF_MAGIC, Kind } from './kinds.js';

/** A type to encode: a decoded type without its id. */
export type TypeSpec = BtfType extends infer T ? (T extends BtfType ? Omit<T, 'id'> : never) : never;

/**
 * A decoded type as a TypeSpec for another BTF: its id dropped and every type reference it holds
 * (type, index type, members, parameters, section variables) rewritten through `map`.
 */
export function remapType(t: BtfType, map: (id: number) => number): TypeSpec {
  const { id: _id, ...r } = t;
  const x = { ...r } as Record<string, unknown>;
  if ('type' in x) x.type = map(x.type as number);
  if ('indexType' in x) x.indexType = map(x.indexType as number);
  if ('members' in x) x.members = (x.members as { type: number }[]).map((m) => ({ ...m, type: map(m.type) }));
  if ('params' in x) x.params = (x.params as { type: number }[]).map((p) => ({ ...p, type: map(p.type) }));
  if ('vars' in x) x.vars = (x.vars as { type: number }[]).map((v) => ({ ...v, type: map(v.type) }));
  return x as TypeSpec;
}

export class BtfBuilder {
  private readonly strings: number[] = [0];
  private readonly strOffsets = new Map<string, number>([['', 0]]);
  private readonly words: number[] = [];
  private nTypes = 0;
  private readonly enc = new TextEncoder();

  /**
   * `strings`: start from an existing string section, kept byte for byte, so that string offsets
   * held outside the types (line_info's file and line offsets) stay valid after a rewrite.
   */
  constructor(opts: { strings?: Uint8Array } = {}) {
    const base = opts.strings;
    if (base && base.length > 0) {
      this.strings.length = 0;
      for (const b of base) this.strings.push(b);
      if (this.strings[this.strings.length - 1] !== 0) this.strings.push(0);
      const dec = new TextDecoder();
      let start = 0;
      for (let i = 0; i < base.length; i++) {
        if (base[i] !== 0) continue;
        const str = dec.decode(base.subarray(start, i));
        if (!this.strOffsets.has(str)) this.strOffsets.set(str, start);
        start = i + 1;
      }
    }
  }

  /** Adds a string (deduplicated) and returns its offset. */
  addString(s: string): number {
    const known = this.strOffsets.get(s);
    if (known !== undefined) return known;
    const off = this.strings.length;
    for (const b of this.enc.encode(s)) this.strings.push(b);
    this.strings.push(0);
    this.strOffsets.set(s, off);
    return off;
  }

  /** Appends a type; returns its id. */
  add(t: TypeSpec): number {
    const w = this.words;
    const head = (kind: Kind, vlen: number, kflag: boolean, sizeOrType: number) => {
      if (vlen > 0xffff) throw new FormatError(`BTF writer: ${t.name || 'anonymous type'} has too many entries (${vlen})`);
      w.push(this.addString(t.name === 'void' && kind === Kind.UNKN ? '' : t.name), ((kflag ? 1 : 0) << 31) | (kind << 24) | vlen, sizeOrType >>> 0);
    };
    switch (t.kind) {
      case Kind.UNKN:
        throw new FormatError('BTF writer: void is implicit and cannot be added');
      case Kind.INT:
        head(t.kind, 0, false, t.size);
        w.push(((t.encoding & 0xf) << 24) | ((t.bitOffset & 0xff) << 16) | (t.bits & 0xff));
        break;
      case Kind.PTR: case Kind.TYPEDEF: case Kind.VOLATILE: case Kind.CONST: case Kind.RESTRICT: case Kind.TYPE_TAG:
        head(t.kind, 0, false, t.type);
        break;
      case Kind.ARRAY:
        head(t.kind, 0, false, 0);
        w.push(t.type, t.indexType, t.nelems);
        break;
      case Kind.STRUCT: case Kind.UNION: {
        const kflag = t.members.some((m) => m.bitfieldSize > 0);
        head(t.kind, t.members.length, kflag, t.size);
        for (const m of t.members) w.push(this.addString(m.name), m.type, kflag ? ((m.bitfieldSize << 24) | (m.bitOffset & 0xffffff)) >>> 0 : m.bitOffset);
        break;
      }
      case Kind.ENUM:
        head(t.kind, t.values.length, t.signed, t.size);
        for (const v of t.values) w.push(this.addString(v.name), Number(BigInt.asUintN(32, v.value)));
        break;
      case Kind.ENUM64:
        head(t.kind, t.values.length, t.signed, t.size);
        for (const v of t.values) {
          const u = BigInt.asUintN(64, v.value);
          w.push(this.addString(v.name), Number(u & 0xffffffffn), Number(u >> 32n));
        }
        break;
      case Kind.FWD:
        head(t.kind, 0, t.union, 0);
        break;
      case Kind.FUNC:
        head(t.kind, t.linkage, false, t.type);
        break;
      case Kind.FUNC_PROTO:
        head(t.kind, t.params.length, false, t.type);
        for (const p of t.params) w.push(this.addString(p.name), p.type);
        break;
      case Kind.VAR:
        head(t.kind, 0, false, t.type);
        w.push(t.linkage);
        break;
      case Kind.DATASEC:
        head(t.kind, t.vars.length, false, t.size);
        for (const v of t.vars) w.push(v.type, v.offset, v.size);
        break;
      case Kind.FLOAT:
        head(t.kind, 0, false, t.size);
        break;
      case Kind.DECL_TAG:
        head(t.kind, 0, false, t.type);
        w.push(t.componentIdx >>> 0);
        break;
    }
    return ++this.nTypes;
  }

  get count(): number {
    return this.nTypes + 1;
  }

  /** The encoded BTF: header, types, strings. */
  bytes(): Uint8Array {
    const typeLen = this.words.length * 4;
    const strLen = this.strings.length;
    const out = new Uint8Array(24 + typeLen + strLen);
    const dv = new DataView(out.buffer);
    dv.setUint16(0, BTF_MAGIC, true);
    out[2] = 1;
    out[3] = 0;
    dv.setUint32(4, 24, true);
    dv.setUint32(8, 0, true);
    dv.setUint32(12, typeLen, true);
    dv.setUint32(16, typeLen, true);
    dv.setUint32(20, strLen, true);
    for (let i = 0; i < this.words.length; i++) dv.setUint32(24 + i * 4, this.words[i]! >>> 0, true);
    out.set(this.strings, 24 + typeLen);
    return out;
  }
}

/** Encodes a whole list of types (ids 1..n in order). */
export function encodeBtf(types: readonly TypeSpec[]): Uint8Array {
  const b = new BtfBuilder();
  for (const t of types) b.add(t);
  return b.bytes();
}
