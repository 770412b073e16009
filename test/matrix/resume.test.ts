// A guest that dies inside an object (matrix/resume.ts): which object it died in, what a follow-up
// guest redoes, and the kernel's row once it has. The real thing, a kernel panic inside one object
// with both loaders on 6.1, is in test/faults/faults.test.ts.
import { describe, expect, it } from 'vitest';
import { diedIn, joinFollowUp } from '../../harness/matrix/resume.js';
import { notRunCells } from '../../harness/matrix/run.js';
import type { AgentStep } from '../../harness/protocol.js';
import { WHOLE_OBJECT, type CellResult, type KernelInfo, type KernelRun, type LoaderName } from '../../harness/results.js';

const kernel: KernelInfo = { id: '5.10', package: 'p', version: 'v', release: 'r', flavour: 'generic', btf: 'kernel' };
const cell = (unit: string, program: string, loader: LoaderName, verdict: CellResult['verdict'] = 'pass', reason?: string): CellResult => ({
  schema: 1, kernel, suite: unit, program, loader, object: { name: unit.replace(/^object:/, ''), sha256: 'x' }, verdict, ...(reason ? { reason } : {}),
  relocations: [], externs: [], checks: [], timings: { loadMs: 1, runMs: 0 },
});
const run = (over: Partial<KernelRun>): KernelRun => ({ kernel, guest: 'ok', accel: 'tcg', durationMs: 1000, cells: [], ...over });
const step = (unit: string, phase: AgentStep['phase'] = 'attach'): AgentStep => ({ unit, object: unit.replace(/^object:/, ''), phase, index: 2, total: 4 });
const both: LoaderName[] = ['ours', 'libbpf'];

describe('the object a guest died in', () => {
  it('is the last step\'s object when the guest died, whatever killed it', () => {
    for (const guest of ['panic', 'oops', 'hung-task', 'agent-oom', 'agent-hang', 'qemu-died', 'timeout', 'agent-failed'] as const) {
      expect(diedIn({ guest }, step('object:lsm.o')), guest).toBe('object:lsm.o');
    }
  });

  it('is none for a guest that finished, never started its work, or died outside a user object', () => {
    expect(diedIn({ guest: 'ok' }, step('object:lsm.o'))).toBeUndefined();
    expect(diedIn({ guest: 'no-btf' }, step('object:lsm.o'))).toBeUndefined();
    expect(diedIn({ guest: 'panic' }, undefined)).toBeUndefined();
    expect(diedIn({ guest: 'panic' }, step('kernel-version', 'run'))).toBeUndefined();
    expect(diedIn({ guest: 'panic' }, { unit: 'corpus', object: 'x', phase: 'corpus', index: 1, total: 1 })).toBeUndefined();
  });
});

describe('what a follow-up guest redoes: the units notRunCells would list', () => {
  const owed = [
    { unit: 'object:a.o', object: 'a.o', sha256: 'x', programs: ['p1', 'p2'] },
    { unit: 'object:b.o', object: 'b.o', sha256: 'x', programs: ['q'] },
  ];
  const unfinished = (sent: CellResult[], loaders: LoaderName[]) => owed.filter((w) => notRunCells(kernel, [w], loaders, sent, '').length > 0).map((w) => w.unit);
  it('a unit some loader did not finish; one that failed whole (a cell for the object) is finished', () => {
    const oursOnly = [cell('object:a.o', 'p1', 'ours'), cell('object:a.o', 'p2', 'ours')];
    expect(unfinished(oursOnly, both)).toEqual(['object:a.o', 'object:b.o']);
    expect(unfinished(oursOnly, ['ours'])).toEqual(['object:b.o']);
    const whole = [...both.map((l) => cell('object:a.o', WHOLE_OBJECT, l, 'fail')), ...both.map((l) => cell('object:b.o', 'q', l))];
    expect(unfinished(whole, both)).toEqual([]);
  });
});

