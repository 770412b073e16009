// Makes an object's BTF loadable: clang leaves DATASEC sizes at 0 and some VAR offsets at 0 in a
// relocatable object (the linker would fill them); the loader fills them from the ELF section
// sizes and symbol values. Extern VARs/FUNCs (`.kconfig`, `.ksyms`) get the layout the loader
// chose and a linkage the kernel accepts. Types keep their ids and strings keep their offsets
// (new strings are only appended), so `.BTF.ext` line_info string offsets stay valid.

import type { Btf } from '../btf/btf.js';
import { Kind, VAR_GLOBAL_ALLOCATED, VAR_GLOBAL_EXTERN, FUNC_GLOBAL, FUNC_EXTERN } from '../btf/kinds.js';
import { FormatError } from '../errors.js';

export interface DatasecLayout {
  /**
   * DATASEC name → its size and each VAR's offset by name (sections present in the ELF); names
   * that several symbols of the section carry (statics of several files in a linked object) are
   * in `ambiguous` instead, and keep the offset the linker wrote in the DATASEC.
   */
  sections: Map<string, { size: number; offsets: Map<string, number>; ambiguous?: Set<string> }>;
  /** `.kconfig` externs: name → offset, and the map value size. */
  kconfig?: { size: number; offsets: Map<string, number> };
}

const KSYM_DUMMY = '__corematrix_ksym';
const ARG_NAME = '__corematrix_arg';

/**
 * Returns new BTF bytes with DATASECs fixed up (see file comment). Throws FormatError when a
 * DATASEC variable has no offset in `layout` for a section that exists in the ELF.
 */
