// loadObjectSpec: a clang-compiled BPF object (bytes) → ObjectSpec (plain data). Pure: no files.

import { type Btf, parseBtf } from '../btf/btf.js';
import { type BtfExt, parseBtfExt } from '../btf/ext.js';
import { Kind } from '../btf/kinds.js';
import {
  type ElfFile, type ElfSection, type ElfSymbol, parseElf, EM_BPF, SHF_ALLOC, SHF_EXECINSTR, SHT_NOBITS, SHT_PROGBITS,
  SHN_UNDEF, STB_LOCAL, STT_FUNC, STV_HIDDEN, STV_INTERNAL, STT_SECTION, R_BPF_64_64, R_BPF_64_32, R_BPF_64_ABS64, R_BPF_64_ABS32, R_BPF_64_NODYLD32, R_BPF_NONE,
} from '../elf.js';
import { FormatError } from '../errors.js';
import { INSN_SIZE, LD_IMM64, CALL } from '../insn.js';
import { ARENA_SECTION, type ArenaSpec, MAP_TYPE_ARENA } from './arena.js';
import { type DatasecLayout, fixupDatasecs } from './datasec.js';
import { discoverExterns } from './externs.js';
import { JUMPTABLES_SECTION } from './jumptables.js';
import { BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, MapType, emptyMap, isDataSection, isPercpuDataSection, parseBtfMapDef, parseLegacyMapDef } from './maps.js';
import { classifySection } from './sections.js';
import type { StructOpsSpec, CodeReloc, FunctionSpec, KernelFuncInfo, KernelLineInfo, MapSpec, ObjectSpec, ProgramSpec } from './types.js';

const isExec = (s: ElfSection) => s.type === SHT_PROGBITS && (s.flags & SHF_EXECINSTR) !== 0;

