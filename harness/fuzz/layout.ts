// Where the interesting fields of a (valid) seed live, so mutations can aim at them: ELF header
// and section headers, symbols, REL entries, the `.BTF` header and every type record's words,
// the `.BTF.ext` header, record sizes, block headers and CO-RE records, and the access strings.
// Computed once per seed from the unmutated bytes (which the core parses without complaint).

import { extraSize } from '../core/btf/kinds.js';

export type FieldSize = 1 | 2 | 4 | 8;
export interface Field {
  off: number;
  size: FieldSize;
  label: string;
}

/** One BTF type record, absolute offsets into the seed. */
export interface TypeRec {
  id: number;
  off: number;
  kind: number;
  vlen: number;
  /** Absolute offsets of the u32 words that hold type ids. */
  refs: number[];
  /** Offset of the `nelems` word (arrays only). */
  nelems?: number;
}

export interface BtfLayout {
  /** Absolute offset of the BTF header. */
  base: number;
  types: TypeRec[];
  /** Absolute start and length of the string section. */
  strStart: number;
  strLen: number;
}

export interface CoreRecLayout {
  off: number;
  /** Absolute offset and length (without NUL) of its access string, when it lies in the seed. */
  str?: { off: number; len: number };
}

export interface Layout {
  fields: Field[];
  btf?: BtfLayout;
  coreRecs: CoreRecLayout[];
  /** ELF section header offsets (absolute), by section index. */
  shdrs: number[];
  /** Executable sections (instructions) and string tables: absolute ranges. */
  code: { off: number; size: number; name: string; index: number; entries: number[] }[];
  strtabs: { off: number; size: number }[];
  /** Absolute offsets of FUNC symbol entries. */
  funcSyms: number[];
}

const KIND_PTR = 2, KIND_ARRAY = 3, KIND_STRUCT = 4, KIND_UNION = 5, KIND_TYPEDEF = 8, KIND_VOLATILE = 9, KIND_CONST = 10,
  KIND_RESTRICT = 11, KIND_FUNC = 12, KIND_FUNC_PROTO = 13, KIND_VAR = 14, KIND_DATASEC = 15, KIND_DECL_TAG = 17, KIND_TYPE_TAG = 18;
const REF_KINDS = new Set([KIND_PTR, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_VAR, KIND_DECL_TAG, KIND_TYPE_TAG]);
export const MODIFIER_KINDS = new Set([KIND_PTR, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG]);
export const K = { PTR: KIND_PTR, ARRAY: KIND_ARRAY, STRUCT: KIND_STRUCT, UNION: KIND_UNION, TYPEDEF: KIND_TYPEDEF, FUNC_PROTO: KIND_FUNC_PROTO };

