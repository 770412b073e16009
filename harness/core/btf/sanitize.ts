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
 * The features of BtfFeatures an object's BTF uses, read from the raw kinds (no type is decoded):
 * the loader probes the kernel for those only, and a BTF using nothing the kernel lacks is loaded
 * as it is.
 */
export function btfFeaturesUsed(btf: Btf): Set<keyof BtfFeatures> {
  const used = new Set<keyof BtfFeatures>();
  for (let id = btf.startId; id < btf.count; id++) {
    switch (btf.kind(id)) {
      case Kind.FLOAT:
        used.add('float');
        break;
      case Kind.DECL_TAG:
        used.add('declTag');
        break;
      case Kind.TYPE_TAG:
        used.add('typeTag');
        break;
      case Kind.ENUM64:
        used.add('enum64');
        break;
      case Kind.ENUM:
        if (btf.kindFlag(id)) used.add('enum64'); // a signed enum (kind_flag) came with ENUM64
        break;
      case Kind.FUNC:
        if (btf.vlen(id) === FUNC_GLOBAL) used.add('funcGlobal'); // linkage lives in vlen
        break;
      case Kind.VAR:
      case Kind.DATASEC:
        used.add('datasec');
        break;
    }
  }
  return used;
}

export function sanitizeBtf(btf: Btf, has: BtfFeatures): SanitizeResult {
  // Nothing the kernel lacks: the BTF as it is (no type decoded, no rebuild), as libbpf loads it.
  if ([...btfFeaturesUsed(btf)].every((f) => has[f])) return { bytes: btf.bytes, changes: [] };
  const counts = new Map<string, number>();
  const note = (what: string) => counts.set(what, (counts.get(what) ?? 0) + 1);
  const b = new BtfBuilder({ strings: btf.stringSection() });
  for (let id = 1; id < btf.count; id++) {
    const t = btf.type(id);
    let out: TypeSpec = strip(t);
    switch (t.kind) {
      case Kind.FLOAT:
        if (!has.float) {
          out = { kind: Kind.STRUCT, name: t.name, size: t.size, members: [] };
          note('FLOAT→STRUCT');
        }
        break;
      case Kind.DECL_TAG:
        if (!has.declTag) {
          out = { kind: Kind.INT, name: '', size: 1, encoding: 0, bitOffset: 0, bits: 8 };
          note('DECL_TAG→INT');
        }
        break;
      case Kind.TYPE_TAG:
        if (!has.typeTag) {
          out = { kind: Kind.CONST, name: '', type: t.type };
          note('TYPE_TAG→CONST');
        }
        break;
      case Kind.ENUM64:
        if (!has.enum64) {
          const fits = t.values.every((v) => v.value >= -(1n << 31n) && v.value < 1n << 32n);
          if (fits && t.size <= 4) {
            out = { kind: Kind.ENUM, name: t.name, size: t.size, signed: false, values: t.values };
            note('ENUM64→ENUM');
          } else {
            out = { kind: Kind.UNION, name: t.name, size: t.size, members: [] };
            note('ENUM64→UNION');
          }
        }
        break;
      case Kind.FUNC:
        if (!has.funcGlobal && t.linkage === FUNC_GLOBAL) {
          out = { ...strip(t), linkage: FUNC_STATIC } as TypeSpec;
          note('global FUNC→static');
        }
        break;
      case Kind.VAR:
        if (!has.datasec) {
          out = { kind: Kind.INT, name: t.name, size: 1, encoding: 0, bitOffset: 0, bits: 8 };
          note('VAR→INT');
        }
        break;
      case Kind.DATASEC:
        if (!has.datasec) {
          out = { kind: Kind.STRUCT, name: t.name.replace(/[^A-Za-z0-9_]/g, '_'), size: t.size, members: [] };
          note('DATASEC→STRUCT');
        }
        break;
      case Kind.ENUM:
        // Signed enums (kind_flag on ENUM) came with ENUM64 in 6.0; older kernels reject the flag.
        if (!has.enum64 && t.signed) {
          out = { ...strip(t), signed: false } as TypeSpec;
          note('signed ENUM→ENUM');
        }
        break;
    }
    b.add(out);
  }
  return { bytes: b.bytes(), changes: [...counts].map(([k, n]) => `${k} ×${n}`) };
}