export function loadObjectSpec(bytes: Uint8Array, source: string): ObjectSpec {
  const elf = parseElf(bytes, source);
  if (elf.machine !== EM_BPF) throw new FormatError(`${source}: not a BPF object (ELF machine ${elf.machine})`, 18);
  const btfSec = elf.section('.BTF');
  if (!btfSec) throw new FormatError(`${source}: no .BTF section (compile with clang -g)`);
  const rawBtf = parseBtf(elf.data(btfSec), { source: `${source}: .BTF` });
  const extSec = elf.section('.BTF.ext');
  const btfExt = extSec ? parseBtfExt(elf.data(extSec), rawBtf, source) : undefined;

  // Executable sections: a copy of their bytes, and their functions.
  const sections = new Map<string, Uint8Array>();
  const execByIndex = new Map<number, ElfSection>();
  for (const s of elf.sections) {
    if (!isExec(s) || s.size === 0) continue;
    if (s.size % INSN_SIZE !== 0) throw new FormatError(`${source}: section ${s.index} (${s.name}) size ${s.size} is not a multiple of ${INSN_SIZE}`, s.offset);
    if (sections.has(s.name)) throw new FormatError(`${source}: two executable sections named ${s.name}`, s.offset);
    sections.set(s.name, new Uint8Array(elf.data(s)));
    execByIndex.set(s.index, s);
  }
  const functions = collectFunctions(elf, execByIndex);

  // Maps.
  const maps: MapSpec[] = [];
  const mapByOffset = new Map<string, Map<number, number>>(); // section → offset → map index
  const note = (sec: string, off: number, idx: number) => {
    let m = mapByOffset.get(sec);
    if (!m) mapByOffset.set(sec, (m = new Map()));
    m.set(off, idx);
  };
  const layout: DatasecLayout = { sections: new Map() };
  for (const s of elf.sections) {
    if (s.index === 0 || !(s.type === SHT_PROGBITS || s.type === SHT_NOBITS) || isExec(s)) continue;
    const offsets = new Map<string, number>();
    const ambiguous = new Set<string>();
    for (const sym of elf.symbols) {
      if (sym.shndx !== s.index || sym.type === STT_SECTION || !sym.name) continue;
      // Two symbols of one name in a section: statics of several files in a linked object.
      if (offsets.has(sym.name) && offsets.get(sym.name) !== sym.value) ambiguous.add(sym.name);
      offsets.set(sym.name, sym.value);
    }
    for (const n of ambiguous) offsets.delete(n);
    layout.sections.set(s.name, { size: s.size, offsets, ambiguous });
  }
  const valuesOffsets = new Map<number, number>(); // map index → offset of `values` in .maps
  const mapsSec = elf.section('.maps');
  if (mapsSec) {
    const ds = findDatasec(rawBtf, '.maps');
    if (!ds) throw new FormatError(`${source}: section .maps has no BTF DATASEC`);
    const defs: { spec: MapSpec; valuesOffset?: number }[] = [];
    for (const v of ds.vars) {
      const vt = rawBtf.type(v.type);
      if (vt.kind !== Kind.VAR) throw new FormatError(`${source}: .maps entry type #${v.type} is not a variable`);
      const sym = elf.symbols.find((s) => s.shndx === mapsSec.index && s.name === vt.name && s.type !== STT_SECTION);
      if (!sym) throw new FormatError(`${source}: map '${vt.name}' has no symbol in .maps`);
      const def = parseBtfMapDef(rawBtf, vt.type, vt.name, `${source}: map '${vt.name}'`);
      def.spec.btfVarId = vt.id;
      def.spec.offset = sym.value;
      if (sym.value + rawBtf.sizeOf(vt.type) > mapsSec.size) throw new FormatError(`${source}: map '${vt.name}' extends past the end of .maps`, mapsSec.offset + sym.value);
      defs.push(def);
    }
    defs.sort((a, b) => a.spec.offset - b.spec.offset);
    for (const d of defs) {
      const idx = maps.push(d.spec) - 1;
      note('.maps', d.spec.offset, idx);
      if (d.valuesOffset !== undefined) valuesOffsets.set(idx, d.spec.offset + d.valuesOffset);
    }
  }
  const legacySec = elf.section('maps');
  if (legacySec && legacySec.type === SHT_PROGBITS) {
    const data = elf.data(legacySec);
    const syms = elf.symbols.filter((s) => s.shndx === legacySec.index && s.type !== STT_SECTION && s.name).sort((a, b) => a.value - b.value);
    for (const s of syms) {
      const spec = parseLegacyMapDef(data, s.value, s.size, s.name, `${source}: legacy map '${s.name}'`);
      note('maps', s.value, maps.push(spec) - 1);
    }
  }
  const dataMapBySection = new Map<number, number>();
  for (const s of elf.sections) {
    // `.percpu*`: what libbpf reads as global per-CPU data (PROGBITS of any flags, never .bss-like).
    const percpu = isPercpuDataSection(s.name) && s.type === SHT_PROGBITS && !isExec(s);
    if (!percpu && (!isDataSection(s.name) || isExec(s) || !(s.type === SHT_PROGBITS || s.type === SHT_NOBITS) || (s.flags & SHF_ALLOC) === 0)) continue;
    if (s.size === 0) continue;
    const spec = emptyMap(s.name, 'data', s.name);
    spec.type = percpu ? MapType.PERCPU_ARRAY : MapType.ARRAY;
    spec.keySize = 4;
    spec.valueSize = s.size;
    spec.maxEntries = 1;
    spec.frozen = s.name.startsWith('.rodata');
    // A per-CPU array cannot be mmap()ed, and libbpf keeps `.percpu` writable from programs.
    spec.flags = percpu ? 0 : BPF_F_MMAPABLE | (spec.frozen ? BPF_F_RDONLY_PROG : 0);
    spec.valueTypeId = findDatasec(rawBtf, s.name)?.id ?? 0;
    spec.data = s.type === SHT_NOBITS ? new Uint8Array(s.size) : new Uint8Array(elf.data(s));
    dataMapBySection.set(s.index, maps.push(spec) - 1);
  }

  const arena = findArena(elf, maps, source);

  const { externs, kconfigSize } = discoverExterns(elf, rawBtf);
  if (kconfigSize > 0) {
    const spec = emptyMap('.kconfig', 'kconfig', '.kconfig');
    spec.type = MapType.ARRAY;
    spec.keySize = 4;
    spec.valueSize = kconfigSize;
    spec.maxEntries = 1;
    spec.frozen = true;
    spec.flags = BPF_F_MMAPABLE | BPF_F_RDONLY_PROG;
    spec.valueTypeId = findDatasec(rawBtf, '.kconfig')?.id ?? 0;
    spec.data = new Uint8Array(kconfigSize);
    maps.push(spec);
    layout.kconfig = { size: kconfigSize, offsets: new Map(externs.filter((e) => e.kind === 'kconfig').map((e) => [e.name, e.offset!])) };
  }

  // Map-in-map / prog-array initial values from .rel.maps.
  if (mapsSec) {
    for (const r of elf.relocationsFor(mapsSec)) {
      if (r.type !== R_BPF_64_ABS64) throw new FormatError(`${source}: .rel.maps: unexpected relocation type ${r.type} at ${r.offset}`);
      let owner = -1;
      for (const [idx, vo] of valuesOffsets) if (r.offset >= vo && (owner < 0 || vo > valuesOffsets.get(owner)!)) owner = idx;
      const sym = elf.symbol(r.sym);
      if (owner < 0) throw new FormatError(`${source}: .rel.maps: relocation at ${r.offset} (to '${sym.name}') is not inside a map's 'values'`);
      const spec = maps[owner]!;
      const rel = r.offset - valuesOffsets.get(owner)!;
      if (rel % 8 !== 0) throw new FormatError(`${source}: map '${spec.name}': misaligned 'values' initialiser at ${r.offset}`);
      const slot = rel / 8;
      if (spec.maxEntries && slot >= spec.maxEntries) throw new FormatError(`${source}: map '${spec.name}': initialiser slot ${slot} is beyond max_entries ${spec.maxEntries}`);
      (spec.initValues ??= []).push({ slot, target: sym.name });
    }
  }

  const structOps = collectStructOps(elf, rawBtf, source);

  // gotox jump tables: read as libbpf reads them (a non-empty PROGBITS section, not code).
  const jumpSec = elf.sections.find((s) => s.name === JUMPTABLES_SECTION && s.type === SHT_PROGBITS && !isExec(s) && s.size > 0);

  // Code relocations, resolved.
  const relocs = new Map<string, CodeReloc[]>();
  const externByName = new Map(externs.map((e, i) => [e.name, i]));
  for (const [index, sec] of execByIndex) {
    const insns = sections.get(sec.name)!;
    const dv = new DataView(insns.buffer, insns.byteOffset, insns.byteLength);
    const list: CodeReloc[] = [];
    for (const r of elf.relocationsFor(sec)) {
      if (r.type === R_BPF_NONE) continue;
      const where = `${source}: section ${index} (${sec.name}): relocation at ${r.offset}`;
      if (r.offset % INSN_SIZE !== 0) throw new FormatError(`${where}: not at an instruction boundary`);
      const insn = r.offset / INSN_SIZE;
      const code = insns[r.offset]!;
      const imm = dv.getInt32(r.offset + 4, true);
      const sym = elf.symbol(r.sym, `${where}: symbol`);
      if (r.type === R_BPF_64_32 || (r.type === R_BPF_64_NODYLD32 && code === CALL)) {
        if (code !== CALL) throw new FormatError(`${where}: call relocation on a non-call instruction (opcode 0x${code.toString(16)})`);
        if (sym.shndx === SHN_UNDEF) {
          const e = externByName.get(sym.name);
          if (e === undefined) throw new FormatError(`${where}: call to unknown extern '${sym.name}'`);
          list.push({ kind: 'extern', insn, extern: e, call: true });
          continue;
        }
        const tsec = execByIndex.get(sym.shndx);
        if (!tsec) throw new FormatError(`${where}: call target '${sym.name}' is not in an executable section`);
        const targetInsn = sym.value / INSN_SIZE + imm + 1;
        checkTarget(where, tsec, sym, targetInsn);
        list.push({ kind: 'call', insn, targetSection: tsec.name, targetInsn });
        continue;
      }
      if (r.type === R_BPF_64_ABS64 || r.type === R_BPF_64_ABS32 || r.type === R_BPF_64_NODYLD32) {
        throw new FormatError(`${where}: data relocation type ${r.type} in code`);
      }
      if (r.type !== R_BPF_64_64) throw new FormatError(`${where}: unsupported relocation type ${r.type}`);
      if (code !== LD_IMM64) throw new FormatError(`${where}: R_BPF_64_64 on a non-ld_imm64 instruction (opcode 0x${code.toString(16)})`);
      if (r.offset + 2 * INSN_SIZE > insns.length) throw new FormatError(`${where}: ld_imm64 truncated by the end of the section`);
      if (sym.shndx === SHN_UNDEF) {
        const e = externByName.get(sym.name);
        if (e === undefined) throw new FormatError(`${where}: reference to unknown extern '${sym.name}'`);
        list.push({ kind: 'extern', insn, extern: e, call: false });
        continue;
      }
      const tsec = elf.sectionAt(sym.shndx, `${where}: symbol '${sym.name}' section`);
      const symOff = sym.type === STT_SECTION ? 0 : sym.value;
      if (isExec(tsec)) {
        const targetByte = symOff + imm;
        if (targetByte % INSN_SIZE !== 0) throw new FormatError(`${where}: function reference to byte ${targetByte} of ${tsec.name} is not at an instruction boundary`);
        const targetInsn = targetByte / INSN_SIZE;
        checkTarget(where, tsec, sym, targetInsn);
        list.push({ kind: 'func', insn, targetSection: tsec.name, targetInsn });
        continue;
      }
      if (jumpSec && tsec.index === jumpSec.index) {
        // The table's symbol says where it is and how long (libbpf ignores the addend here).
        list.push({ kind: 'jumptable', insn, symbol: sym.name || tsec.name, offset: sym.value, size: sym.size });
        continue;
      }
      if (tsec.name === '.maps' || tsec.name === 'maps') {
        const off = symOff + imm;
        const idx = mapByOffset.get(tsec.name)?.get(off);
        if (idx === undefined) throw new FormatError(`${where}: no map at offset ${off} of ${tsec.name} (symbol '${sym.name}')`);
        list.push({ kind: 'map', insn, map: idx });
        continue;
      }
      if (arena && tsec.index === arena.sectionIndex) {
        // An `__arena` global: a value reference into the arena map (libbpf adds where in the
        // arena the globals go when it links the program: link.ts arenaDataOffset).
        const off = symOff + imm;
        if (off < 0 || off > tsec.size) throw new FormatError(`${where}: offset ${off} is outside ${tsec.name} (${tsec.size} bytes)`);
        list.push({ kind: 'data', insn, map: arena.spec.map, offset: off });
        continue;
      }
      const dm = dataMapBySection.get(tsec.index);
      if (dm !== undefined) {
        const off = symOff + imm;
        if (off < 0 || off > tsec.size) throw new FormatError(`${where}: offset ${off} is outside ${tsec.name} (${tsec.size} bytes)`);
        list.push({ kind: 'data', insn, map: dm, offset: off });
        continue;
      }
      throw new FormatError(`${where}: reference to '${sym.name}' in section ${tsec.name}, which is neither code, a map nor global data`);
    }
    list.sort((a, b) => a.insn - b.insn);
    relocs.set(sec.name, list);
  }

  // Programs: every function outside .text.
  const programs: ProgramSpec[] = [];
  for (const f of functions) {
    if (f.section === '.text') continue;
    const k = classifySection(f.section);
    const p: ProgramSpec = { ...f, ...k, funcInfo: [], lineInfo: [] };
    if (btfExt) {
      p.funcInfo = infoFor(btfExt.funcInfo.get(f.section), f, source, 'func_info');
      p.lineInfo = infoFor(btfExt.lineInfo.get(f.section), f, source, 'line_info');
    }
    programs.push(p);
  }

  const btf = parseBtf(fixupDatasecs(rawBtf, layout, source), { source: `${source}: .BTF` });
  const obj: ObjectSpec = {
    source, license: elf.license ?? '', kernVersion: elf.kernVersion ?? 0, btf, programs, functions, maps, externs, sections, relocs, structOps,
  };
  if (btfExt) obj.btfExt = btfExt;
  if (arena) obj.arena = arena.spec;
  if (jumpSec) obj.jumpTables = new Uint8Array(elf.data(jumpSec));
  return obj;
}

