// Objects built by other people: the BPF programs Debian ships in libxdp1 and xdp-tests (the
// newest version in bookworm, trixie and sid, fetched at test time), run the way a user runs
// them, `corematrix matrix --corpus debian --suites none --loader both`, on the oldest and the
// newest kernel of the default matrix. Every program of every object is compared (both loaders in
// the same guest, verdicts and the kernel's translated instructions), and our loader refuses
// nothing libbpf loads.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { debianObjects, isBpfObject, type DebianObjects } from '../../harness/corpus/debian-objects.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import type { RunReport } from '../../harness/results.js';

let corpus: DebianObjects;
let report: RunReport;
let stdout = '';
const out = mkdtempSync(join(tmpdir(), 'cm-debian-objects-'));

beforeAll(async () => {
  corpus = await debianObjects();
  const r = spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '5.10,7.3', '--suites', 'none', '--corpus', 'debian', '--loader', 'both', '--jobs', '2', '--accel', 'tcg', '--out', out], { encoding: 'utf8', env: { ...process.env, CI: '1' } });
  stdout = `${r.stdout}\n${r.stderr.slice(-3000)}`;
  report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as RunReport;
}, 900_000);

/** The programs xdpdump configures at run time: fentry/fexit on the XDP program it traces (bpf_program__set_attach_target with that program's fd). Loaded as shipped, `func` is no kernel function, and both loaders refuse them. */
const CONFIGURED_AT_RUN_TIME = new Set(['xdpdump_bpf.o trace_on_entry', 'xdpdump_bpf.o trace_on_exit']);

describe('Debian-shipped BPF objects (libxdp1, xdp-tests), both loaders, 5.10 and 7.3', () => {
  it('fetches every BPF object of both packages, and only BPF objects', () => {
    expect(corpus.packages.map((p) => p.name)).toEqual(['libxdp1', 'xdp-tests']);
    expect(corpus.objects.length).toBeGreaterThanOrEqual(15);
    for (const o of corpus.objects) expect(isBpfObject(o.path), o.name).toBe(true);
    expect(isBpfObject(process.execPath)).toBe(false);
  });

  it('boots both guests to the end and compares every program of every object with libbpf', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), stdout).toEqual(['5.10:ok', '7.3:ok']);
    const programs = corpus.objects.flatMap((o) => loadObjectSpec(readFileSync(o.path), o.path).programs.map((p) => p.name));
    expect(programs.length).toBeGreaterThanOrEqual(20);
    for (const k of report.kernels) {
      const ours = k.cells.filter((c) => c.loader === 'ours');
      const theirs = k.cells.filter((c) => c.loader === 'libbpf');
      // One cell per program and loader: nothing 'not run', no object that failed whole.
      expect(ours.length, k.kernel.id).toBe(programs.length);
      expect(theirs.length, k.kernel.id).toBe(programs.length);
      expect(k.cells.filter((c) => c.program === '(object)' || c.verdict === 'error')).toEqual([]);
      // libbpf's cells carry the comparison: same verdict, same translated instructions.
      for (const c of theirs) expect(c.verdict, `${k.kernel.id} ${c.object.name} ${c.program}: ${c.reason}`).toBe('pass');
    }
  });

  it('refuses nothing libbpf loads: the only programs ours fails are the two xdpdump configures at run time, which libbpf refuses too', () => {
    for (const k of report.kernels) {
      const failed = k.cells.filter((c) => c.loader === 'ours' && c.verdict !== 'pass');
      expect(new Set(failed.map((c) => `${c.object.name} ${c.program}`)), k.kernel.id).toEqual(CONFIGURED_AT_RUN_TIME);
      for (const c of failed) {
        expect(c.reason).toMatch(/attach target func is not in the kernel's or its loaded modules' BTF/);
        const libbpf = k.cells.find((x) => x.loader === 'libbpf' && x.suite === c.suite && x.program === c.program)!;
        expect(libbpf.checks[0]!.observed, 'libbpf refused it too').not.toBe('loaded');
      }
      expect(k.cells.filter((c) => c.loader === 'ours' && c.verdict === 'pass').length).toBeGreaterThanOrEqual(18);
    }
  });

  it('attaches what it loaded: the first XDP program of an object on the veth pair in driver mode, a second on lo, libbpf agreeing; every attached program ran', () => {
    for (const k of report.kernels) {
      const loaded = k.cells.filter((c) => c.loader === 'ours' && c.verdict === 'pass');
      for (const c of loaded) {
        expect(c.attach, `${k.kernel.id} ${c.object.name} ${c.program}`).toBeDefined();
        const a = c.attach!;
        if (a.status === 'not-attachable') expect(a.reason, `${k.kernel.id} ${c.object.name} ${c.program}`).toMatch(/^xdp cmv1 \(drv\) and xdp lo \(skb\) hold one program each, and \w+ and \w+ of this object are attached there$/);
        else {
          expect(a, `${k.kernel.id} ${c.object.name} ${c.program}`).toMatchObject({ status: 'attached', target: expect.stringMatching(/^xdp (cmv1 \(drv\)|lo \(skb\))$/) });
          // Frames sent into the veth end run the first; the workload's loopback traffic runs a second on lo.
          expect(a.runCount, `${k.kernel.id} ${c.object.name} ${c.program}`).toBeGreaterThan(0);
        }
        const libbpf = k.cells.find((x) => x.loader === 'libbpf' && x.suite === c.suite && x.program === c.program)!;
        // libbpf, attaching the same program in the same guest with its own API, says the same.
        expect(libbpf.attach?.status, `${k.kernel.id} ${c.object.name} ${c.program}: libbpf's attach (${libbpf.attach?.via})`).toBe(a.status);
      }
      expect(loaded.filter((c) => c.attach?.status === 'attached').length, k.kernel.id).toBeGreaterThanOrEqual(15);
    }
  });
});
