// `btf minimize` ("btfgen", the idea of `bpftool gen min_core_btf`): from a kernel's full BTF and
// one or more BPF objects, the smallest BTF against which every CO-RE relocation of those objects
// resolves exactly as it does against the full BTF. Pure: bytes in, bytes out.
//
// What is kept, per relocation and per candidate target type (every type the engine would look at:
// same essential name, compatible kind):
//
//  - field relocations (byte_off, byte_sz, field_exists, signed, lshift/rshift): the root and every
//    struct/union/array on the matched access path, each struct keeping only the members on some
//    path (anonymous members stepped through included), at their original bit offsets, and its
//    original size;
//  - type_exists / type_size / target_type_id: the type's shape (typedefs, modifiers, pointers,
//    arrays, function prototypes down to the first struct/union/enum, which keep name, kind and
//    size but no members: the engine compares no further);
//  - type_matches: what the match compared: the members and enumerators that matched the local
//    type's (recursively, as the matching recurses), padded with further members/enumerators when
//    several local ones matched the same target one, because the match also compares counts;
//  - enumval_exists / enumval_value: the enum with the enumerators asked for;
//  - a candidate that matched nothing keeps its name, kind and size only, so the engine sees the
//    same candidate list (and says "not found in any of N candidate(s)") on the minimal BTF.
//
// Why the result is identical: every kept type has the same kind, name, size, encoding, element
// count and references as in the full BTF, and structs/enums keep a subset of their members and
// enumerators (in order). Every comparison the engine makes can only fail more often on a subset,
// so no candidate matches on the minimal BTF that did not match on the full one; and everything a
// successful match consulted is kept, so every candidate that matched still matches, with the same
// offsets. Two details of the engine would break that and are handled: a zero-length array that
// was not its struct's last member must not become the last one (it would turn into a flexible
// array), so the last member is kept too; and the candidate order (first match wins) is kept by
// emitting types in their original id order.
//
// Pointers: bpftool makes a pointer whose pointee no relocation needs point to void. We keep the
// pointee instead, as an empty skeleton (a struct keeps name, kind and size; 12 bytes plus its
// name). With `void *` a type_matches relocation could match where it did not on the full BTF:
// `struct s___local { void *p; }` does not match a kernel `struct s { struct list_head *p; }`, but
// would match `struct s { void *p; }` if a field relocation on `s.p` had kept `p` as `void *`.
//
// Not preserved: type ids. A target_type_id relocation (bpf_core_type_id_kernel) resolves to the
// type's id in the minimal BTF; `sourceId` maps it back. libbpf and bpftool have the same limit.

import { Btf, type BtfType } from './btf.js';
import { Kind } from './kinds.js';
import { BtfBuilder, remapType } from './writer.js';
import { CoreMatrixError, RelocationError, wrap } from '../errors.js';
import { loadObjectSpec } from '../object/load.js';
import type { ObjectSpec } from '../object/types.js';
import { applyCoreRelocations, objectsRootNames, type AppliedRelo } from '../relo/patch.js';
import { findCandidates } from '../relo/engine.js';
import type { RelocationRecord } from '../relo/report.js';
import { ReloKind, RELO_KIND_NAMES, isComposite, isEnumvalKind, isFieldKind, matchSpec, namesMatch, parseSpec, typesMatch, type Spec } from '../relo/spec.js';

export interface MinimizeObject {
  /** Name used in messages (a file name). */
  name: string;
  bytes: Uint8Array;
}

export interface MinimizeStats {
  objects: number;
  relocations: number;
  /** Relocations resolved against the full BTF, by status. */
  ok: number;
  poisoned: number;
  /** target_type_id relocations: their values are ids of the minimal BTF (see sourceId). */
  targetTypeIds: number;
  sourceTypes: number;
  types: number;
  /** Struct/union members and enumerators kept, of those the kept types have in the source. */
  members: number;
  sourceMembers: number;
  sourceBytes: number;
  bytes: number;
}