/**
 * The object's arena, as libbpf reads it: at most one BPF_MAP_TYPE_ARENA map, and `__arena`
 * globals (`.addr_space.1`) only with one declared in `.maps`.
 */
function findArena(elf: ElfFile, maps: MapSpec[], source: string): { spec: ArenaSpec; sectionIndex: number } | undefined {
  const arenas = maps.flatMap((m, i) => (m.kind === 'btf' && m.type === MAP_TYPE_ARENA ? [i] : []));
  if (arenas.length > 1) throw new FormatError(`${source}: map '${maps[arenas[1]!]!.name}': only one ARENA map per object is supported (map '${maps[arenas[0]!]!.name}' is also one)`);
  const sec = elf.section(ARENA_SECTION);
  if (!sec || sec.index === 0 || !(sec.type === SHT_PROGBITS || sec.type === SHT_NOBITS)) return undefined;
  if (arenas.length === 0) throw new FormatError(`${source}: section ${ARENA_SECTION}: global __arena variables need an ARENA map declared in SEC(".maps")`);
  const data = sec.type === SHT_NOBITS ? new Uint8Array(sec.size) : new Uint8Array(elf.data(sec));
  return { spec: { map: arenas[0]!, data }, sectionIndex: sec.index };
}

/**
 * The struct_ops variables of `.struct_ops*` sections: each variable's struct (from the section's
 * DATASEC) and, from the section's relocations, which program each function pointer names.
 */
