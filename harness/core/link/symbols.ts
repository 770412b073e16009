// Symbol resolution. Local symbols stay each object's own (two files may both have a static
// `subprog`); a section's symbols become one per output section. Global and weak symbols are
// matched by name across objects: a strong definition beats a weak one, the first weak one beats
// later weak ones, two strong definitions are an error, and an extern (undefined) symbol takes
// whichever definition wins. Binding and visibility are the strictest seen: one strong mention
// (even an extern) makes the result strong, one `__hidden` mention makes it hidden. Every mention
// after the first must describe the same thing in BTF (compat.ts) and live in the same section.

import { type ElfSymbol, SHN_ABS, SHN_COMMON, SHN_LORESERVE, SHN_UNDEF, STB_GLOBAL, STB_LOCAL, STB_WEAK, STT_NOTYPE, STT_SECTION } from '../elf.js';
import { Kind } from '../btf/kinds.js';
import { mapMismatch, typeMismatch } from './compat.js';
import { LinkError } from './errors.js';
import type { BtfGlobal, InputObject } from './input.js';
import type { Chunk, OutputSection, SectionLayout } from './sections.js';

export interface OutputSymbol {
  name: string;
  bind: number;
  type: number;
  visibility: number;
  /** The output section it is defined in; undefined for externs and absolute symbols. */
  section?: OutputSection;
  /** SHN_UNDEF or SHN_ABS when `section` is undefined. */
  special: number;
  value: number;
  size: number;
  /** Its index in the output symbol table, set by SymbolTable.finish(). */
  index: number;
}

/** One object's mention of a global: its definition or an extern declaration. */
export interface Declaration {
  input: InputObject;
  sym: ElfSymbol;
  /** Where a definition went. */
  chunk?: Chunk;
  btf: BtfGlobal;
  weak: boolean;
}

export interface GlobalSymbol {
  name: string;
  declarations: Declaration[];
  /** The winning definition; undefined while every mention is an extern. */
  definition?: Declaration;
  /** The section a variable lives in, from a definition or an extern's DATASEC ('' while unknown). */
  section: string;
  sectionFrom: string;
  out: OutputSymbol;
}

/** BTF DATASEC clang puts plain `extern` variables in: no section of its own. */
const EXTERN_DATASEC = '.extern';

export class SymbolTable {
  readonly globals = new Map<string, GlobalSymbol>();
  private readonly locals: OutputSymbol[] = [];
  private readonly sectionSymbols = new Map<OutputSection, OutputSymbol>();
  /** Per input: its symbol index → the output symbol, or the name of a dropped global. */
  private readonly maps = new Map<InputObject, (OutputSymbol | string | undefined)[]>();

  constructor(private readonly layout: SectionLayout) {}

  add(input: InputObject): void {
    const map: (OutputSymbol | string | undefined)[] = [];
    this.maps.set(input, map);
    for (const sym of input.elf.symbols) {
      if (sym.index === 0) continue;
      if (sym.shndx === SHN_COMMON) throw new LinkError(`${input.name}: symbol '${sym.name}' is a common symbol (compile without -fcommon)`);
      const inSection = sym.shndx !== SHN_UNDEF && sym.shndx < SHN_LORESERVE;
      const chunk = inSection ? this.layout.chunk(input, sym.shndx) : undefined;
      if (inSection && (!chunk || chunk.duplicate)) {
        // In a dropped section (DWARF), or in a `license` copy that was not appended.
        if (sym.bind !== STB_LOCAL) map[sym.index] = sym.name;
        continue;
      }
      if (sym.type === STT_SECTION) {
        map[sym.index] = this.sectionSymbol(chunk!.out);
        continue;
      }
      if (sym.bind === STB_LOCAL) {
        const out: OutputSymbol = {
          name: sym.name, bind: STB_LOCAL, type: sym.type, visibility: sym.visibility, special: chunk ? SHN_UNDEF : sym.shndx,
          value: (chunk?.offset ?? 0) + sym.value, size: sym.size, index: 0,
        };
        if (chunk) out.section = chunk.out;
        this.locals.push(out);
        map[sym.index] = out;
        continue;
      }
      map[sym.index] = this.resolve(input, sym, chunk).out;
    }
  }

  private sectionSymbol(out: OutputSection): OutputSymbol {
    let s = this.sectionSymbols.get(out);
    if (!s) this.sectionSymbols.set(out, (s = { name: '', bind: STB_LOCAL, type: STT_SECTION, visibility: 0, section: out, special: SHN_UNDEF, value: 0, size: 0, index: 0 }));
    return s;
  }

