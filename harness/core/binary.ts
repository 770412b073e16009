// An ELF executable or shared library as a uprobe attacher reads it: program headers (how a
// virtual address maps to a file offset), section headers, the symbol tables (.symtab and
// .dynsym, with the GNU symbol versions of .dynsym), and the name → file offset rules libbpf
// applies for uprobe/uretprobe ("func", "func@VER", "func@@VER") and uprobe.multi (a glob).
// Little-endian ELF64 only (x86-64, arm64). Pure: bytes in, answers out; every read is
// bounds-checked, so a malformed file raises a FormatError naming it, never a RangeError.
//
// harness/core/elf.ts reads BPF relocatable objects; this reader is its own because executables
// need what objects lack (program headers, dynamic symbols, versions) and other machines.

import { CoreMatrixError, FormatError } from './errors.js';
import { globToRegExp } from './glob.js';

export const ET_EXEC = 2;
export const ET_DYN = 3;
export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;

export const PT_LOAD = 1;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;

// The ELF constants a relocatable object shares with an executable come from elf.ts.
export { SHT_NOBITS, SHT_SYMTAB, STB_GLOBAL, STB_LOCAL, STB_WEAK, STT_FUNC } from './elf.js';
import { SHT_NOBITS, SHT_SYMTAB, STB_GLOBAL, STB_LOCAL, STB_WEAK, STT_FUNC } from './elf.js';
export const SHT_NOTE = 7;
export const SHT_DYNSYM = 11;
export const SHT_GNU_VERDEF = 0x6ffffffd;
export const SHT_GNU_VERSYM = 0x6fffffff;


const SHN_UNDEF = 0;
const SHN_LORESERVE = 0xff00;
/** .gnu.version: the symbol is only visible through its explicit version (func@VER, not func@@VER). */
const VERSYM_HIDDEN = 0x8000;

export type Arch = 'x86_64' | 'aarch64';

export interface Segment {
  type: number;
  /** PF_X | PF_W | PF_R. */
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

export interface Section {
  index: number;
  name: string;
  type: number;
  flags: number;
  addr: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

export interface BinarySymbol {
  name: string;
  value: number;
  size: number;
  bind: number;
  type: number;
  /** Section index (0: undefined; ≥ 0xff00: ABS, COMMON, ...). */
  shndx: number;
  table: '.symtab' | '.dynsym';
  /** .dynsym only: the version it is defined with (GLIBC_2.2.5), from .gnu.version_d. */
  version?: string;
  /** .dynsym only: a non-default version (visible as func@VER, not func@@VER). */
  hiddenVersion?: boolean;
}

/** A function symbol and the file offset of its first byte. */
export interface FunctionOffset {
  name: string;
  offset: number;
  table: '.symtab' | '.dynsym';
}

function cstring(bytes: Uint8Array, start: number, end: number): string | undefined {
  const nul = bytes.subarray(start, end).indexOf(0);
  if (nul < 0) return undefined;
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(start, start + nul));
}

export class ElfBinary {
  readonly type: number;
  readonly machine: number;
  readonly segments: readonly Segment[];
  readonly sections: readonly Section[];
  private readonly dv: DataView;
  private readonly tables = new Map<string, BinarySymbol[]>();

  constructor(
    readonly bytes: Uint8Array,
    /** Path or name, for messages. */
    readonly source: string,
  ) {
    const src = source;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.length < 64) throw new FormatError(`${src}: too short for an ELF header (${bytes.length} bytes)`);
    if (bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) throw new FormatError(`${src}: not an ELF file (bad magic)`, 0);
    if (bytes[4] !== 2) throw new FormatError(`${src}: not a 64-bit ELF file (class ${bytes[4]})`, 4);
    if (bytes[5] !== 1) throw new FormatError(`${src}: not a little-endian ELF file (data encoding ${bytes[5]})`, 5);
    this.type = this.dv.getUint16(16, true);
    this.machine = this.dv.getUint16(18, true);
    if (this.type !== ET_EXEC && this.type !== ET_DYN) throw new FormatError(`${src}: ELF type ${this.type} is neither an executable (ET_EXEC) nor a shared object (ET_DYN)`, 16);
    this.segments = this.readSegments();
    this.sections = this.readSections();
  }

  /** x86_64 or aarch64; undefined for other machines. */
  get arch(): Arch | undefined {
    return this.machine === EM_X86_64 ? 'x86_64' : this.machine === EM_AARCH64 ? 'aarch64' : undefined;
  }