function collectStructOps(elf: ElfFile, btf: Btf, source: string): StructOpsSpec[] {
  const out: StructOpsSpec[] = [];
  for (const sec of elf.sections) {
    if (sec.name !== '.struct_ops' && sec.name !== '.struct_ops.link') continue;
    const ds = findDatasec(btf, sec.name);
    if (!ds) throw new FormatError(`${source}: section ${sec.name} has no DATASEC in the object's BTF`);
    const vars = ds.vars.map((v) => {
      const t = btf.type(v.type);
      if (t.kind !== Kind.VAR) throw new FormatError(`${source}: ${sec.name}: entry ${v.type} is not a VAR`);
      const st = btf.skipModsAndTypedefs(t.type);
      const s = btf.type(st);
      if (s.kind !== Kind.STRUCT) throw new FormatError(`${source}: ${sec.name}: '${t.name}' is ${btf.typeName(st)}, not a struct`);
      // clang leaves the DATASEC's offsets to the loader: the ELF symbol says where the variable is.
      const sym = elf.symbols.find((x) => x.name === t.name && x.shndx === sec.index);
      if (!sym) throw new FormatError(`${source}: ${sec.name}: no symbol for struct_ops variable '${t.name}'`);
      const size = sym.size || btf.sizeOf(st);
      if (sym.value + size > sec.size) throw new FormatError(`${source}: ${sec.name}: struct_ops variable '${t.name}' extends past the end of the section`);
      const data = new Uint8Array(elf.data(sec).subarray(sym.value, sym.value + size));
      return { spec: { name: t.name, section: sec.name, type: s.name, typeId: st, data, programs: [] } as StructOpsSpec, offset: sym.value, size, members: s.members };
    });
    for (const r of elf.relocationsFor(sec)) {
      const v = vars.find((x) => r.offset >= x.offset && r.offset < x.offset + x.size);
      const sym = elf.symbol(r.sym);
      if (!v) throw new FormatError(`${source}: ${sec.name}: relocation at ${r.offset} (to '${sym.name}') is outside every struct_ops variable`);
      const m = v.members.find((x) => x.bitOffset / 8 === r.offset - v.offset);
      if (!m) throw new FormatError(`${source}: ${sec.name}: '${v.spec.name}' has no member at byte ${r.offset - v.offset} (relocation to '${sym.name}')`);
      v.spec.programs.push({ member: m.name, program: sym.name });
    }
    out.push(...vars.map((v) => v.spec));
  }
  return out;
}

