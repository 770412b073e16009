// ELF64 little-endian reader for BPF relocatable objects (EM_BPF) and, for extracting `.BTF` and
// `.modinfo`, the kernel's own files: x86-64 vmlinux images and kernel modules of x86-64 and arm64. Only what a BPF loader needs: section headers and names, the symbol
// table, REL sections, and the `license`/`version` sections. Every read is bounds-checked
// first, so malformed input raises a FormatError naming the file, what is wrong and the offset,
// never a RangeError from a DataView.

import { FormatError } from './errors.js';

export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;
export const EM_BPF = 247;
/** The machines read here: BPF objects, and the kernel files (vmlinux, modules) of the arches booted. */
const MACHINES: ReadonlyMap<number, string> = new Map([[EM_BPF, 'BPF'], [EM_X86_64, 'x86-64'], [EM_AARCH64, 'AArch64']]);

export const ET_REL = 1;
export const ET_EXEC = 2;
export const ET_DYN = 3;

export const SHT_NULL = 0;
export const SHT_PROGBITS = 1;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_RELA = 4;
export const SHT_NOBITS = 8;
export const SHT_REL = 9;

export const SHF_WRITE = 0x1;
export const SHF_ALLOC = 0x2;
export const SHF_EXECINSTR = 0x4;

export const SHN_UNDEF = 0;
export const SHN_LORESERVE = 0xff00;
export const SHN_ABS = 0xfff1;
export const SHN_COMMON = 0xfff2;
export const SHN_XINDEX = 0xffff;

export const STB_LOCAL = 0;
export const STB_GLOBAL = 1;
export const STB_WEAK = 2;

export const STT_NOTYPE = 0;
export const STT_OBJECT = 1;
export const STT_FUNC = 2;
export const STT_SECTION = 3;
export const STT_FILE = 4;

export const STV_DEFAULT = 0;
export const STV_INTERNAL = 1;
export const STV_HIDDEN = 2;

/** BPF relocation types (llvm/BinaryFormat/ELFRelocs/BPF.def). */
export const R_BPF_NONE = 0;
export const R_BPF_64_64 = 1;
export const R_BPF_64_ABS64 = 2;
export const R_BPF_64_ABS32 = 3;
export const R_BPF_64_NODYLD32 = 4;
export const R_BPF_64_32 = 10;

const EHDR_SIZE = 64;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;
const REL_SIZE = 16;
/** Largest SHT_NOBITS section we materialise (a .bss becomes one map value; the kernel caps those far lower). */
const MAX_NOBITS = 1 << 30;

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: number;
  addr: number;
  /** File offset of the section's bytes (meaningless for SHT_NOBITS). */
  offset: number;
  size: number;
  link: number;
  info: number;
  addralign: number;
  entsize: number;
}

export interface ElfSymbol {
  index: number;
  name: string;
  /** st_value; exact below 2^53 (always for BPF objects; kernel addresses lose low bits). */
  value: number;
  size: number;
  bind: number;
  type: number;
  /** Visibility (st_other & 3). */
  visibility: number;
  /** Section index (SHN_UNDEF, SHN_ABS, ... or a real section). */
  shndx: number;
}

export interface ElfRel {
  /** Byte offset within the section the relocations apply to. */
  offset: number;
  /** Symbol table index. */
  sym: number;
  type: number;
}

/** Reads a NUL-terminated string inside [start, end); undefined when it is not terminated. */
function cstring(bytes: Uint8Array, start: number, end: number): string | undefined {
  let i = start;
  let ascii = true;
  while (i < end && bytes[i] !== 0) {
    if (bytes[i]! >= 0x80) ascii = false;
    i++;
  }
  if (i >= end) return undefined;
  if (ascii && i - start < 256) {
    let s = '';
    for (let j = start; j < i; j++) s += String.fromCharCode(bytes[j]!);
    return s;
  }
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(start, i));
}

export class ElfFile {
  readonly source: string;
  readonly bytes: Uint8Array;
  readonly type: number;
  readonly machine: number;
  readonly sections: readonly ElfSection[];
  private readonly dv: DataView;
  private readonly byName = new Map<string, ElfSection>();
  private syms: ElfSymbol[] | undefined;
  private relIdx: Map<number, ElfSection[]> | undefined;

