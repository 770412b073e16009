// One input of the static linker, read and checked: which of its sections are linked (code and
// data), which relocation sections go with them, which are dropped (DWARF, address-significance
// tables, string tables, and .BTF/.BTF.ext, which are read here instead), its BTF and .BTF.ext,
// and where its BTF describes each non-static variable and function.

import { type Btf, parseBtf } from '../btf/btf.js';
import { type BtfExt, parseBtfExt } from '../btf/ext.js';
import { BTF_MAGIC, FUNC_STATIC, Kind, VAR_GLOBAL_ALLOCATED, VAR_STATIC } from '../btf/kinds.js';
import {
  type ElfFile, type ElfSection, type ElfSymbol, parseElf, EM_BPF, ET_REL, R_BPF_64_32, R_BPF_64_64, R_BPF_64_ABS32, R_BPF_64_ABS64,
  R_BPF_64_NODYLD32, SHF_EXECINSTR, SHN_LORESERVE, SHN_UNDEF, SHT_NOBITS, SHT_NULL, SHT_PROGBITS, SHT_REL, SHT_STRTAB, SHT_SYMTAB,
  STB_GLOBAL, STB_LOCAL, STB_WEAK, STT_NOTYPE, STT_OBJECT, STV_DEFAULT, STV_HIDDEN,
} from '../elf.js';
import { CoreMatrixError } from '../errors.js';
import { INSN_SIZE } from '../insn.js';
import { LinkError } from './errors.js';

export interface LinkInput {
  /** A file name, for messages (`linked1.o`). */
  name: string;
  bytes: Uint8Array;
}

/** LLVM's address-significance table: only meaningful to a linker that does identical-code folding. */
export const SHT_LLVM_ADDRSIG = 0x6fff4c03;

/** What becomes of an input section: linked into the output, carried as relocations, or dropped. */
export type SectionRole = 'content' | 'relocations' | 'dropped';

export interface InputSection {
  elf: ElfSection;
  role: SectionRole;
}

/** A non-static VAR or FUNC of an input's BTF, and the DATASEC that lists it ('' when none does). */
export interface BtfGlobal {
  id: number;
  datasec: string;
}

/** A DATASEC of an input's BTF, with the offsets of its global variables taken from the ELF symbols. */
export interface InputDatasec {
  id: number;
  name: string;
  vars: { type: number; offset: number; size: number }[];
}

export interface InputObject {
  name: string;
  elf: ElfFile;
  /** By ELF section index (index 0, the null section, is dropped). */
  sections: InputSection[];
  btf: Btf;
  ext?: BtfExt;
  /** Non-static VARs and FUNCs of the BTF by name. */
  globals: Map<string, BtfGlobal>;
  datasecs: InputDatasec[];
}

/** .BTF.ext record sizes the linker writes; an input with longer records would lose their tail. */
const EXT_RECORD_SIZES = { func_info: 8, line_info: 16, core_relo: 16 };
const RELOCATION_TYPES = new Set([R_BPF_64_64, R_BPF_64_32, R_BPF_64_ABS64, R_BPF_64_ABS32, R_BPF_64_NODYLD32]);

export const isExecutable = (s: ElfSection) => s.type === SHT_PROGBITS && (s.flags & SHF_EXECINSTR) !== 0;

