// The linked object's .BTF.ext: each input's func_info, line_info and CO-RE relocation records
// move with their section (instruction offsets plus where the section went in the output), their
// type ids follow the BTF renumbering, and their strings (file names, source lines, access
// strings) go into the output's string table. Written with the minimal record sizes and the
// 32-byte header that has the CO-RE subsection.

import { BTF_MAGIC } from '../btf/kinds.js';
import { LinkError } from './errors.js';
import type { InputObject } from './input.js';
import type { SectionLayout } from './sections.js';

export interface ExtRecords {
  /** Output section name → records, insnOff in bytes from the output section's start. */
  funcInfo: Map<string, { insnOff: number; typeId: number }[]>;
  lineInfo: Map<string, { insnOff: number; file: string; text: string; line: number; col: number }[]>;
  coreRelos: Map<string, { insnOff: number; typeId: number; access: string; kind: number }[]>;
}

const HEADER_SIZE = 32;
const FUNC_INFO_SIZE = 8;
const LINE_INFO_SIZE = 16;
const CORE_RELO_SIZE = 16;

export function mergeExt(inputs: readonly InputObject[], layout: SectionLayout, typeId: (input: InputObject, id: number) => number): ExtRecords {
  const out: ExtRecords = { funcInfo: new Map(), lineInfo: new Map(), coreRelos: new Map() };
  const push = <T>(m: Map<string, T[]>, k: string, v: T) => {
    const l = m.get(k);
    if (l) l.push(v);
    else m.set(k, [v]);
  };
  for (const input of inputs) {
    const ext = input.ext;
    if (!ext) continue;
    const offsetOf = (section: string, what: string) => {
      const s = input.sections.find((x) => x.role === 'content' && x.elf.name === section);
      const chunk = s && layout.chunk(input, s.elf.index);
      if (!chunk) throw new LinkError(`${input.name}: .BTF.ext ${what} describes section '${section}', which the object does not have`);
      return chunk.offset;
    };
    for (const [sec, recs] of ext.funcInfo) {
      const base = offsetOf(sec, 'func_info');
      for (const r of recs) push(out.funcInfo, sec, { insnOff: base + r.insnOff, typeId: typeId(input, r.typeId) });
    }
    for (const [sec, recs] of ext.lineInfo) {
      const base = offsetOf(sec, 'line_info');
      const str = (off: number) => {
        try {
          return input.btf.str(off);
        } catch {
          throw new LinkError(`${input.name}: .BTF.ext line_info in '${sec}': string offset ${off} is outside .BTF's strings`);
        }
      };
      for (const r of recs) push(out.lineInfo, sec, { insnOff: base + r.insnOff, file: str(r.fileNameOff), text: str(r.lineOff), line: r.line, col: r.col });
    }
    for (const [sec, recs] of ext.coreRelos) {
      const base = offsetOf(sec, 'core_relo');
      for (const r of recs) push(out.coreRelos, sec, { insnOff: base + r.insnOff, typeId: typeId(input, r.typeId), access: r.accessStr, kind: r.kind });
    }
  }
  return out;
}

/**
 * Encodes the records, sections in `order`; `string` adds a string to the output .BTF and returns
 * its offset. Undefined when there is no record at all (no .BTF.ext section then).
 */
export function encodeExt(ext: ExtRecords, order: readonly string[], string: (s: string) => number): Uint8Array | undefined {
  const blocks = <T>(m: Map<string, T[]>, size: number, write: (dv: DataView, p: number, r: T) => void): Uint8Array => {
    const secs = order.filter((s) => (m.get(s)?.length ?? 0) > 0);
    if (secs.length === 0) return new Uint8Array(0);
    const total = 4 + secs.reduce((n, s) => n + 8 + m.get(s)!.length * size, 0);
    const b = new Uint8Array(total);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, size, true);
    let p = 4;
    for (const s of secs) {
      const recs = m.get(s)!;
      dv.setUint32(p, string(s), true);
      dv.setUint32(p + 4, recs.length, true);
      p += 8;
      for (const r of recs) {
        write(dv, p, r);
        p += size;
      }
    }
    return b;
  };
  const func = blocks(ext.funcInfo, FUNC_INFO_SIZE, (dv, p, r) => {
    dv.setUint32(p, r.insnOff, true);
    dv.setUint32(p + 4, r.typeId, true);
  });
  const line = blocks(ext.lineInfo, LINE_INFO_SIZE, (dv, p, r) => {
    dv.setUint32(p, r.insnOff, true);
    dv.setUint32(p + 4, string(r.file), true);
    dv.setUint32(p + 8, string(r.text), true);
    dv.setUint32(p + 12, ((r.line << 10) | (r.col & 0x3ff)) >>> 0, true);
  });
  const core = blocks(ext.coreRelos, CORE_RELO_SIZE, (dv, p, r) => {
    dv.setUint32(p, r.insnOff, true);
    dv.setUint32(p + 4, r.typeId, true);
    dv.setUint32(p + 8, string(r.access), true);
    dv.setUint32(p + 12, r.kind, true);
  });
  if (func.length + line.length + core.length === 0) return undefined;
  const out = new Uint8Array(HEADER_SIZE + func.length + line.length + core.length);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, BTF_MAGIC, true);
  out[2] = 1; // version
  out[3] = 0; // flags
  dv.setUint32(4, HEADER_SIZE, true);
  // Subsection offsets are relative to the end of the header.
  dv.setUint32(8, 0, true);
  dv.setUint32(12, func.length, true);
  dv.setUint32(16, func.length, true);
  dv.setUint32(20, line.length, true);
  dv.setUint32(24, func.length + line.length, true);
  dv.setUint32(28, core.length, true);
  out.set(func, HEADER_SIZE);
  out.set(line, HEADER_SIZE + func.length);
  out.set(core, HEADER_SIZE + func.length + line.length);
  return out;
}