export interface MinimizedBtf {
  /** Raw BTF (the /sys/kernel/btf/vmlinux format). */
  bytes: Uint8Array;
  /** The full BTF it was cut from. */
  source: Btf;
  /** sourceIds[newId] = id of the same type in the source BTF (sourceIds[0] = 0, void). */
  sourceIds: number[];
  /** Source struct/union/enum id → indices of the members/enumerators kept, ascending. */
  kept: Map<number, number[]>;
  stats: MinimizeStats;
}

/** Applied relocations of one object against the full BTF, as the loader would compute them. */
export interface ObjectRelocations {
  object: string;
  relocations: AppliedRelo[];
}

/** The marking state: which source types are kept, and which members/enumerators of each. */
class Marks {
  readonly types = new Set<number>();
  readonly parts = new Map<number, Set<number>>();
  private readonly decoded = new Map<number, ReturnType<Btf['type']>>();

  constructor(readonly btf: Btf) {}

  type(id: number) {
    let t = this.decoded.get(id);
    if (!t) this.decoded.set(id, (t = this.btf.type(id)));
    return t;
  }

  /**
   * Keeps a type's shape: modifiers, typedefs, pointers (with their pointee), arrays (element and
   * index type), function prototypes; a struct/union/enum stops the walk and keeps no member here.
   */
  shape(id: number): void {
    const stack = [id];
    while (stack.length > 0) {
      const cur = stack.pop()!;
      if (cur === 0 || this.types.has(cur)) continue;
      this.types.add(cur);
      const t = this.type(cur);
      switch (t.kind) {
        case Kind.PTR: case Kind.TYPEDEF: case Kind.CONST: case Kind.VOLATILE: case Kind.RESTRICT: case Kind.TYPE_TAG:
        case Kind.FUNC: case Kind.VAR:
          stack.push(t.type);
          break;
        case Kind.ARRAY:
          stack.push(t.type, t.indexType);
          break;
        case Kind.FUNC_PROTO:
          stack.push(t.type, ...t.params.map((p) => p.type));
          break;
        case Kind.DATASEC: case Kind.DECL_TAG:
          throw new RelocationError(`${this.btf.source}: type #${cur} (${t.kind === Kind.DATASEC ? 'DATASEC' : 'DECL_TAG'}) cannot be part of a CO-RE type`);
        default:
          break; // INT, FLOAT, FWD, STRUCT, UNION, ENUM, ENUM64: leaves of the shape
      }
    }
  }

  private partsOf(id: number): Set<number> {
    let s = this.parts.get(id);
    if (!s) this.parts.set(id, (s = new Set()));
    return s;
  }

  /** Keeps member `idx` of struct/union `id` (and its type's shape). */
  member(id: number, idx: number): void {
    this.shape(id);
    const t = this.type(id);
    if (t.kind !== Kind.STRUCT && t.kind !== Kind.UNION) throw new RelocationError(`${this.btf.source}: type #${id} is not a struct or union`);
    const m = t.members[idx];
    if (!m) throw new RelocationError(`${this.btf.source}: member #${idx} out of range for type #${id}`);
    this.partsOf(id).add(idx);
    this.shape(m.type);
    // A zero-length array is flexible only as its struct's last member: keep the last member so
    // that dropping the ones after it does not turn it into one.
    const last = t.members.length - 1;
    if (idx !== last && this.hasZeroLengthArray(m.type)) {
      this.partsOf(id).add(last);
      this.shape(t.members[last]!.type);
    }
  }

  /** Keeps enumerator `idx` of enum `id`. */
  value(id: number, idx: number): void {
    this.shape(id);
    this.partsOf(id).add(idx);
  }

  /** Keeps further members/enumerators of `id` until it has at least `n`. */
  pad(id: number, n: number): void {
    const t = this.type(id);
    const count = t.kind === Kind.STRUCT || t.kind === Kind.UNION ? t.members.length : t.kind === Kind.ENUM || t.kind === Kind.ENUM64 ? t.values.length : 0;
    const have = this.partsOf(id);
    for (let i = 0; i < count && have.size < n; i++) {
      if (have.has(i)) continue;
      if (t.kind === Kind.STRUCT || t.kind === Kind.UNION) this.member(id, i);
      else this.value(id, i);
    }
  }

