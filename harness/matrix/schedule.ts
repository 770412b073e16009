// The order a run boots its kernels in, and what it learned for next time.
//
// Guests run `jobs` at a time and each takes as long as it takes (5 to 10 s under TCG for the
// seed suite; a custom kernel build before its guest can take minutes). Booting in the matrix's
// order can leave a long guest for last, alone on one core while the others idle. So a run
// starts with the kernels it knows least about (never run with this selection: they may need a
// download or a build, best started early), then the rest in the order that, given the guest
// times the previous run with the same selection of suites and objects measured, finishes
// soonest. The history is a small JSON file in the cache; losing it only
// costs the order.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, writeFileAtomic } from '../paths.js';

/**
 * When the last of `times` finishes if they are started in this order on `slots` slots, each
 * taking the next as soon as it is free (what vm/pool.ts does).
 */
export function makespan(times: readonly number[], slots: number): number {
  const load = new Array<number>(Math.max(1, slots)).fill(0);
  for (const t of times) {
    let i = 0;
    for (let j = 1; j < load.length; j++) if (load[j]! < load[i]!) i = j;
    load[i]! += t;
  }
  return Math.max(...load);
}

/**
 * Boot order for `slots` guests at a time: ids never measured first (in their given order), then
 * the measured ones in the order whose simulated finish (makespan) is earliest. It starts from the
 * better of the given order and longest-first, then swaps pairs while that helps: longest-first
 * alone is not always better than the matrix's order (it is not, for the bench's seed matrix).
 */
export function bootOrder<T>(items: readonly T[], idOf: (t: T) => string, known: ReadonlyMap<string, number>, slots: number): T[] {
  const unknown = items.filter((t) => !known.has(idOf(t)));
  const timed = items.filter((t) => known.has(idOf(t)));
  if (timed.length < 2) return [...unknown, ...timed];
  const time = (t: T) => known.get(idOf(t))!;
  // Never-measured kernels run first; count them as long as the longest measured one.
  const head = unknown.map(() => Math.max(...timed.map(time)));
  const cost = (order: T[]) => makespan([...head, ...order.map(time)], slots);
  // Array.prototype.sort is stable: equal times keep the matrix's order.
  const longest = [...timed].sort((a, b) => time(b) - time(a));
  const [byLength, asGiven] = [cost(longest), cost(timed)];
  let best = byLength < asGiven ? longest : [...timed];
  let bestCost = Math.min(byLength, asGiven);
  for (let pass = 0, improved = true; improved && pass < 50; pass++) {
    improved = false;
    for (let i = 0; i < best.length; i++) {
      for (let j = i + 1; j < best.length; j++) {
        const next = [...best];
        [next[i], next[j]] = [next[j]!, next[i]!];
        const c = cost(next);
        if (c < bestCost) {
          best = next;
          bestCost = c;
          improved = true;
        }
      }
    }
  }
  return [...unknown, ...best];
}

interface HistoryFile {
  /** selection key → kernel id → guest milliseconds of its last run. */
  selections: Record<string, Record<string, number>>;
}

const MAX_SELECTIONS = 32;

/** Guest times of earlier runs, by selection (what ran in the guest) and kernel id. */
export class DurationHistory {
  constructor(readonly file = join(cacheDir('matrix'), 'durations.json')) {}

  private read(): HistoryFile {
    try {
      const h = JSON.parse(readFileSync(this.file, 'utf8')) as HistoryFile;
      if (h && typeof h.selections === 'object' && h.selections !== null) return h;
    } catch {
      /* none yet, or unreadable: no history */
    }
    return { selections: {} };
  }

  /** What the last run of this selection measured per kernel id. */
  lookup(selection: string): Map<string, number> {
    const rec = this.read().selections[selection] ?? {};
    return new Map(Object.entries(rec).filter((e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1])));
  }

  /** Merges this run's guest times into the selection's record (atomic replace; the last writer wins). */
  record(selection: string, times: ReadonlyMap<string, number>): void {
    if (times.size === 0) return;
    const h = this.read();
    const rec = { ...(h.selections[selection] ?? {}) };
    for (const [id, ms] of times) rec[id] = Math.round(ms);
    // Newest selection last; keep the file small.
    delete h.selections[selection];
    h.selections[selection] = rec;
    const keys = Object.keys(h.selections);
    for (const k of keys.slice(0, Math.max(0, keys.length - MAX_SELECTIONS))) delete h.selections[k];
    try {
      writeFileAtomic(this.file, JSON.stringify(h));
    } catch {
      /* history is an optimisation: never fail a run over it */
    }
  }
}
