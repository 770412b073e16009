// A BPF LSM program that denies every file access, the agent's own too, through the matrix with
// both loaders on 7.3 (TCG); one that denies every mprotect (node's engine aborts the process when
// mprotect fails); and an lsm_cgroup one that denies every open: each loader attaches it, finds
// right away that the agent can no longer map and mprotect a page or write and read a file,
// detaches it, and says so in the cell; the kernel counted the denials; the guest goes on to the
// next object. Before, the agent lost the object's results (ours: a whole-object "EOF") or died
// (libbpf's turn: SIGABRT; an mprotect denied: V8's "Check failed: 12 == errno"), with every later
// cell lost.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CellResult, RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { compileBpf, ensureBuilt } from '../helpers/tools.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-lsm-deny-'));
let report: RunReport;
let out = '';

beforeAll(() => {
  ensureBuilt();
  copyFileSync(compileBpf(fileURLToPath(new URL('fixtures/lsm-deny.bpf.c', import.meta.url))), join(tmp, 'deny.bpf.o'));
  copyFileSync(compileBpf(fileURLToPath(new URL('fixtures/observer.bpf.c', import.meta.url))), join(tmp, 'after.bpf.o'));
  ({ report, out } = runMatrixCli(['--kernels', '7.3', '--suites', 'none', '--object', join(tmp, 'deny.bpf.o'), '--object', join(tmp, 'after.bpf.o'), '--loader', 'both'], join(tmp, 'out')));
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cell = (loader: 'ours' | 'libbpf', program: string): CellResult => report.kernels[0]!.cells.find((c) => c.loader === loader && c.program === program)!;

describe('an LSM program that denies the agent its own file access or mprotect', () => {
  it('is detached at once by both loaders, saying why; the kernel counted its denials; the next object runs', () => {
    expect(report.kernels[0]!.guest, out).toBe('ok');
    for (const loader of ['ours', 'libbpf'] as const) {
      for (const program of ['deny_everything', 'deny_mprotect', 'deny_opens']) {
        const c = cell(loader, program);
        expect(c.verdict, `${loader} ${program}: ${c.reason}`).toBe('pass');
        expect(c.attach, `${loader} ${program}`).toMatchObject({ status: 'attached', note: expect.stringMatching(/^detached right after attaching, before the workload: it denied the agent its own file or memory calls \(.+\)$/) });
        // The kernel's count: the check's few denials, and nothing of the workload's hundreds of
        // file accesses (it ran after the detach: on_rename below).
        expect(c.attach!.runCount, `${loader} ${program}`).toBeGreaterThanOrEqual(1);
        expect(c.attach!.runCount, `${loader} ${program}`).toBeLessThan(20);
      }
      // The mprotect one is found by the agent's own mprotect, before node's engine meets it.
      expect(cell(loader, 'deny_mprotect').attach!.note, loader).toMatch(/\(mprotect\(PROT_READ\|PROT_EXEC\): EPERM\)$/);
      expect(cell(loader, 'on_rename').attach, loader).toMatchObject({ status: 'attached', runCount: 1 });
    }
  });
});