const u16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);
const u32 = (b: Uint8Array, o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
const u64 = (b: Uint8Array, o: number) => u32(b, o + 4) * 0x1_0000_0000 + u32(b, o);
export { u32 };

/** Layout of a raw BTF blob at `base` inside `b`. */
export function btfLayout(b: Uint8Array, base: number, fields: Field[]): BtfLayout | undefined {
  if (base + 24 > b.length || u16(b, base) !== 0xeb9f) return undefined;
  const hdr = u32(b, base + 4);
  for (const [o, l] of [[4, 'btf.hdr_len'], [8, 'btf.type_off'], [12, 'btf.type_len'], [16, 'btf.str_off'], [20, 'btf.str_len']] as const) fields.push({ off: base + o, size: 4, label: l });
  const typeStart = base + hdr + u32(b, base + 8);
  const typeEnd = typeStart + u32(b, base + 12);
  const strStart = base + hdr + u32(b, base + 16);
  const strLen = u32(b, base + 20);
  if (typeEnd > b.length || strStart + strLen > b.length) return undefined;
  const types: TypeRec[] = [];
  let p = typeStart;
  for (let id = 1; p + 12 <= typeEnd; id++) {
    const info = u32(b, p + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const extra = extraSize(kind, vlen);
    if (extra < 0) break;
    const q = p + 12;
    const rec: TypeRec = { id, off: p, kind, vlen, refs: [] };
    fields.push({ off: p, size: 4, label: `btf type #${id} name_off` }, { off: p + 4, size: 4, label: `btf type #${id} info` }, { off: p + 8, size: 4, label: `btf type #${id} size/type` });
    if (REF_KINDS.has(kind)) rec.refs.push(p + 8);
    if (kind === KIND_ARRAY) {
      rec.refs.push(q, q + 4);
      rec.nelems = q + 8;
    } else if (kind === KIND_FUNC_PROTO) {
      rec.refs.push(p + 8);
      for (let i = 0; i < vlen; i++) rec.refs.push(q + i * 8 + 4);
    } else if (kind === KIND_STRUCT || kind === KIND_UNION) {
      for (let i = 0; i < vlen; i++) rec.refs.push(q + i * 12 + 4);
    } else if (kind === KIND_DATASEC) {
      for (let i = 0; i < vlen; i++) rec.refs.push(q + i * 12);
    }
    // Bound the field list on big BTF: the first words of the extra data are enough.
    for (let w = 0; w < Math.min(extra, 48); w += 4) fields.push({ off: q + w, size: 4, label: `btf type #${id} extra word ${w / 4}` });
    types.push(rec);
    p = q + extra;
  }
  return { base, types, strStart, strLen };
}

/** Layout of a `.BTF.ext` section at `base`, with access strings resolved against the BTF string section. */
function extLayout(b: Uint8Array, base: number, size: number, btf: BtfLayout | undefined, fields: Field[], core: CoreRecLayout[]): void {
  if (size < 24 || u16(b, base) !== 0xeb9f) return;
  const hdr = u32(b, base + 4);
  fields.push({ off: base + 4, size: 4, label: 'btf.ext hdr_len' });
  const subs = hdr >= 32 ? 3 : 2;
  for (let i = 0; i < subs; i++) {
    fields.push({ off: base + 8 + i * 8, size: 4, label: `btf.ext sub ${i} off` }, { off: base + 12 + i * 8, size: 4, label: `btf.ext sub ${i} len` });
    const start = base + hdr + u32(b, base + 8 + i * 8);
    const end = start + u32(b, base + 12 + i * 8);
    if (end > base + size || end - start < 4) continue;
    const recSize = u32(b, start);
    if (recSize < 8) continue;
    fields.push({ off: start, size: 4, label: `btf.ext sub ${i} record size` });
    let p = start + 4;
    while (p + 8 <= end) {
      const n = u32(b, p + 4);
      fields.push({ off: p, size: 4, label: `btf.ext sub ${i} block sec_name_off` }, { off: p + 4, size: 4, label: `btf.ext sub ${i} block num_info` });
      p += 8;
      for (let k = 0; k < n && p + recSize <= end; k++, p += recSize) {
        for (let w = 0; w < recSize; w += 4) fields.push({ off: p + w, size: 4, label: `btf.ext sub ${i} record word ${w / 4}` });
        if (i === 2) {
          const rec: CoreRecLayout = { off: p };
          if (btf) {
            const so = btf.strStart + u32(b, p + 8);
            if (so < btf.strStart + btf.strLen) {
              let e = so;
              while (e < btf.strStart + btf.strLen && b[e] !== 0) e++;
              rec.str = { off: so, len: e - so };
            }
          }
          core.push(rec);
        }
      }
    }
  }
}

/** Layout of an ELF object (with its .BTF/.BTF.ext) or of a raw BTF blob. */
export function layoutOf(b: Uint8Array): Layout {
  const fields: Field[] = [];
  const coreRecs: CoreRecLayout[] = [];
  const shdrs: number[] = [];
  if (!(b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46)) {
    return { fields, btf: btfLayout(b, 0, fields), coreRecs, shdrs, code: [], strtabs: [], funcSyms: [] };
  }
  for (const [o, s, l] of [[16, 2, 'e_type'], [18, 2, 'e_machine'], [40, 8, 'e_shoff'], [58, 2, 'e_shentsize'], [60, 2, 'e_shnum'], [62, 2, 'e_shstrndx']] as const) fields.push({ off: o, size: s, label: l });
  const shoff = u64(b, 40);
  const shnum = u16(b, 60);
  const strndx = u16(b, 62);
  const sec = (i: number) => {
    const p = shoff + i * 64;
    return { p, name: u32(b, p), type: u32(b, p + 4), flags: u32(b, p + 8), offset: u64(b, p + 24), size: u64(b, p + 32), link: u32(b, p + 40), entsize: u64(b, p + 56) };
  };
  const code: Layout['code'] = [];
  const funcs: { shndx: number; value: number }[] = [];
  const funcSyms: number[] = [];
  const strtabs: Layout['strtabs'] = [];
  const strtab = sec(strndx);
  const nameOf = (off: number) => {
    let e = strtab.offset + off;
    let s = '';
    while (b[e] !== 0 && e < b.length) s += String.fromCharCode(b[e++]!);
    return s;
  };
  let btf: BtfLayout | undefined;
  let ext: { offset: number; size: number } | undefined;
  for (let i = 0; i < shnum; i++) {
    const s = sec(i);
    shdrs.push(s.p);
    const name = nameOf(s.name);
    for (const [o, sz, l] of [[0, 4, 'name'], [4, 4, 'type'], [8, 8, 'flags'], [24, 8, 'offset'], [32, 8, 'size'], [40, 4, 'link'], [44, 4, 'info'], [48, 8, 'addralign'], [56, 8, 'entsize']] as const) {
      fields.push({ off: s.p + o, size: sz, label: `shdr ${i} (${name}) ${l}` });
    }
    if (s.type === 1 && (s.flags & 4) !== 0 && s.size >= 8) code.push({ off: s.offset, size: s.size, name, index: i, entries: [] });
    if (s.type === 3 && s.size > 1) strtabs.push({ off: s.offset, size: s.size });
    if (s.type === 2) {
      for (let k = 0; k < s.size / 24; k++) {
        const p = s.offset + k * 24;
        if ((b[p + 4]! & 0xf) === 2) {
          funcs.push({ shndx: u16(b, p + 6), value: u64(b, p + 8) });
          funcSyms.push(p);
        }
        fields.push({ off: p, size: 4, label: `sym ${k} name` }, { off: p + 4, size: 1, label: `sym ${k} info` }, { off: p + 6, size: 2, label: `sym ${k} shndx` },
          { off: p + 8, size: 8, label: `sym ${k} value` }, { off: p + 16, size: 8, label: `sym ${k} size` });
      }
    } else if (s.type === 9) {
      for (let k = 0; k < s.size / 16; k++) {
        const p = s.offset + k * 16;
        fields.push({ off: p, size: 8, label: `${name} rel ${k} offset` }, { off: p + 8, size: 4, label: `${name} rel ${k} type` }, { off: p + 12, size: 4, label: `${name} rel ${k} sym` });
      }
    } else if (name === '.BTF') btf = btfLayout(b, s.offset, fields);
    else if (name === '.BTF.ext') ext = { offset: s.offset, size: s.size };
  }
  if (ext) extLayout(b, ext.offset, ext.size, btf, fields, coreRecs);
  for (const c of code) for (const f of funcs) if (f.shndx === c.index && f.value % 8 === 0 && f.value < c.size) c.entries.push(c.off + f.value);
  return { fields, btf, coreRecs, shdrs, code, strtabs, funcSyms };
}