describe('the kernel\'s row after a follow-up', () => {
  const lastStep = step('object:lsm.o');
  const notRun = (unit: string, program: string, loader: LoaderName) => cell(unit, program, loader, 'error', `not run: the guest ended (agent-failed) after the agent's last step: object ${unit.slice(7)} (attach)`);
  const dead = run({
    guest: 'agent-failed', detail: 'agent exited with status 133', durationMs: 300_000,
    cells: [
      cell('object:a.o', 'p1', 'ours'), cell('object:a.o', 'p2', 'ours'),
      notRun('object:a.o', 'p1', 'libbpf'), notRun('object:a.o', 'p2', 'libbpf'),
      notRun('object:lsm.o', 'deny', 'ours'), notRun('object:lsm.o', 'deny', 'libbpf'),
      notRun('object:b.o', 'q', 'ours'), notRun('object:b.o', 'q', 'libbpf'),
    ],
  });
  const next = run({ durationMs: 100_000, cells: ['object:a.o', 'object:b.o'].flatMap((u) => both.flatMap((l) => (u === 'object:a.o' ? ['p1', 'p2'] : ['q']).map((p) => cell(u, p, l)))) });
  const joined = joinFollowUp(dead, next, ['object:a.o', 'object:b.o'], { unit: 'object:lsm.o', step: lastStep, guest: 'agent-failed' });

  it('keeps one cell per unit, program and loader: the follow-up\'s for what it redid', () => {
    const keys = joined.cells.map((c) => `${c.suite} ${c.program} ${c.loader}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys.sort()).toEqual([
      'object:a.o p1 libbpf', 'object:a.o p1 ours', 'object:a.o p2 libbpf', 'object:a.o p2 ours',
      'object:b.o q libbpf', 'object:b.o q ours', 'object:lsm.o deny libbpf', 'object:lsm.o deny ours',
    ]);
    for (const c of joined.cells.filter((x) => x.suite !== 'object:lsm.o')) expect(c.verdict).toBe('pass');
  });

  it('names the object that killed the guest in its cells, and keeps the guest\'s death in the row', () => {
    for (const c of joined.cells.filter((x) => x.suite === 'object:lsm.o')) {
      expect(c.verdict).toBe('error');
      expect(c.reason).toBe("not run: this object's attach killed the guest (agent-failed) in object lsm.o (attach); the guest's other unfinished objects ran again in a follow-up guest");
    }
    expect(joined.guest).toBe('agent-failed');
    expect(joined.detail).toBe('agent exited with status 133; 2 unfinished unit(s) ran again in a follow-up guest: ok');
    expect(joined.followUps).toBe(1);
    expect(joined.durationMs).toBe(400_000);
  });

  it('adds a second follow-up to the first: the row counts both, the second object is named too', () => {
    const again = run({ guest: 'panic', detail: 'Kernel panic - not syncing: sysrq', cells: [cell('object:a.o', 'p1', 'ours'), notRun('object:b.o', 'q', 'ours')] });
    const first = joinFollowUp(dead, again, ['object:a.o', 'object:b.o'], { unit: 'object:lsm.o', step: lastStep, guest: 'agent-failed' });
    const last = run({ cells: both.flatMap((l) => ['p1', 'p2'].map((p) => cell('object:a.o', p, l))) });
    const twice = joinFollowUp(first, last, ['object:a.o'], { unit: 'object:b.o', step: step('object:b.o', 'load'), guest: 'panic' });
    expect(twice.followUps).toBe(2);
    expect(twice.cells.find((c) => c.suite === 'object:b.o')!.reason).toMatch(/^not run: this object's load killed the guest \(panic\) in object b\.o \(load\)/);
    expect(twice.cells.filter((c) => c.suite === 'object:a.o').every((c) => c.verdict === 'pass')).toBe(true);
    expect(twice.detail).toMatch(/^agent exited with status 133; 2 unfinished unit\(s\) ran again in a follow-up guest: panic \(Kernel panic - not syncing: sysrq\); 1 unfinished unit\(s\) ran again in a follow-up guest: ok$/);
  });
});
