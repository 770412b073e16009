// Users' objects per arch (`matrix --object arm64:x.arm64.bpf.o` beside `--object x.bpf.o`).
//
// A libbpf user builds one object per arch: bpf_tracing.h's PT_REGS_*, BPF_KPROBE and BPF_KSYSCALL
// read `struct pt_regs`'s x86-64 fields (di, si…) under -D__TARGET_ARCH_x86 and arm64's
// `struct user_pt_regs` regs[] under -D__TARGET_ARCH_arm64. The rule (docs/arm64.md, matrix --help):
//
//   --object <arch>:<file>  goes to that arch's kernels only;
//   --object <file>         goes to every kernel whose arch has no build of its own of it.
//
// Two objects are builds of one tool's object when they have the same program names: an
// arch-qualified object replaces, on its arch, the plain object with its program names, and takes
// that object's name, so both builds' cells are one row of the grid (`object:<plain name>`; the
// report's object list and each cell's sha256 say which bytes ran where; the cross-kernel diff
// compares each arch with itself). Qualified objects of different arches with the same program
// names and no plain one are one row too, named after the first given.
//
// An object may also say which arch it was built for, in its BTF: the type bpf_tracing.h casts
// the context to is emitted with its fields (x86-64's `struct pt_regs` with di, si; arm64's
// `struct user_pt_regs` with regs[], or arm64's `struct pt_regs` with orig_x0). A plain object
// that shows another arch than its kernel's still runs there, but its cells say so (failing a pass:
// its register reads are the other arch's offsets; the verifier accepts those, the values are not
// the arguments). A qualified object that shows another arch than its qualifier is refused.
import { basename } from 'node:path';
import { existsSync } from 'node:fs';
import { UsageError } from '../core/errors.js';
import { essentialName, type Btf } from '../core/btf/btf.js';
import { Kind } from '../core/btf/kinds.js';
import { ARCH_FACTS, DEBIAN_ARCHES, isDebianArch, type DebianArch } from '../kernels/arch.js';
import type { CellResult } from '../results.js';

/** `arm64:path` → { arch: 'arm64', path }; a plain path → { path }. `option` names the flag in errors. */
export function splitArchPrefix(arg: string, option: string): { arch?: DebianArch; path: string } {
  const m = /^([a-z][a-z0-9_]*):(.+)$/.exec(arg);
  if (!m) return { path: arg };
  if (isDebianArch(m[1]!)) return { arch: m[1], path: m[2]! };
  // A file really named `x86:foo.o` is still a file; otherwise the prefix was meant as an arch.
  if (!existsSync(arg)) throw new UsageError(`${option} ${arg}: '${m[1]}' is not an arch corematrix boots (${DEBIAN_ARCHES.join(', ')}, Debian's names)`);
  return { path: arg };
}

/** Which arch an object was compiled for, and what in it says so. */
export interface BuiltFor {
  arch: DebianArch;
  /** One phrase: `struct pt_regs has di, si`. */
  evidence: string;
}

/** The arch an object's BTF shows it was built for (bpf_tracing.h's register types), or undefined (nothing arch-specific, or both). */
export function objectBuiltFor(btf: Btf): BuiltFor | undefined {
  const found = new Map<DebianArch, string>();
  for (let id = 1; id < btf.count; id++) {
    if (btf.kind(id) !== Kind.STRUCT) continue;
    const name = essentialName(btf.name(id));
    if (name !== 'pt_regs' && name !== 'user_pt_regs') continue;
    const t = btf.type(id);
    if (t.kind !== Kind.STRUCT) continue;
    const members = new Set(t.members.map((m) => m.name));
    const named = btf.name(id);
    if (name === 'pt_regs' && members.has('di') && members.has('si')) found.set('amd64', `struct ${named} has di, si`);
    else if (name === 'user_pt_regs' && members.has('regs')) found.set('arm64', `struct ${named} has regs[]`);
    else if (name === 'pt_regs' && members.has('orig_x0')) found.set('arm64', `struct ${named} has orig_x0`);
  }
  if (found.size !== 1) return undefined;
  const [arch, evidence] = [...found][0]!;
  return { arch, evidence };
}

/** `an x86 build (__TARGET_ARCH_x86: struct pt_regs has di, si)`. */
export function describeBuild(b: BuiltFor): string {
  return `an ${ARCH_FACTS[b.arch].bpfTargetArch} build (__TARGET_ARCH_${ARCH_FACTS[b.arch].bpfTargetArch}: ${b.evidence})`;
}