  constructor(bytes: Uint8Array, source: string) {
    this.source = source;
    this.bytes = bytes;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const src = source;
    if (bytes.length < EHDR_SIZE) throw new FormatError(`${src}: too short for an ELF header (${bytes.length} bytes)`);
    if (bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) throw new FormatError(`${src}: not an ELF file (bad magic)`, 0);
    if (bytes[4] !== 2) throw new FormatError(`${src}: not a 64-bit ELF file (class ${bytes[4]})`, 4);
    if (bytes[5] !== 1) throw new FormatError(`${src}: not a little-endian ELF file (data encoding ${bytes[5]})`, 5);
    const dv = this.dv;
    this.type = dv.getUint16(16, true);
    this.machine = dv.getUint16(18, true);
    // Which machine a BPF object must be is the object reader's check (core/object/load.ts).
    if (!MACHINES.has(this.machine)) throw new FormatError(`${src}: unsupported ELF machine ${this.machine} (want ${[...MACHINES].map(([n, name]) => `${name} ${n}`).join(', ')})`, 18);
    const shoff = this.u64(40);
    const shentsize = dv.getUint16(58, true);
    let shnum = dv.getUint16(60, true);
    let shstrndx = dv.getUint16(62, true);
    if (shoff === 0) {
      this.sections = [];
      return;
    }
    if (shentsize !== SHDR_SIZE) throw new FormatError(`${src}: unexpected section header size ${shentsize}`, 58);
    if (shoff + SHDR_SIZE > bytes.length) throw new FormatError(`${src}: section header table starts past end of file`, 40);
    // Extended numbering: the real counts live in section 0.
    if (shnum === 0) shnum = this.u64(shoff + 32);
    if (shstrndx === SHN_XINDEX) shstrndx = dv.getUint32(shoff + 40, true);
    if (shnum > (bytes.length - shoff) / SHDR_SIZE) throw new FormatError(`${src}: section header table (${shnum} entries) extends past end of file`, shoff);
    const secs: ElfSection[] = new Array(shnum);
    for (let i = 0; i < shnum; i++) {
      const p = shoff + i * SHDR_SIZE;
      const s: ElfSection = {
        index: i, name: '', type: dv.getUint32(p + 4, true), flags: this.u64(p + 8), addr: this.u64(p + 16),
        offset: this.u64(p + 24), size: this.u64(p + 32), link: dv.getUint32(p + 40, true), info: dv.getUint32(p + 44, true),
        addralign: this.u64(p + 48), entsize: this.u64(p + 56),
      };
      secs[i] = s;
    }
    this.sections = secs;
    if (shnum === 0) return;
    if (shstrndx >= shnum) throw new FormatError(`${src}: section name table index ${shstrndx} out of range (${shnum} sections)`, 62);
    const strtab = secs[shstrndx]!;
    if (strtab.type !== SHT_STRTAB) throw new FormatError(`${src}: section name table (section ${shstrndx}) is not a string table`, shoff + shstrndx * SHDR_SIZE);
    if (strtab.offset + strtab.size > bytes.length) throw new FormatError(`${src}: section ${shstrndx} (section name table) extends past end of file`, strtab.offset);
    for (let i = 0; i < shnum; i++) {
      const s = secs[i]!;
      const nameOff = dv.getUint32(shoff + i * SHDR_SIZE, true);
      const name = nameOff < strtab.size ? cstring(bytes, strtab.offset + nameOff, strtab.offset + strtab.size) : undefined;
      if (name === undefined) throw new FormatError(`${src}: section ${i} has a bad name offset ${nameOff}`, shoff + i * SHDR_SIZE);
      s.name = name;
      if (!this.byName.has(name)) this.byName.set(name, s);
      if (s.type !== SHT_NOBITS && s.type !== SHT_NULL && s.offset + s.size > bytes.length) {
        throw new FormatError(`${src}: section ${i} (${name}) extends past end of file`, s.offset);
      }
      if (s.type === SHT_NOBITS && s.size > MAX_NOBITS) {
        throw new FormatError(`${src}: section ${i} (${name}) claims ${s.size} bytes of zeros (more than ${MAX_NOBITS})`, shoff + i * SHDR_SIZE + 32);
      }
    }
    for (const s of secs) {
      if (s.type === SHT_REL || s.type === SHT_RELA || s.type === SHT_SYMTAB) {
        if (s.link >= shnum) throw new FormatError(`${src}: section ${s.index} (${s.name}) links to section ${s.link}, out of range`, shoff + s.index * SHDR_SIZE + 40);
      }
    }
  }

  /** Little-endian u64 as a number (exact below 2^53; larger values only ever fail bounds checks). */
  private u64(off: number): number {
    return this.dv.getUint32(off + 4, true) * 0x1_0000_0000 + this.dv.getUint32(off, true);
  }

  /** First section with this name. */
  section(name: string): ElfSection | undefined {
    return this.byName.get(name);
  }

  /** Section by index, with a FormatError naming `what` when the index is bad. */
  sectionAt(index: number, what = 'section index'): ElfSection {
    const s = this.sections[index];
    if (!s) throw new FormatError(`${this.source}: ${what} ${index} out of range (${this.sections.length} sections)`);
    return s;
  }

  /** A view of the section's bytes (zeros for SHT_NOBITS). Not a copy: copy before patching. */
  data(sec: ElfSection): Uint8Array {
    if (sec.type === SHT_NOBITS) return new Uint8Array(sec.size);
    return this.bytes.subarray(sec.offset, sec.offset + sec.size);
  }

  /** The symbol table (.symtab), parsed on first use; index 0 is the null symbol. */
  get symbols(): readonly ElfSymbol[] {
    return (this.syms ??= this.readSymbols());
  }

