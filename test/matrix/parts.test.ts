// One kernel's objects spread over two guests of it when the run has two slots and one kernel
// (matrix/parts.ts): the rules, then a real run of the Debian corpus (22 objects) on 7.3 with
// --jobs 2, held against the same run in one guest: the same cells, verdict for verdict, and both
// guests' own logs.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeParts, objectWeight, partId, partOf, partsPerKernel } from '../../harness/matrix/parts.js';
import type { CellResult, KernelInfo, KernelRun, RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { ensureBuilt } from '../helpers/tools.js';

const kernel: KernelInfo = { id: '7.3', package: 'p', version: 'v', release: 'r', flavour: 'generic', btf: 'kernel' };
const cell = (program: string): CellResult => ({
  schema: 1, kernel, suite: `object:${program}.o`, program, loader: 'ours', object: { name: `${program}.o`, sha256: 'x' }, verdict: 'pass',
  relocations: [], externs: [], checks: [], timings: { loadMs: 1, runMs: 0 },
});
const run = (over: Partial<KernelRun>): KernelRun => ({ kernel, guest: 'ok', accel: 'tcg', durationMs: 1000, bootMs: 10_000, cells: [], ...over });

describe('the rules', () => {
  it('uses the slots left over when every kernel has one, never for a handful of objects', () => {
    expect(partsPerKernel(1, 2, 830)).toBe(2);
    expect(partsPerKernel(2, 2, 830)).toBe(1);
    expect(partsPerKernel(11, 2, 830)).toBe(1);
    expect(partsPerKernel(1, 4, 830)).toBe(4);
    expect(partsPerKernel(1, 4, 20)).toBe(2);
    expect(partsPerKernel(1, 2, 7)).toBe(1);
    expect(partsPerKernel(1, 2, 0)).toBe(1);
  });

  it('deals the objects out by their cost (in turn when equal), so neighbours go to different guests, and loses none', () => {
    const objects = ['a', 'b', 'c', 'd', 'e'];
    expect(partOf(objects, 0, 2)).toEqual(['a', 'c', 'e']);
    expect(partOf(objects, 1, 2)).toEqual(['b', 'd']);
    expect(partOf(objects, 0, 1)).toEqual(objects);
    // An object follows the one it replaces a function of (freplace across objects) into its guest.
    const follows = (o: string) => (o === 'd' ? 'a' : undefined);
    expect(partOf(objects, 0, 2, follows)).toEqual(['a', 'c', 'd']);
    expect(partOf(objects, 1, 2, follows)).toEqual(['b', 'e']);
    // Weighed (objectWeight: programs), the costliest first to the least loaded part: the parts end together.
    const programs: Record<string, number> = { a: 80, b: 2, c: 2, d: 40, e: 40, f: 2 };
    const w = (o: string) => objectWeight(programs[o]!);
    const six = Object.keys(programs);
    expect(partOf(six, 0, 2, undefined, w)).toEqual(['a', 'b', 'f']);
    expect(partOf(six, 1, 2, undefined, w)).toEqual(['c', 'd', 'e']);
    expect([...partOf(six, 0, 2, undefined, w), ...partOf(six, 1, 2, undefined, w)].sort()).toEqual(six);
    // A chain of followers (e replaces a function of d, d of a) stays with its first object.
    const chain = (o: string) => ({ e: 'd', d: 'a' } as Record<string, string>)[o];
    expect(partOf(six, 0, 2, chain, w)).toEqual(['a', 'd', 'e']);
    expect(partId('7.3', 1, 2)).toBe('7.3-part2of2');
    expect(partId('7.3', 0, 1)).toBe('7.3');
  });

  it('merges the parts: all cells, the longest duration, the first unclean guest named by its part', () => {
    const ok = mergeParts(kernel, [run({ cells: [cell('a')], durationMs: 300 }), run({ cells: [cell('b')], durationMs: 500, bootMs: 12_000 })]);
    expect(ok).toMatchObject({ guest: 'ok', durationMs: 500, bootMs: 12_000, guests: 2 });
    expect(ok.cells.map((c) => c.program)).toEqual(['a', 'b']);
    expect(ok.detail).toBeUndefined();
    const hung = mergeParts(kernel, [run({ cells: [cell('a')] }), run({ guest: 'agent-hang', detail: 'silent for 30 s in object b.o', consoleTail: 'tail' })]);
    expect(hung).toMatchObject({ guest: 'agent-hang', detail: 'guest 2 of 2: silent for 30 s in object b.o', consoleTail: 'tail' });
    const one = run({ cells: [cell('a')] });
    expect(mergeParts(kernel, [one])).toBe(one);
  });
});

describe('the Debian corpus on 7.3: two guests of one kernel against one', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'cm-parts-'));
  let split: RunReport;
  let single: RunReport;
  let out = '';
  beforeAll(() => {
    ensureBuilt();
    ({ report: split, out } = runMatrixCli(['--corpus', 'debian', '--kernels', '7.3', '--suites', 'none', '--loader', 'ours', '--jobs', '2'], join(tmp, 'split')));
    ({ report: single } = runMatrixCli(['--corpus', 'debian', '--kernels', '7.3', '--suites', 'none', '--loader', 'ours', '--jobs', '1'], join(tmp, 'single')));
  }, 1_200_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('ran two guests, each with its own logs, and reports one kernel', () => {
    expect(split.kernels.map((k) => [k.kernel.id, k.guest, k.guests]), out).toEqual([['7.3', 'ok', 2]]);
    expect(single.kernels.map((k) => [k.kernel.id, k.guest, k.guests])).toEqual([['7.3', 'ok', undefined]]);
    for (const part of ['7.3-part1of2', '7.3-part2of2']) expect(existsSync(join(tmp, 'split', 'guests', `${part}.ttyS1.log`)), part).toBe(true);
  });

  it('has every cell the single guest has, with the same verdicts', () => {
    const key = (c: CellResult) => `${c.suite} ${c.program} ${c.loader}`;
    const verdicts = (r: RunReport) => Object.fromEntries(r.kernels[0]!.cells.map((c) => [key(c), c.verdict]));
    expect(Object.keys(verdicts(split)).length).toBeGreaterThanOrEqual(22);
    expect(verdicts(split)).toEqual(verdicts(single));
  });
});