function findDatasec(btf: Btf, name: string) {
  for (const id of btf.byName(name)) {
    const t = btf.type(id);
    if (t.kind === Kind.DATASEC) return t;
  }
  return undefined;
}

function checkTarget(where: string, tsec: ElfSection, sym: ElfSymbol, targetInsn: number): void {
  if (!Number.isInteger(targetInsn) || targetInsn < 0 || targetInsn >= tsec.size / INSN_SIZE) {
    throw new FormatError(`${where}: target instruction ${targetInsn} (via '${sym.name || tsec.name}') is outside ${tsec.name}`);
  }
}

/** Function symbols of each executable section, with sizes checked (or inferred when 0). */
function collectFunctions(elf: ElfFile, execByIndex: Map<number, ElfSection>): FunctionSpec[] {
  const src = elf.source;
  const bySec = new Map<number, ElfSymbol[]>();
  for (const s of elf.symbols) {
    if (s.type !== STT_FUNC || s.shndx === SHN_UNDEF) continue;
    const sec = execByIndex.get(s.shndx);
    if (!sec) {
      if (s.shndx < elf.sections.length && isExec(elf.sections[s.shndx]!)) continue; // empty section
      throw new FormatError(`${src}: function '${s.name}' is in section ${s.shndx}, which is not an executable section`);
    }
    let l = bySec.get(s.shndx);
    if (!l) bySec.set(s.shndx, (l = []));
    l.push(s);
  }
  const out: FunctionSpec[] = [];
  for (const [shndx, syms] of [...bySec].sort((a, b) => a[0] - b[0])) {
    const sec = execByIndex.get(shndx)!;
    syms.sort((a, b) => a.value - b.value);
    syms.forEach((s, i) => {
      const where = `${src}: function '${s.name}' in ${sec.name}`;
      if (s.value % INSN_SIZE !== 0) throw new FormatError(`${where}: starts at byte ${s.value}, not an instruction boundary`);
      const end = s.size > 0 ? s.value + s.size : (syms[i + 1]?.value ?? sec.size);
      if (end % INSN_SIZE !== 0 || end > sec.size || end <= s.value) throw new FormatError(`${where}: bad extent [${s.value}, ${end}) in a ${sec.size}-byte section`);
      const next = syms[i + 1];
      if (next && next.value < end) throw new FormatError(`${where}: overlaps function '${next.name}'`);
      out.push({ name: s.name, section: sec.name, sectionOffset: s.value / INSN_SIZE, insnCount: (end - s.value) / INSN_SIZE, global: s.bind !== STB_LOCAL, hidden: s.bind !== STB_LOCAL && (s.visibility === STV_HIDDEN || s.visibility === STV_INTERNAL) });
    });
  }
  return out;
}

/** The records of one function, re-based to its first instruction, in instruction units. */
export function infoFor<T extends { insnOff: number }>(list: readonly T[] | undefined, f: FunctionSpec, source: string, what: string): T[] {
  const out: T[] = [];
  for (const r of list ?? []) {
    if (r.insnOff % INSN_SIZE !== 0) throw new FormatError(`${source}: .BTF.ext ${what} in '${f.section}': offset ${r.insnOff} is not an instruction boundary`);
    const i = r.insnOff / INSN_SIZE;
    if (i >= f.sectionOffset && i < f.sectionOffset + f.insnCount) out.push({ ...r, insnOff: i - f.sectionOffset });
  }
  return out.sort((a, b) => a.insnOff - b.insnOff);
}

export type { KernelFuncInfo, KernelLineInfo, BtfExt };