  /** u64 at `off` as a number; a value past 2^53 is no address or size a real file has. */
  private u64(off: number, what: string): number {
    const hi = this.dv.getUint32(off + 4, true);
    if (hi >= 0x20_0000) throw new FormatError(`${this.source}: ${what} 0x${this.dv.getBigUint64(off, true).toString(16)} is out of range`, off);
    return hi * 0x1_0000_0000 + this.dv.getUint32(off, true);
  }

  private readSegments(): Segment[] {
    const dv = this.dv;
    const phoff = this.u64(32, 'program header offset');
    const phentsize = dv.getUint16(54, true);
    const phnum = dv.getUint16(56, true);
    if (phnum === 0) return [];
    if (phentsize !== 56) throw new FormatError(`${this.source}: unexpected program header size ${phentsize}`, 54);
    if (phoff + phnum * 56 > this.bytes.length) throw new FormatError(`${this.source}: program header table (${phnum} entries) extends past end of file`, 32);
    const out: Segment[] = [];
    for (let i = 0; i < phnum; i++) {
      const p = phoff + i * 56;
      out.push({
        type: dv.getUint32(p, true), flags: dv.getUint32(p + 4, true), offset: this.u64(p + 8, 'p_offset'),
        vaddr: this.u64(p + 16, 'p_vaddr'), filesz: this.u64(p + 32, 'p_filesz'), memsz: this.u64(p + 40, 'p_memsz'),
      });
    }
    return out;
  }

  private readSections(): Section[] {
    const dv = this.dv;
    const src = this.source;
    const shoff = this.u64(40, 'section header offset');
    const shentsize = dv.getUint16(58, true);
    let shnum = dv.getUint16(60, true);
    let shstrndx = dv.getUint16(62, true);
    if (shoff === 0) return [];
    if (shentsize !== 64) throw new FormatError(`${src}: unexpected section header size ${shentsize}`, 58);
    if (shoff + 64 > this.bytes.length) throw new FormatError(`${src}: section header table starts past end of file`, 40);
    if (shnum === 0) shnum = this.u64(shoff + 32, 'section count');
    if (shstrndx === 0xffff) shstrndx = dv.getUint32(shoff + 40, true);
    if (shnum > (this.bytes.length - shoff) / 64) throw new FormatError(`${src}: section header table (${shnum} entries) extends past end of file`, shoff);
    const secs: Section[] = [];
    for (let i = 0; i < shnum; i++) {
      const p = shoff + i * 64;
      const s: Section = {
        index: i, name: '', type: dv.getUint32(p + 4, true), flags: this.u64(p + 8, 'sh_flags'), addr: this.u64(p + 16, 'sh_addr'),
        offset: this.u64(p + 24, 'sh_offset'), size: this.u64(p + 32, 'sh_size'), link: dv.getUint32(p + 40, true), entsize: this.u64(p + 56, 'sh_entsize'),
      };
      if (s.type !== SHT_NOBITS && s.type !== 0 && s.offset + s.size > this.bytes.length) throw new FormatError(`${src}: section ${i} extends past end of file`, p);
      secs.push(s);
    }
    if (shstrndx >= shnum) throw new FormatError(`${src}: section name table index ${shstrndx} out of range (${shnum} sections)`, 62);
    const names = secs[shstrndx]!;
    for (const s of secs) {
      const off = dv.getUint32(shoff + s.index * 64, true);
      const name = off < names.size ? cstring(this.bytes, names.offset + off, names.offset + names.size) : undefined;
      if (name === undefined) throw new FormatError(`${src}: section ${s.index} has a bad name offset ${off}`, shoff + s.index * 64);
      s.name = name;
    }
    return secs;
  }

  /** The first section with this name. */
  section(name: string): Section | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** The bytes of a section (empty for SHT_NOBITS). Not a copy. */
  data(s: Section): Uint8Array {
    return s.type === SHT_NOBITS ? new Uint8Array(0) : this.bytes.subarray(s.offset, s.offset + s.size);
  }

  /** The PT_LOAD segment whose [vaddr, vaddr + memsz) holds `vaddr`. */
  loadSegmentAt(vaddr: number): Segment | undefined {
    return this.segments.find((s) => s.type === PT_LOAD && s.vaddr <= vaddr && vaddr < s.vaddr + s.memsz);
  }

  /** A virtual address → its file offset, through the PT_LOAD segment holding it (undefined: none does). */
  fileOffset(vaddr: number): number | undefined {
    const seg = this.loadSegmentAt(vaddr);
    return seg ? vaddr - seg.vaddr + seg.offset : undefined;
  }

