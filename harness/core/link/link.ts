// The static linker: several BPF objects (clang's .o files) in, one relocatable BPF object out, as
// `bpftool gen object out.o a.o b.o` (libbpf's linker) makes it, so that a program built from
// several .c files loads as its tool ships it. The steps, each in its own module:
//   input.ts      read and check each object
//   sections.ts   append same-named code and data sections
//   symbols.ts    resolve global symbols (strong over weak, externs to definitions)
//   here          rewrite relocations for the new offsets and symbol indices
//   merge-btf.ts  one BTF: types renumbered, globals once, DATASECs rebuilt
//   dedup.ts      collapse the types the objects share
//   ext.ts        .BTF.ext records moved with their sections
//   write.ts      the ELF file

import { BtfBuilder } from '../btf/writer.js';
import { SHT_PROGBITS, SHT_REL, SHT_STRTAB, SHT_SYMTAB, STB_GLOBAL, STT_SECTION, STV_HIDDEN } from '../elf.js';
import { CALL, INSN_SIZE } from '../insn.js';
import { dedupTypes } from './dedup.js';
import { LinkError } from './errors.js';
import { encodeExt, mergeExt } from './ext.js';
import { isExecutable, readInput, type InputObject, type LinkInput } from './input.js';
import { mergeBtf } from './merge-btf.js';
import { SectionLayout, type OutputSection } from './sections.js';
import { SymbolTable, type OutputSymbol } from './symbols.js';
import { encodeRels, encodeSymbols, REL_SIZE, StringTable, SYM_SIZE, writeElf, type SectionOut } from './write.js';

const SHF_INFO_LINK = 0x40;

/** A global the linker resolved: where it is defined (if anywhere) and who else names it. */
export interface ResolvedGlobal {
  name: string;
  /** The input whose definition won; undefined when every mention is an extern (the loader resolves it: kfuncs, kconfig). */
  definedIn?: string;
  /** Inputs that mention it (definitions that lost and externs included), in input order. */
  mentionedIn: string[];
  weak: boolean;
  hidden: boolean;
}

export interface LinkResult {
  /** The linked object. */
  bytes: Uint8Array;
  globals: ResolvedGlobal[];
  /** BTF types of all inputs together, and of the output after de-duplication. */
  btfTypes: { inputs: number; output: number };
}

interface Rel {
  offset: number;
  sym: OutputSymbol;
  type: number;
}

/** Links `inputs` (in this order: it decides which weak definition wins and the output's layout). */
export function linkObjects(inputs: readonly LinkInput[]): LinkResult {
  if (inputs.length === 0) throw new LinkError('link: no input objects');
  // The same file twice gets told apart in messages.
  const named = inputs.map((x, i) => (inputs.filter((y) => y.name === x.name).length > 1 ? { ...x, name: `${x.name} (input ${i + 1})` } : x));
  const objects = named.map(readInput);
  const layout = new SectionLayout();
  for (const o of objects) layout.add(o);
  const symbols = new SymbolTable(layout);
  for (const o of objects) symbols.add(o);
  const table = symbols.finish();

  const data = new Map<OutputSection, Uint8Array>(layout.sections.map((s) => [s, layout.bytes(s)]));
  const rels = new Map<OutputSection, Rel[]>();
  for (const o of objects) relocate(o, layout, symbols, data, rels);

  const merged = mergeBtf(objects, layout, symbols);
  const dedup = dedupTypes(merged.types);
  const typeId = (o: InputObject, id: number) => dedup.map[merged.ids.get(o)![id]!]!;
  const ext = mergeExt(objects, layout, typeId);
  const btf = new BtfBuilder();
  for (const t of dedup.types) btf.add(t);
  const extBytes = encodeExt(ext, layout.sections.map((s) => s.name), (s) => btf.addString(s));
  const btfBytes = btf.bytes();

  const bytes = writeObject(layout, data, rels, table, btfBytes, extBytes);
  const globals = [...symbols.globals.values()].map((g): ResolvedGlobal => {
    const r: ResolvedGlobal = {
      name: g.name, mentionedIn: [...new Set(g.declarations.map((d) => d.input.name))], weak: g.out.bind !== STB_GLOBAL, hidden: g.out.visibility === STV_HIDDEN,
    };
    if (g.definition) r.definedIn = g.definition.input.name;
    return r;
  });
  return { bytes, globals, btfTypes: { inputs: objects.reduce((n, o) => n + o.btf.count - 1, 0), output: dedup.types.length } };
}

/**
 * Moves `input`'s relocations to the output: offsets shifted with their section, symbols renamed
 * to the output's. A relocation against a section symbol keeps its target in the instruction's
 * immediate, relative to the input section: that is shifted by where the section went (in
 * instructions for a call, in bytes for a 64-bit load), since the output has one symbol per section.
 */