/** Reads and checks one input object. */
export function readInput(input: LinkInput): InputObject {
  const src = input.name;
  let elf: ElfFile;
  try {
    elf = parseElf(input.bytes, src);
  } catch (e) {
    if (e instanceof CoreMatrixError) throw new LinkError(e.message);
    throw e;
  }
  if (elf.machine !== EM_BPF) throw new LinkError(`${src}: not a BPF object (ELF machine ${elf.machine})`);
  if (elf.type !== ET_REL) throw new LinkError(`${src}: not a relocatable object (ELF type ${elf.type}); only compiler output (.o) can be linked`);
  if (elf.sections.filter((s) => s.type === SHT_SYMTAB).length !== 1) throw new LinkError(`${src}: needs exactly one symbol table`);

  const sections = elf.sections.map((s): InputSection => ({ elf: s, role: roleOf(s, src) }));
  // A relocation section follows its target: dropped with it, and otherwise checked.
  for (const s of sections) {
    if (s.role !== 'relocations') continue;
    const r = s.elf;
    const target = sections[r.info];
    if (r.info === 0 || !target) throw new LinkError(`${src}: section ${r.index} (${r.name}) relocates section ${r.info}, which does not exist`);
    if (r.name !== `.rel${target.elf.name}`) throw new LinkError(`${src}: section ${r.index} (${r.name}) relocates '${target.elf.name}': its name should be '.rel${target.elf.name}'`);
    if (target.role === 'dropped') s.role = 'dropped';
    else if (target.role !== 'content') throw new LinkError(`${src}: section ${r.index} (${r.name}) relocates a section that holds no code or data`);
  }
  const names = new Set<string>();
  for (const s of sections) {
    const e = s.elf;
    if (s.role === 'dropped' || e.index === 0) continue;
    // Sections are matched by name (across objects, and by .BTF.ext and DATASECs within one).
    if (names.has(e.name)) throw new LinkError(`${src}: two sections named '${e.name}'`);
    names.add(e.name);
    if (e.addralign !== 0 && (e.addralign & (e.addralign - 1)) !== 0) throw new LinkError(`${src}: section ${e.index} (${e.name}) has alignment ${e.addralign}, not a power of two`);
    if (isExecutable(e) && e.size % INSN_SIZE !== 0) throw new LinkError(`${src}: section ${e.index} (${e.name}) is ${e.size} bytes, not whole instructions`);
  }
  checkSymbols(elf, sections);
  checkRelocations(elf, sections);

  const btfSec = elf.section('.BTF');
  if (!btfSec) throw new LinkError(`${src}: no .BTF section (compile with clang -g): the linker matches global symbols by their BTF`);
  const wrapFormat = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (e instanceof CoreMatrixError && !(e instanceof LinkError)) throw new LinkError(e.message);
      throw e;
    }
  };
  const btf = wrapFormat(() => parseBtf(elf.data(btfSec), { source: `${src}: .BTF` }));
  checkBtf(btf, src);
  const extSec = elf.section('.BTF.ext');
  const ext = extSec ? wrapFormat(() => parseBtfExt(elf.data(extSec), btf, src)) : undefined;
  if (extSec && ext) checkExtRecordSizes(elf.data(extSec), ext, src);

  return { name: src, elf, sections, btf, ...(ext ? { ext } : {}), globals: btfGlobals(btf, src), datasecs: datasecs(elf, sections, btf, src) };
}

function roleOf(s: ElfSection, src: string): SectionRole {
  if (s.index === 0 || s.type === SHT_NULL) return 'dropped';
  const name = s.name;
  if (name === '') throw new LinkError(`${src}: section ${s.index} has no name`);
  if (s.type === SHT_STRTAB || s.type === SHT_SYMTAB || s.type === SHT_LLVM_ADDRSIG) return 'dropped';
  if (name.startsWith('.debug_') || name === '.BTF' || name === '.BTF.ext') return 'dropped';
  if (s.type === SHT_REL) return 'relocations';
  if (s.type === SHT_PROGBITS || s.type === SHT_NOBITS) {
    // No subprograms: clang still emits an empty .text.
    if (name === '.text' && s.size === 0) return 'dropped';
    return 'content';
  }
  throw new LinkError(`${src}: section ${s.index} (${name}) has type ${s.type}, which a BPF object does not use (RELA relocations are not BPF's)`);
}

function checkSymbols(elf: ElfFile, sections: InputSection[]): void {
  const src = elf.source;
  for (const sym of elf.symbols) {
    if (sym.index === 0) continue;
    const what = `${src}: symbol ${sym.index} ('${sym.name}')`;
    if (sym.bind !== STB_LOCAL && sym.bind !== STB_GLOBAL && sym.bind !== STB_WEAK) throw new LinkError(`${what} has binding ${sym.bind}; only local, global and weak link`);
    if (sym.visibility !== STV_DEFAULT && sym.visibility !== STV_HIDDEN) throw new LinkError(`${what} has visibility ${sym.visibility}; only default and hidden link`);
    if (sym.shndx === SHN_UNDEF) {
      if (sym.type !== STT_NOTYPE || sym.bind === STB_LOCAL || sym.value !== 0 || sym.size !== 0) throw new LinkError(`${what} is undefined but not a plain extern (global, no type, no value)`);
      continue;
    }
    if (sym.shndx < SHN_LORESERVE && !sections[sym.shndx]) throw new LinkError(`${what} is in section ${sym.shndx}, which does not exist`);
  }
}

function checkRelocations(elf: ElfFile, sections: InputSection[]): void {
  const src = elf.source;
  const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)!;
  for (const s of sections) {
    if (s.role !== 'relocations') continue;
    const r = s.elf;
    if (r.link !== symtab.index) throw new LinkError(`${src}: section ${r.index} (${r.name}) does not use the symbol table (link ${r.link})`);
    const target = sections[r.info]!.elf;
    let entries;
    try {
      entries = elf.rels(r);
    } catch (e) {
      if (e instanceof CoreMatrixError) throw new LinkError(e.message);
      throw e;
    }
    entries.forEach((e, i) => {
      const where = `${src}: ${r.name} entry ${i}`;
      if (!RELOCATION_TYPES.has(e.type)) throw new LinkError(`${where} has relocation type ${e.type}, which BPF objects do not use`);
      if (e.sym === 0) throw new LinkError(`${where} refers to the null symbol`);
      if (e.offset >= target.size) throw new LinkError(`${where} is at byte ${e.offset}, past the end of ${target.name} (${target.size} bytes)`);
      if (isExecutable(target) && e.offset % INSN_SIZE !== 0) throw new LinkError(`${where} is at byte ${e.offset} of ${target.name}, not an instruction boundary`);
    });
  }
}

