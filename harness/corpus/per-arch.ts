// The public corpora (`matrix --corpus debian|cilium|selftests[:N/M]`) on the arches of a run's
// kernels. Each corpus is fetched or compiled once per arch, and each arch's kernels load that
// arch's build, in the row of the object's name, the way a user's `--object arm64:<file>` beside
// `--object <file>` runs (harness/matrix/arch-objects.ts, docs/arm64.md "Corpora on arm64"):
//
//   - a run of one arch gets that arch's builds as plain objects;
//   - a run of several arches gets, per object, one plain object where every arch's build is the
//     same bytes (Debian's libxdp objects, cilium's testdata), else `<arch>:<file>` for each arch
//     that has a build (an object that does not compile for an arch is not loaded there).
//
//   const { objects } = await corpusObjects(['debian', 'selftests:1/40'], ['arm64'], log);

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { UsageError } from '../core/errors.js';
import type { DebianArch } from '../kernels/arch.js';

/** One arch's build of a corpus: its object files. */
export interface ArchBuild {
  arch: DebianArch;
  paths: string[];
}

export interface CorpusArgs {
  /** What the matrix reads as corpus objects (plain paths, or `<arch>:<path>`). */
  args: string[];
  /** Objects whose builds are the same bytes on every arch of the run: shipped once. */
  shared: number;
  /** Per arch, objects of its own build (`<arch>:<path>`). */
  own: Partial<Record<DebianArch, number>>;
  /** Objects some arch of the run has no build of, with the arches that have one. */
  partial: { name: string; arches: DebianArch[] }[];
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/**
 * The corpus objects of one corpus built for each arch of the run (`builds`, in the run's arch
 * order): an object is known by its file name, which is its row (`object:<name>`) on every arch.
 */
export function corpusArgs(builds: ArchBuild[]): CorpusArgs {
  if (builds.length <= 1) return { args: builds[0]?.paths ?? [], shared: 0, own: builds[0] ? { [builds[0].arch]: builds[0].paths.length } : {}, partial: [] };
  const byName = new Map<string, Map<DebianArch, string>>();
  for (const b of builds) {
    for (const p of b.paths) {
      const name = basename(p);
      const per = byName.get(name) ?? new Map<DebianArch, string>();
      if (per.has(b.arch)) throw new UsageError(`corpus: two ${b.arch} objects named ${name} (${per.get(b.arch)}, ${p})`);
      byName.set(name, per.set(b.arch, p));
    }
  }
  const out: CorpusArgs = { args: [], shared: 0, own: {}, partial: [] };
  for (const [name, per] of byName) {
    const paths = [...per.values()];
    if (per.size === builds.length && new Set(paths.map(sha256)).size === 1) {
      out.args.push(paths[0]!);
      out.shared++;
      continue;
    }
    if (per.size < builds.length) out.partial.push({ name, arches: [...per.keys()] });
    for (const [arch, path] of per) {
      out.args.push(`${arch}:${path}`);
      out.own[arch] = (out.own[arch] ?? 0) + 1;
    }
  }
  return out;
}

/** `selftests:N/M` → the slice, or undefined for `selftests`; a UsageError unless 1 <= N <= M. */
export function selftestsSlice(corpus: string): { n: number; m: number } | undefined {
  const slice = /^selftests:(\d+)\/(\d+)$/.exec(corpus);
  if (!slice) return undefined;
  const [n, m] = [Number(slice[1]), Number(slice[2])];
  if (!(n >= 1 && n <= m)) throw new UsageError(`--corpus ${corpus}: the slice must be N/M with 1 <= N <= M`);
  return { n, m };
}

/** How the builds of a corpus went out: `one object for both arches (byte-identical)`, or each arch's count. */
function describeSplit(a: CorpusArgs, arches: DebianArch[]): string {
  if (arches.length <= 1) return '';
  const parts = [
    ...(a.shared ? [`${a.shared} the same bytes on ${arches.join(' and ')} (one object for all)`] : []),
    ...arches.filter((x) => a.own[x]).map((x) => `${a.own[x]} ${x} builds`),
    ...(a.partial.length ? [`not built for every arch: ${a.partial.map((p) => `${p.name} (${p.arches.join(', ')} only)`).join(', ')}`] : []),
  ];
  return `: ${parts.join('; ')}`;
}

/**
 * Fetches or compiles the named corpora (`debian`, `cilium`, `selftests[:N/M]`; core-reloc is the
 * matrix's own) for each arch of `arches`, and returns what the matrix reads as corpus objects.
 */
export async function corpusObjects(corpora: readonly string[], arches: readonly DebianArch[], log: (line: string) => void): Promise<{ objects: string[] }> {
  const selftests = corpora.find((c) => c.startsWith('selftests'));
  // Checked before anything is fetched.
  const slice = selftests ? selftestsSlice(selftests) : undefined;
  const objects: string[] = [];
  const on = [...arches];
  const archNote = (arch: DebianArch) => (on.length > 1 || arch !== 'amd64' ? ` for ${arch}` : '');
  if (corpora.includes('debian')) {
    const { debianObjects } = await import('./debian-objects.js');
    const builds: ArchBuild[] = [];
    for (const arch of on) {
      const d = await debianObjects(log, arch);
      log(`corpus debian${archNote(arch)}: ${d.packages.map((p) => `${p.name} ${p.version} (${p.suite})`).join(', ')}: ${d.objects.length} objects`);
      builds.push({ arch, paths: d.objects.map((o) => o.path) });
    }
    const a = corpusArgs(builds);
    if (on.length > 1) log(`corpus debian${describeSplit(a, on)}`);
    objects.push(...a.args);
  }
  if (corpora.includes('cilium')) {
    const { ciliumTestdata } = await import('./cilium-testdata.js');
    const builds: ArchBuild[] = [];
    for (const arch of on) {
      const c = await ciliumTestdata(log, arch);
      log(`corpus cilium${archNote(arch)}: ${c.source}: ${c.objects.length} testdata objects, ${c.failed.length} did not compile with clang-19${c.failed.length ? ` (${c.failed.map((f) => f.name).join(', ')})` : ''}`);
      builds.push({ arch, paths: c.objects.map((o) => o.path) });
    }
    const a = corpusArgs(builds);
    if (on.length > 1) log(`corpus cilium${describeSplit(a, on)}`);
    objects.push(...a.args);
  }
  if (selftests) {
    const { kernelSelftests, sliceOf } = await import('./kernel-selftests.js');
    const only = slice ? sliceOf(slice.n, slice.m) : undefined;
    const builds: ArchBuild[] = [];
    for (const arch of on) {
      const c = await kernelSelftests({ log, arch, ...(only ? { only } : {}) });
      log(`corpus selftests${archNote(arch)}: ${c.source}, vmlinux.h of ${c.vmlinux}: ${c.objects.length} objects${slice ? ` (slice ${slice.n}/${slice.m} of ${c.sources})` : ''}, ${c.btfOnly.length} BTF-only (no program), ${c.failed.length} did not compile with clang-19`);
      builds.push({ arch, paths: c.objects.map((o) => o.path) });
    }
    const a = corpusArgs(builds);
    if (on.length > 1) log(`corpus selftests${describeSplit(a, on)}`);
    objects.push(...a.args);
  }
  return { objects };
}
