// Baseline comparison: a real run against itself changes nothing; injected failures, fixes,
// moved relocations, verifier instruction counts and guest crashes are each caught.
import { beforeAll, describe, expect, it } from 'vitest';
import { compareRuns, formatComparison } from '../../harness/report/compare.js';
import type { RunReport } from '../../harness/results.js';
import { clone, realRun } from './fixture.js';

let run: RunReport;
beforeAll(async () => {
  ({ run } = await realRun());
}, 600_000);

const cellOf = (r: RunReport, id: string) => r.kernels.find((k) => k.kernel.id === id)!.cells[0]!;

describe('compareRuns', () => {
  it('finds nothing between a run and itself', () => {
    const c = compareRuns(run, clone(run));
    expect(c.regression).toBe(false);
    for (const k of ['newFailures', 'fixed', 'relocationChanges', 'insnChanges', 'kernelsAdded', 'kernelsRemoved', 'cellsAdded', 'cellsRemoved', 'objectChanges'] as const) expect(c[k]).toEqual([]);
    expect(formatComparison(c)).toMatch(/no regression$/);
  });

  it('catches a new failure and calls it a regression', () => {
    const head = clone(run);
    Object.assign(cellOf(head, '6.1'), { verdict: 'fail', reason: 'check offsetof(task_struct, pid): observed 0, truth 2416' });
    const c = compareRuns(run, head);
    expect(c.regression).toBe(true);
    expect(c.newFailures).toEqual([{ kernel: '6.1', suite: 'core-kernel', program: 'core_kernel', loader: 'ours', from: 'pass', to: 'fail', reason: expect.stringContaining('observed 0') }]);
    expect(formatComparison(c)).toContain('new failures (1):\n  6.1 core-kernel/core_kernel: pass → fail: check offsetof');
    // Capped per section on request (comparison.md), the count still the whole.
    const many = { ...c, newFailures: Array.from({ length: 5 }, () => c.newFailures[0]!) };
    const capped = formatComparison(many, { limit: 2 });
    expect(capped).toContain('new failures (5):');
    expect(capped.split('\n').filter((l) => l.startsWith('  6.1 core-kernel/core_kernel: pass → fail'))).toHaveLength(2);
    expect(capped).toContain('  … and 3 more (comparison.json lists them all)');
    // the other way round it is a fix, not a regression
    const back = compareRuns(head, run);
    expect(back.regression).toBe(false);
    expect(back.fixed.map((f) => f.kernel)).toEqual(['6.1']);
  });

  it('reports verifier instruction counts beyond 10% and 50 insns only', () => {
    const base = clone(run);
    const head = clone(run);
    const set = (r: RunReport, id: string, n: number) => (cellOf(r, id).verifier = { insnsProcessed: n });
    set(base, '5.10', 1000); set(head, '5.10', 1200); // +20%, +200: reported
    set(base, '6.1', 1000); set(head, '6.1', 1040); // +4%: not
    set(base, '6.1-rt', 100); set(head, '6.1-rt', 140); // +40% but only 40 insns: not
    set(base, '7.3', 600); set(head, '7.3', 520); // -13%, -80: reported
    const c = compareRuns(base, head);
    expect(c.insnChanges.map((i) => [i.kernel, i.from, i.to])).toEqual([['5.10', 1000, 1200], ['7.3', 600, 520]]);
    expect(c.regression).toBe(false);
    expect(compareRuns(base, head, { insnThreshold: 0.5 }).insnChanges).toEqual([]);
    expect(formatComparison(c)).toContain('5.10 core-kernel/core_kernel: 1000 → 1200 (+200, +20.0%)');
  });

  it('tells a moved relocation on the same kernel package from one on a new kernel version', () => {
    const head = clone(run);
    const pid = cellOf(head, '6.1').relocations.find((r) => r.spec === 'pid')!;
    const was = pid.target!;
    pid.target = was + 8;
    let c = compareRuns(run, head);
    expect(c.relocationChanges).toEqual([expect.objectContaining({ kernel: '6.1', subject: 'task_struct.pid byte_off', from: String(was), to: String(was + 8), sameKernel: true })]);
    head.kernels[1]!.kernel.version = '6.1.999-1';
    c = compareRuns(run, head);
    expect(c.relocationChanges[0]!.sameKernel).toBe(false);
    expect(c.kernelVersionChanges).toEqual([{ kernel: '6.1', from: run.kernels[1]!.kernel.version, to: '6.1.999-1' }]);
  });

  it('reports kernels and cells added or removed, and a guest that no longer boots', () => {
    const head = clone(run);
    head.kernels.pop();
    head.kernels[0]!.cells.push({ ...clone(head.kernels[0]!.cells[0]!), program: 'second' });
    head.kernels[1]!.guest = 'panic';
    head.kernels[1]!.detail = 'Kernel panic - not syncing: VFS';
    head.kernels[1]!.cells = [];
    const c = compareRuns(run, head);
    expect(c.kernelsRemoved).toEqual(['7.3']);
    expect(c.cellsAdded.map((x) => `${x.kernel}/${x.program}`)).toEqual(['5.10/second']);
    expect(c.cellsRemoved.map((x) => `${x.kernel}/${x.program}`)).toEqual(['6.1/core_kernel']);
    expect(c.newGuestFailures).toEqual([{ kernel: '6.1', from: 'ok', to: 'panic', detail: 'Kernel panic - not syncing: VFS' }]);
    expect(c.regression).toBe(true);
    expect(compareRuns(head, run).kernelsAdded).toEqual(['7.3']);
  });
});
