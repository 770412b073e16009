// Extern discovery: `__kconfig` variables (CONFIG_*, LINUX_KERNEL_VERSION, ...) live in the
// `.kconfig` DATASEC and become values in a `.kconfig` array map; `__ksym` variables and kfuncs
// live in `.ksyms` and are resolved against kernel BTF by the runtime. Both show up as undefined
// (SHN_UNDEF) symbols in the ELF symbol table, which also says whether they are weak.

import type { Btf } from '../btf/btf.js';
import { Kind } from '../btf/kinds.js';
import { type ElfFile, SHN_UNDEF, STB_WEAK, STT_SECTION, STT_FILE } from '../elf.js';
import { FormatError } from '../errors.js';
import type { ExternSpec } from './types.js';

/** Natural alignment of a type (what the C ABI on BPF gives it), capped at 8. */
function alignOf(btf: Btf, id: number, depth = 0): number {
  if (depth > 32) throw new FormatError(`${btf.source}: type loop at type #${id}`);
  const t = btf.type(btf.skipModsAndTypedefs(id));
  switch (t.kind) {
    case Kind.INT: case Kind.ENUM: case Kind.ENUM64: case Kind.FLOAT:
      return Math.min(Math.max(t.size, 1), 8);
    case Kind.PTR: return 8;
    case Kind.ARRAY: return alignOf(btf, t.type, depth + 1);
    case Kind.STRUCT: case Kind.UNION:
      return t.members.reduce((a, m) => Math.max(a, alignOf(btf, m.type, depth + 1)), 1);
    default: return 1;
  }
}

function datasec(btf: Btf, name: string) {
  for (const id of btf.byName(name)) {
    const t = btf.type(id);
    if (t.kind === Kind.DATASEC) return t;
  }
  return undefined;
}

/** strcmp order (names are ASCII identifiers). */
const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The externs in the order libbpf keeps them after it sorts them (cmp_externs): kconfig ones first
 * (larger alignment, then smaller size, then name), then ksyms by name. libbpf resolves ksyms in
 * this order (so module BTFs get their fd_array slots in it), and the immediate it writes into a
 * call to an unresolved weak kfunc is a position in it (POISON_CALL_KFUNC_BASE). Returns indices into `externs`.
 */
export function libbpfExternOrder(externs: readonly ExternSpec[]): number[] {
  const rank = (e: ExternSpec) => (e.kind === 'kconfig' ? 0 : 1);
  return externs.map((_, i) => i).sort((i, j) => {
    const a = externs[i]!;
    const b = externs[j]!;
    if (rank(a) !== rank(b)) return rank(a) - rank(b);
    // Kconfig externs are already laid out in libbpf's order: their offsets say it.
    if (a.kind === 'kconfig') return (a.offset ?? 0) - (b.offset ?? 0);
    return byName(a.name, b.name);
  });
}

/**
 * libbpf's POISON_CALL_KFUNC_BASE: a call to a __weak kfunc the kernel lacks becomes a call of
 * helper #(base + the extern's position in libbpf's order), which the verifier names if the call
 * is reached (`invalid func unknown#2002000003`) and bpf_ksym_exists()-guarded code never reaches.
 */
export const POISON_CALL_KFUNC_BASE = 2002000000;

/** Finds every extern, lays out `.kconfig`, and returns the externs plus the `.kconfig` value size (0 = none). */
/** Bound on the .kconfig map value: its externs are integers, bools, tristates and short strings. */
const MAX_KCONFIG = 1 << 20;

export function discoverExterns(elf: ElfFile, btf: Btf): { externs: ExternSpec[]; kconfigSize: number } {
  const src = elf.source;
  const undef = new Map<string, { weak: boolean; used: boolean }>();
  for (const s of elf.symbols) {
    if (s.index === 0 || s.shndx !== SHN_UNDEF || !s.name || s.type === STT_SECTION || s.type === STT_FILE) continue;
    undef.set(s.name, { weak: s.bind === STB_WEAK, used: false });
  }
  const externs: ExternSpec[] = [];
  let kconfigEnd = 0;
  const kc = datasec(btf, '.kconfig');
  // Layout: larger alignment first, then smaller size, then by name (libbpf's cmp_externs), so the
  // offsets (and thus the relocated instructions) match what libbpf produces for the same object.
  const kconf: { v: { id: number; name: string; type: number }; size: number; align: number }[] = [];
  for (const v of kc?.vars ?? []) {
    const vt = btf.type(v.type);
    if (vt.kind !== Kind.VAR) throw new FormatError(`${src}: .kconfig entry type #${v.type} is ${btf.typeName(v.type)}, expected a variable`);
    kconf.push({ v: vt, size: btf.sizeOf(vt.type), align: alignOf(btf, vt.type) });
  }
  kconf.sort((a, b) => b.align - a.align || a.size - b.size || byName(a.v.name, b.v.name));
  for (const { v: vt, size, align } of kconf) {
    const sym = undef.get(vt.name);
    if (sym) sym.used = true;
    const offset = Math.ceil(kconfigEnd / align) * align;
    kconfigEnd = offset + size;
    if (kconfigEnd > MAX_KCONFIG) throw new FormatError(`${src}: .kconfig extern '${vt.name}' (${size} bytes) takes .kconfig past ${MAX_KCONFIG} bytes`);
    externs.push({ name: vt.name, kind: 'kconfig', typeId: vt.id, valueTypeId: vt.type, weak: sym?.weak ?? false, func: false, typed: true, offset, size });
  }
  const ks = datasec(btf, '.ksyms');
  for (const v of ks?.vars ?? []) {
    const vt = btf.type(v.type);
    const sym = undef.get(vt.name);
    if (sym) sym.used = true;
    if (vt.kind === Kind.FUNC) {
      externs.push({ name: vt.name, kind: 'ksym', typeId: vt.id, valueTypeId: vt.type, weak: sym?.weak ?? false, func: true, typed: true });
    } else if (vt.kind === Kind.VAR) {
      const typed = btf.skipModsAndTypedefs(vt.type) !== 0;
      externs.push({ name: vt.name, kind: 'ksym', typeId: vt.id, valueTypeId: vt.type, weak: sym?.weak ?? false, func: false, typed });
    } else {
      throw new FormatError(`${src}: .ksyms entry type #${v.type} is ${btf.typeName(v.type)}, expected a variable or function`);
    }
  }
  // Kfuncs declared without a section attribute still appear as extern FUNCs in BTF.
  for (const [name, sym] of undef) {
    if (sym.used) continue;
    const fn = btf.byName(name).find((id) => btf.kind(id) === Kind.FUNC);
    if (fn !== undefined) {
      sym.used = true;
      externs.push({ name, kind: 'ksym', typeId: fn, valueTypeId: btf.sizeOrType(fn), weak: sym.weak, func: true, typed: true });
      continue;
    }
    throw new FormatError(`${src}: undefined symbol '${name}' is neither a __kconfig nor a __ksym extern`);
  }
  // libbpf sizes the .kconfig map (and its DATASEC) to the end of the last extern, unrounded.
  return { externs, kconfigSize: kconfigEnd };
}
