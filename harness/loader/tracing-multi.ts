// fentry.multi / fexit.multi / fsession.multi (Linux 7.x): one link over many kernel functions,
// named by their BTF ids. What libbpf's auto-attach does, as facts: the section's pattern
// (core/object/sections.ts; `module:glob` searches that module's BTF, which is split on vmlinux's,
// so vmlinux's functions are candidates too), every FUNC whose name the
// glob matches and that a trampoline can take (a prototype of at most 12 arguments, no varargs,
// no void or unsized or over-16-byte argument, no struct or union returned), in type id order. A
// bare section (`SEC("fentry.multi")`) is attached by its tool; a pattern matching nothing is
// EINVAL, as libbpf returns it.

import type { Btf } from '../core/btf/btf.js';
import { Kind } from '../core/btf/kinds.js';
import { globToRegExp } from '../core/glob.js';

/** The most arguments a trampoline passes (the kernel's MAX_BPF_FUNC_ARGS). */
const MAX_TRAMPOLINE_ARGS = 12;

/** The size a trampoline sees of a type (pointers 8; ints, enums, structs, unions their size), or undefined where it cannot pass one. */
function passedSize(btf: Btf, id: number): { size: number; aggregate: boolean } | undefined {
  if (id === 0) return { size: 0, aggregate: false };
  const t = btf.skipModsAndTypedefs(id);
  switch (btf.kind(t)) {
    case Kind.PTR: return { size: 8, aggregate: false };
    case Kind.INT: case Kind.ENUM: case Kind.ENUM64: return { size: btf.sizeOrType(t), aggregate: false };
    case Kind.STRUCT: case Kind.UNION: return { size: btf.sizeOrType(t), aggregate: true };
    default: return undefined;
  }
}

/** Whether a BTF FUNC can be a trampoline's target (see the header). */
export function traceableFunction(btf: Btf, funcId: number): boolean {
  const proto = btf.type(btf.sizeOrType(funcId));
  if (proto.kind !== Kind.FUNC_PROTO || proto.params.length > MAX_TRAMPOLINE_ARGS) return false;
  const ret = passedSize(btf, proto.type);
  if (!ret || ret.aggregate) return false;
  // A varargs prototype ends in a type-0 parameter: like a void one, it has no size.
  return proto.params.every((p) => {
    const s = passedSize(btf, p.type);
    return s !== undefined && s.size > 0 && s.size <= 16;
  });
}

/** The BTF ids of the traceable functions whose names match `glob`, in id order (every type of `btf`, its base's included). */
export function tracingMultiIds(btf: Btf, glob: string): number[] {
  const re = globToRegExp(glob);
  const ids: number[] = [];
  for (let id = 1; id < btf.count; id++) {
    if (btf.kind(id) !== Kind.FUNC || !re.test(btf.name(id))) continue;
    if (traceableFunction(btf, id)) ids.push(id);
  }
  return ids;
}