/** The pairing's view of an object: its name (the cell row), its qualifier, its program names. */
export interface PairableObject {
  name: string;
  /** The file as the user gave it (without the qualifier), for messages. */
  given: string;
  arch?: DebianArch;
  programs: string[];
}

/**
 * The row each object's cells go in: an arch-qualified object takes the name of the plain object
 * (or of the first qualified object of another arch) with the same program names; every other
 * object keeps its own. Throws a UsageError where that is ambiguous (two builds for one arch, or
 * one qualified object matching two plain ones).
 */
export function pairArchBuilds(objects: PairableObject[]): Map<PairableObject, string> {
  const key = (o: PairableObject) => [...o.programs].sort().join('\u0000');
  const rows = new Map<PairableObject, string>(objects.map((o) => [o, o.name]));
  const plainByKey = new Map<string, PairableObject[]>();
  for (const o of objects) if (!o.arch && o.programs.length) plainByKey.set(key(o), [...(plainByKey.get(key(o)) ?? []), o]);
  // Per row: which arch already has a build in it.
  const archesOf = new Map<string, Map<DebianArch, PairableObject>>();
  const firstQualified = new Map<string, PairableObject>();
  for (const q of objects) {
    if (!q.arch || q.programs.length === 0) continue;
    const plain = plainByKey.get(key(q)) ?? [];
    if (plain.length > 1) throw new UsageError(`--object ${q.arch}:${q.given}: its programs are those of ${plain.map((p) => p.given).join(' and ')}: qualify those too (--object amd64:<file>) to say which it is the ${q.arch} build of`);
    const row = plain[0]?.name ?? (firstQualified.get(key(q)) ?? q).name;
    if (!plain[0] && !firstQualified.has(key(q))) firstQualified.set(key(q), q);
    const builds = archesOf.get(row) ?? new Map<DebianArch, PairableObject>();
    const other = builds.get(q.arch);
    if (other) throw new UsageError(`--object ${q.arch}:${q.given} and ${q.arch}:${other.given} are both ${q.arch} builds of ${row} (the same programs): give one`);
    builds.set(q.arch, q);
    archesOf.set(row, builds);
    rows.set(q, row);
  }
  return rows;
}

/** The objects a kernel of `arch` loads: its arch's builds, and the plain objects without one. */
export function objectsOnArch<T extends { name: string; arch?: DebianArch }>(objects: T[], arch: DebianArch): T[] {
  const own = new Set(objects.filter((o) => o.arch === arch).map((o) => o.name));
  return objects.filter((o) => (o.arch ? o.arch === arch : !own.has(o.name)));
}

/** How the report lists an object: plain as its name, a qualified one with its arch (and its own file name when it took another's row). */
export function listedName(o: { name: string; given: string; arch?: DebianArch }): string {
  if (!o.arch) return o.name;
  const file = basename(o.given);
  return file === o.name ? `${o.name} (${o.arch})` : `${o.name} (${o.arch}: ${file})`;
}

/** The check a cell of another arch's build carries on a kernel (its name, for tests and readers). */
export const BUILT_FOR_CHECK = "object built for this kernel's arch";

/**
 * The cells of `unit` on a kernel of `kernelArch`, whose object shows it is `built`'s arch: each
 * gets a failing check saying so; a pass becomes a fail (its register reads are the other arch's
 * offsets), any other verdict keeps its own and its reason says which build it was.
 */
export function markOtherArchBuild(cells: CellResult[], unit: string, built: BuiltFor, kernelArch: DebianArch): void {
  const what = `${describeBuild(built)} on an ${kernelArch} kernel`;
  for (const c of cells) {
    if (c.suite !== unit || c.verdict === 'expected-skip') continue;
    c.checks.push({ name: BUILT_FOR_CHECK, observed: ARCH_FACTS[built.arch].bpfTargetArch, truth: ARCH_FACTS[kernelArch].bpfTargetArch, ok: false, source: `the object's BTF: ${built.evidence}` });
    if (c.verdict === 'pass') {
      c.verdict = 'fail';
      c.reason = `${what}: give its ${kernelArch} build with --object ${kernelArch}:<file>`;
    } else c.reason = `${c.reason ?? c.verdict} (${what})`;
  }
}
