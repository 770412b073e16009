// `corematrix matrix --kernels newest`: Debian kernels newer than the ones a baseline report (or,
// without one, the matrix today) ran, found in the private apt state across the suites the matrix
// uses plus where newer kernels of those releases land first (<codename>-security, experimental).
// Each becomes a synthesised matrix entry pinned to the exact package version, so a new kernel's
// regression report needs nobody to edit kernels/matrix.yaml.
import { compareDebVersions, upstreamOf } from '../kernels/debversion.js';
import type { KernelEntry } from '../kernels/matrix.js';
import type { KernelStore } from '../kernels/store.js';
import type { RunReport } from '../results.js';

export interface NewKernel {
  /** Synthesised entry, pinned (`version`) to the package found; id like `6.12.118` or `6.1.180-rt`. */
  entry: KernelEntry;
  package: string;
  /** The matrix entry whose kernel this one is newer than. */
  supersedes: string;
  /** The version it is newer than, and where that version came from. */
  was: string;
  wasFrom: 'baseline' | 'matrix';
}

const STAGING = new Set(['sid', 'unstable', 'experimental']);

/**
 * The suites searched for newer kernels: every suite of the matrix, the security suite of each
 * release codename in it (point releases of stable kernels arrive there first), and experimental
 * when the matrix follows sid (release candidates of the next kernel arrive there).
 */
export function newestSuites(entries: KernelEntry[]): string[] {
  const out = new Set<string>();
  for (const e of entries) for (const s of e.suites) out.add(s);
  for (const s of [...out]) {
    if (/^[a-z]+$/.test(s) && !STAGING.has(s)) out.add(`${s}-security`);
    if (s === 'sid' || s === 'unstable') out.add('experimental');
  }
  return [...out];
}

/** A matrix id for a discovered kernel: upstream version, flavour suffix; `~` becomes `-` (7.3~rc7 → 7.3-rc7). */
export function newKernelId(version: string, flavour: string): string {
  const up = upstreamOf(version).replace(/~/g, '-').replace(/[^A-Za-z0-9._+-]/g, '_');
  return flavour === 'generic' ? up : `${up}-${flavour}`;
}

export interface DiscoverOptions {
  store: KernelStore;
  /** Matrix entries to look past (default: the store's whole matrix). */
  entries?: KernelEntry[];
  /** Versions to look past, by kernel id; entries it lacks use the matrix's resolved version. */
  baseline?: RunReport;
  /** Suites to search (default newestSuites(entries)). */
  suites?: string[];
  log?: (line: string) => void;
}

/** Kernels newer than the baseline's (or the matrix's) for each entry's series and flavour. One per package. */
export async function discoverNewest(o: DiscoverOptions): Promise<NewKernel[]> {
  const entries = o.entries ?? o.store.matrix();
  const suites = o.suites ?? newestSuites(entries);
  const log = o.log ?? (() => {});
  const baseVersion = new Map((o.baseline?.kernels ?? []).filter((k) => k.kernel.version).map((k) => [k.kernel.id, k.kernel.version]));
  const taken = new Set(entries.map((e) => e.id));
  const byPackage = new Map<string, NewKernel>();
  for (const e of entries) {
    // Custom builds have no binary package to be newer than; their source version shows in reports.
    if (e.build) continue;
    let was = baseVersion.get(e.id);
    let wasFrom: NewKernel['wasFrom'] = 'baseline';
    if (was === undefined) {
      try {
        was = (await o.store.resolve(e)).version;
        wasFrom = 'matrix';
      } catch (err) {
        log(`newest: ${e.id}: skipped, ${(err as Error).message.split('\n')[0]}`);
        continue;
      }
    }
    // Matrix suites first, so that of two suites with the same version the matrix's one is used.
    // An arm64 entry is superseded by a newer arm64 build (its own package names, its own apt state).
    const arch = e.arch && e.arch !== 'amd64' ? e.arch : undefined;
    const wide: KernelEntry = { id: e.id, series: e.series, flavour: e.flavour, suites: [...e.suites, ...suites.filter((s) => !e.suites.includes(s))], ...(arch ? { arch } : {}) };
    const rows = await o.store.candidates(wide);
    const top = rows.at(-1);
    if (!top || compareDebVersions(top.version, was) <= 0) continue;
    const key = `${top.name}=${top.version}`;
    if (byPackage.has(key)) continue;
    const [major, minor] = upstreamOf(top.version).split(/[.~+-]/);
    let id = `${newKernelId(top.version, e.flavour)}${arch ? `-${arch}` : ''}`;
    while (taken.has(id)) id += '-new';
    taken.add(id);
    byPackage.set(key, {
      entry: { id, series: `${major}.${minor}`, flavour: e.flavour, suites: [top.suite], version: top.version, ...(arch ? { arch } : {}) },
      package: top.name,
      supersedes: e.id,
      was,
      wasFrom,
    });
  }
  return [...byPackage.values()];
}

/**
 * The baseline as the new kernels should be compared with it: the kernel each one supersedes,
 * renamed to the new id (so compareRuns reports changed relocations and new failures per cell);
 * kernels with nothing to supersede in the baseline show up as added.
 */
export function baselineForNew(base: RunReport, found: NewKernel[]): RunReport {
  const kernels = found.flatMap((n) => {
    const k = base.kernels.find((x) => x.kernel.id === n.supersedes);
    return k ? [{ ...k, kernel: { ...k.kernel, id: n.entry.id }, cells: k.cells.map((c) => ({ ...c, kernel: { ...c.kernel, id: n.entry.id } })) }] : [];
  });
  return { ...base, kernels };
}

/** The baseline restricted to the kernels this run selected (a shard, --kernels): the rest are not "removed". */
export function baselineFor(base: RunReport, ids: string[]): RunReport {
  const want = new Set(ids);
  return { ...base, kernels: base.kernels.filter((k) => want.has(k.kernel.id)) };
}
