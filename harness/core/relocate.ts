// Offline relocation of one object against one target BTF: what `corematrix relocate` prints
// and what the guest agent reports per kernel. Pure: bytes in, plain data out.

import { parseBtf, type Btf } from './btf/btf.js';
import { parseBtfExt } from './btf/ext.js';
import { parseElf, SHF_EXECINSTR, STT_FUNC, type ElfFile } from './elf.js';
import { FormatError } from './errors.js';
import { applyCoreRelocations, type AppliedRelo } from './relo/patch.js';
import { reachable } from './relo/reach.js';
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

function executableSections(elf: ElfFile): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const s of elf.sections) {
    // A copy we patch: `new Uint8Array(view)` copies, whereas Buffer#slice would alias the input.
    if ((s.flags & SHF_EXECINSTR) !== 0 && s.size > 0) out.set(s.name, new Uint8Array(elf.data(s)));
  }
  return out;
}

interface FnEntry extends ProgramEntry {
  /** Index of the function's first instruction in its section. */
  start: number;
}

function functions(elf: ElfFile): FnEntry[] {
  const out: FnEntry[] = [];
  for (const sym of elf.symbols) {
    if (sym.type !== STT_FUNC || sym.shndx === 0 || sym.shndx >= elf.sections.length) continue;
    const sec = elf.sections[sym.shndx]!;
    if ((sec.flags & SHF_EXECINSTR) === 0) continue;
    out.push({ name: sym.name, section: sec.name, insns: Math.floor(sym.size / 8), start: Math.floor(sym.value / 8) });
  }
  return out;
}

/**
 * Relocates every CO-RE relocation of `objectBytes` against `target`. Relocation-level problems
 * are reported per record (status 'poisoned' or 'error'); malformed input throws FormatError.
 */
export function relocateObject(objectBytes: Uint8Array, objectName: string, sha256: string, target: Target, targetName: string): RelocatedObject {
  const elf = parseElf(objectBytes, objectName);
  const btfSec = elf.section('.BTF');
  const extSec = elf.section('.BTF.ext');
  const sections = executableSections(elf);
  const fns = functions(elf);
  let applied: AppliedRelo[] = [];
  if (btfSec && extSec) {
    const local = parseBtf(elf.data(btfSec), { source: `${objectName} .BTF` });
    const ext = parseBtfExt(elf.data(extSec), local, `${objectName} .BTF.ext`);
    applied = applyCoreRelocations(local, ext.coreRelos, sections, target);
  } else if (!btfSec && extSec) {
    throw new FormatError(`${objectName}: has .BTF.ext but no .BTF`);
  }
  // Which poisoned instructions can run: explore from every function entry in the section.
  const reach = new Map<string, Uint8Array | undefined>();
  const reachOf = (section: string): Uint8Array | undefined => {
    if (reach.has(section)) return reach.get(section);
    const insns = sections.get(section);
    let seen: Uint8Array | undefined;
    if (insns) {
      seen = new Uint8Array(insns.length / 8);
      for (const f of fns.filter((f) => f.section === section)) {
        const r = reachable(insns, f.start);
        if (!r) {
          seen = undefined;
          break;
        }
        for (let i = 0; i < r.length; i++) seen[i] |= r[i]!;
      }
    }
    reach.set(section, seen);
    return seen;
  };
  const relocations = applied.map((a) => {
    const rec: RelocationRecord & { reachable?: boolean } = toRecord(a);
    if (a.status === 'poisoned') rec.reachable = reachOf(a.section)?.[a.insn] !== 0;
    return rec;
  });
  const programs = fns.filter((f) => f.section !== '.text').map(({ name, section, insns }) => ({ name, section, insns }));
  return { report: { object: objectName, sha256, btf: targetName, relocations, programs }, sections, applied };
}
