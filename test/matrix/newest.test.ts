// --kernels newest against the REAL private apt state (Debian's package lists for the matrix's
// suites): a baseline claiming an old 6.12 yields the newest 6.12 Debian has, a baseline already at
// the newest versions yields nothing, and the synthesised entries are valid, pinned matrix entries
// the store resolves to exactly the package found. No guest is booted.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { compareDebVersions, upstreamOf } from '../../harness/kernels/debversion.js';
import { loadMatrix, parseMatrix, type KernelEntry } from '../../harness/kernels/matrix.js';
import { KernelStore, releaseOfPackage } from '../../harness/kernels/store.js';
import { baselineFor, baselineForNew, discoverNewest, newestSuites, newKernelId, type NewKernel } from '../../harness/matrix/newest.js';
import { readRunReport } from '../../harness/report/merge.js';
import { RESULT_SCHEMA, type KernelRun, type RunReport } from '../../harness/results.js';
import { ensureBuilt, runCli } from '../helpers/tools.js';

const cli = (...args: string[]) => runCli(args, 300_000);

function kernelRun(e: KernelEntry, version: string, pkg = ''): KernelRun {
  return { kernel: { id: e.id, package: pkg, version, release: '', flavour: e.flavour }, guest: 'ok', accel: 'tcg', durationMs: 0, cells: [] };
}

function report(kernels: KernelRun[]): RunReport {
  const t = new Date().toISOString();
  return { schema: RESULT_SCHEMA, runId: 'baseline', startedAt: t, finishedAt: t, complete: true, host: { node: process.version }, suites: [], objects: [], kernels };
}

const OLD_612 = '6.12.100-1';
const store = new KernelStore();
let matrix: KernelEntry[];
let resolved: Map<string, string>;
let oldBase: RunReport;
let found: NewKernel[];
let dir: string;

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'cm-newest-'));
  matrix = loadMatrix();
  resolved = new Map();
  for (const e of matrix) resolved.set(e.id, (await store.resolve(e)).version);
  // Every kernel at what the matrix runs today, except 6.12, claimed to be an old point release.
  oldBase = report(matrix.map((e) => kernelRun(e, e.id === '6.12' ? OLD_612 : resolved.get(e.id)!)));
  found = await discoverNewest({ store, baseline: oldBase });
}, 600_000);

describe('newestSuites', () => {
  it("adds each release's security suite and experimental (when the matrix follows sid) to the matrix's suites", () => {
    const s = newestSuites(matrix);
    for (const e of matrix) for (const x of e.suites) expect(s).toContain(x);
    expect(s).toContain('bookworm-security');
    expect(s).toContain('trixie-security');
    expect(s).toContain('experimental');
    expect(s).not.toContain('sid-security');
    expect(s).not.toContain('bullseye-security-security');
  });
});

describe('discoverNewest on the real private apt state', () => {
  it('finds a 6.12 point release newer than an artificially old baseline, and it is the newest Debian has', async () => {
    const n = found.find((f) => f.supersedes === '6.12');
    expect(n, JSON.stringify(found)).toBeDefined();
    expect(n!.was).toBe(OLD_612);
    expect(n!.wasFrom).toBe('baseline');
    expect(n!.entry.series).toBe('6.12');
    expect(n!.entry.flavour).toBe('generic');
    expect(compareDebVersions(n!.entry.version!, OLD_612)).toBeGreaterThan(0);
    expect(n!.entry.id).toBe(upstreamOf(n!.entry.version!));
    // Independently of the store's filtering: madison over every 6.12 generic image in the searched suites.
    const suites = newestSuites(matrix);
    const names = (await store.apt.search('^linux-image-6\\.12\\.')).filter((x) => /^linux-image-6\.12\.[0-9]+\+deb[0-9.]+-amd64-unsigned$/.test(x));
    const rows = (await store.apt.madison(names)).filter((r) => suites.includes(r.suite));
    expect(rows.length).toBeGreaterThan(0);
    const newest = rows.map((r) => r.version).sort(compareDebVersions).at(-1)!;
    expect(n!.entry.version).toBe(newest);
    expect(rows.some((r) => r.name === n!.package && r.version === n!.entry.version && r.suite === n!.entry.suites[0])).toBe(true);
    expect(releaseOfPackage(n!.package)).toMatch(/^6\.12\.\d+\+deb\d+(\.\d+)?-amd64$/);
  });

  it('synthesises valid matrix entries, pinned, that the store resolves to exactly the package found', async () => {
    expect(found.length).toBeGreaterThan(0);
    const text = yaml.dump({ kernels: found.map((f) => f.entry) });
    expect(parseMatrix(text, 'newest.yaml')).toEqual(found.map((f) => f.entry));
    expect(new Set(found.map((f) => f.entry.id)).size).toBe(found.length);
    for (const f of found) {
      expect(matrix.some((e) => e.id === f.entry.id)).toBe(false);
      const r = await store.resolve(f.entry);
      expect(r).toMatchObject({ package: f.package, version: f.entry.version, suite: f.entry.suites[0] });
      expect(compareDebVersions(f.entry.version!, f.was)).toBeGreaterThan(0);
    }
  });

  it('finds nothing newer than a baseline that already has the newest versions', async () => {
    const newestOf = new Map(found.map((f) => [f.supersedes, f.entry.version!]));
    const current = report(matrix.map((e) => kernelRun(e, newestOf.get(e.id) ?? resolved.get(e.id)!)));
    expect(await discoverNewest({ store, baseline: current })).toEqual([]);
  });

  it('without a baseline, looks past what the matrix resolves to today', async () => {
    const plain = await discoverNewest({ store });
    for (const f of plain) {
      expect(f.wasFrom).toBe('matrix');
      expect(f.was).toBe(resolved.get(f.supersedes));
      // Newer than the matrix's own suites: it came from a suite the entry does not list.
      expect(matrix.find((e) => e.id === f.supersedes)!.suites).not.toContain(f.entry.suites[0]);
    }
    expect(plain.find((f) => f.supersedes === '6.12')?.entry.version ?? resolved.get('6.12')).toBe(found.find((f) => f.supersedes === '6.12')!.entry.version);
  });
});