  /** The symbols of `.symtab` or `.dynsym` (empty when the file has none); index 0 is the null symbol. */
  symbols(table: '.symtab' | '.dynsym'): readonly BinarySymbol[] {
    let syms = this.tables.get(table);
    if (!syms) this.tables.set(table, (syms = this.readSymbols(table)));
    return syms;
  }

  private readSymbols(table: '.symtab' | '.dynsym'): BinarySymbol[] {
    const src = this.source;
    const sec = this.sections.find((s) => s.type === (table === '.symtab' ? SHT_SYMTAB : SHT_DYNSYM));
    if (!sec) return [];
    const where = `section ${sec.index} (${sec.name})`;
    if (sec.entsize !== 24 || sec.size % 24 !== 0) throw new FormatError(`${src}: ${where}: entry size ${sec.entsize}, size ${sec.size}: not 24-byte symbols`, sec.offset);
    const strtab = this.sections[sec.link];
    if (!strtab || strtab.type !== 3) throw new FormatError(`${src}: ${where} links to section ${sec.link}, which is not a string table`);
    const versions = table === '.dynsym' ? this.readVersions(sec) : undefined;
    const n = sec.size / 24;
    const out: BinarySymbol[] = [];
    for (let i = 0; i < n; i++) {
      const p = sec.offset + i * 24;
      const nameOff = this.dv.getUint32(p, true);
      const name = nameOff < strtab.size ? cstring(this.bytes, strtab.offset + nameOff, strtab.offset + strtab.size) : undefined;
      if (name === undefined) throw new FormatError(`${src}: ${where}: symbol ${i} has a bad name offset ${nameOff}`, p);
      const info = this.bytes[p + 4]!;
      const sym: BinarySymbol = {
        name, value: this.u64(p + 8, 'st_value'), size: this.u64(p + 16, 'st_size'),
        bind: info >> 4, type: info & 0xf, shndx: this.dv.getUint16(p + 6, true), table,
      };
      const v = versions?.[i];
      if (v) {
        sym.hiddenVersion = v.hidden;
        if (v.name !== undefined) sym.version = v.name;
      }
      out.push(sym);
    }
    return out;
  }

  /** Per .dynsym index: its .gnu.version entry, named through .gnu.version_d (definitions only). */
  private readVersions(dynsym: Section): { name?: string; hidden: boolean }[] | undefined {
    const versym = this.sections.find((s) => s.type === SHT_GNU_VERSYM);
    if (!versym) return undefined;
    const count = dynsym.size / 24;
    if (versym.size < count * 2) throw new FormatError(`${this.source}: .gnu.version holds ${versym.size / 2} entries for ${count} dynamic symbols`, versym.offset);
    const names = new Map<number, string>();
    const verdef = this.sections.find((s) => s.type === SHT_GNU_VERDEF);
    if (verdef) {
      const strtab = this.sections[verdef.link];
      let off = 0;
      // Each Elf64_Verdef (20 bytes: ndx at 4, aux at 12, next at 16) points to its first Verdaux (name at 0).
      for (let guard = 0; off + 20 <= verdef.size && guard < 65536; guard++) {
        const p = verdef.offset + off;
        const ndx = this.dv.getUint16(p + 4, true);
        const aux = this.dv.getUint32(p + 12, true);
        const next = this.dv.getUint32(p + 16, true);
        if (strtab && off + aux + 8 <= verdef.size) {
          const nameOff = this.dv.getUint32(p + aux, true);
          const name = nameOff < strtab.size ? cstring(this.bytes, strtab.offset + nameOff, strtab.offset + strtab.size) : undefined;
          if (name !== undefined) names.set(ndx, name);
        }
        if (!next) break;
        off += next;
      }
    }
    const out: { name?: string; hidden: boolean }[] = [];
    for (let i = 0; i < count; i++) {
      const v = this.dv.getUint16(versym.offset + i * 2, true);
      const entry: { name?: string; hidden: boolean } = { hidden: (v & VERSYM_HIDDEN) !== 0 };
      const name = names.get(v & 0x7fff);
      if (name !== undefined) entry.name = name;
      out.push(entry);
    }
    return out;
  }

  /** The file offset of a defined symbol: st_value moved from its section's address to its section's file offset. */
  symbolOffset(sym: BinarySymbol): number | undefined {
    if (sym.shndx === SHN_UNDEF || sym.shndx >= SHN_LORESERVE) return undefined;
    const sec = this.sections[sym.shndx];
    return sec ? sym.value - sec.addr + sec.offset : undefined;
  }

