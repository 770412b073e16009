// CO-RE access specs: the parsed form of a relocation's access string against a BTF, and the
// matching of a local spec onto a candidate target type.
//
// An access string "0:1:2:3" is a list of raw indices: the first indexes the root pointer
// (`&p[0]`), each following one is a member index (struct/union) or an element index (array).
// The "high-level" accessors keep only what has meaning across kernels: the root index, named
// members and array indices; anonymous struct/union members are stepped through and re-found by
// name in the target.

import { Btf, essentialName } from '../btf/btf.js';
import { Kind } from '../btf/kinds.js';
import { RelocationError } from '../errors.js';

/** The relocation kinds are part of the .BTF.ext format; one definition, in its reader. */
export { CoreReloKind as ReloKind } from '../btf/ext.js';
import { CoreReloKind as ReloKind } from '../btf/ext.js';

/** Kind names as LLVM and libbpf print them. */
export const RELO_KIND_NAMES = [
  'byte_off', 'byte_sz', 'field_exists', 'signed', 'lshift_u64', 'rshift_u64',
  'local_type_id', 'target_type_id', 'type_exists', 'type_size', 'enumval_exists', 'enumval_value', 'type_matches',
] as const;
export type ReloKindName = (typeof RELO_KIND_NAMES)[number];

export const isFieldKind = (k: number) => k <= ReloKind.FIELD_RSHIFT_U64;
export const isTypeKind = (k: number) =>
  k === ReloKind.TYPE_ID_LOCAL || k === ReloKind.TYPE_ID_TARGET || k === ReloKind.TYPE_EXISTS || k === ReloKind.TYPE_SIZE || k === ReloKind.TYPE_MATCHES;
export const isEnumvalKind = (k: number) => k === ReloKind.ENUMVAL_EXISTS || k === ReloKind.ENUMVAL_VALUE;

/** Longest access chain we follow (as deep as any real kernel type nests, with room to spare). */
export const MAX_SPEC_LEN = 64;

export interface Accessor {
  /** The struct/union (for named accessors), array element type or enum the index applies to. */
  typeId: number;
  idx: number;
  /** Member or enumerator name; undefined for array-index accessors. */
  name?: string;
}

export interface Spec {
  btf: Btf;
  rootId: number;
  kind: ReloKind;
  /** Raw indices (the access string for the local spec; the equivalent path in the target). */
  raw: number[];
  /** High-level accessors. */
  acc: Accessor[];
  bitOffset: number;
}

/** A relocation record from `.BTF.ext` (structurally the same as the object reader's CoreRelo). */
export interface CoreReloRecord {
  insnOff: number;
  typeId: number;
  accessStr: string;
  kind: number;
}

export const isComposite = (k: Kind) => k === Kind.STRUCT || k === Kind.UNION;
const isAnyEnum = (k: Kind) => k === Kind.ENUM || k === Kind.ENUM64;

/** Same kind, or both enums (ENUM and ENUM64 stand in for each other). */
export function kindsCompatible(a: Kind, b: Kind): boolean {
  return a === b || (isAnyEnum(a) && isAnyEnum(b));
}

function isFlexArray(btf: Btf, parent: Accessor | undefined, nelems: number): boolean {
  if (!parent?.name || nelems > 0) return false;
  return parent.idx === btf.vlen(parent.typeId) - 1;
}

