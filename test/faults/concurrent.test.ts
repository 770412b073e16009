// Two `corematrix matrix` processes at once, sharing ONE fresh cache: both race to resolve and
// download the same kernels, to build the same base image layer, agent code cache, vmlinux.h and
// suite object. Both must pass and the cache must end consistent (one manifest per kernel, blobs
// matching their sha256, no temporaries or locks left), and a third run must reuse everything.
// Also: report folders, default and explicit, are never shared by two live runs.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimRunDir, OUT_LOCK } from '../../harness/cli/matrix.js';
import { buildSuites, suitesDir } from '../../harness/suites/build.js';
import type { RunReport } from '../../harness/results.js';
import { ensureBuilt } from '../helpers/tools.js';

const KERNELS = ['6.1', '6.1-cloud'];
const SUITE = 'kernel-version';
const root = mkdtempSync(join(tmpdir(), 'cm-concurrent-'));
const cache = join(root, 'cache');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  out: string;
  ms: number;
}

function matrix(out: string, extra: string[] = []): Promise<Run> {
  const t0 = performance.now();
  const args = ['bin/corematrix.js', 'matrix', '--kernels', KERNELS.join(','), '--suites', SUITE, '--jobs', '2', '--accel', 'tcg', '--loader', 'ours', '--out', out, ...extra];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, COREMATRIX_CACHE: cache, CI: '1' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr, out, ms: performance.now() - t0 })));
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Every file under dir, relative, with size, mtime and inode (to see what a run rewrote). */
function snapshot(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  const rec = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) rec(p);
      else {
        const st = statSync(p);
        m.set(relative(dir, p), `${st.size}:${st.mtimeMs}:${st.ino}`);
      }
    }
  };
  if (existsSync(dir)) rec(dir);
  return m;
}

function report(out: string): RunReport {
  return JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as RunReport;
}

function expectPassing(r: Run): void {
  expect(r.code, `${r.stdout}\n${r.stderr.slice(-3000)}`).toBe(0);
  expect(r.stdout).toMatch(new RegExp(`^run \\S+: 2 kernels, 2 cells: 2 pass, 0 fail, 0 error, 0 skip`, 'm'));
  const rep = report(r.out);
  expect(rep.complete).toBe(true);
  expect(rep.kernels.map((k) => k.kernel.id)).toEqual(KERNELS);
  for (const k of rep.kernels) {
    expect(k.guest, `${k.kernel.id}: ${k.detail}`).toBe('ok');
    expect(k.cells.map((c) => `${c.suite}:${c.verdict}`)).toEqual([`${SUITE}:pass`]);
  }
  for (const f of ['junit.xml', 'summary.md', 'index.html']) expect(existsSync(join(r.out, f)), f).toBe(true);
  expect(readdirSync(r.out).filter((f) => f.endsWith('.tmp') || f === OUT_LOCK)).toEqual([]);
}

let first: Run[];

