// When two objects name the same global (an extern and its definition, or two weak definitions),
// their BTF must describe the same thing. The rules are the static linker's, as libbpf states
// them: modifiers and typedefs do not count; named kinds must agree on the name; integers,
// floats and enums on the size only; through a pointer only the shape of what it points to
// matters (a forward declaration matches a struct or union of that name); arrays compare
// their element types; functions their linkage (static or not), parameter types and return
// type; a variable its linkage and type; a struct or union reached directly, member by member.
// Maps in `.maps` compare their definitions instead.

import type { Btf } from '../btf/btf.js';
import { FUNC_STATIC, Kind, KIND_NAMES, VAR_STATIC } from '../btf/kinds.js';
import { CoreMatrixError } from '../errors.js';
import { parseBtfMapDef } from '../object/maps.js';
import type { MapSpec } from '../object/types.js';

/** Deeper than any real declaration; a bound so that malformed BTF cannot recurse forever. */
const MAX_DEPTH = 64;

/** The two objects compared, as messages name them. */
export interface Sides {
  a: string;
  b: string;
}

/**
 * Why the types `a#ida` and `b#idb` cannot describe the same global, or undefined when they can.
 * `exact`: a struct or union must match member by member (false below a pointer).
 */
export function typeMismatch(a: Btf, ida: number, b: Btf, idb: number, sides: Sides, exact = true, depth = 0): string | undefined {
  const { a: na, b: nb } = sides;
  if (depth > MAX_DEPTH) return 'types nest too deep to compare';
  const ia = a.skipModsAndTypedefs(ida);
  const ib = b.skipModsAndTypedefs(idb);
  const ta = a.type(ia);
  const tb = b.type(ib);
  const name = (t: { kind: Kind; name: string }) => `${KIND_NAMES[t.kind]}${t.name ? ` '${t.name}'` : ''}`;

  if (!exact && (ta.kind === Kind.FWD) !== (tb.kind === Kind.FWD)) {
    const [fwd, other] = ta.kind === Kind.FWD ? [ta, tb] : [tb, ta];
    if (fwd.name !== other.name) return `forward declaration '${fwd.name}' and ${name(other)} differ in name (${na}, ${nb})`;
    const union = fwd.kind === Kind.FWD && fwd.union;
    if ((union && other.kind === Kind.UNION) || (!union && other.kind === Kind.STRUCT)) return undefined;
    return `${union ? 'union' : 'struct'} forward declaration '${fwd.name}' and ${name(other)} differ in kind (${na}, ${nb})`;
  }
  if (ta.kind !== tb.kind) return `${name(ta)} in ${na}, ${name(tb)} in ${nb}`;
  switch (ta.kind) {
    case Kind.STRUCT: case Kind.UNION: case Kind.ENUM: case Kind.ENUM64: case Kind.FWD: case Kind.FUNC: case Kind.VAR:
      if (ta.name !== tb.name) return `${name(ta)} in ${na}, ${name(tb)} in ${nb}`;
  }
  switch (ta.kind) {
    case Kind.UNKN:
      return undefined;
    case Kind.FWD:
      return tb.kind === Kind.FWD && ta.union !== tb.union ? `forward declarations of '${ta.name}' differ in kind (struct, union)` : undefined;
    case Kind.INT: case Kind.FLOAT: case Kind.ENUM: case Kind.ENUM64: {
      const sb = (tb as { size: number }).size;
      return ta.size === sb ? undefined : `${name(ta)} is ${ta.size} bytes in ${na}, ${name(tb)} ${sb} in ${nb}`;
    }
    case Kind.PTR:
      return typeMismatch(a, ta.type, b, (tb as typeof ta).type, sides, false, depth + 1);
    case Kind.ARRAY:
      return typeMismatch(a, ta.type, b, (tb as typeof ta).type, sides, exact, depth + 1);
    case Kind.FUNC: {
      const fb = tb as typeof ta;
      if ((ta.linkage === FUNC_STATIC) !== (fb.linkage === FUNC_STATIC)) return `function '${ta.name}' is static in ${ta.linkage === FUNC_STATIC ? na : nb} only`;
      return typeMismatch(a, ta.type, b, fb.type, sides, exact, depth + 1);
    }
    case Kind.VAR: {
      const vb = tb as typeof ta;
      if ((ta.linkage === VAR_STATIC) !== (vb.linkage === VAR_STATIC)) return `variable '${ta.name}' is static in ${ta.linkage === VAR_STATIC ? na : nb} only`;
      return typeMismatch(a, ta.type, b, vb.type, sides, exact, depth + 1);
    }
    case Kind.STRUCT: case Kind.UNION: {
      if (!exact) return undefined;
      const mb = (tb as typeof ta).members;
      if (ta.members.length !== mb.length) return `${name(ta)} has ${ta.members.length} members in ${na}, ${mb.length} in ${nb}`;
      for (let i = 0; i < mb.length; i++) {
        const x = ta.members[i]!;
        const y = mb[i]!;
        if (x.name !== y.name) return `${name(ta)} member #${i} is '${x.name}' in ${na}, '${y.name}' in ${nb}`;
        if (x.bitOffset !== y.bitOffset || x.bitfieldSize !== y.bitfieldSize) return `${name(ta)} member '${x.name}' is at bit ${x.bitOffset} in ${na}, ${y.bitOffset} in ${nb}`;
        const why = typeMismatch(a, x.type, b, y.type, sides, exact, depth + 1);
        if (why) return why;
      }
      return undefined;
    }
    case Kind.FUNC_PROTO: {
      const pb = (tb as typeof ta).params;
      if (ta.params.length !== pb.length) return `${ta.params.length} parameters in ${na}, ${pb.length} in ${nb}`;
      for (let i = 0; i < pb.length; i++) {
        // Parameter names do not count (an extern declaration may have none).
        const why = typeMismatch(a, ta.params[i]!.type, b, pb[i]!.type, sides, exact, depth + 1);
        if (why) return `parameter #${i + 1}: ${why}`;
      }
      const why = typeMismatch(a, ta.type, b, (tb as typeof ta).type, sides, exact, depth + 1);
      return why ? `return type: ${why}` : undefined;
    }
    default:
      return `${name(ta)} cannot describe a global`;
  }
}

