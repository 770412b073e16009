// The CO-RE relocation engine: for one relocation, find candidate types in the target BTF,
// match the local access spec onto each, compute the value the instruction held at compile time
// (`orig`) and the value it must hold on the target (`new`), and decide: patch, poison, or error.
// Patching the instruction is a separate step (patch.ts), as is applying a whole section.
//
// The decisions follow libbpf's documented behaviour, so that our loader and libbpf translate
// an object identically (the differential tests compare the kernel's xlated instructions).

import { Btf, essentialName } from '../btf/btf.js';
import { Kind, INT_SIGNED } from '../btf/kinds.js';
import { CoreMatrixError, RelocationError } from '../errors.js';
import {
  type CoreReloRecord, type Spec, ReloKind, RELO_KIND_NAMES, type ReloKindName,
  formatSpec, isEnumvalKind, isFieldKind, isTypeKind, kindsCompatible, matchSpec, parseSpec,
} from './spec.js';

export interface Candidate {
  btf: Btf;
  id: number;
}

/** Target BTFs: the kernel's vmlinux BTF first, then module BTFs (split on top of it). */
export interface Target {
  vmlinux: Btf;
  modules?: Btf[];
}

/** Candidate lists per local root type id, pruned as relocations narrow them (shared across relocations of one object). */
export type CandidateCache = Map<number, Candidate[]>;

export interface ReloResult {
  kind: ReloKind;
  kindName: ReloKindName;
  /** The local root type as C: `struct task_struct___old`. */
  localType: string;
  access: string;
  /** Field path, e.g. `__sk_common.skc_net.net`; enumerator name for enum relocations. */
  spec: string;
  status: 'ok' | 'poisoned' | 'error';
  /** Value computed from the local BTF (what clang put in the instruction). */
  orig: bigint;
  /** Value for the target; undefined when poisoned or on error. */
  new?: bigint;
  /** Check that the instruction holds `orig` before patching. */
  validate: boolean;
  origSize: number;
  newSize: number;
  /** A load/store whose size would have to change in a way that loses meaning: poison LDX/ST/STX. */
  failMemszAdjust: boolean;
  /** The chosen target spec (root type id, raw path, bit offset) when one matched. */
  target?: { typeId: number; typeName: string; raw: string; bitOffset: number; spec: string; btf: Btf };
  /** Why it is poisoned or failed, one line. */
  reason?: string;
}

const k2n = (k: number): ReloKindName => RELO_KIND_NAMES[k] ?? ('unknown' as ReloKindName);

/** Root-type candidates of a local type in the target: vmlinux first, modules only when it has none. */
export function findCandidates(local: Btf, localId: number, target: Target): Candidate[] {
  const lk = local.kind(localId);
  const ess = essentialName(local.name(localId));
  const out: Candidate[] = [];
  const scan = (btf: Btf, ids: readonly number[]) => {
    for (const id of ids) if (kindsCompatible(btf.kind(id), lk)) out.push({ btf, id });
  };
  scan(target.vmlinux, target.vmlinux.byEssentialName(ess));
  if (out.length === 0) {
    for (const m of target.modules ?? []) {
      // Split BTF indexes include the base; keep only the module's own types.
      scan(m, m.byEssentialName(ess).filter((id) => id >= m.startId));
    }
  }
  return out;
}

interface FieldVal {
  val: bigint;
  size: number;
  typeId: number;
  validate: boolean;
}