  private hasZeroLengthArray(id: number): boolean {
    for (let depth = 0; depth < 64; depth++) {
      id = this.btf.skipModsAndTypedefs(id);
      const t = this.type(id);
      if (t.kind !== Kind.ARRAY) return false;
      if (t.nelems === 0) return true;
      id = t.type;
    }
    return false;
  }
}

/** Keeps what a field relocation's matched target spec walked through. */
function markFieldPath(marks: Marks, spec: Spec): void {
  const tb = marks.btf;
  marks.shape(spec.rootId);
  let cur = spec.rootId;
  for (let i = 1; i < spec.raw.length; i++) {
    cur = tb.skipModsAndTypedefs(cur);
    const t = marks.type(cur);
    const idx = spec.raw[i]!;
    if (t.kind === Kind.STRUCT || t.kind === Kind.UNION) {
      marks.member(cur, idx);
      cur = t.members[idx]!.type;
    } else if (t.kind === Kind.ARRAY) {
      cur = t.type;
    } else {
      throw new RelocationError(`${tb.source}: access path of ${tb.typeName(spec.rootId)} reaches ${tb.typeName(cur)}`);
    }
  }
}

/**
 * Keeps what a successful type_matches comparison of local `lid` with target `tid` consulted:
 * the same walk as the matching itself, keeping the target member (enumerator) each local one matched.
 */
function markMatch(marks: Marks, lb: Btf, lid: number, tid: number, behindPtr: boolean, level = 64): void {
  const tb = marks.btf;
  if (level <= 0) throw new RelocationError(`types nest too deep matching local #${lid}`);
  for (let depth = 0; depth < 32; depth++) {
    marks.shape(tid);
    lid = lb.skipModsAndTypedefs(lid);
    tid = tb.skipModsAndTypedefs(tid);
    switch (lb.kind(lid)) {
      case Kind.ENUM: case Kind.ENUM64: {
        const le = lb.typeOf(lid, Kind.ENUM, Kind.ENUM64);
        const te = marks.type(tid);
        if (te.kind !== Kind.ENUM && te.kind !== Kind.ENUM64) return;
        for (const lv of le.values) {
          const i = te.values.findIndex((tv) => namesMatch(lv.name, tv.name));
          if (i >= 0) marks.value(tid, i);
        }
        marks.pad(tid, le.values.length);
        return;
      }
      case Kind.STRUCT: case Kind.UNION: {
        if (behindPtr) return; // only name and kind are compared behind a pointer
        const ls = lb.typeOf(lid, Kind.STRUCT, Kind.UNION);
        const ts = marks.type(tid);
        if (ts.kind !== Kind.STRUCT && ts.kind !== Kind.UNION) return;
        for (const lm of ls.members) {
          const i = ts.members.findIndex((tm) => namesMatch(lm.name, tm.name) && typesMatch(lb, lm.type, tb, tm.type, behindPtr, level - 1));
          if (i < 0) continue;
          marks.member(tid, i);
          markMatch(marks, lb, lm.type, ts.members[i]!.type, behindPtr, level - 1);
        }
        marks.pad(tid, ls.members.length);
        return;
      }
      case Kind.PTR:
        behindPtr = true;
        lid = lb.sizeOrType(lid);
        tid = tb.sizeOrType(tid);
        continue;
      case Kind.ARRAY:
        lid = lb.typeOf(lid, Kind.ARRAY).type;
        tid = tb.kind(tid) === Kind.ARRAY ? tb.typeOf(tid, Kind.ARRAY).type : 0;
        continue;
      case Kind.FUNC_PROTO: {
        const lp = lb.typeOf(lid, Kind.FUNC_PROTO);
        const tp = marks.type(tid);
        if (tp.kind !== Kind.FUNC_PROTO) return;
        lp.params.forEach((p, i) => {
          const q = tp.params[i];
          if (q) markMatch(marks, lb, p.type, q.type, behindPtr, level - 1);
        });
        lid = lp.type;
        tid = tp.type;
        continue;
      }
      default:
        return; // void, FWD, INT: the shape holds all that was compared
    }
  }
}

function describe(r: AppliedRelo): string {
  return `${r.section} insn ${r.insn}: ${r.kindName} ${r.localType}${r.spec ? ` ${r.spec}` : ''}`;
}

