// Writes spec `rodata` values into a `.rodata` map's initial bytes, by the object's BTF: plain
// variables (`target_tgid`) and struct members (`cfg.max`, as the seed's `struct my_config cfg`).
// Pure (no node:*): the guest loader calls it between opening the object and creating the map.

import type { Btf } from '../core/btf/btf.js';
import { Kind } from '../core/btf/kinds.js';
import { CoreMatrixError } from '../core/errors.js';

/** Byte offset, size and integer-ness of `var` or `var.member.member` inside a DATASEC. */
export function locateRodata(btf: Btf, datasecId: number, path: string): { offset: number; size: number; kind: 'int' | 'chars' } | undefined {
  const sec = btf.type(datasecId);
  if (sec.kind !== Kind.DATASEC) return undefined;
  const [head, ...members] = path.split('.');
  const v = sec.vars.find((x) => btf.name(x.type) === head);
  if (!v) return undefined;
  const vt = btf.type(v.type);
  if (vt.kind !== Kind.VAR) return undefined;
  let offset = v.offset;
  let id = btf.skipModsAndTypedefs(vt.type);
  for (const m of members) {
    const t = btf.type(id);
    if (t.kind !== Kind.STRUCT && t.kind !== Kind.UNION) return undefined;
    const mem = t.members.find((x) => x.name === m);
    if (!mem || mem.bitfieldSize) return undefined;
    offset += mem.bitOffset / 8;
    id = btf.skipModsAndTypedefs(mem.type);
  }
  const t = btf.type(id);
  if (t.kind === Kind.INT || t.kind === Kind.ENUM || t.kind === Kind.ENUM64) return { offset, size: t.size, kind: 'int' };
  if (t.kind === Kind.ARRAY) return { offset, size: t.nelems * btf.sizeOf(t.type), kind: 'chars' };
  return undefined;
}

/**
 * Writes every value into `data` (the initial value of the DATASEC `datasecId`). Unknown names
 * are errors: a silently ignored value would make a suite test something else than it says.
 */
export function writeRodata(btf: Btf, datasecId: number, data: Uint8Array, values: Record<string, number | bigint | string | boolean>, source: string): void {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (const [name, value] of Object.entries(values)) {
    const loc = locateRodata(btf, datasecId, name);
    if (!loc) throw new CoreMatrixError(`${source}: no integer or char-array .rodata variable or member '${name}'`);
    if (loc.kind === 'chars') {
      if (typeof value !== 'string') throw new CoreMatrixError(`${source}: .rodata '${name}' is a char array, not ${typeof value}`);
      const bytes = new TextEncoder().encode(value);
      if (bytes.length >= loc.size) throw new CoreMatrixError(`${source}: .rodata '${name}' holds ${loc.size - 1} bytes, '${value}' has ${bytes.length}`);
      data.fill(0, loc.offset, loc.offset + loc.size);
      data.set(bytes, loc.offset);
      continue;
    }
    if (typeof value === 'string') throw new CoreMatrixError(`${source}: .rodata '${name}' is an integer, not a string`);
    const big = BigInt(typeof value === 'boolean' ? (value ? 1 : 0) : value);
    const bits = loc.size * 8;
    if (big !== BigInt.asIntN(bits, big) && big !== BigInt.asUintN(bits, big)) throw new CoreMatrixError(`${source}: ${value} does not fit .rodata '${name}' (${loc.size} bytes)`);
    const u = BigInt.asUintN(bits, big);
    if (loc.size === 1) dv.setUint8(loc.offset, Number(u));
    else if (loc.size === 2) dv.setUint16(loc.offset, Number(u), true);
    else if (loc.size === 4) dv.setUint32(loc.offset, Number(u), true);
    else if (loc.size === 8) dv.setBigUint64(loc.offset, u, true);
    else throw new CoreMatrixError(`${source}: .rodata '${name}' has an unsupported size ${loc.size}`);
  }
}
