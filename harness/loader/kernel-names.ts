// The names our loader looks up in a kernel's BTF for one object, beyond its CO-RE root types:
// ksym and kfunc externs, BTF attach targets (fentry/fexit/fmod_ret/lsm/tp_btf/iter), struct_ops
// structs and their `bpf_struct_ops_*` wrappers. The host puts them in the kernel BTF index it
// ships (harness/kernels/btf-index.ts), so the agent answers them without walking the kernel's
// ~130k types in the guest (a walk is 0.25-0.45 s under TCG, and the ninth builds a full index).

import { essentialName } from '../core/btf/btf.js';
import type { ObjectSpec } from '../core/object/types.js';
import { objectsRootNames } from '../core/relo/patch.js';

/** Every kernel BTF name (essential form) loading `spec` asks for. */
export function kernelLookupNames(spec: ObjectSpec): Set<string> {
  const names = objectsRootNames([spec]);
  for (const e of spec.externs) if (e.kind === 'ksym') names.add(essentialName(e.name));
  for (const p of spec.programs) if (p.target?.kind === 'btf' && !p.target.module) names.add(p.target.btfName);
  for (const t of spec.structOps) {
    const struct = essentialName(t.type);
    names.add(struct);
    names.add(`bpf_struct_ops_${struct}`);
  }
  names.delete('');
  return names;
}