/** Parses the local spec. Throws RelocationError when the access string does not fit the type. */
export function parseSpec(btf: Btf, relo: CoreReloRecord): Spec {
  const s = relo.accessStr;
  const spec: Spec = { btf, rootId: relo.typeId, kind: relo.kind as ReloKind, raw: [], acc: [], bitOffset: 0 };
  const bad = (why: string) => new RelocationError(`access string '${s}' on type #${relo.typeId}: ${why}`);
  if (!s || s.startsWith(':')) throw bad('empty or malformed');
  if (isTypeKind(relo.kind)) {
    if (s !== '0') throw bad('type relocations take access string "0"');
    return spec;
  }
  for (const part of s.split(':')) {
    if (!/^-?\d+$/.test(part)) throw bad(`'${part}' is not an index`);
    if (spec.raw.length === MAX_SPEC_LEN) throw bad('too deep');
    spec.raw.push(parseInt(part, 10));
  }
  let id = btf.skipModsAndTypedefs(relo.typeId);
  const first = spec.raw[0]!;
  if (isEnumvalKind(relo.kind)) {
    const k = btf.kind(id);
    if (!isAnyEnum(k) || spec.raw.length > 1 || first < 0 || first >= btf.vlen(id)) throw bad('not an enumerator of an enum');
    const e = btf.typeOf(id, Kind.ENUM, Kind.ENUM64);
    spec.acc.push({ typeId: id, idx: first, name: e.values[first]!.name });
    return spec;
  }
  if (!isFieldKind(relo.kind)) throw bad(`unknown relocation kind ${relo.kind}`);
  spec.acc.push({ typeId: id, idx: first });
  spec.bitOffset = first * btf.sizeOf(id) * 8;
  for (let i = 1; i < spec.raw.length; i++) {
    id = btf.skipModsAndTypedefs(id);
    const idx = spec.raw[i]!;
    const k = btf.kind(id);
    if (isComposite(k)) {
      const t = btf.typeOf(id, Kind.STRUCT, Kind.UNION);
      const m = t.members[idx];
      if (!m || idx < 0) throw bad(`member #${idx} out of range for ${btf.typeName(id)}`);
      spec.bitOffset += m.bitOffset;
      if (m.name) spec.acc.push({ typeId: id, idx, name: m.name });
      id = m.type;
    } else if (k === Kind.ARRAY) {
      const a = btf.typeOf(id, Kind.ARRAY);
      id = btf.skipModsAndTypedefs(a.type);
      const flex = isFlexArray(btf, spec.acc[spec.acc.length - 1], a.nelems);
      if (idx < 0 || (!flex && idx >= a.nelems)) throw bad(`index ${idx} out of bounds for ${btf.typeName(a.id)}`);
      spec.acc.push({ typeId: id, idx });
      spec.bitOffset += idx * btf.sizeOf(id) * 8;
    } else {
      throw bad(`step ${i} reaches ${btf.typeName(id)}, which is neither an aggregate nor an array`);
    }
  }
  return spec;
}

/** Compatibility of a field's type for field relocations. */
export function fieldsCompatible(lb: Btf, lid: number, tb: Btf, tid: number): boolean {
  for (let depth = 0; depth < MAX_SPEC_LEN; depth++) {
    lid = lb.skipModsAndTypedefs(lid);
    tid = tb.skipModsAndTypedefs(tid);
    const lk = lb.kind(lid);
    const tk = tb.kind(tid);
    if (isComposite(lk) && isComposite(tk)) return true;
    if (!kindsCompatible(lk, tk)) return false;
    switch (lk) {
      case Kind.PTR:
      case Kind.FLOAT:
        return true;
      case Kind.FWD:
      case Kind.ENUM:
      case Kind.ENUM64: {
        const ln = essentialName(lb.name(lid));
        const tn = essentialName(tb.name(tid));
        return ln === '' || tn === '' || ln === tn;
      }
      case Kind.INT:
        return intBitOffset(lb, lid) === 0 && intBitOffset(tb, tid) === 0;
      case Kind.ARRAY:
        lid = lb.typeOf(lid, Kind.ARRAY).type;
        tid = tb.typeOf(tid, Kind.ARRAY).type;
        continue;
      default:
        return false;
    }
  }
  throw new RelocationError(`type chain too deep comparing local #${lid} with target #${tid}`);
}

function intBitOffset(btf: Btf, id: number): number {
  return btf.typeOf(id, Kind.INT).bitOffset;
}

/** Compatibility of whole types for type-based relocations (TYPE_EXISTS, TYPE_SIZE, TYPE_ID_TARGET). */
export function typesCompatible(lb: Btf, lid: number, tb: Btf, tid: number, level = MAX_SPEC_LEN): boolean {
  if (!kindsCompatible(lb.kind(lid), tb.kind(tid))) return false;
  for (let depth = 0; depth < 32; depth++) {
    lid = lb.skipModsAndTypedefs(lid);
    tid = tb.skipModsAndTypedefs(tid);
    const lk = lb.kind(lid);
    if (!kindsCompatible(lk, tb.kind(tid))) return false;
    switch (lk) {
      case Kind.UNKN: case Kind.STRUCT: case Kind.UNION: case Kind.ENUM: case Kind.ENUM64: case Kind.FWD:
        return true;
      case Kind.INT:
        return intBitOffset(lb, lid) === 0 && intBitOffset(tb, tid) === 0;
      case Kind.PTR:
        lid = lb.sizeOrType(lid);
        tid = tb.sizeOrType(tid);
        continue;
      case Kind.ARRAY:
        lid = lb.typeOf(lid, Kind.ARRAY).type;
        tid = tb.typeOf(tid, Kind.ARRAY).type;
        continue;
      case Kind.FUNC_PROTO: {
        const lp = lb.typeOf(lid, Kind.FUNC_PROTO);
        const tp = tb.typeOf(tid, Kind.FUNC_PROTO);
        if (lp.params.length !== tp.params.length) return false;
        for (let i = 0; i < lp.params.length; i++) {
          if (level <= 0) throw new RelocationError(`function prototypes nest too deep at local #${lid}`);
          if (!typesCompatible(lb, lb.skipModsAndTypedefs(lp.params[i]!.type), tb, tb.skipModsAndTypedefs(tp.params[i]!.type), level - 1)) return false;
        }
        lid = lp.type;
        tid = tp.type;
        continue;
      }
      default:
        return false;
    }
  }
  throw new RelocationError(`type chain too deep comparing local #${lid} with target #${tid}`);
}