  private readSymbols(): ElfSymbol[] {
    const src = this.source;
    const symtab = this.sections.find((s) => s.type === SHT_SYMTAB);
    if (!symtab) return [];
    const where = `section ${symtab.index} (${symtab.name})`;
    if (symtab.entsize !== SYM_SIZE) throw new FormatError(`${src}: ${where} has entry size ${symtab.entsize}, expected ${SYM_SIZE}`, symtab.offset);
    if (symtab.size % SYM_SIZE !== 0) throw new FormatError(`${src}: ${where} size ${symtab.size} is not a multiple of ${SYM_SIZE}`, symtab.offset);
    const strtab = this.sectionAt(symtab.link, `${where}: string table section`);
    if (strtab.type !== SHT_STRTAB) throw new FormatError(`${src}: ${where} links to section ${strtab.index}, which is not a string table`);
    const n = symtab.size / SYM_SIZE;
    const out: ElfSymbol[] = new Array(n);
    const dv = this.dv;
    for (let i = 0; i < n; i++) {
      const p = symtab.offset + i * SYM_SIZE;
      const nameOff = dv.getUint32(p, true);
      const name = nameOff < strtab.size ? cstring(this.bytes, strtab.offset + nameOff, strtab.offset + strtab.size) : undefined;
      if (name === undefined) throw new FormatError(`${src}: symbol ${i} has a bad name offset ${nameOff}`, p);
      const info = this.bytes[p + 4]!;
      out[i] = {
        index: i, name, value: this.u64(p + 8), size: this.u64(p + 16),
        bind: info >> 4, type: info & 0xf, visibility: this.bytes[p + 5]! & 3, shndx: dv.getUint16(p + 6, true),
      };
    }
    return out;
  }

  /** Symbol by index, with a FormatError when it is out of range. */
  symbol(index: number, what = 'symbol index'): ElfSymbol {
    const s = this.symbols[index];
    if (!s) throw new FormatError(`${this.source}: ${what} ${index} out of range (${this.symbols.length} symbols)`);
    return s;
  }

  /** The entries of a REL section. */
  rels(rel: ElfSection): ElfRel[] {
    const src = this.source;
    const where = `section ${rel.index} (${rel.name})`;
    if (rel.type !== SHT_REL) throw new FormatError(`${src}: ${where} is not a REL section (type ${rel.type})`);
    if (rel.entsize !== REL_SIZE) throw new FormatError(`${src}: ${where} has entry size ${rel.entsize}, expected ${REL_SIZE}`, rel.offset);
    if (rel.size % REL_SIZE !== 0) throw new FormatError(`${src}: ${where} size ${rel.size} is not a multiple of ${REL_SIZE}`, rel.offset);
    const n = rel.size / REL_SIZE;
    const out: ElfRel[] = new Array(n);
    const nsyms = this.symbols.length;
    for (let i = 0; i < n; i++) {
      const p = rel.offset + i * REL_SIZE;
      const r: ElfRel = { offset: this.u64(p), type: this.dv.getUint32(p + 8, true), sym: this.dv.getUint32(p + 12, true) };
      if (r.sym >= nsyms) throw new FormatError(`${src}: ${where} entry ${i} refers to symbol ${r.sym}, out of range (${nsyms} symbols)`, p);
      out[i] = r;
    }
    return out;
  }

  /** REL sections that apply to `target` (sh_info === target.index). */
  relSectionsFor(target: ElfSection): readonly ElfSection[] {
    if (!this.relIdx) {
      this.relIdx = new Map();
      for (const s of this.sections) {
        if (s.type !== SHT_REL) continue;
        let l = this.relIdx.get(s.info);
        if (!l) this.relIdx.set(s.info, (l = []));
        l.push(s);
      }
    }
    return this.relIdx.get(target.index) ?? [];
  }

  /** All relocations that apply to `target`, checked to lie inside it. */
  relocationsFor(target: ElfSection): ElfRel[] {
    const out: ElfRel[] = [];
    for (const rs of this.relSectionsFor(target)) {
      for (const r of this.rels(rs)) {
        if (r.offset >= target.size) {
          throw new FormatError(`${this.source}: section ${rs.index} (${rs.name}): relocation at ${r.offset} is outside ${target.name} (${target.size} bytes)`, rs.offset);
        }
        out.push(r);
      }
    }
    return out;
  }

  /** The `license` section as a string (up to its first NUL), if present. */
  get license(): string | undefined {
    const s = this.section('license');
    if (!s) return undefined;
    const d = this.data(s);
    const nul = d.indexOf(0);
    return new TextDecoder('utf-8', { fatal: false }).decode(nul < 0 ? d : d.subarray(0, nul));
  }

  /** The `version` section's u32 (legacy kprobe kernel version), if present. */
  get kernVersion(): number | undefined {
    const s = this.section('version');
    if (!s) return undefined;
    if (s.size !== 4) throw new FormatError(`${this.source}: section ${s.index} (version) has size ${s.size}, expected 4`, s.offset);
    const d = this.data(s);
    return (d[0]! | (d[1]! << 8) | (d[2]! << 16) | (d[3]! << 24)) >>> 0;
  }
}

export function parseElf(bytes: Uint8Array, source: string): ElfFile {
  return new ElfFile(bytes, source);
}