/** Value of a field relocation for one spec (local or target). `undefined` spec = field not found. */
function fieldValue(kind: ReloKind, spec: Spec | undefined): FieldVal | 'poison' {
  if (kind === ReloKind.FIELD_EXISTS) return { val: spec ? 1n : 0n, size: 0, typeId: 0, validate: true };
  if (!spec) return 'poison';
  const btf = spec.btf;
  const acc = spec.acc[spec.acc.length - 1]!;
  if (acc.name === undefined) {
    // Array element (or root) access.
    const sz = btf.sizeOf(acc.typeId);
    if (kind === ReloKind.FIELD_BYTE_OFFSET) return { val: BigInt(spec.bitOffset / 8), size: sz, typeId: acc.typeId, validate: true };
    if (kind === ReloKind.FIELD_BYTE_SIZE) return { val: BigInt(sz), size: 0, typeId: 0, validate: true };
    throw new RelocationError(`${k2n(kind)} cannot be applied to an array element access`);
  }
  const parent = btf.typeOf(acc.typeId, Kind.STRUCT, Kind.UNION);
  const m = parent.members[acc.idx]!;
  const fieldId = btf.skipModsAndTypedefs(m.type);
  const bitOff = spec.bitOffset;
  let bitSz = m.bitfieldSize;
  const bitfield = bitSz > 0;
  let byteSz: number;
  let byteOff: number;
  if (bitfield) {
    byteSz = btf.sizeOrType(fieldId); // the bitfield's underlying int/enum size
    if (byteSz <= 0) throw new RelocationError(`bitfield ${m.name} has a base type without size`);
    byteOff = Math.floor(bitOff / 8 / byteSz) * byteSz;
    while (bitOff + bitSz - byteOff * 8 > byteSz * 8) {
      if (byteSz >= 8) throw new RelocationError(`bitfield ${m.name} cannot be read with one 64-bit load`);
      byteSz *= 2;
      byteOff = Math.floor(bitOff / 8 / byteSz) * byteSz;
    }
  } else {
    byteSz = btf.sizeOf(fieldId);
    byteOff = Math.floor(spec.bitOffset / 8);
    bitSz = byteSz * 8;
  }
  // For bitfields the compiler's choice of load may differ from ours: do not insist on it.
  let validate = !bitfield;
  let val: bigint;
  let size = 0;
  let typeId = 0;
  switch (kind) {
    case ReloKind.FIELD_BYTE_OFFSET:
      val = BigInt(byteOff);
      if (!bitfield) {
        size = byteSz;
        typeId = fieldId;
      }
      break;
    case ReloKind.FIELD_BYTE_SIZE:
      val = BigInt(byteSz);
      break;
    case ReloKind.FIELD_SIGNED: {
      const fk = btf.kind(fieldId);
      const signed = ((fk === Kind.ENUM || fk === Kind.ENUM64) && btf.kindFlag(fieldId)) ||
        (fk === Kind.INT && (btf.typeOf(fieldId, Kind.INT).encoding & INT_SIGNED) !== 0);
      val = signed ? 1n : 0n;
      validate = true;
      break;
    }
    case ReloKind.FIELD_LSHIFT_U64:
      val = BigInt(64 - (bitOff + bitSz - byteOff * 8));
      break;
    case ReloKind.FIELD_RSHIFT_U64:
      val = BigInt(64 - bitSz);
      validate = true;
      break;
    default:
      throw new RelocationError(`unsupported field relocation kind ${kind}`);
  }
  return { val, size, typeId, validate };
}

function typeValue(kind: ReloKind, spec: Spec | undefined): bigint {
  if (!spec) return 0n;
  switch (kind) {
    case ReloKind.TYPE_ID_TARGET: return BigInt(spec.rootId);
    case ReloKind.TYPE_EXISTS:
    case ReloKind.TYPE_MATCHES: return 1n;
    case ReloKind.TYPE_SIZE: return BigInt(spec.btf.sizeOf(spec.rootId));
    default: throw new RelocationError(`unsupported type relocation kind ${kind}`);
  }
}

function enumValue(kind: ReloKind, spec: Spec | undefined): bigint | 'poison' {
  if (kind === ReloKind.ENUMVAL_EXISTS) return spec ? 1n : 0n;
  if (!spec) return 'poison';
  const a = spec.acc[0]!;
  const e = spec.btf.typeOf(a.typeId, Kind.ENUM, Kind.ENUM64);
  const v = e.values[a.idx]!.value;
  // A 32-bit enumerator is carried as a signed 32-bit value widened to 64 bits.
  return e.kind === Kind.ENUM ? BigInt.asUintN(64, BigInt.asIntN(32, v)) : BigInt.asUintN(64, v);
}

interface Calc {
  orig: bigint;
  new?: bigint;
  poison: boolean;
  validate: boolean;
  origSize: number;
  newSize: number;
  failMemszAdjust: boolean;
}

