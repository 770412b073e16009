// --shard i/n: the shards partition the selected kernels (each in exactly one shard, the same
// one on every run), bad specs are one-line usage errors, shard reports record their shard and
// `report merge` refuses mixed splits and marks a run with a missing shard incomplete.
import { execFileSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../harness/core/errors.js';
import { loadMatrix } from '../../harness/kernels/matrix.js';
import { parseShard, shardOf } from '../../harness/matrix/shard.js';
import { mergeReports, missingShards, validateRunReport } from '../../harness/report/merge.js';
import type { RunReport } from '../../harness/results.js';
import { clone, realRun } from '../report/fixture.js';
import { ensureBuilt, runCli } from '../helpers/tools.js';


const cli = (...args: string[]) => runCli(args, 120_000);

const ids = (out: string) => out.split('\n').filter(Boolean).map((l) => l.split('\t')[0]!);

beforeAll(() => {
  ensureBuilt();
}, 120_000);

describe('parseShard', () => {
  it('accepts i/n with 1 ≤ i ≤ n', () => {
    expect(parseShard('1/1')).toEqual({ index: 1, count: 1 });
    expect(parseShard('3/4')).toEqual({ index: 3, count: 4 });
    expect(parseShard(' 2 / 12 ')).toEqual({ index: 2, count: 12 });
  });

  it.each(['', '1', '0/3', '4/3', '1/0', '-1/3', 'a/b', '1/2/3', '1.5/3', '2of3'])("refuses '%s' with a one-line usage error", (spec) => {
    let err: unknown;
    try {
      parseShard(spec);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(2);
    expect((err as Error).message).toMatch(/^--shard/);
    expect((err as Error).message).not.toContain('\n');
  });
});

describe('shardOf', () => {
  it('partitions any list: every item in exactly one shard, in order, the same on every call', () => {
    for (let len = 0; len <= 17; len++) {
      const items = Array.from({ length: len }, (_, i) => `k${i}`);
      for (let n = 1; n <= 9; n++) {
        const shards = Array.from({ length: n }, (_, i) => shardOf(items, { index: i + 1, count: n }));
        expect(shards.flat().sort()).toEqual([...items].sort());
        expect(new Set(shards.flat()).size).toBe(len);
        for (const [i, s] of shards.entries()) {
          expect(s).toEqual(items.filter((x) => s.includes(x))); // matrix order kept
          expect(shardOf(items, { index: i + 1, count: n })).toEqual(s);
          // sizes differ by at most one
          expect(s.length === Math.floor(len / n) || s.length === Math.ceil(len / n)).toBe(true);
        }
      }
    }
  });

  it('puts kernel k of the real matrix in shard (k mod n)+1', () => {
    const m = loadMatrix();
    expect(m.length).toBeGreaterThan(3);
    const s = (i: number) => shardOf(m, { index: i, count: 3 }).map((e) => e.id);
    expect(s(1)).toEqual(m.filter((_, k) => k % 3 === 0).map((e) => e.id));
    expect(s(2)).toEqual(m.filter((_, k) => k % 3 === 1).map((e) => e.id));
    expect(s(3)).toEqual(m.filter((_, k) => k % 3 === 2).map((e) => e.id));
  });
});

describe('corematrix matrix --shard (built CLI)', () => {
  it('lists shards that partition the selection, stable across runs', async () => {
    const all = await cli('matrix', '--list');
    expect(all.code).toBe(0);
    const every = ids(all.stdout);
    expect(every).toEqual(loadMatrix().map((e) => e.id));
    for (const n of [1, 2, 3, every.length, every.length + 2]) {
      const got: string[][] = [];
      for (let i = 1; i <= n; i++) {
        const r = await cli('matrix', '--list', '--shard', `${i}/${n}`);
        expect(r.code, r.stderr).toBe(0);
        got.push(ids(r.stdout));
      }
      expect(got.flat().sort()).toEqual([...every].sort());
      expect(new Set(got.flat()).size).toBe(every.length);
      const again = await cli('matrix', '--list', '--shard', `1/${n}`);
      expect(ids(again.stdout)).toEqual(got[0]);
    }
  }, 120_000);

  it('shards the --kernels selection, not the whole matrix', async () => {
    const r = await cli('matrix', '--list', '--kernels', '6.1,6.1-cloud,6.1-rt', '--shard', '2/2');
    expect(r.code).toBe(0);
    expect(ids(r.stdout)).toEqual(['6.1-cloud']);
    const g = await cli('matrix', '--list', '--kernels', '6.1*', '--shard', '1/2');
    expect(ids(g.stdout)).toEqual(['6.1', '6.1-rt', '6.12-nonetns']); // of 6.1, 6.1-cloud, 6.1-rt, 6.12, 6.12-nonetns
  });

  it.each([['0/2'], ['3/2'], ['two/3'], ['1/']])("exits 2 with one line for --shard '%s'", async (spec) => {
    const r = await cli('matrix', '--list', '--shard', spec);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^corematrix: --shard/);
  });

  it('--arch keeps one arch\'s kernels; with --shard it splits those only', async () => {
    const all = loadMatrix();
    const arm = all.filter((e) => e.arch === 'arm64').map((e) => e.id);
    expect(arm.length).toBeGreaterThan(0);
    expect(ids((await cli('matrix', '--list', '--arch', 'arm64')).stdout)).toEqual(arm);
    expect(ids((await cli('matrix', '--list', '--arch', 'arm64', '--shard', '1/1')).stdout)).toEqual(arm);
    const amd = all.filter((e) => e.arch !== 'arm64').map((e) => e.id);
    expect(ids((await cli('matrix', '--list', '--arch', 'amd64', '--shard', '2/4')).stdout)).toEqual(shardOf(amd, { index: 2, count: 4 }));
    const bad = await cli('matrix', '--list', '--arch', 'x86');
    expect(bad.code).toBe(2);
    expect(bad.stderr.trimEnd()).toBe("corematrix: --arch must be amd64 or arm64, not 'x86'");
  });

  it('exits 2 for --shard without a value', async () => {
    const r = await cli('matrix', '--list', '--shard');
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});

describe('merging shard reports', () => {
  let run: RunReport;
  let parts: RunReport[];
  beforeAll(async () => {
    ({ run } = await realRun());
    // Split a real run the way --shard does, each part marked with its shard.
    parts = [1, 2, 3].map((index) => ({ ...clone(run), runId: `${run.runId}-s${index}`, kernels: shardOf(clone(run).kernels, { index, count: 3 }), shard: { index, count: 3 } }));
  }, 600_000);

  it('merges all shards back into the whole run, complete, without a shard field', () => {
    expect(missingShards(parts)).toEqual([]);
    const m = mergeReports(parts, ['a', 'b', 'c']);
    expect(m.complete).toBe(true);
    expect(m.shard).toBeUndefined();
    expect(m.kernels.map((k) => k.kernel.id).sort()).toEqual(run.kernels.map((k) => k.kernel.id).sort());
    expect(m.kernels.flatMap((k) => k.cells).length).toBe(run.kernels.flatMap((k) => k.cells).length);
  });

  it('marks the run incomplete and names a missing shard', () => {
    const two = [parts[0]!, parts[2]!];
    expect(missingShards(two)).toEqual(['2/3']);
    expect(mergeReports(two).complete).toBe(false);
  });

  it('refuses a shard twice, shards of different splits, and shards mixed with a whole run', () => {
    expect(() => mergeReports([parts[0]!, parts[1]!, parts[2]!, clone(parts[1]!)], ['s1', 's2', 's3', 's2-again'])).toThrow(/^s2-again: shard 2\/3 is also s2$/);
    expect(() => mergeReports([parts[0]!, { ...clone(parts[1]!), shard: { index: 2, count: 4 } }], ['x', 'y'])).toThrow(/^y: shard 2\/4 is not from the same split as x/);
    expect(() => mergeReports([parts[0]!, clone(run)], ['x', 'whole'])).toThrow(/^whole: not a shard, but x is shard 1\/3$/);
  });

  it('checks each arch\'s split apart (--arch): complete when every split is, the missing one named with its arch; a split of every arch does not mix with them', () => {
    const amd = clone(run).kernels.filter((k) => (k.kernel.arch ?? 'amd64') === 'amd64');
    const arm = clone(run).kernels.filter((k) => k.kernel.arch === 'arm64');
    const split = [1, 2].map((index) => ({ ...clone(run), kernels: shardOf(amd, { index, count: 2 }), shard: { index, count: 2, arch: 'amd64' } }));
    const own = { ...clone(run), kernels: arm, shard: { index: 1, count: 1, arch: 'arm64' } };
    expect(missingShards([...split, own])).toEqual([]);
    expect(mergeReports([...split, own]).complete).toBe(true);
    expect(missingShards([split[0]!, own])).toEqual(['amd64 2/2']);
    expect(missingShards(split)).toEqual([]); // a split the merge never heard of cannot be missed: the nightly names its parts
    expect(() => mergeReports([split[0]!, parts[1]!], ['a', 'b'])).toThrow(/^a: shard amd64 1\/2 splits one arch's kernels, but b \(2\/3\) splits every arch's$/);
  });

  it('validates the shard field of a saved report', () => {
    expect(validateRunReport(JSON.parse(JSON.stringify(parts[1])), 'p.json').shard).toEqual({ index: 2, count: 3 });
    expect(() => validateRunReport({ ...clone(parts[1]!), shard: { index: 4, count: 3 } }, 'p.json')).toThrow(/^p\.json: shard: /);
  });
});