beforeAll(async () => {
  ensureBuilt();
  // The private apt lists (a copy, so nothing here can touch the real state): only kernels,
  // images and objects are made from scratch.
  const apt = join(process.env.COREMATRIX_CACHE ?? join(homedir(), '.cache', 'corematrix'), 'apt');
  cpSync(apt, join(cache, 'apt'), { recursive: true, preserveTimestamps: true, filter: (src) => !/(^|\/)lock$/.test(src) });
  // Started in the same tick, each with its own report folder.
  first = await Promise.all([matrix(join(root, 'a')), matrix(join(root, 'b'))]);
}, 900_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('two matrix runs at once on one fresh cache', () => {
  it('both pass with complete reports', () => {
    for (const r of first) expectPassing(r);
    // Both really started from nothing and raced: kernels were downloaded (6.1 may be fetched
    // first by the suite build, whose store does not log), none twice.
    const downloads = first.flatMap((r) => r.stderr.split('\n').filter((l) => /kernel \S+: downloading /.test(l))).map((l) => /kernel (\S+):/.exec(l)![1]!);
    expect(downloads.length).toBeGreaterThan(0);
    expect(new Set(downloads).size).toBe(downloads.length);
    console.log(`concurrent runs: ${first.map((r) => `${(r.ms / 1000).toFixed(1)} s`).join(', ')}`);
  });

  it('leaves one manifest per kernel, blobs matching their sha256, nothing half-done', () => {
    const store = join(cache, 'kernels');
    const manifests = readdirSync(join(store, 'manifests'));
    expect(manifests.map((f) => f.split('@')[0]).sort()).toEqual([...KERNELS].sort());
    const referenced = new Set<string>();
    for (const f of manifests) {
      const m = JSON.parse(readFileSync(join(store, 'manifests', f), 'utf8')) as { artefacts: Record<string, { sha256: string; size: number }> };
      for (const [kind, a] of Object.entries(m.artefacts)) {
        const blob = join(store, 'blobs', a.sha256);
        expect(statSync(blob).size, `${f} ${kind}`).toBe(a.size);
        expect(sha256(blob), `${f} ${kind}`).toBe(a.sha256);
        referenced.add(a.sha256);
      }
    }
    expect(readdirSync(join(store, 'blobs')).sort()).toEqual([...referenced].sort());
    expect(readdirSync(join(store, 'tmp'))).toEqual([]);
    expect(existsSync(join(store, 'verified.json'))).toBe(false); // blobs are hashed where used, never remembered as verified
  });

  it('leaves no temporary file or lock anywhere in the cache, and intact images', () => {
    // apt's own lock files under apt/state and apt/cache are permanent by design.
    const debris = [...snapshot(cache).keys()].filter((p) => /\.tmp\b|tmp-\d+|\.lock\b|\.stale\.|(^|\/)lock$/.test(p) && !/^apt\/(state|cache)\//.test(p));
    expect(debris).toEqual([]);
    const images = join(cache, 'images');
    const bases = readdirSync(images).filter((f) => f.startsWith('base-full-'));
    expect(bases).toHaveLength(1);
    // Every initrd is the base layer followed by a run layer: its first bytes are the base's.
    const base = readFileSync(join(images, bases[0]!));
    const imgs = readdirSync(join(images, 'initrd'));
    expect(imgs.length).toBeGreaterThanOrEqual(KERNELS.length);
    for (const f of imgs) {
      const img = readFileSync(join(images, 'initrd', f));
      expect(img.length, f).toBeGreaterThan(base.length);
      expect(img.subarray(0, base.length).equals(base), f).toBe(true);
    }
  });

  it('a third run reuses the kernels and images without rebuilding, and takes over a dead run’s report lock', async () => {
    const before = snapshot(join(cache, 'images'));
    const kernelsBefore = snapshot(join(cache, 'kernels', 'blobs'));
    const out = join(root, 'c');
    mkdirSync(out);
    const dead = spawnSync('true').pid!;
    writeFileSync(join(out, OUT_LOCK), `${dead}\n`);
    const r = await matrix(out);
    expectPassing(r);
    expect(r.stderr).not.toMatch(/downloading|apt: updating|refetching/);
    expect(snapshot(join(cache, 'kernels', 'blobs'))).toEqual(kernelsBefore);
    // The same images, not rebuilt: no new file, the base layer and code cache untouched
    // (initrds are only touched to keep them from being pruned).
    const after = snapshot(join(cache, 'images'));
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    for (const [p, v] of before) if (!p.startsWith('initrd/') && p !== 'file-hashes.json') expect(after.get(p), p).toBe(v);
    for (const [p, v] of before) if (p.startsWith('initrd/')) expect(after.get(p)!.split(':')[2], p).toBe(v.split(':')[2]);
    console.log(`third run: ${(r.ms / 1000).toFixed(1)} s`);
  }, 600_000);
});

describe('shared files', () => {
  it('an edited suite compiled by another run never replaces the object a running run ships', async () => {
    const dir = join(root, 'edit');
    cpSync(join(suitesDir(), SUITE), join(dir, SUITE), { recursive: true });
    const [v1] = await buildSuites({ suitesDir: dir, names: [SUITE] });
    const src = join(dir, SUITE, 'prog.bpf.c');
    writeFileSync(src, `${readFileSync(src, 'utf8')}\nint edited_by_another_run = 1;\n`);
    const [v2] = await buildSuites({ suitesDir: dir, names: [SUITE] });
    expect(v2!.object).not.toBe(v1!.object);
    expect(v2!.sha256).not.toBe(v1!.sha256);
    expect(sha256(v1!.object)).toBe(v1!.sha256); // still the bytes its run reported
    expect(sha256(v2!.object)).toBe(v2!.sha256);
  }, 120_000);

  it('two runs claiming the same default folder in the same millisecond get two folders', () => {
    const reports = join(root, 'reports');
    const a = claimRunDir(reports, '2026-01-01T00-00-00-000');
    const b = claimRunDir(reports, '2026-01-01T00-00-00-000');
    expect(a.dir).not.toBe(b.dir);
    expect(b.runId).toBe('2026-01-01T00-00-00-000-2');
    expect(readdirSync(reports).sort()).toEqual(['2026-01-01T00-00-00-000', '2026-01-01T00-00-00-000-2']);
  });

  it('a folder a live run is writing is refused before anything runs', () => {
    const out = join(root, 'busy');
    mkdirSync(out);
    writeFileSync(join(out, OUT_LOCK), `${process.pid}\n`);
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '6.1', '--suites', SUITE, '--out', out], { encoding: 'utf8', env: { ...process.env, COREMATRIX_CACHE: cache } });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(`corematrix: ${out}: another corematrix run (pid ${process.pid}) is writing its report there; use another --out`);
    expect(performance.now() - t0).toBeLessThan(15_000);
    expect(readFileSync(join(out, OUT_LOCK), 'utf8')).toBe(`${process.pid}\n`);
    expect(readdirSync(out)).toEqual([OUT_LOCK]);
  });
});
