// cilium/ebpf's test programs (testdata/*.c of Debian's golang-github-cilium-ebpf-dev, compiled at
// test time with clang-19 as that project's Makefile does), run as a user runs them,
// `corematrix matrix --corpus cilium --suites none --loader both`, on the oldest and the newest
// kernel of the default matrix. libbpf in the same guests is the witness: ours refuses nothing
// libbpf loads, and where both load, the translated instructions are identical. The one kind of
// difference left is named: objects with legacy `maps` sections, which cilium/ebpf (and our loader)
// read and libbpf refuses since 1.0.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ciliumTestdata, type CiliumTestdata } from '../../harness/corpus/cilium-testdata.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { WHOLE_OBJECT, type RunReport } from '../../harness/results.js';

let corpus: CiliumTestdata;
let report: RunReport;
let out = '';
const dir = mkdtempSync(join(tmpdir(), 'cm-cilium-'));

beforeAll(async () => {
  corpus = await ciliumTestdata();
  const r = spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '5.10,7.3', '--suites', 'none', '--corpus', 'cilium', '--loader', 'both', '--jobs', '2', '--accel', 'tcg', '--out', dir], { encoding: 'utf8', env: { ...process.env, CI: '1' } });
  out = `${r.stdout}\n${r.stderr.slice(-3000)}`;
  report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as RunReport;
}, 900_000);

/** libbpf's refusal of legacy `maps` sections (libbpf >= 1.0), as its log says it. */
const LEGACY_MAPS = /legacy map definitions in 'maps' section are not supported by libbpf v1\.0\+/;

describe("cilium/ebpf's testdata, both loaders, 5.10 and 7.3", () => {
  it('compiles every testdata program with clang-19', () => {
    expect(corpus.source).toMatch(/^golang-github-cilium-ebpf-dev \S+ \(\w+\)$/);
    expect(corpus.objects.length).toBeGreaterThanOrEqual(20);
    expect(corpus.failed).toEqual([]);
  });

  it('compares every program; ours refuses nothing libbpf loads; identical translated instructions where both load', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(['5.10:ok', '7.3:ok']);
    // Every program of every object our reader reads; an object it refuses is one whole-object cell.
    const programsOf = (o: { name: string; path: string }): string[] => {
      try {
        return loadObjectSpec(readFileSync(o.path), o.name).programs.map((p) => p.name);
      } catch {
        return [WHOLE_OBJECT];
      }
    };
    const programs = corpus.objects.flatMap((o) => programsOf(o).map((p) => `${o.name} ${p}`)).sort();
    expect(programs).toContain(`loader.o ${WHOLE_OBJECT}`);
    for (const k of report.kernels) {
      const lib = k.cells.filter((c) => c.loader === 'libbpf');
      expect(lib.map((c) => `${c.object.name} ${c.program}`).sort(), k.kernel.id).toEqual(programs);
      const differ = lib.filter((c) => c.verdict !== 'pass');
      // libbpf alone loaded it: a defect of ours. None.
      expect(differ.filter((c) => /libbpf loaded, ours/.test(c.reason ?? '')).map((c) => `${c.object.name} ${c.program}: ${c.reason}`), k.kernel.id).toEqual([]);
      // What is left: legacy `maps` objects, which libbpf cannot open.
      for (const c of differ) expect(c.reason, `${k.kernel.id} ${c.object.name} ${c.program}`).toMatch(LEGACY_MAPS);
      const bothLoaded = lib.filter((c) => c.verdict === 'pass' && c.checks[0]?.observed === 'loaded');
      // 15 with 0.22.0+ds1-1 on both kernels (the rest: test-module kfuncs, objects meant to be linked
      // first, sections only cilium/ebpf names, legacy maps, map-only objects).
      expect(bothLoaded.length, k.kernel.id).toBeGreaterThanOrEqual(15);
      // Whatever ours attached ran under the workload (manyprogs.o's kprobes name functions that do not exist).
      const attached = k.cells.filter((c) => c.loader === 'ours' && c.attach?.status === 'attached');
      expect(attached.length, k.kernel.id).toBeGreaterThanOrEqual(5);
      expect(attached.filter((c) => !(c.attach!.runCount! > 0)).map((c) => `${c.object.name} ${c.program}`), k.kernel.id).toEqual([]);
      // kconfig.o's CONFIG_DEFAULT_HOSTNAME is char[1]: libbpf truncates the string, and so do we.
      expect(lib.find((c) => c.object.name === 'kconfig.o')?.checks[0]?.observed, k.kernel.id).toBe('loaded');
    }
  });
});