/** Marks what one object's relocations need; returns them as resolved against the full BTF. */
function markObject(marks: Marks, spec: ObjectSpec): AppliedRelo[] {
  const tb = marks.btf;
  const relos = spec.btfExt?.coreRelos ?? new Map();
  // The loader's own result against the full BTF decides what must come out the same.
  const sections = new Map([...spec.sections].map(([k, v]) => [k, v.slice()]));
  const applied = applyCoreRelocations(spec.btf, relos, sections, { vmlinux: tb });
  const bad = applied.find((r) => r.status === 'error');
  if (bad) throw new RelocationError(`${spec.source}: ${describe(bad)} cannot be resolved against ${tb.source}: ${bad.reason ?? 'error'}`);
  for (const list of relos.values()) {
    for (const relo of list) {
      if (relo.kind === ReloKind.TYPE_ID_LOCAL) continue;
      const local = parseSpec(spec.btf, relo);
      for (const { id: cid } of findCandidates(spec.btf, relo.typeId, { vmlinux: tb })) {
        let target: Spec | undefined;
        try {
          target = matchSpec(local, tb, cid);
        } catch (e) {
          if (!(e instanceof CoreMatrixError)) throw e;
          target = undefined; // the engine never got this far with it (no relocation failed)
        }
        if (!target) marks.shape(cid);
        else if (isFieldKind(relo.kind)) markFieldPath(marks, target);
        else if (isEnumvalKind(relo.kind)) {
          marks.shape(cid);
          marks.value(target.acc[0]!.typeId, target.acc[0]!.idx);
        } else if (relo.kind === ReloKind.TYPE_MATCHES) markMatch(marks, spec.btf, relo.typeId, cid, false);
        else marks.shape(cid);
      }
    }
  }
  return applied;
}

/** Encodes the marked types, in source id order, with their kept members and enumerators. */
function emit(marks: Marks): { bytes: Uint8Array; sourceIds: number[]; kept: Map<number, number[]>; members: number; sourceMembers: number } {
  const ids = [...marks.types].sort((a, b) => a - b);
  const newId = new Map<number, number>(ids.map((id, i) => [id, i + 1]));
  const ref = (from: number, id: number): number => {
    if (id === 0) return 0;
    const n = newId.get(id);
    if (n === undefined) throw new RelocationError(`btf minimize: type #${from} refers to #${id}, which was not kept`);
    return n;
  };
  const kept = new Map<number, number[]>();
  let members = 0;
  let sourceMembers = 0;
  const b = new BtfBuilder();
  for (const id of ids) {
    const t = marks.type(id);
    if (t.kind === Kind.UNKN || t.kind === Kind.DATASEC || t.kind === Kind.DECL_TAG) throw new RelocationError(`btf minimize: type #${id} cannot be kept`);
    // Aggregates and enums keep only the members/enumerators the relocations touched.
    const keep = (n: number): number[] => {
      const idx = [...(marks.parts.get(id) ?? [])].sort((x, y) => x - y);
      kept.set(id, idx);
      members += idx.length;
      sourceMembers += n;
      return idx;
    };
    let cut: BtfType = t;
    if (t.kind === Kind.STRUCT || t.kind === Kind.UNION) cut = { ...t, members: keep(t.members.length).map((i) => t.members[i]!) };
    else if (t.kind === Kind.ENUM || t.kind === Kind.ENUM64) cut = { ...t, values: keep(t.values.length).map((i) => t.values[i]!) };
    b.add(remapType(cut, (r) => ref(id, r)));
  }
  return { bytes: b.bytes(), sourceIds: [0, ...ids], kept, members, sourceMembers };
}

/**
 * The minimal BTF for `objects` cut from `target` (a vmlinux BTF, not split BTF). Throws
 * FormatError for malformed objects and RelocationError (naming object, section and
 * instruction) when a relocation cannot be resolved against `target` at all (status 'error':
 * ambiguous, malformed): no BTF can make such an object load. Poisoned relocations (no type
 * matches) are fine: they come out poisoned on the minimal BTF too.
 */