function mapDef(btf: Btf, varId: number, name: string, where: string): MapSpec | string {
  const v = btf.type(varId);
  if (v.kind !== Kind.VAR) return `type #${varId} is ${KIND_NAMES[v.kind]}, not a map variable`;
  try {
    return parseBtfMapDef(btf, v.type, name, where).spec;
  } catch (e) {
    if (e instanceof CoreMatrixError) return e.message;
    throw e;
  }
}

/** Why two `.maps` definitions of map `name` (VARs `a#aVar`, `b#bVar`) cannot be one map, or undefined. */
export function mapMismatch(a: Btf, aVar: number, b: Btf, bVar: number, name: string, sides: Sides): string | undefined {
  const da = mapDef(a, aVar, name, `${sides.a}: map '${name}'`);
  if (typeof da === 'string') return da;
  const db = mapDef(b, bVar, name, `${sides.b}: map '${name}'`);
  if (typeof db === 'string') return db;
  return specMismatch(a, da, b, db, sides, '');
}

function specMismatch(a: Btf, da: MapSpec, b: Btf, db: MapSpec, sides: Sides, prefix: string): string | undefined {
  const fields: [string, unknown, unknown][] = [
    ['type', da.type, db.type], ['key_size', da.keySize, db.keySize], ['value_size', da.valueSize, db.valueSize],
    ['max_entries', da.maxEntries, db.maxEntries], ['map_flags', da.flags, db.flags], ['numa_node', da.numaNode, db.numaNode],
    ['pinning', da.pinning, db.pinning], ['map_extra', da.mapExtra, db.mapExtra],
  ];
  for (const [what, x, y] of fields) if (x !== y) return `${prefix}${what} is ${String(x)} in ${sides.a}, ${String(y)} in ${sides.b}`;
  for (const [what, x, y] of [['key', da.keyTypeId, db.keyTypeId], ['value', da.valueTypeId, db.valueTypeId]] as const) {
    if ((x === 0) !== (y === 0)) return `${prefix}${what} has a type in ${x ? sides.a : sides.b} only`;
    const why = x !== 0 ? typeMismatch(a, x, b, y, sides) : undefined;
    if (why) return `${prefix}${what} type: ${why}`;
  }
  if (!!da.inner !== !!db.inner) return `${prefix}an inner map is defined in ${da.inner ? sides.a : sides.b} only`;
  if (da.inner && db.inner) return specMismatch(a, da.inner, b, db.inner, sides, `${prefix}inner map: `);
  return undefined;
}
