// ELF64 little-endian relocatable (ET_REL, EM_BPF) writer: the header, each section's bytes at
// its alignment, then the section header table. One `.strtab` names both sections and symbols,
// as LLVM's own objects do.

import { concatBytes } from '../bytes.js';
import { EM_BPF, ET_REL, SHN_LORESERVE, SHT_NOBITS } from '../elf.js';
import { LinkError } from './errors.js';

const EHDR_SIZE = 64;
const SHDR_SIZE = 64;
export const SYM_SIZE = 24;
export const REL_SIZE = 16;

export class StringTable {
  private readonly chunks: Uint8Array[] = [new Uint8Array(1)];
  private size = 1;
  private readonly offsets = new Map<string, number>([['', 0]]);
  private readonly enc = new TextEncoder();

  add(s: string): number {
    const known = this.offsets.get(s);
    if (known !== undefined) return known;
    const b = this.enc.encode(s);
    const off = this.size;
    this.chunks.push(b, new Uint8Array(1));
    this.size += b.length + 1;
    this.offsets.set(s, off);
    return off;
  }

  bytes(): Uint8Array {
    return concatBytes(this.chunks);
  }
}

export interface SectionOut {
  name: string;
  type: number;
  flags: number;
  addralign: number;
  entsize: number;
  link: number;
  info: number;
  /** The bytes; for SHT_NOBITS, none (see `size`). */
  data: Uint8Array;
  /** sh_size: data.length, or the zero-filled size of SHT_NOBITS. */
  size: number;
}

export interface SymbolOut {
  name: number;
  bind: number;
  type: number;
  visibility: number;
  shndx: number;
  value: number;
  size: number;
}

export function encodeSymbols(symbols: readonly SymbolOut[]): Uint8Array {
  const b = new Uint8Array(symbols.length * SYM_SIZE);
  const dv = new DataView(b.buffer);
  symbols.forEach((s, i) => {
    const p = i * SYM_SIZE;
    dv.setUint32(p, s.name, true);
    b[p + 4] = (s.bind << 4) | (s.type & 0xf);
    b[p + 5] = s.visibility & 3;
    dv.setUint16(p + 6, s.shndx, true);
    dv.setBigUint64(p + 8, BigInt(s.value), true);
    dv.setBigUint64(p + 16, BigInt(s.size), true);
  });
  return b;
}

export function encodeRels(rels: readonly { offset: number; sym: number; type: number }[]): Uint8Array {
  const b = new Uint8Array(rels.length * REL_SIZE);
  const dv = new DataView(b.buffer);
  rels.forEach((r, i) => {
    dv.setBigUint64(i * REL_SIZE, BigInt(r.offset), true);
    dv.setUint32(i * REL_SIZE + 8, r.type, true);
    dv.setUint32(i * REL_SIZE + 12, r.sym, true);
  });
  return b;
}

/**
 * The object file: `sections` are sections 1..n (the null section is added), `names` their
 * sh_name offsets in the section `shstrndx` (a string table among them).
 */
export function writeElf(sections: readonly SectionOut[], names: readonly number[], shstrndx: number): Uint8Array {
  const shnum = sections.length + 1;
  if (shnum >= SHN_LORESERVE) throw new LinkError(`link: ${shnum} sections are more than an ELF section index holds`);
  const offsets: number[] = [];
  let p = EHDR_SIZE;
  for (const s of sections) {
    const align = Math.max(1, s.addralign);
    p = Math.ceil(p / align) * align;
    offsets.push(p);
    if (s.type !== SHT_NOBITS) p += s.data.length;
  }
  const shoff = Math.ceil(p / 8) * 8;
  const out = new Uint8Array(shoff + shnum * SHDR_SIZE);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2 /* 64-bit */, 1 /* little-endian */, 1 /* EV_CURRENT */], 0);
  dv.setUint16(16, ET_REL, true);
  dv.setUint16(18, EM_BPF, true);
  dv.setUint32(20, 1, true);
  dv.setBigUint64(40, BigInt(shoff), true);
  dv.setUint16(52, EHDR_SIZE, true);
  dv.setUint16(58, SHDR_SIZE, true);
  dv.setUint16(60, shnum, true);
  dv.setUint16(62, shstrndx, true);
  sections.forEach((s, i) => {
    if (s.type !== SHT_NOBITS) out.set(s.data, offsets[i]!);
    const h = shoff + (i + 1) * SHDR_SIZE;
    dv.setUint32(h, names[i]!, true);
    dv.setUint32(h + 4, s.type, true);
    dv.setBigUint64(h + 8, BigInt(s.flags), true);
    dv.setBigUint64(h + 24, BigInt(offsets[i]!), true);
    dv.setBigUint64(h + 32, BigInt(s.size), true);
    dv.setUint32(h + 40, s.link, true);
    dv.setUint32(h + 44, s.info, true);
    dv.setBigUint64(h + 48, BigInt(s.addralign), true);
    dv.setBigUint64(h + 56, BigInt(s.entsize), true);
  });
  return out;
}