  /**
   * The file offset of function `name` ("func", "func@VER" or "func@@VER"), as libbpf finds a
   * uprobe's function: .dynsym first, then .symtab (the first table with a match wins); STT_FUNC
   * symbols defined in a section; a name with a version matches that version only (.dynsym: its
   * .gnu.version_d name; .symtab: the full "func@VER" name). Several matches at one offset are
   * one; at different offsets, a weak one gives way to a global or local one, and two non-weak
   * ones are ambiguous (an error).
   */
  functionOffset(name: string): FunctionOffset {
    const at = name.indexOf('@');
    const base = at < 0 ? name : name.slice(0, at);
    const version = at < 0 ? undefined : name.slice(name[at + 1] === '@' ? at + 2 : at + 1);
    let atZero: string | undefined;
    for (const table of ['.dynsym', '.symtab'] as const) {
      let found: { sym: BinarySymbol; offset: number } | undefined;
      for (const sym of this.symbols(table)) {
        if (sym.type !== STT_FUNC || !sym.name.startsWith(base)) continue;
        const rest = sym.name.slice(base.length);
        if (rest !== '' && !rest.startsWith('@')) continue;
        if (version !== undefined && (table === '.dynsym' ? sym.version !== version : sym.name !== name)) continue;
        const offset = this.symbolOffset(sym);
        if (offset === undefined) continue;
        if (found && found.offset !== offset) {
          if (found.sym.bind !== STB_WEAK && sym.bind !== STB_WEAK)
            throw new CoreMatrixError(`${this.source}: function '${name}' is ambiguous in ${table}: '${found.sym.name}' at file offset 0x${found.offset.toString(16)} and '${sym.name}' at 0x${offset.toString(16)}`);
          if (sym.bind === STB_WEAK) continue;
        }
        if (!found || found.offset !== offset) found = { sym, offset };
      }
      // An offset of 0 is no function (libbpf goes on to the next table).
      if (found && found.offset > 0) return { name: found.sym.name, offset: found.offset, table };
      if (found) atZero = table;
    }
    throw new CoreMatrixError(`${this.source}: ${atZero ? `function '${name}' is at file offset 0 in ${atZero}` : `no function '${name}' in .dynsym or .symtab`}`);
  }

  /**
   * The functions whose names match glob `pattern` (`*` any run, `?` one character), as libbpf
   * resolves a uprobe.multi pattern: .symtab first, then .dynsym only if .symtab matched nothing;
   * STT_FUNC symbols defined in a section, in table order.
   */
  functionsMatching(pattern: string): FunctionOffset[] {
    const re = globToRegExp(pattern);
    for (const table of ['.symtab', '.dynsym'] as const) {
      const out: FunctionOffset[] = [];
      for (const sym of this.symbols(table)) {
        if (sym.type !== STT_FUNC || !re.test(sym.name)) continue;
        const offset = this.symbolOffset(sym);
        if (offset !== undefined) out.push({ name: sym.name, offset, table });
      }
      if (out.length) return out;
    }
    return [];
  }
}

/** Parses an executable or shared library. */
export function parseBinary(bytes: Uint8Array, source: string): ElfBinary {
  return new ElfBinary(bytes, source);
}

/** A shared library's file name as libbpf tells one from an executable's: ends in ".so" or has ".so.". */
export function isLibraryName(file: string): boolean {
  return file.endsWith('.so') || file.includes('.so.');
}

/**
 * Where libbpf looks for a binary named without a '/': a library (isLibraryName) in
 * LD_LIBRARY_PATH, /usr/lib64, /usr/lib and the Debian multiarch directory of the architecture;
 * an executable in PATH, /usr/bin, /usr/sbin. Empty entries are skipped. The caller tries each
 * `dir/file` in order (readable, and executable for an executable).
 */
export function binarySearchPath(file: string, env: { PATH?: string; LD_LIBRARY_PATH?: string }, arch: Arch = 'x86_64'): string[] {
  const split = (s: string | undefined) => (s ?? '').split(':').filter(Boolean);
  const dirs = isLibraryName(file)
    ? [...split(env.LD_LIBRARY_PATH), '/usr/lib64', '/usr/lib', arch === 'x86_64' ? '/lib/x86_64-linux-gnu' : '/lib/aarch64-linux-gnu']
    : [...split(env.PATH), '/usr/bin', '/usr/sbin'];
  return dirs.map((d) => `${d.replace(/\/+$/, '')}/${file}`);
}