/** Names agree as CO-RE compares them: essential names, anonymous only with anonymous. */
export function namesMatch(ln: string, tn: string): boolean {
  if (tn === '') return ln === '';
  return essentialName(ln) === essentialName(tn);
}

/** The stricter TYPE_MATCHES relation (layouts agree member by member, by name). */
export function typesMatch(lb: Btf, lid: number, tb: Btf, tid: number, behindPtr = false, level = MAX_SPEC_LEN): boolean {
  if (level <= 0) throw new RelocationError(`types nest too deep matching local #${lid}`);
  for (let depth = 0; depth < 32; depth++) {
    lid = lb.skipModsAndTypedefs(lid);
    tid = tb.skipModsAndTypedefs(tid);
    if (!namesMatch(lb.name(lid), tb.name(tid))) return false;
    const lk = lb.kind(lid);
    const tk = tb.kind(tid);
    switch (lk) {
      case Kind.UNKN:
        return tk === Kind.UNKN;
      case Kind.FWD: {
        const lf = lb.kindFlag(lid);
        if (behindPtr) {
          if (tk === Kind.FWD) return lf === tb.kindFlag(tid);
          return (tk === Kind.STRUCT && !lf) || (tk === Kind.UNION && lf);
        }
        return tk === Kind.FWD && lf === tb.kindFlag(tid);
      }
      case Kind.ENUM:
      case Kind.ENUM64: {
        if (!isAnyEnum(tk)) return false;
        const le = lb.typeOf(lid, Kind.ENUM, Kind.ENUM64);
        const te = tb.typeOf(tid, Kind.ENUM, Kind.ENUM64);
        if (le.size !== te.size || le.values.length > te.values.length) return false;
        return le.values.every((lv) => te.values.some((tv) => namesMatch(lv.name, tv.name)));
      }
      case Kind.STRUCT:
      case Kind.UNION: {
        if (behindPtr) {
          if (lk === tk) return true;
          return tk === Kind.FWD && (lk === Kind.UNION) === tb.kindFlag(tid);
        }
        if (lk !== tk) return false;
        const ls = lb.typeOf(lid, Kind.STRUCT, Kind.UNION);
        const ts = tb.typeOf(tid, Kind.STRUCT, Kind.UNION);
        if (ls.members.length > ts.members.length) return false;
        for (const lm of ls.members) {
          const ok = ts.members.some((tm) => namesMatch(lm.name, tm.name) && typesMatch(lb, lm.type, tb, tm.type, behindPtr, level - 1));
          if (!ok) return false;
        }
        return true;
      }
      case Kind.INT: {
        if (tk !== Kind.INT) return false;
        const li = lb.typeOf(lid, Kind.INT);
        const ti = tb.typeOf(tid, Kind.INT);
        return li.size === ti.size && (li.encoding & 1) === (ti.encoding & 1);
      }
      case Kind.PTR:
        if (tk !== Kind.PTR) return false;
        behindPtr = true;
        lid = lb.sizeOrType(lid);
        tid = tb.sizeOrType(tid);
        continue;
      case Kind.ARRAY: {
        if (tk !== Kind.ARRAY) return false;
        const la = lb.typeOf(lid, Kind.ARRAY);
        const ta = tb.typeOf(tid, Kind.ARRAY);
        if (la.nelems !== ta.nelems) return false;
        lid = la.type;
        tid = ta.type;
        continue;
      }
      case Kind.FUNC_PROTO: {
        if (tk !== Kind.FUNC_PROTO) return false;
        const lp = lb.typeOf(lid, Kind.FUNC_PROTO);
        const tp = tb.typeOf(tid, Kind.FUNC_PROTO);
        if (lp.params.length !== tp.params.length) return false;
        for (let i = 0; i < lp.params.length; i++) {
          if (!typesMatch(lb, lp.params[i]!.type, tb, tp.params[i]!.type, behindPtr, level - 1)) return false;
        }
        lid = lp.type;
        tid = tp.type;
        continue;
      }
      default:
        return false;
    }
  }
  throw new RelocationError(`type chain too deep matching local #${lid} with target #${tid}`);
}

