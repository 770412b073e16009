// Rewrites an object's BTF so an older kernel accepts it, keeping every type id where it was
// (programs, func_info and map definitions refer to types by id). clang-19 emits kinds that
// 5.10 has never heard of; each missing kind is replaced by one the kernel knows with the same
// size, so layouts stay right:
//
//   FLOAT (5.13)     → empty STRUCT of the same size
//   DECL_TAG (5.16)  → INT, 1 byte, unnamed (a tag has no layout)
//   TYPE_TAG (5.17)  → CONST of the tagged type (a tag is a qualifier)
//   ENUM64 (6.0)     → UNION of the same size without members (or ENUM when it fits 32 bits)
//   global FUNC linkage (5.6) → static
//   VAR/DATASEC (5.2) → INT / STRUCT
//
// Independently of the kernel, FUNCs the caller names as hidden (global functions of STV_HIDDEN
// or STV_INTERNAL visibility) are loaded static, as libbpf does.
//
// String offsets are kept (line_info refers to strings by offset). The kernel versions are
// when support landed upstream; the runtime probes the running kernel
// rather than trusting them.

import { Btf, type BtfType } from './btf.js';
import { Kind, FUNC_GLOBAL, FUNC_STATIC } from './kinds.js';
import { BtfBuilder, type TypeSpec } from './writer.js';

export interface BtfFeatures {
  float: boolean;
  declTag: boolean;
  typeTag: boolean;
  enum64: boolean;
  funcGlobal: boolean;
  datasec: boolean;
}

export const ALL_BTF_FEATURES: BtfFeatures = { float: true, declTag: true, typeTag: true, enum64: true, funcGlobal: true, datasec: true };

export interface SanitizeResult {
  bytes: Uint8Array;
  /** What was rewritten, for the run's log: `FLOAT→STRUCT ×2`. */
  changes: string[];
}

function strip(t: BtfType): TypeSpec {
  const { id: _id, ...rest } = t;
  return rest as TypeSpec;
}

/**
 * The feature of BtfFeatures type `id` needs, from its raw kind, flag and vlen (nothing decoded):
 * the one rule for what an older kernel may lack.
 */
function featureOf(btf: Btf, id: number): keyof BtfFeatures | undefined {
  switch (btf.kind(id)) {
    case Kind.FLOAT:
      return 'float';
    case Kind.DECL_TAG:
      return 'declTag';
    case Kind.TYPE_TAG:
      return 'typeTag';
    case Kind.ENUM64:
      return 'enum64';
    case Kind.ENUM:
      return btf.kindFlag(id) ? 'enum64' : undefined; // a signed enum (kind_flag) came with ENUM64
    case Kind.FUNC:
      return btf.vlen(id) === FUNC_GLOBAL ? 'funcGlobal' : undefined; // linkage lives in vlen
    case Kind.VAR:
    case Kind.DATASEC:
      return 'datasec';
    default:
      return undefined;
  }
}

/** The features an object's BTF uses (featureOf over its types). */
export function btfFeaturesUsed(btf: Btf): Set<keyof BtfFeatures> {
  const used = new Set<keyof BtfFeatures>();
  for (let id = btf.startId; id < btf.count; id++) {
    const f = featureOf(btf, id);
    if (f) used.add(f);
  }
  return used;
}

/**
 * The object's BTF for a kernel that has the features `has` says (asked only about features the
 * BTF uses, so a loader probes the kernel for those only). Nothing the kernel lacks: the bytes as
 * they are, undecoded, as libbpf loads them.
 */
export function sanitizeBtf(btf: Btf, has: BtfFeatures | ((f: keyof BtfFeatures) => boolean), hiddenFuncs: ReadonlySet<string> = new Set()): SanitizeResult {
  const knows = typeof has === 'function' ? has : (f: keyof BtfFeatures) => has[f];
  const lacks = new Set([...btfFeaturesUsed(btf)].filter((f) => !knows(f)));
  const hidden = (id: number) => hiddenFuncs.size > 0 && btf.kind(id) === Kind.FUNC && btf.vlen(id) === FUNC_GLOBAL && hiddenFuncs.has(btf.name(id));
  if (lacks.size === 0 && ![...range(btf)].some(hidden)) return { bytes: btf.bytes, changes: [] };
  const counts = new Map<string, number>();
  const b = new BtfBuilder({ strings: btf.stringSection() });
  for (let id = 1; id < btf.count; id++) {
    const t = btf.type(id);
    const f = featureOf(btf, id);
    if (hidden(id)) {
      counts.set('hidden global FUNC→static', (counts.get('hidden global FUNC→static') ?? 0) + 1);
      b.add({ ...strip(t), linkage: FUNC_STATIC } as TypeSpec);
      continue;
    }
    if (!f || !lacks.has(f)) {
      b.add(strip(t));
      continue;
    }
    const [out, what] = replacement(t);
    counts.set(what, (counts.get(what) ?? 0) + 1);
    b.add(out);
  }
  return { bytes: b.bytes(), changes: [...counts].map(([k, n]) => `${k} ×${n}`) };
}

function* range(btf: Btf): Generator<number> {
  for (let id = btf.startId; id < btf.count; id++) yield id;
}

/** What a type whose feature the kernel lacks becomes (same size, same id), and how to say it. */
function replacement(t: BtfType): [TypeSpec, string] {
  switch (t.kind) {
    case Kind.FLOAT:
      return [{ kind: Kind.STRUCT, name: t.name, size: t.size, members: [] }, 'FLOAT→STRUCT'];
    case Kind.DECL_TAG:
      return [{ kind: Kind.INT, name: '', size: 1, encoding: 0, bitOffset: 0, bits: 8 }, 'DECL_TAG→INT'];
    case Kind.TYPE_TAG:
      return [{ kind: Kind.CONST, name: '', type: t.type }, 'TYPE_TAG→CONST'];
    case Kind.ENUM64: {
      const fits = t.values.every((v) => v.value >= -(1n << 31n) && v.value < 1n << 32n);
      return fits && t.size <= 4
        ? [{ kind: Kind.ENUM, name: t.name, size: t.size, signed: false, values: t.values }, 'ENUM64→ENUM']
        : [{ kind: Kind.UNION, name: t.name, size: t.size, members: [] }, 'ENUM64→UNION'];
    }
    case Kind.FUNC:
      return [{ ...strip(t), linkage: FUNC_STATIC } as TypeSpec, 'global FUNC→static'];
    case Kind.VAR:
      return [{ kind: Kind.INT, name: t.name, size: 1, encoding: 0, bitOffset: 0, bits: 8 }, 'VAR→INT'];
    case Kind.DATASEC:
      return [{ kind: Kind.STRUCT, name: t.name.replace(/[^A-Za-z0-9_]/g, '_'), size: t.size, members: [] }, 'DATASEC→STRUCT'];
    case Kind.ENUM:
      // Signed enums (kind_flag on ENUM) came with ENUM64 in 6.0; older kernels reject the flag.
      return [{ ...strip(t), signed: false } as TypeSpec, 'signed ENUM→ENUM'];
    default:
      // featureOf names a feature only for the kinds above: a new one needs its replacement here.
      throw new Error(`sanitizeBtf: no replacement for BTF kind ${t.kind} (featureOf names a feature for it)`);
  }
}
