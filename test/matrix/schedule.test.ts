// Boot order (longest processing time first, never-measured kernels before them) and the small
// history file it reads; the order is judged by makespan, which is checked against the pool itself.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { bootOrder, DurationHistory, makespan } from '../../harness/matrix/schedule.js';
import { runPool } from '../../harness/vm/pool.js';

const dir = mkdtempSync(join(tmpdir(), 'cm-schedule-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('boot order', () => {
  const ids = ['5.10', '6.1', '6.1-cloud', '6.12', '7.3'];
  it('puts kernels never measured first, in matrix order, then the rest longest first when that finishes soonest', () => {
    const known = new Map([['5.10', 9400], ['6.1-cloud', 4900], ['6.12', 6800], ['7.3', 9400]]);
    // 6.1 (unknown, counted as 9.4 s) and 5.10 first; 7.3 follows 6.1; 6.12 and 6.1-cloud fill in.
    expect(bootOrder(ids, (x) => x, known, 2)).toEqual(['6.1', '5.10', '7.3', '6.12', '6.1-cloud']);
    expect(makespan([9400, 9400, 9400, 6800, 4900], 2)).toBe(9400 + 6800 + 4900);
  });
  it('keeps the matrix order without history', () => {
    expect(bootOrder(ids, (x) => x, new Map(), 2)).toEqual(ids);
  });
  it('on two slots, finishes the 9-kernel seed matrix of the bench sooner than matrix order or longest-first', () => {
    // Guest times (ms) measured by `npm run bench` on this machine, in matrix order.
    const times = new Map([['5.10', 9430], ['6.1', 9214], ['6.1-cloud', 4945], ['6.1-rt', 9101], ['6.12', 6834], ['6.12-nonetns', 5460], ['7.2', 7451], ['7.3', 7412], ['7.x', 7469]]);
    const finish = (order: string[]) => makespan(order.map((id) => times.get(id)!), 2);
    const matrixOrder = [...times.keys()];
    const ours = finish(bootOrder(matrixOrder, (x) => x, times, 2));
    // Within 2% of the perfect split of the total over two slots.
    const total = [...times.values()].reduce((a, b) => a + b, 0);
    expect(ours / (total / 2)).toBeLessThan(1.02);
  });
});

describe('makespan is what the pool does', () => {
  it('equals the finish time of runPool on the same order and slots (fake clock)', async () => {
    vi.useFakeTimers();
    try {
      for (const [times, slots] of [[[9430, 9214, 4945, 9101, 6834, 5460, 7451, 7412, 7469], 2], [[5, 9, 1, 7, 3], 3], [[4, 4, 4], 1]] as const) {
        const t0 = Date.now();
        let end = 0;
        const done = runPool([...times], slots, async (t) => {
          await new Promise((r) => setTimeout(r, t));
          end = Math.max(end, Date.now() - t0);
        });
        await vi.runAllTimersAsync();
        await done;
        expect(end, `${times} on ${slots}`).toBe(makespan(times, slots));
      }
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('duration history', () => {
  it('records per selection, merges runs, and reads back what was written', () => {
    const h = new DurationHistory(join(dir, 'durations.json'));
    expect(h.lookup('a').size).toBe(0);
    h.record('a', new Map([['6.1', 9214.4], ['7.3', 7412]]));
    h.record('b', new Map([['6.1', 100]]));
    h.record('a', new Map([['7.3', 7000]]));
    expect([...h.lookup('a')]).toEqual([['6.1', 9214], ['7.3', 7000]]);
    expect([...h.lookup('b')]).toEqual([['6.1', 100]]);
  });
  it('treats an unreadable file as no history, and replaces it on the next record', () => {
    const file = join(dir, 'torn.json');
    writeFileSync(file, '{"selections": {"a": {"6.1": 12');
    const h = new DurationHistory(file);
    expect(h.lookup('a').size).toBe(0);
    h.record('a', new Map([['6.1', 5]]));
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ selections: { a: { '6.1': 5 } } });
  });
});
