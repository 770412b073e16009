// BTF kind numbers and constants (kernel UAPI include/uapi/linux/btf.h, facts only).

export const BTF_MAGIC = 0xeb9f;

export const enum Kind {
  UNKN = 0,
  INT = 1,
  PTR = 2,
  ARRAY = 3,
  STRUCT = 4,
  UNION = 5,
  ENUM = 6,
  FWD = 7,
  TYPEDEF = 8,
  VOLATILE = 9,
  CONST = 10,
  RESTRICT = 11,
  FUNC = 12,
  FUNC_PROTO = 13,
  VAR = 14,
  DATASEC = 15,
  FLOAT = 16,
  DECL_TAG = 17,
  TYPE_TAG = 18,
  ENUM64 = 19,
}

export const KIND_MAX = 19;

export const KIND_NAMES: readonly string[] = [
  'UNKN', 'INT', 'PTR', 'ARRAY', 'STRUCT', 'UNION', 'ENUM', 'FWD', 'TYPEDEF', 'VOLATILE',
  'CONST', 'RESTRICT', 'FUNC', 'FUNC_PROTO', 'VAR', 'DATASEC', 'FLOAT', 'DECL_TAG', 'TYPE_TAG', 'ENUM64',
];

/** INT encoding bits. */
export const INT_SIGNED = 1;
export const INT_CHAR = 2;
export const INT_BOOL = 4;

/** FUNC linkage (vlen of a FUNC) and VAR linkage. */
export const FUNC_STATIC = 0;
export const FUNC_GLOBAL = 1;
export const FUNC_EXTERN = 2;
export const VAR_STATIC = 0;
export const VAR_GLOBAL_ALLOCATED = 1;
export const VAR_GLOBAL_EXTERN = 2;

/**
 * extraSize as two tables, for the parser's hot loop (no call per type, which costs most in an
 * interpreter such as node --jitless in a guest): extra = EXTRA_FIXED[kind] + vlen * EXTRA_PER[kind];
 * EXTRA_FIXED is -1 for kinds that do not exist (0, and 20..31).
 */
export const EXTRA_FIXED: Int32Array = (() => {
  const t = new Int32Array(32).fill(-1);
  for (let k = 1; k < 32; k++) if (extraSize(k, 0) >= 0) t[k] = extraSize(k, 0);
  return t;
})();
export const EXTRA_PER: Int32Array = (() => {
  const t = new Int32Array(32);
  for (let k = 1; k < 32; k++) if (extraSize(k, 0) >= 0) t[k] = extraSize(k, 1) - extraSize(k, 0);
  return t;
})();

/** Bytes that follow the 12-byte common header, per kind, as a function of vlen (-1: no such kind). */
export function extraSize(kind: number, vlen: number): number {
  switch (kind) {
    case Kind.INT: return 4;
    case Kind.ARRAY: return 12;
    case Kind.STRUCT:
    case Kind.UNION: return 12 * vlen;
    case Kind.ENUM: return 8 * vlen;
    case Kind.FUNC_PROTO: return 8 * vlen;
    case Kind.VAR: return 4;
    case Kind.DATASEC: return 12 * vlen;
    case Kind.DECL_TAG: return 4;
    case Kind.ENUM64: return 12 * vlen;
    case Kind.PTR: case Kind.FWD: case Kind.TYPEDEF: case Kind.VOLATILE: case Kind.CONST:
    case Kind.RESTRICT: case Kind.FUNC: case Kind.FLOAT: case Kind.TYPE_TAG:
      return 0;
    default: return -1;
  }
}