  private resolve(input: InputObject, sym: ElfSymbol, chunk: Chunk | undefined): GlobalSymbol {
    const name = sym.name;
    const btf = input.globals.get(name);
    // Matching a global across objects needs its type, so a global without one is refused, as
    // libbpf's linker refuses it (a symbol only inline assembly names, say).
    if (!btf) throw new LinkError(`${input.name}: global '${name}' has no BTF variable or function describing it, so it cannot be linked`);
    const decl: Declaration = { input, sym, btf, weak: sym.bind === STB_WEAK };
    if (chunk) decl.chunk = chunk;
    const defined = sym.shndx !== SHN_UNDEF;
    if (defined && !chunk && sym.shndx !== SHN_ABS) throw new LinkError(`${input.name}: global '${name}' is in section ${sym.shndx}, which holds no code or data`);
    // Where a variable lives must agree across mentions (its DATASEC entry says so); a function
    // may be defined in any code section.
    const variable = input.btf.kind(btf.id) === Kind.VAR;
    const section = chunk && variable ? chunk.out.name : !chunk && btf.datasec !== EXTERN_DATASEC ? btf.datasec : '';

    let g = this.globals.get(name);
    if (!g) {
      g = {
        name, declarations: [], section, sectionFrom: input.name,
        out: { name, bind: sym.bind, type: STT_NOTYPE, visibility: sym.visibility, special: SHN_UNDEF, value: 0, size: 0, index: 0 },
      };
      this.globals.set(name, g);
    } else {
      this.check(g, decl, section, defined);
    }
    g.declarations.push(decl);
    if (!g.section && section) {
      g.section = section;
      g.sectionFrom = input.name;
    }
    if (defined && (!g.definition || (g.definition.weak && !decl.weak))) g.definition = decl;
    if (sym.bind === STB_GLOBAL) g.out.bind = STB_GLOBAL;
    g.out.visibility = Math.max(g.out.visibility, sym.visibility);
    return g;
  }

  /** A later mention of `g` against what is known of it: no second strong definition, same section, same BTF. */
  private check(g: GlobalSymbol, decl: Declaration, section: string, defined: boolean): void {
    const here = decl.input.name;
    const name = g.name;
    const def = g.definition;
    if (defined && def && !def.weak && !decl.weak) throw new LinkError(`${here}: symbol '${name}' defined in both ${def.input.name} and ${here}`);
    if (section && g.section && section !== g.section) throw new LinkError(`${here}: global '${name}' is in section '${section}' here but in '${g.section}' in ${g.sectionFrom}`);
    const ref = def ?? g.declarations[0]!;
    const sides = { a: ref.input.name, b: here };
    const why = (section || g.section) === '.maps'
      ? mapMismatch(ref.input.btf, ref.btf.id, decl.input.btf, decl.btf.id, name, sides)
      : typeMismatch(ref.input.btf, ref.btf.id, decl.input.btf, decl.btf.id, sides);
    if (why) throw new LinkError(`${here}: global '${name}' does not match its ${ref === def ? 'definition' : 'declaration'} in ${ref.input.name}: ${why}`);
  }

  /** The output symbol a relocation of `input` against its symbol `index` now names. */
  target(input: InputObject, index: number): OutputSymbol | undefined {
    const m = this.maps.get(input)?.[index];
    return typeof m === 'string' ? this.globals.get(m)?.out : m;
  }

  /**
   * The output symbol table, in ELF order: the null symbol, section symbols and local symbols,
   * then the globals (with their winning definitions filled in). Sets every symbol's `index`.
   * Returns the table and the index of the first global.
   */
  finish(): { symbols: OutputSymbol[]; firstGlobal: number } {
    for (const g of this.globals.values()) {
      const d = g.definition;
      if (!d) continue;
      g.out.type = d.sym.type;
      g.out.value = (d.chunk?.offset ?? 0) + d.sym.value;
      g.out.size = d.sym.size;
      if (d.chunk) g.out.section = d.chunk.out;
      else g.out.special = d.sym.shndx;
    }
    const nul: OutputSymbol = { name: '', bind: STB_LOCAL, type: STT_NOTYPE, visibility: 0, special: SHN_UNDEF, value: 0, size: 0, index: 0 };
    const local = [nul, ...this.sectionSymbols.values(), ...this.locals];
    const symbols = [...local, ...[...this.globals.values()].map((g) => g.out)];
    symbols.forEach((s, i) => (s.index = i));
    return { symbols, firstGlobal: local.length };
  }
}
