// Cache pruning, on real files: the most recently used are kept, and neither the file in use
// nor anything young enough that another run may still be reading it is ever deleted.
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { pruneCache } from '../harness/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'cm-prune-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('keeps the newest, the current one and young ones; other suffixes are not touched', () => {
  const hour = 3_600_000;
  const at = (name: string, ageMs: number) => {
    writeFileSync(join(dir, name), name);
    const t = new Date(Date.now() - ageMs);
    utimesSync(join(dir, name), t, t);
  };
  at('a.idx', 1 * hour);
  at('b.idx', 2 * hour);
  at('c.idx', 3 * hour); // oldest, but the one in use
  at('d.idx', 4 * hour);
  at('e.idx', 60_000); // a minute old: another run may have just made it
  at('g.idx', 30_000);
  at('f.img', 9 * hour);
  pruneCache(dir, '.idx', 1, join(dir, 'c.idx'));
  // The newest by use is g; e stays only for being young; a, b and d go; c is current; f is another kind.
  expect(readdirSync(dir).sort()).toEqual(['c.idx', 'e.idx', 'f.img', 'g.idx']);
  pruneCache(dir, '.idx', 0, undefined, 0);
  expect(readdirSync(dir).sort()).toEqual(['f.img']);
});

it('withLock: callers in one process take turns, in order, each holding the file alone', async () => {
  const { withLock } = await import('../harness/lock.js');
  const lock = join(dir, 'turns.lock');
  const events: string[] = [];
  const job = (name: string, ms: number) => withLock(lock, async () => {
    events.push(`${name} in`);
    await new Promise((r) => setTimeout(r, ms));
    events.push(`${name} out`);
    return name;
  });
  expect(await Promise.all([job('a', 30), job('b', 10), job('c', 0)])).toEqual(['a', 'b', 'c']);
  expect(events).toEqual(['a in', 'a out', 'b in', 'b out', 'c in', 'c out']);
  // A throwing holder does not block the next one.
  await expect(withLock(lock, async () => { throw new Error('boom'); })).rejects.toThrow('boom');
  expect(await job('d', 0)).toBe('d');
});
