// A sockmap holds one program per attach type: of two stream verdict programs for one map, the
// first is attached and the second is not attachable beside it, for ours and libbpf alike, and
// the guest goes on to the next object (7.3, TCG). Before, the second replaced the first, the
// first's detach failed with ENOENT, and the agent ended with every later cell lost. An sk_msg
// program dropping every message makes the workload's TCP writes fail (EACCES): the agent goes on.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CellResult, RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { compileBpf, ensureBuilt } from '../helpers/tools.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-sockmap-hook-'));
let report: RunReport;
let out = '';

beforeAll(() => {
  ensureBuilt();
  copyFileSync(compileBpf(fileURLToPath(new URL('fixtures/sockmap-two-verdicts.bpf.c', import.meta.url))), join(tmp, 'two-verdicts.bpf.o'));
  copyFileSync(compileBpf(fileURLToPath(new URL('fixtures/sockmap-drop.bpf.c', import.meta.url))), join(tmp, 'drop.bpf.o'));
  // An object after it: it must still be loaded, attached and run.
  copyFileSync(compileBpf(fileURLToPath(new URL('fixtures/observer.bpf.c', import.meta.url))), join(tmp, 'after.bpf.o'));
  ({ report, out } = runMatrixCli(['--kernels', '7.3', '--suites', 'none', '--object', join(tmp, 'two-verdicts.bpf.o'), '--object', join(tmp, 'drop.bpf.o'), '--object', join(tmp, 'after.bpf.o'), '--loader', 'both'], join(tmp, 'out')));
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cell = (loader: 'ours' | 'libbpf', program: string): CellResult => report.kernels[0]!.cells.find((c) => c.loader === loader && c.program === program)!;

describe('one program per sockmap attach type', () => {
  it('the first verdict program holds the hook (the kernel ran it), the second is not attachable beside it; the dropping sk_msg program of the next object runs; the object after it still runs: for both loaders', () => {
    expect(report.kernels[0]!.guest, out).toBe('ok');
    for (const loader of ['ours', 'libbpf'] as const) {
      // The kernel's run count is the witness that verdict_a holds the hook: it saw the workload's TCP data.
      expect(cell(loader, 'verdict_a').attach, loader).toMatchObject({ status: 'attached' });
      expect(cell(loader, 'verdict_a').attach!.runCount, loader).toBeGreaterThan(0);
      expect(cell(loader, 'verdict_b').attach, loader).toMatchObject({ status: 'not-attachable', reason: 'sockmap socks sk_skb_stream_verdict holds one program, and verdict_a of this object is attached there' });
      for (const p of ['verdict_a', 'verdict_b']) expect(cell(loader, p).verdict, `${loader} ${p}`).toBe('pass');
      // Every message of the workload's client dropped: the first write ran it, and the step gave up.
      expect(cell(loader, 'drop_all').attach, loader).toMatchObject({ status: 'attached', runCount: expect.any(Number) });
      expect(cell(loader, 'drop_all').attach!.runCount, loader).toBeGreaterThanOrEqual(1);
      expect(cell(loader, 'on_rename').attach, loader).toMatchObject({ status: 'attached', runCount: 1 });
    }
  });
});