describe('ids and baselines of new kernels', () => {
  it('names kernels by upstream version and flavour', () => {
    expect(newKernelId('6.12.118-1', 'generic')).toBe('6.12.118');
    expect(newKernelId('6.1.192-2', 'rt')).toBe('6.1.192-rt');
    expect(newKernelId('7.3~rc7-1~exp1', 'cloud')).toBe('7.3-rc7-cloud');
  });

  it('compares a new kernel with the kernel it supersedes, renamed; selections keep only their kernels', () => {
    const n = found.find((f) => f.supersedes === '6.12')!;
    const b = baselineForNew(oldBase, [n]);
    expect(b.kernels.map((k) => [k.kernel.id, k.kernel.version])).toEqual([[n.entry.id, OLD_612]]);
    expect(baselineFor(oldBase, ['6.1', '7.2']).kernels.map((k) => k.kernel.id)).toEqual(['6.1', '7.2']);
  });
});

describe('corematrix matrix --kernels newest (built CLI)', () => {
  it('lists the new kernels with what they supersede', async () => {
    const base = join(dir, 'old.json');
    writeFileSync(base, JSON.stringify(oldBase));
    const r = await cli('matrix', '--kernels', 'newest', '--baseline', base, '--list');
    expect(r.code, r.stderr).toBe(0);
    const n = found.find((f) => f.supersedes === '6.12')!;
    expect(r.stdout).toContain(`newest: ${n.entry.id}: ${n.package} ${n.entry.version} (${n.entry.suites[0]}) is newer than 6.12 ${OLD_612} (baseline)`);
    expect(r.stdout).toContain(`${n.entry.id}\t6.12\tgeneric\t${n.entry.version}\t${n.entry.suites[0]}\n`);
  }, 300_000);

  it('with nothing newer: one line, exit 0, an empty but complete report and a comparison', async () => {
    const newestOf = new Map(found.map((f) => [f.supersedes, f.entry.version!]));
    const base = join(dir, 'current.json');
    writeFileSync(base, JSON.stringify(report(matrix.map((e) => kernelRun(e, newestOf.get(e.id) ?? resolved.get(e.id)!)))));
    const out = join(dir, 'out');
    const r = await cli('matrix', '--kernels', 'newest', '--baseline', base, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n').filter((l) => l.startsWith('newest:'))).toEqual([expect.stringMatching(/^newest: no Debian kernel newer than the baseline /)]);
    const rep = await readRunReport(out);
    expect(rep.complete).toBe(true);
    expect(rep.kernels).toEqual([]);
    for (const f of ['junit.xml', 'summary.md', 'index.html', 'comparison.md', 'comparison.json']) expect(existsSync(join(out, f)), f).toBe(true);
    expect(JSON.parse(readFileSync(join(out, 'comparison.json'), 'utf8')).regression).toBe(false);
  }, 300_000);

  it('refuses newest mixed with other kernels, and a bad baseline before any work', async () => {
    const a = await cli('matrix', '--kernels', 'newest,6.1', '--list');
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/^corematrix: --kernels newest cannot be combined/);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"schema": 1}');
    const b = await cli('matrix', '--kernels', 'newest', '--baseline', bad, '--list');
    expect(b.code).toBe(2);
    expect(b.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^corematrix: .*bad\.json: runId: missing/)]);
  });
});