export function minimizeBtf(objects: readonly MinimizeObject[], target: Btf): MinimizedBtf & { relocations: ObjectRelocations[] } {
  if (target.base) throw new RelocationError(`${target.source}: split (module) BTF cannot be minimized on its own`);
  const marks = new Marks(target);
  const relocations: ObjectRelocations[] = [];
  const named = (o: MinimizeObject, e: unknown): unknown => (!(e instanceof CoreMatrixError) || e.message.includes(o.name) ? e : wrap(o.name, e));
  const specs = objects.map((o) => {
    try {
      return loadObjectSpec(o.bytes, o.name);
    } catch (e) {
      throw named(o, e);
    }
  });
  // Every object's root type names in one pass over the target's names, not one pass per object.
  target.prefetchEssential(objectsRootNames(specs));
  objects.forEach((o, i) => {
    try {
      relocations.push({ object: o.name, relocations: markObject(marks, specs[i]!) });
    } catch (e) {
      throw named(o, e);
    }
  });
  const e = emit(marks);
  const all = relocations.flatMap((r) => r.relocations);
  return {
    bytes: e.bytes,
    source: target,
    sourceIds: e.sourceIds,
    kept: e.kept,
    relocations,
    stats: {
      objects: objects.length,
      relocations: all.length,
      ok: all.filter((r) => r.status === 'ok').length,
      poisoned: all.filter((r) => r.status === 'poisoned').length,
      targetTypeIds: all.filter((r) => r.kind === ReloKind.TYPE_ID_TARGET).length,
      sourceTypes: target.count - 1,
      types: e.sourceIds.length - 1,
      members: e.members,
      sourceMembers: e.sourceMembers,
      sourceBytes: target.bytes.length,
      bytes: e.bytes.length,
    },
  };
}

/** The source BTF's id of a minimal BTF's type id. */
export function sourceId(min: MinimizedBtf, id: number): number {
  const s = min.sourceIds[id];
  if (s === undefined) throw new RelocationError(`type id ${id} is not in the minimized BTF (${min.sourceIds.length} types)`);
  return s;
}

/**
 * A relocation's target access path on the minimal BTF (`0:3:1`, from the root `rootId` of the
 * minimal BTF), rewritten with the source BTF's member and enumerator indices.
 */
function sourceAccess(min: MinimizedBtf, kind: number, rootId: number, raw: string): string {
  if (raw === '') return raw;
  const tb = min.source;
  const idx = raw.split(':').map(Number);
  let cur = sourceId(min, rootId);
  const keptAt = (id: number, i: number): number => {
    const k = min.kept.get(id);
    const s = k?.[i];
    if (s === undefined) throw new RelocationError(`index ${i} of type #${id} is not in the minimized BTF`);
    return s;
  };
  if (isEnumvalKind(kind)) return idx.map((i) => keptAt(tb.skipModsAndTypedefs(cur), i)).join(':');
  const out = [idx[0]!];
  for (let i = 1; i < idx.length; i++) {
    cur = tb.skipModsAndTypedefs(cur);
    const k = tb.kind(cur);
    if (isComposite(k)) {
      const s = keptAt(cur, idx[i]!);
      out.push(s);
      cur = tb.typeOf(cur, Kind.STRUCT, Kind.UNION).members[s]!.type;
    } else if (k === Kind.ARRAY) {
      out.push(idx[i]!);
      cur = tb.typeOf(cur, Kind.ARRAY).type;
    } else {
      throw new RelocationError(`access ${raw} does not fit type #${sourceId(min, rootId)}`);
    }
  }
  return out.join(':');
}


/**
 * Relocation records made against a minimal BTF, with what names only its own numbering (type
 * ids, member and enumerator indices in target access paths) rewritten to the full BTF's: they
 * then compare equal to the records made against the full BTF.
 */
export function inSourceTerms(min: MinimizedBtf, records: readonly RelocationRecord[]): RelocationRecord[] {
  return records.map((r) => {
    const out = { ...r };
    const kind = RELO_KIND_NAMES.indexOf(r.kind);
    if (r.targetTypeId !== undefined) {
      out.targetAccess = sourceAccess(min, kind, r.targetTypeId, r.targetAccess!);
      out.targetTypeId = sourceId(min, r.targetTypeId);
    }
    if (kind === ReloKind.TYPE_ID_TARGET && r.target !== null) out.target = sourceId(min, r.target);
    return out;
  });
}
