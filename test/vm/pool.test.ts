import { describe, expect, it } from 'vitest';
import { runPool } from '../../harness/vm/pool.js';

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new Error('aborted'));
    });
  });

describe('runPool', () => {
  it('keeps item order and never runs more than `jobs` at once', async () => {
    let running = 0;
    let peak = 0;
    const out = await runPool([50, 10, 30, 5, 20, 1], 2, async (ms) => {
      running++;
      peak = Math.max(peak, running);
      await sleep(ms);
      running--;
      return ms * 2;
    });
    expect(out).toEqual([100, 20, 60, 10, 40, 2]);
    expect(peak).toBe(2);
  });

  it('on the first error, aborts the others, waits for them, and throws that error', async () => {
    const finished: number[] = [];
    const started: number[] = [];
    const p = runPool([0, 1, 2, 3, 4], 2, async (i, signal) => {
      started.push(i);
      if (i === 1) throw new Error('item 1 failed');
      try {
        await sleep(200, signal);
      } finally {
        finished.push(i);
      }
      return i;
    });
    await expect(p).rejects.toThrow('item 1 failed');
    expect(started).toEqual([0, 1]); // nothing new starts after the failure
    expect(finished).toEqual([0]); // the running one was told to stop and was waited for
  });

  it('handles empty input and silly job counts', async () => {
    expect(await runPool([], 4, async () => 1)).toEqual([]);
    expect(await runPool([1, 2, 3], 0, async (x) => x + 1)).toEqual([2, 3, 4]);
    expect(await runPool([1, 2], 99, async (x) => x)).toEqual([1, 2]);
  });

  it('stops when the outer signal aborts', async () => {
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(new Error('user pressed ^C')), 30);
    await expect(runPool([1, 2, 3, 4], 1, (_, s) => sleep(100, s).then(() => 1), ctl.signal)).rejects.toThrow(/user pressed|aborted/);
  });
});