export function fixupDatasecs(btf: Btf, layout: DatasecLayout, source: string): Uint8Array {
  const src = btf.bytes;
  const sdv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const hdrLen = sdv.getUint32(4, true);
  const typeOff = hdrLen + sdv.getUint32(8, true);
  const typeLen = sdv.getUint32(12, true);
  const strOff = hdrLen + sdv.getUint32(16, true);
  const strLen = sdv.getUint32(20, true);

  // new Uint8Array(view) copies (a Node Buffer's .slice() would not).
  const types = new Uint8Array(src.subarray(typeOff, typeOff + typeLen));
  const tdv = new DataView(types.buffer);
  const extraTypes: number[] = [];
  const extraStrings: number[] = [];
  let nextId = btf.count;
  const addString = (s: string) => {
    const off = strLen + extraStrings.length;
    for (let i = 0; i < s.length; i++) extraStrings.push(s.charCodeAt(i));
    extraStrings.push(0);
    return off;
  };
  const rec = (id: number) => btf.recordOffset(id)! - typeOff;

  let argName: number | undefined;
  let intId = 0;
  for (const id of btf.byName('int')) {
    const t = btf.type(id);
    if (t.kind === Kind.INT && t.size === 4) { intId = id; break; }
  }
  const ensureInt = () => {
    if (intId) return intId;
    extraTypes.push(addString('int'), (Kind.INT << 24) >>> 0, 4, (1 << 24) | 32);
    return (intId = nextId++);
  };
  let dummyVar = 0;
  const ensureDummy = () => {
    if (dummyVar) return dummyVar;
    const it = ensureInt();
    extraTypes.push(addString(KSYM_DUMMY), (Kind.VAR << 24) >>> 0, it, VAR_GLOBAL_ALLOCATED);
    return (dummyVar = nextId++);
  };

  // Extern VARs: the kernel accepts only static and global-allocated linkage, and a VAR must have a sized type.
  for (let id = 1; id < btf.count; id++) {
    const k = btf.kind(id);
    if (k === Kind.VAR) {
      const p = rec(id);
      if (tdv.getUint32(p + 12, true) === VAR_GLOBAL_EXTERN) {
        tdv.setUint32(p + 12, VAR_GLOBAL_ALLOCATED, true);
        if (btf.skipModsAndTypedefs(btf.sizeOrType(id)) === 0) tdv.setUint32(p + 8, ensureInt(), true);
      }
    } else if (k === Kind.FUNC && btf.vlen(id) === FUNC_EXTERN) {
      const p = rec(id);
      const info = tdv.getUint32(p + 4, true);
      tdv.setUint32(p + 4, ((info & ~0xffff) | FUNC_GLOBAL) >>> 0, true);
      // The kernel wants every typed parameter of a FUNC's prototype named.
      const proto = btf.sizeOrType(id);
      if (btf.kind(proto) === Kind.FUNC_PROTO) {
        const q = rec(proto);
        for (let i = 0; i < btf.vlen(proto); i++) {
          if (tdv.getUint32(q + 12 + i * 8, true) === 0 && tdv.getUint32(q + 16 + i * 8, true) !== 0) {
            argName ??= addString(ARG_NAME);
            tdv.setUint32(q + 12 + i * 8, argName, true);
          }
        }
      }
    }
  }

  for (let id = 1; id < btf.count; id++) {
    if (btf.kind(id) !== Kind.DATASEC) continue;
    const name = btf.name(id);
    const p = rec(id);
    const vlen = btf.vlen(id);
    const entries: { type: number; offset: number; size: number }[] = [];
    for (let i = 0; i < vlen; i++) {
      const q = p + 12 + i * 12;
      entries.push({ type: tdv.getUint32(q, true), offset: tdv.getUint32(q + 4, true), size: tdv.getUint32(q + 8, true) });
    }
    let size = tdv.getUint32(p + 8, true);
    const where = `${source}: BTF DATASEC '${name}'`;
    if (name === '.kconfig' && layout.kconfig) {
      size = layout.kconfig.size;
      for (const e of entries) {
        const off = layout.kconfig.offsets.get(btf.name(e.type));
        if (off === undefined) throw new FormatError(`${where}: no offset for extern '${btf.name(e.type)}'`);
        e.offset = off;
      }
    } else if (name === '.ksyms') {
      // Kfunc entries are FUNCs, which a DATASEC may not hold: point them at one dummy int VAR.
      let off = 0;
      for (const e of entries) {
        if (btf.kind(e.type) !== Kind.VAR) {
          e.type = ensureDummy();
          e.size = 4;
        } else {
          const t = btf.skipModsAndTypedefs(btf.sizeOrType(e.type));
          e.size = t === 0 ? 4 : btf.sizeOf(t);
        }
        off = (off + 7) & ~7;
        e.offset = off;
        off += e.size;
      }
      size = off;
    } else {
      const sec = layout.sections.get(name);
      if (!sec) continue;
      size = sec.size;
      for (const e of entries) {
        const vname = btf.name(e.type);
        // Statics of several files sharing a name (a linked object): the linker's offset is the
        // only one that tells them apart. Every other VAR is placed by its symbol, which also
        // mends a linker's stale offsets (bpftool's when an extern map came first).
        if (sec.ambiguous?.has(vname)) continue;
        const off = sec.offsets.get(vname);
        if (off === undefined) throw new FormatError(`${where}: variable '${vname}' has no symbol in section ${name}`);
        if (off + e.size > size) throw new FormatError(`${where}: variable '${vname}' (${e.size} bytes at ${off}) extends past the section (${size} bytes)`);
        e.offset = off;
      }
    }
    entries.sort((a, b) => a.offset - b.offset);
    tdv.setUint32(p + 8, size, true);
    entries.forEach((e, i) => {
      const q = p + 12 + i * 12;
      tdv.setUint32(q, e.type, true);
      tdv.setUint32(q + 4, e.offset, true);
      tdv.setUint32(q + 8, e.size, true);
    });
  }

  const newTypeLen = typeLen + extraTypes.length * 4;
  const newStrLen = strLen + extraStrings.length;
  const out = new Uint8Array(24 + newTypeLen + newStrLen);
  const odv = new DataView(out.buffer);
  out.set(src.subarray(0, 4), 0); // magic, version, flags
  odv.setUint32(4, 24, true);
  odv.setUint32(8, 0, true);
  odv.setUint32(12, newTypeLen, true);
  odv.setUint32(16, newTypeLen, true);
  odv.setUint32(20, newStrLen, true);
  out.set(types, 24);
  extraTypes.forEach((w, i) => odv.setUint32(24 + typeLen + i * 4, w >>> 0, true));
  out.set(src.subarray(strOff, strOff + strLen), 24 + newTypeLen);
  out.set(extraStrings, 24 + newTypeLen + strLen);
  return out;
}
