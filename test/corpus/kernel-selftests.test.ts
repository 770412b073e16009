// The kernel's BPF selftests programs (progs/*.c of the newest Debian linux-source, compiled with
// clang-19 against that tree's libbpf headers and vmlinux.h), a stable slice of them as a user
// runs it, `corematrix matrix --corpus selftests:1/20 --suites none --loader both`, on the oldest
// and the newest kernel of the default matrix. The current libbpf loads the same objects in the
// same guests: every program is compared; ours refuses nothing libbpf loads; where both load, the
// translated instructions are identical. The one kind of disagreement left is named here: where
// the whole object fails for libbpf, its one-program-at-a-time attribution cannot fill a
// prog-array slot or struct_ops table with the object's other programs, so it reports programs the
// verifier accepted as failed, which our loader (loading each program on its own) loads.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { kernelSelftests, sliceOf, type KernelSelftests } from '../../harness/corpus/kernel-selftests.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import type { CellResult, RunReport } from '../../harness/results.js';

let corpus: KernelSelftests;
let report: RunReport;
let out = '';
const dir = mkdtempSync(join(tmpdir(), 'cm-selftests-'));

beforeAll(async () => {
  corpus = await kernelSelftests({ only: sliceOf(1, 20) });
  const r = spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '5.10,7.3', '--suites', 'none', '--corpus', 'selftests:1/20', '--loader', 'both', '--jobs', '2', '--accel', 'tcg', '--out', dir], { encoding: 'utf8', env: { ...process.env, CI: '1' } });
  out = `${r.stdout}\n${r.stderr.slice(-3000)}`;
  report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as RunReport;
}, 1_200_000);

/** What a libbpf cell says of the comparison: same, only one side loaded, or another difference. */
const kind = (c: CellResult) => (c.verdict === 'pass' ? 'same' : /ours loaded, libbpf/.test(c.reason ?? '') ? 'only-ours' : /libbpf loaded, ours/.test(c.reason ?? '') ? 'only-libbpf' : 'differs');

describe('kernel BPF selftests programs (slice 1/20), both loaders, 5.10 and 7.3', () => {
  it('compiles the slice from the newest linux-source with clang-19', () => {
    expect(corpus.source).toMatch(/^linux-source-\d+\.\d+ /);
    expect(corpus.sources).toBeGreaterThan(900);
    expect(corpus.objects.length).toBeGreaterThanOrEqual(35);
    // clang-19 builds nearly all of them; the few it cannot are listed with clang's error.
    expect(corpus.failed.length).toBeLessThanOrEqual(corpus.objects.length / 5);
    for (const f of corpus.failed) expect(f.error).toMatch(/error:/);
  });

  it('compares every program of every object on both kernels', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(['5.10:ok', '7.3:ok']);
    const programs = corpus.objects.flatMap((o) => loadObjectSpec(readFileSync(o.path), o.path).programs.map((p) => `${o.name}.bpf.o ${p.name}`)).sort();
    expect(programs.length).toBeGreaterThanOrEqual(150);
    for (const k of report.kernels) {
      for (const loader of ['ours', 'libbpf'] as const) {
        const got = k.cells.filter((c) => c.loader === loader).map((c) => `${c.object.name} ${c.program}`).sort();
        expect(got, `${k.kernel.id} ${loader}`).toEqual(programs);
      }
      expect(k.cells.filter((c) => c.verdict === 'error' && /^not run/.test(c.reason ?? ''))).toEqual([]);
    }
  });

  it('ours refuses nothing libbpf loads, and the translated instructions are identical wherever both load', () => {
    for (const k of report.kernels) {
      const lib = k.cells.filter((c) => c.loader === 'libbpf');
      const byKind = (x: string) => lib.filter((c) => kind(c) === x);
      expect(byKind('only-libbpf').map((c) => c.reason), k.kernel.id).toEqual([]);
      expect(byKind('differs').map((c) => c.reason), k.kernel.id).toEqual([]);
      // Where ours alone loaded, libbpf's failure is its attribution, never the verifier's verdict.
      for (const c of byKind('only-ours')) expect(c.reason, `${k.kernel.id} ${c.object.name}`).toMatch(/libbpf cannot load it alone \(per-program attribution after the whole object failed\)/);
      // Not vacuous: most programs agree, many of them loaded by both.
      expect(byKind('same').length, k.kernel.id).toBeGreaterThanOrEqual(lib.length * 0.8);
      const bothLoaded = byKind('same').filter((c) => c.checks[0]?.observed === 'loaded' && c.checks[0]?.truth === 'loaded');
      expect(bothLoaded.length, k.kernel.id).toBeGreaterThanOrEqual(25);
      for (const c of bothLoaded) expect(c.xlated, `${c.object.name} ${c.program}`).toBeTruthy();
    }
  });
});
