// BTF type de-duplication for the linked object: two objects built from the same headers each
// carry their own copy of every type they use, and the output should carry one.
//
// Two types are the same when they have the same kind, name, sizes, member names and offsets
// (everything but the ids they refer to) and refer, position by position, to types that are the
// same. That is a bisimulation on the type graph, and the coarsest one is found by partition
// refinement (Moore's algorithm): start with types grouped by their own contents, then split
// groups whose members refer to different groups, until no group splits. Cycles (a struct that
// points to itself) need no special care. A forward declaration then gives way to the one struct
// or union of its name, when there is exactly one (and the refinement runs again).
//
// VARs and DATASECs are never merged: each is a distinct variable or section even when two look
// alike (two objects' `static int whatever`). The survivor of each group is its first member, and
// survivors keep their relative order, so the output reads like the input minus duplicates.

import type { BtfType } from '../btf/btf.js';
import { Kind } from '../btf/kinds.js';
import { remapType, type TypeSpec } from '../btf/writer.js';

export interface Deduplicated {
  /** The surviving types: id i + 1 is types[i]. */
  types: TypeSpec[];
  /** Old id → new id (index 0: void stays 0). */
  map: Int32Array;
}

/** The type with every reference replaced by 0, and the references in field order. */
function shape(t: TypeSpec): { label: TypeSpec; refs: number[] } {
  const refs: number[] = [];
  const label = remapType({ ...t, id: 0 } as BtfType, (id) => (refs.push(id), 0));
  return { label, refs };
}

const keyOf = (t: TypeSpec) => JSON.stringify(t, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));

/** Coarsest stable partition: class[i] for type id i + 1, refined from `initial` along `refs`. */
function refine(initial: Int32Array, refs: number[][], alive: Uint8Array): Int32Array {
  let cls = initial;
  let count = new Set(cls.filter((_c, i) => alive[i] === 1)).size;
  for (;;) {
    const ids = new Map<string, number>();
    const next = new Int32Array(cls.length).fill(-1);
    for (let i = 0; i < cls.length; i++) {
      if (!alive[i]) continue;
      let sig = `${cls[i]}`;
      for (const r of refs[i]!) sig += `,${r === 0 ? -1 : cls[r - 1]}`;
      let c = ids.get(sig);
      if (c === undefined) ids.set(sig, (c = ids.size));
      next[i] = c;
    }
    if (ids.size === count) return next;
    cls = next;
    count = ids.size;
  }
}

export function dedupTypes(input: readonly TypeSpec[]): Deduplicated {
  const n = input.length;
  const shapes = input.map(shape);
  const refs = shapes.map((s) => s.refs);
  // Initial classes: the type's own contents (VARs and DATASECs: their own class each).
  const labels = new Map<string, number>();
  const initial = new Int32Array(n);
  input.forEach((t, i) => {
    const key = t.kind === Kind.VAR || t.kind === Kind.DATASEC ? `#${i}` : keyOf(shapes[i]!.label);
    let c = labels.get(key);
    if (c === undefined) labels.set(key, (c = labels.size));
    initial[i] = c;
  });
  const alive = new Uint8Array(n).fill(1);
  let cls = refine(initial, refs, alive);

  // Forward declarations that name exactly one struct (union) class: refer to that instead.
  const alias = new Int32Array(n).fill(-1); // index → index it stands for
  const concrete = new Map<string, Set<number>>();
  const firstOf = new Map<number, number>();
  input.forEach((t, i) => {
    if (!firstOf.has(cls[i]!)) firstOf.set(cls[i]!, i);
    if ((t.kind === Kind.STRUCT || t.kind === Kind.UNION) && t.name) {
      const k = `${t.kind}:${t.name}`;
      let s = concrete.get(k);
      if (!s) concrete.set(k, (s = new Set()));
      s.add(cls[i]!);
    }
  });
  input.forEach((t, i) => {
    if (t.kind !== Kind.FWD || !t.name) return;
    const s = concrete.get(`${t.union ? Kind.UNION : Kind.STRUCT}:${t.name}`);
    if (s?.size === 1) alias[i] = firstOf.get([...s][0]!)!;
  });
  if (alias.some((a) => a >= 0)) {
    for (let i = 0; i < n; i++) if (alias[i]! >= 0) alive[i] = 0;
    const through = (r: number) => (r !== 0 && alias[r - 1]! >= 0 ? alias[r - 1]! + 1 : r);
    for (const l of refs) for (let j = 0; j < l.length; j++) l[j] = through(l[j]!);
    cls = refine(initial, refs, alive);
  }

  // Survivors: the first member of each class, in input order.
  const map = new Int32Array(n + 1);
  const newIdOfClass = new Map<number, number>();
  const survivors: number[] = [];
  for (let i = 0; i < n; i++) {
    if (!alive[i]) continue;
    let id = newIdOfClass.get(cls[i]!);
    if (id === undefined) {
      survivors.push(i);
      newIdOfClass.set(cls[i]!, (id = survivors.length));
    }
    map[i + 1] = id;
  }
  for (let i = 0; i < n; i++) if (!alive[i]) map[i + 1] = map[alias[i]! + 1]!;
  const types = survivors.map((i) => remapType({ ...input[i]!, id: i + 1 } as BtfType, (id) => map[id]!));
  return { types, map };
}
