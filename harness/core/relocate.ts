// Offline relocation of one object against one target BTF: what `corematrix relocate` prints
// and what the guest agent reports per kernel. Pure: bytes in, plain data out.

import { parseBtf, type Btf } from './btf/btf.js';
import { parseElf } from './elf.js';
import { loadObjectSpec, type ObjectSpec } from './object/index.js';
import { FormatError } from './errors.js';
import { applyCoreRelocations, type AppliedRelo } from './relo/patch.js';
import { reachable, type KnownMemory, type StepBudget } from './relo/reach.js';

const REACH_BUDGET = 200_000;
import { toRecord, type RelocationRecord } from './relo/report.js';
import type { Target } from './relo/engine.js';

export interface ProgramEntry {
  name: string;
  section: string;
  /** Number of instructions the function spans in its section. */
  insns: number;
}

export interface RelocateReport {
  object: string;
  sha256: string;
  btf: string;
  relocations: (RelocationRecord & { reachable?: boolean })[];
  programs: ProgramEntry[];
}

export interface RelocatedObject {
  report: RelocateReport;
  /** Executable sections after patching. */
  sections: Map<string, Uint8Array>;
  applied: AppliedRelo[];
}

/** Reads target BTF from raw BTF bytes or from an ELF file's `.BTF` section. */
export function readTargetBtf(bytes: Uint8Array, source: string, base?: Btf): Btf {
  if (bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46) {
    const elf = parseElf(bytes, source);
    const sec = elf.section('.BTF');
    if (!sec) throw new FormatError(`${source}: ELF file has no .BTF section`);
    return parseBtf(elf.data(sec), { source, base });
  }
  return parseBtf(bytes, { source, base });
}

/**
 * Relocates every CO-RE relocation of `objectBytes` against `target`. Relocation-level problems
 * are reported per record (status 'poisoned' or 'error'); malformed input throws FormatError.
 */
export function relocateObject(objectBytes: Uint8Array, objectName: string, sha256: string, target: Target, targetName: string): RelocatedObject {
  const spec = loadObjectSpec(objectBytes, objectName);
  return relocateSpec(spec, sha256, target, targetName);
}

/** What the loader knows before load that the verifier will know too. */
export interface RelocateContext {
  /**
   * The `.kconfig` map value as the loader filled it: the map is frozen read-only, so the verifier
   * treats loads of extern values as constants and never visits the branches they rule out.
   */
  kconfig?: Uint8Array;
}

/** ld_imm64 instructions of `section` that take the address of a kconfig extern, with its bytes. */
function knownMemory(spec: ObjectSpec, section: string, kconfig: Uint8Array | undefined): KnownMemory | undefined {
  if (!kconfig) return undefined;
  const known = new Map<number, { bytes: Uint8Array; offset: number }>();
  for (const r of spec.relocs.get(section) ?? []) {
    if (r.kind !== 'extern' || r.call) continue;
    const e = spec.externs[r.extern];
    if (e?.kind === 'kconfig' && e.offset !== undefined) known.set(r.insn, { bytes: kconfig, offset: e.offset });
  }
  return known.size ? known : undefined;
}

/** Relocates an already-opened object: patches `spec.sections` in place. */
export function relocateSpec(spec: ObjectSpec, sha256: string, target: Target, targetName: string, ctx: RelocateContext = {}): RelocatedObject {
  const sections = spec.sections;
  const applied = spec.btfExt ? applyCoreRelocations(spec.btf, spec.btfExt.coreRelos, sections, target) : [];
  // Which poisoned instructions can run: explore from every function entry in the section.
  const reach = new Map<string, Uint8Array | undefined>();
  // One step budget for the whole object (a few tenths of a second of walking at worst; real objects need a few hundred steps): an object of many
  // sections that each spin on a known counter must not multiply it. Past it, poison counts as reachable.
  const budget: StepBudget = { left: REACH_BUDGET };
  const reachOf = (section: string): Uint8Array | undefined => {
    if (reach.has(section)) return reach.get(section);
    const insns = sections.get(section);
    // One walk from all entries, one budget: a section of many functions costs no more than one.
    const seen = insns ? reachable(insns, spec.functions.filter((f) => f.section === section).map((f) => f.sectionOffset), budget, knownMemory(spec, section, ctx.kconfig)) : undefined;
    reach.set(section, seen);
    return seen;
  };
  const relocations = applied.map((a) => {
    const rec: RelocationRecord & { reachable?: boolean } = toRecord(a);
    if (a.status === 'poisoned') rec.reachable = reachOf(a.section)?.[a.insn] !== 0;
    return rec;
  });
  const programs = spec.programs.map((p) => ({ name: p.name, section: p.section, insns: p.insnCount }));
  return { report: { object: spec.source, sha256, btf: targetName, relocations, programs }, sections, applied };
}