function checkBtf(btf: Btf, src: string): void {
  for (let id = 1; id < btf.count; id++) {
    const k = btf.kind(id);
    // Our BTF writer has no place for these flags (attribute-style tags of newer compilers).
    if ((k === Kind.DECL_TAG || k === Kind.TYPE_TAG) && btf.kindFlag(id)) {
      throw new LinkError(`${src}: BTF type #${id} (${k === Kind.DECL_TAG ? 'DECL_TAG' : 'TYPE_TAG'} '${btf.name(id)}') has its kind flag set, which this linker cannot carry over`);
    }
  }
}

/** The record sizes the header of a .BTF.ext declares; the linker writes the minimal records only. */
function checkExtRecordSizes(bytes: Uint8Array, ext: BtfExt, src: string): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint16(0, true) !== BTF_MAGIC) return; // parseBtfExt already refused it
  const hdrLen = dv.getUint32(4, true);
  const sizes: [string, number][] = [['func_info', ext.funcInfoRecSize], ['line_info', ext.lineInfoRecSize]];
  if (hdrLen >= 32 && dv.getUint32(28, true) >= 4) sizes.push(['core_relo', dv.getUint32(hdrLen + dv.getUint32(24, true), true)]);
  for (const [what, size] of sizes) {
    const want = EXT_RECORD_SIZES[what as keyof typeof EXT_RECORD_SIZES];
    if (size !== 0 && size !== want) throw new LinkError(`${src}: .BTF.ext ${what} records are ${size} bytes; this linker knows the ${want}-byte ones only`);
  }
}

/** A VAR or FUNC another object can see (global or extern linkage). */
export function isNonStatic(btf: Btf, id: number): boolean {
  const k = btf.kind(id);
  if (k === Kind.VAR) return btf.typeOf(id, Kind.VAR).linkage !== VAR_STATIC;
  if (k === Kind.FUNC) return btf.vlen(id) !== FUNC_STATIC;
  return false;
}

/** Non-static VARs and FUNCs by name: the one a DATASEC lists, else the free-floating one (extern functions). */
function btfGlobals(btf: Btf, src: string): Map<string, BtfGlobal> {
  const out = new Map<string, BtfGlobal>();
  const floating = new Map<string, number>();
  for (let id = 1; id < btf.count; id++) {
    const k = btf.kind(id);
    if (k === Kind.DATASEC) {
      const ds = btf.typeOf(id, Kind.DATASEC);
      for (const v of ds.vars) {
        if (!isNonStatic(btf, v.type)) continue;
        const name = btf.name(v.type);
        const seen = out.get(name);
        if (seen && seen.id !== v.type) throw new LinkError(`${src}: global '${name}' is described twice in BTF (types #${seen.id} and #${v.type})`);
        out.set(name, { id: v.type, datasec: ds.name });
      }
    } else if (isNonStatic(btf, id)) {
      const name = btf.name(id);
      const seen = floating.get(name);
      if (seen !== undefined && seen !== id) throw new LinkError(`${src}: global '${name}' is described twice in BTF (types #${seen} and #${id})`);
      floating.set(name, id);
    }
  }
  for (const [name, id] of floating) {
    const listed = out.get(name);
    if (listed && listed.id !== id) throw new LinkError(`${src}: global '${name}' is described twice in BTF (types #${listed.id} and #${id})`);
    if (!listed) out.set(name, { id, datasec: '' });
  }
  return out;
}

/**
 * The input's DATASECs. clang leaves a global variable's offset to the linker (0 in the object):
 * it is taken from the variable's ELF symbol, as for any linker; static variables carry theirs.
 */
function datasecs(elf: ElfFile, sections: InputSection[], btf: Btf, src: string): InputDatasec[] {
  const out: InputDatasec[] = [];
  const objects = new Map<string, ElfSymbol>();
  for (const sym of elf.symbols) {
    const key = `${sym.shndx}:${sym.name}`;
    if (sym.type === STT_OBJECT && !objects.has(key)) objects.set(key, sym);
  }
  for (let id = 1; id < btf.count; id++) {
    if (btf.kind(id) !== Kind.DATASEC) continue;
    const ds = btf.typeOf(id, Kind.DATASEC);
    const sec = sections.find((s) => s.role === 'content' && s.elf.name === ds.name)?.elf;
    const vars = ds.vars.map((v) => {
      const entry = { ...v };
      const t = btf.type(v.type);
      if (sec && t.kind === Kind.VAR && t.linkage === VAR_GLOBAL_ALLOCATED) {
        const sym = objects.get(`${sec.index}:${t.name}`);
        if (!sym) throw new LinkError(`${src}: variable '${t.name}' of DATASEC '${ds.name}' has no symbol in section ${sec.name}`);
        entry.offset = sym.value;
      }
      return entry;
    });
    out.push({ id, name: ds.name, vars });
  }
  return out;
}