function relocate(input: InputObject, layout: SectionLayout, symbols: SymbolTable, data: Map<OutputSection, Uint8Array>, rels: Map<OutputSection, Rel[]>): void {
  for (const s of input.sections) {
    if (s.role !== 'relocations') continue;
    const target = layout.chunk(input, s.elf.info)!;
    if (target.duplicate) continue;
    const code = data.get(target.out)!;
    const dv = new DataView(code.buffer, code.byteOffset, code.byteLength);
    let list = rels.get(target.out);
    if (!list) rels.set(target.out, (list = []));
    input.elf.rels(s.elf).forEach((r, i) => {
      const where = `${input.name}: ${s.elf.name} entry ${i}`;
      const sym = input.elf.symbol(r.sym);
      const out = symbols.target(input, r.sym);
      if (!out) throw new LinkError(`${where} refers to '${sym.name || `section ${sym.shndx}`}', which is not linked`);
      const offset = target.offset + r.offset;
      if (sym.type === STT_SECTION) {
        const ref = layout.chunk(input, sym.shndx)!;
        if (!isExecutable(target.section)) throw new LinkError(`${where}: a relocation against section symbol '${ref.section.name}' in data section '${target.section.name}' cannot be moved (libbpf's linker refuses it too)`);
        const call = code[offset] === CALL;
        if (call && ref.offset % INSN_SIZE !== 0) throw new LinkError(`${where}: call into '${ref.section.name}', which was placed at byte ${ref.offset}, not an instruction boundary`);
        const imm = dv.getInt32(offset + 4, true) + (call ? ref.offset / INSN_SIZE : ref.offset);
        if (imm > 0x7fff_ffff || imm < -0x8000_0000) throw new LinkError(`${where}: offset into '${ref.section.name}' no longer fits the instruction's 32-bit immediate`);
        dv.setInt32(offset + 4, imm, true);
      }
      list.push({ offset, sym: out, type: r.type });
    });
  }
}

function writeObject(layout: SectionLayout, data: Map<OutputSection, Uint8Array>, rels: Map<OutputSection, Rel[]>, table: { symbols: OutputSymbol[]; firstGlobal: number }, btf: Uint8Array, ext: Uint8Array | undefined): Uint8Array {
  const sections: SectionOut[] = [];
  const indexOf = new Map<OutputSection, number>();
  const relFor: { out: OutputSection; at: number }[] = [];
  for (const s of layout.sections) {
    indexOf.set(s, sections.length + 1);
    sections.push({ name: s.name, type: s.type, flags: s.flags, addralign: s.align, entsize: s.entsize, link: 0, info: 0, data: data.get(s)!, size: s.size });
    if (rels.get(s)?.length) {
      relFor.push({ out: s, at: sections.length });
      sections.push({ name: `.rel${s.name}`, type: SHT_REL, flags: SHF_INFO_LINK, addralign: 8, entsize: REL_SIZE, link: 0, info: indexOf.get(s)!, data: new Uint8Array(0), size: 0 });
    }
  }
  sections.push({ name: '.BTF', type: SHT_PROGBITS, flags: 0, addralign: 4, entsize: 0, link: 0, info: 0, data: btf, size: btf.length });
  if (ext) sections.push({ name: '.BTF.ext', type: SHT_PROGBITS, flags: 0, addralign: 4, entsize: 0, link: 0, info: 0, data: ext, size: ext.length });
  const symtabIndex = sections.length + 1;
  const strtabIndex = symtabIndex + 1;

  const strings = new StringTable();
  const symtab = encodeSymbols(table.symbols.map((s) => ({
    name: strings.add(s.name), bind: s.bind, type: s.type, visibility: s.visibility,
    shndx: s.section ? indexOf.get(s.section)! : s.special, value: s.value, size: s.size,
  })));
  for (const { out, at } of relFor) {
    const bytes = encodeRels(rels.get(out)!.map((r) => ({ offset: r.offset, sym: r.sym.index, type: r.type })));
    sections[at] = { ...sections[at]!, link: symtabIndex, data: bytes, size: bytes.length };
  }
  sections.push({ name: '.symtab', type: SHT_SYMTAB, flags: 0, addralign: 8, entsize: SYM_SIZE, link: strtabIndex, info: table.firstGlobal, data: symtab, size: symtab.length });
  sections.push({ name: '.strtab', type: SHT_STRTAB, flags: 0, addralign: 1, entsize: 0, link: 0, info: 0, data: new Uint8Array(0), size: 0 });
  const names = sections.map((s) => strings.add(s.name));
  const str = strings.bytes();
  sections[strtabIndex - 1] = { ...sections[strtabIndex - 1]!, data: str, size: str.length };
  return writeElf(sections, names, strtabIndex);
}