function calc(kind: ReloKind, local: Spec, target: Spec | undefined): Calc {
  const res: Calc = { orig: 0n, poison: false, validate: true, origSize: 0, newSize: 0, failMemszAdjust: false };
  if (isFieldKind(kind)) {
    const o = fieldValue(kind, local);
    if (o === 'poison') throw new RelocationError('local field spec did not resolve');
    res.orig = o.val;
    res.origSize = o.size;
    res.validate = o.validate;
    const n = fieldValue(kind, target);
    if (n === 'poison') {
      res.poison = true;
      return res;
    }
    res.new = n.val;
    res.newSize = n.size;
    if (res.origSize !== res.newSize) {
      const lb = local.btf;
      const tb = target!.btf;
      const lk = lb.kind(o.typeId);
      const tk = tb.kind(n.typeId);
      const unsignedInt = (b: Btf, id: number) => b.typeOf(id, Kind.INT).encoding !== INT_SIGNED;
      const ok = (lk === Kind.PTR && tk === Kind.PTR) || (lk === Kind.INT && tk === Kind.INT && unsignedInt(lb, o.typeId) && unsignedInt(tb, n.typeId));
      res.failMemszAdjust = !ok;
    }
  } else if (isTypeKind(kind)) {
    res.orig = typeValue(kind, local);
    res.new = typeValue(kind, target);
    if (kind === ReloKind.TYPE_ID_TARGET) res.validate = false; // type ids shift when objects are linked
  } else if (isEnumvalKind(kind)) {
    const o = enumValue(kind, local);
    if (o === 'poison') throw new RelocationError('local enumerator did not resolve');
    res.orig = o;
    const n = enumValue(kind, target);
    if (n === 'poison') res.poison = true;
    else res.new = n;
  } else {
    throw new RelocationError(`unknown CO-RE relocation kind ${kind}`);
  }
  return res;
}

/**
 * Resolves one CO-RE relocation. Never throws for a relocation-level problem: the result has
 * status 'error' and a reason (malformed access strings, ambiguity, unsupported kinds), or
 * 'poisoned' when no target matched and the kind needs one.
 */
export function resolveRelo(local: Btf, relo: CoreReloRecord, target: Target, cache: CandidateCache = new Map()): ReloResult {
  const kind = relo.kind as ReloKind;
  const base: ReloResult = {
    kind, kindName: k2n(kind), localType: '', access: relo.accessStr, spec: '', status: 'error', orig: 0n,
    validate: true, origSize: 0, newSize: 0, failMemszAdjust: false,
  };
  try {
    base.localType = local.typeName(relo.typeId);
    const localSpec = parseSpec(local, relo);
    base.spec = formatSpec(localSpec);
    if (kind === ReloKind.TYPE_ID_LOCAL) {
      return { ...base, status: 'ok', orig: BigInt(relo.typeId), new: BigInt(relo.typeId), validate: false };
    }
    if (local.name(relo.typeId) === '') throw new RelocationError(`${k2n(kind)} relocation on an anonymous type is not supported`);

    let cands = cache.get(relo.typeId);
    if (!cands) {
      cands = findCandidates(local, relo.typeId, target);
      cache.set(relo.typeId, cands);
    }
    let chosen: { spec: Spec; res: Calc } | undefined;
    const kept: Candidate[] = [];
    for (const c of cands) {
      const spec = matchSpec(localSpec, c.btf, c.id);
      if (!spec) continue;
      const res = calc(kind, localSpec, spec);
      if (!chosen) chosen = { spec, res };
      else if (spec.bitOffset !== chosen.spec.bitOffset) {
        throw new RelocationError(`field offset ambiguity: ${c.btf.typeName(c.id)} puts it at bit ${spec.bitOffset}, ${chosen.spec.btf.typeName(chosen.spec.rootId)} at bit ${chosen.spec.bitOffset}`);
      } else if (res.poison !== chosen.res.poison || res.new !== chosen.res.new) {
        throw new RelocationError(`relocation decision ambiguity: ${c.btf.typeName(c.id)} gives ${res.new}, ${chosen.spec.btf.typeName(chosen.spec.rootId)} gives ${chosen.res.new}`);
      }
      kept.push(c);
    }
    if (kept.length > 0) cache.set(relo.typeId, kept);
    const res = chosen ? chosen.res : calc(kind, localSpec, undefined);
    const out: ReloResult = {
      ...base,
      status: res.poison ? 'poisoned' : 'ok',
      orig: res.orig, validate: res.validate, origSize: res.origSize, newSize: res.newSize, failMemszAdjust: res.failMemszAdjust,
    };
    if (!res.poison) out.new = res.new;
    if (chosen) {
      const s = chosen.spec;
      out.target = { typeId: s.rootId, typeName: s.btf.typeName(s.rootId), raw: s.raw.join(':'), bitOffset: s.bitOffset, spec: formatSpec(s), btf: s.btf };
    }
    if (res.poison) out.reason = cands.length === 0 ? `no type named ${essentialName(local.name(relo.typeId))} in the target` : `${base.spec || base.localType} not found in any of ${cands.length} candidate(s)`;
    return out;
  } catch (e) {
    if (!(e instanceof CoreMatrixError)) throw e;
    return { ...base, status: 'error', reason: e.message };
  }
}