/**
 * Finds the member named like `local`'s accessor in target aggregate `tid`, descending into
 * anonymous members. On success pushes raw indices and the accessor onto `spec` and returns the
 * member's type id; returns 0 when there is no such (compatible) member.
 */
function matchMember(lb: Btf, local: Accessor, tb: Btf, tid: number, spec: Spec): number {
  tid = tb.skipModsAndTypedefs(tid);
  const tk = tb.kind(tid);
  if (!isComposite(tk)) return 0;
  const lm = lb.typeOf(local.typeId, Kind.STRUCT, Kind.UNION).members[local.idx]!;
  const t = tb.typeOf(tid, Kind.STRUCT, Kind.UNION);
  for (let i = 0; i < t.members.length; i++) {
    const m = t.members[i]!;
    if (spec.raw.length === MAX_SPEC_LEN) throw new RelocationError(`target type ${tb.typeName(tid)} nests too deep`);
    spec.bitOffset += m.bitOffset;
    spec.raw.push(i);
    if (m.name === '') {
      const found = matchMember(lb, local, tb, m.type, spec);
      if (found) return found;
    } else if (m.name === lm.name) {
      if (!fieldsCompatible(lb, lm.type, tb, m.type)) {
        spec.raw.pop();
        spec.bitOffset -= m.bitOffset;
        return 0;
      }
      spec.acc.push({ typeId: tid, idx: i, name: m.name });
      return m.type === 0 ? -1 : m.type;
    }
    spec.bitOffset -= m.bitOffset;
    spec.raw.pop();
  }
  return 0;
}

/** Matches a local spec onto candidate root `tid` of `tb`; returns the target spec or undefined. */
export function matchSpec(local: Spec, tb: Btf, tid: number): Spec | undefined {
  const lb = local.btf;
  const spec: Spec = { btf: tb, rootId: tid, kind: local.kind, raw: [], acc: [], bitOffset: 0 };
  if (isTypeKind(local.kind)) {
    const ok = local.kind === ReloKind.TYPE_MATCHES ? typesMatch(lb, local.rootId, tb, tid) : typesCompatible(lb, local.rootId, tb, tid);
    return ok ? spec : undefined;
  }
  if (isEnumvalKind(local.kind)) {
    const eid = tb.skipModsAndTypedefs(tid);
    if (!isAnyEnum(tb.kind(eid))) return undefined;
    const want = essentialName(local.acc[0]!.name!);
    const e = tb.typeOf(eid, Kind.ENUM, Kind.ENUM64);
    const i = e.values.findIndex((v) => essentialName(v.name) === want);
    if (i < 0) return undefined;
    spec.acc.push({ typeId: eid, idx: i, name: e.values[i]!.name });
    spec.raw.push(i);
    return spec;
  }
  let cur = tid;
  for (let i = 0; i < local.acc.length; i++) {
    const la = local.acc[i]!;
    cur = tb.skipModsAndTypedefs(cur);
    if (la.name !== undefined) {
      const next = matchMember(lb, la, tb, cur, spec);
      if (next === 0) return undefined;
      cur = next === -1 ? 0 : next;
    } else {
      if (i > 0) {
        if (tb.kind(cur) !== Kind.ARRAY) return undefined;
        const a = tb.typeOf(cur, Kind.ARRAY);
        const flex = isFlexArray(tb, spec.acc[spec.acc.length - 1], a.nelems);
        if (!flex && la.idx >= a.nelems) return undefined;
        cur = tb.skipModsAndTypedefs(a.type);
      }
      if (spec.raw.length === MAX_SPEC_LEN) throw new RelocationError(`target type ${tb.typeName(tid)} nests too deep`);
      spec.acc.push({ typeId: cur, idx: la.idx });
      spec.raw.push(la.idx);
      spec.bitOffset += la.idx * tb.sizeOf(cur) * 8;
    }
  }
  return spec;
}

/** `x.a[3].b`-style rendering of the high-level accessors (no leading dot). */
export function formatSpec(spec: Spec): string {
  if (isTypeKind(spec.kind)) return '';
  if (isEnumvalKind(spec.kind)) return spec.acc[0]?.name ?? '';
  let out = '';
  spec.acc.forEach((a, i) => {
    if (a.name !== undefined) out += (out ? '.' : '') + a.name;
    else if (i > 0 || a.idx > 0) out += `[${a.idx}]`;
  });
  return out;
}
