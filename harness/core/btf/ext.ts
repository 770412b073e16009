// `.BTF.ext` reader: func_info, line_info and CO-RE relocation records, grouped by the ELF
// section they describe. Layout facts (kernel UAPI / LLVM): a header (magic 0xeb9f, version 1,
// flags, hdr_len, then offset/length pairs relative to the end of the header), and for each
// subsection a u32 record size followed by blocks {sec_name_off, num_info, records[num_info]}.
// Section names and access strings are offsets into the object's `.BTF` string table.

import { FormatError } from '../errors.js';
import type { Btf } from './btf.js';
import { BTF_MAGIC } from './kinds.js';

export const enum CoreReloKind {
  FIELD_BYTE_OFFSET = 0,
  FIELD_BYTE_SIZE = 1,
  FIELD_EXISTS = 2,
  FIELD_SIGNED = 3,
  FIELD_LSHIFT_U64 = 4,
  FIELD_RSHIFT_U64 = 5,
  TYPE_ID_LOCAL = 6,
  TYPE_ID_TARGET = 7,
  TYPE_EXISTS = 8,
  TYPE_SIZE = 9,
  ENUMVAL_EXISTS = 10,
  ENUMVAL_VALUE = 11,
  TYPE_MATCHES = 12,
}
export const CORE_RELO_KIND_MAX = 12;

export interface CoreRelo {
  /** Byte offset of the instruction within its section. */
  insnOff: number;
  typeId: number;
  accessStr: string;
  kind: CoreReloKind;
}
/** insnOff in BYTES within the section, as stored in the object. */
export interface FuncInfo {
  insnOff: number;
  typeId: number;
}
/** insnOff in BYTES within the section; fileNameOff/lineOff index the `.BTF` string table. */
export interface LineInfo {
  insnOff: number;
  fileNameOff: number;
  lineOff: number;
  line: number;
  col: number;
}
export interface BtfExt {
  funcInfo: Map<string, FuncInfo[]>;
  lineInfo: Map<string, LineInfo[]>;
  coreRelos: Map<string, CoreRelo[]>;
  funcInfoRecSize: number;
  lineInfoRecSize: number;
}

const HDR_MIN = 24;
const HDR_CORE = 32;
const FUNC_REC_MIN = 8;
const LINE_REC_MIN = 16;
const CORE_REC_MIN = 16;

interface Sub {
  what: string;
  off: number;
  len: number;
  minRec: number;
}

export function parseBtfExt(bytes: Uint8Array, btf: Btf, source: string): BtfExt {
  const src = `${source}: .BTF.ext`;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < HDR_MIN) throw new FormatError(`${src}: too short for a header (${bytes.length} bytes)`);
  const magic = dv.getUint16(0, true);
  if (magic !== BTF_MAGIC) throw new FormatError(`${src}: bad magic 0x${magic.toString(16)}`, 0);
  if (bytes[2] !== 1) throw new FormatError(`${src}: unsupported version ${bytes[2]}`, 2);
  const hdrLen = dv.getUint32(4, true);
  if (hdrLen < HDR_MIN || hdrLen > bytes.length) throw new FormatError(`${src}: bad header length ${hdrLen}`, 4);
  const subs: Sub[] = [
    { what: 'func_info', off: dv.getUint32(8, true), len: dv.getUint32(12, true), minRec: FUNC_REC_MIN },
    { what: 'line_info', off: dv.getUint32(16, true), len: dv.getUint32(20, true), minRec: LINE_REC_MIN },
  ];
  if (hdrLen >= HDR_CORE) subs.push({ what: 'core_relo', off: dv.getUint32(24, true), len: dv.getUint32(28, true), minRec: CORE_REC_MIN });

  const str = (off: number, what: string, at: number): string => {
    try {
      return btf.str(off);
    } catch (e) {
      if (e instanceof FormatError) throw new FormatError(`${src}: ${what}: bad string offset ${off}`, at);
      throw e;
    }
  };

  const recSizes: number[] = [0, 0, 0];
  /** Walks one subsection, calling `rec(sectionName, recordOffset)` for each record. */
  const walk = (i: number, rec: (sec: string, p: number) => void) => {
    const sub = subs[i]!;
    if (sub.len === 0) return;
    const start = hdrLen + sub.off;
    const end = start + sub.len;
    if (end > bytes.length) throw new FormatError(`${src}: ${sub.what} subsection (${sub.len} bytes at ${sub.off}) extends past the end`, start);
    if (sub.len < 4) throw new FormatError(`${src}: ${sub.what} subsection too short for its record size`, start);
    const recSize = dv.getUint32(start, true);
    if (recSize < sub.minRec || recSize % 4 !== 0) throw new FormatError(`${src}: ${sub.what} record size ${recSize} is invalid (minimum ${sub.minRec})`, start);
    recSizes[i] = recSize;
    let p = start + 4;
    while (p < end) {
      if (p + 8 > end) throw new FormatError(`${src}: ${sub.what}: truncated section block header`, p);
      const secNameOff = dv.getUint32(p, true);
      const n = dv.getUint32(p + 4, true);
      const sec = str(secNameOff, `${sub.what} section name`, p);
      if (n === 0) throw new FormatError(`${src}: ${sub.what}: section '${sec}' has zero records`, p);
      p += 8;
      if (n > (end - p) / recSize) throw new FormatError(`${src}: ${sub.what}: section '${sec}' has ${n} records of ${recSize} bytes, past the end of the subsection`, p);
      for (let k = 0; k < n; k++, p += recSize) rec(sec, p);
    }
  };

  const push = <T>(m: Map<string, T[]>, k: string, v: T) => {
    const l = m.get(k);
    if (l) l.push(v);
    else m.set(k, [v]);
  };

  const funcInfo = new Map<string, FuncInfo[]>();
  walk(0, (sec, p) => push(funcInfo, sec, { insnOff: dv.getUint32(p, true), typeId: dv.getUint32(p + 4, true) }));
  const lineInfo = new Map<string, LineInfo[]>();
  walk(1, (sec, p) => {
    const lc = dv.getUint32(p + 12, true);
    push(lineInfo, sec, { insnOff: dv.getUint32(p, true), fileNameOff: dv.getUint32(p + 4, true), lineOff: dv.getUint32(p + 8, true), line: lc >>> 10, col: lc & 0x3ff });
  });
  const coreRelos = new Map<string, CoreRelo[]>();
  if (subs.length > 2) {
    walk(2, (sec, p) => {
      const kind = dv.getUint32(p + 12, true);
      if (kind > CORE_RELO_KIND_MAX) throw new FormatError(`${src}: core_relo in '${sec}': unknown kind ${kind}`, p + 12);
      const accessStr = str(dv.getUint32(p + 8, true), `core_relo in '${sec}': access string`, p + 8);
      push(coreRelos, sec, { insnOff: dv.getUint32(p, true), typeId: dv.getUint32(p + 4, true), accessStr, kind: kind as CoreReloKind });
    });
  }
  for (const [sec, l] of funcInfo) for (const f of l) if (f.typeId >= btf.count) throw new FormatError(`${src}: func_info in '${sec}': type id ${f.typeId} out of range`);
  for (const [sec, l] of coreRelos) for (const r of l) if (r.typeId >= btf.count) throw new FormatError(`${src}: core_relo in '${sec}': type id ${r.typeId} out of range`);
  return { funcInfo, lineInfo, coreRelos, funcInfoRecSize: recSizes[0]!, lineInfoRecSize: recSizes[1]! };
}
