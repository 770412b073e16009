// Output sections: every input section of code or data is appended to the output section of the
// same name, at the next offset aligned to the larger of the two alignments (the output's grows
// as pieces arrive), so `.text`, `.data`, `.maps`, `xdp`, ... of all inputs become one section
// each, in the order the names first appear. `license` and `version` are kept once: later copies
// must be identical and are not appended.

import { type ElfSection, SHT_NOBITS } from '../elf.js';
import { LinkError } from './errors.js';
import type { InputObject } from './input.js';

/** One input section placed in an output section. */
export interface Chunk {
  input: InputObject;
  section: ElfSection;
  out: OutputSection;
  /** Byte offset of the input section's start in the output section. */
  offset: number;
  /** A `license`/`version` copy identical to the first: not appended, its symbols are dropped. */
  duplicate: boolean;
}

export interface OutputSection {
  name: string;
  type: number;
  flags: number;
  entsize: number;
  align: number;
  size: number;
  chunks: Chunk[];
  /** The input that brought the section first, for messages. */
  firstInput: string;
}

/** Sections kept once: every input must carry the same bytes. */
const DEDUPLICATED = new Set(['license', 'version']);

const describe = (s: { type: number; flags: number; entsize: number }) => `type ${s.type}, flags 0x${s.flags.toString(16)}, entsize ${s.entsize}`;

export class SectionLayout {
  readonly sections: OutputSection[] = [];
  private readonly byName = new Map<string, OutputSection>();
  private readonly placed = new Map<InputObject, Map<number, Chunk>>();

  /** Appends every code and data section of `input`, in its ELF order. */
  add(input: InputObject): void {
    const mine = new Map<number, Chunk>();
    this.placed.set(input, mine);
    for (const s of input.sections) if (s.role === 'content') mine.set(s.elf.index, this.place(input, s.elf));
  }

  private place(input: InputObject, sec: ElfSection): Chunk {
    let out = this.byName.get(sec.name);
    if (!out) {
      out = { name: sec.name, type: sec.type, flags: sec.flags, entsize: sec.entsize, align: Math.max(1, sec.addralign), size: 0, chunks: [], firstInput: input.name };
      this.byName.set(sec.name, out);
      this.sections.push(out);
    } else {
      if (out.type !== sec.type || out.flags !== sec.flags || out.entsize !== sec.entsize) {
        throw new LinkError(`${input.name}: section '${sec.name}' (${describe(sec)}) differs from the one in ${out.firstInput} (${describe(out)})`);
      }
      if (DEDUPLICATED.has(sec.name)) {
        const first = out.chunks[0]!;
        if (!sameBytes(first.input.elf.data(first.section), input.elf.data(sec))) {
          throw new LinkError(`${input.name}: section '${sec.name}' differs from the one in ${first.input.name}; it must be the same in every object`);
        }
        return { input, section: sec, out, offset: 0, duplicate: true };
      }
    }
    out.align = Math.max(out.align, sec.addralign || 1);
    const offset = Math.ceil(out.size / out.align) * out.align;
    out.size = offset + sec.size;
    const chunk: Chunk = { input, section: sec, out, offset, duplicate: false };
    out.chunks.push(chunk);
    return chunk;
  }

  /** Where input section `shndx` of `input` went (undefined: not a code or data section). */
  chunk(input: InputObject, shndx: number): Chunk | undefined {
    return this.placed.get(input)?.get(shndx);
  }

  section(name: string): OutputSection | undefined {
    return this.byName.get(name);
  }

  /** The output section's bytes: each piece at its offset, zeros between (empty for SHT_NOBITS). */
  bytes(out: OutputSection): Uint8Array {
    if (out.type === SHT_NOBITS) return new Uint8Array(0);
    const b = new Uint8Array(out.size);
    for (const c of out.chunks) b.set(c.input.elf.data(c.section), c.offset);
    return b;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
