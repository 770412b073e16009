// Lock files shared by concurrent corematrix processes: `<file>` holds the holder's pid; a lock
// whose holder is gone is taken over. `withLock` waits for a live holder (the kernel store, the
// apt state); `tryLock` reports it (a report folder another run is writing).
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreMatrixError } from './core/errors.js';

/** True when a process with this pid exists (ours or another user's). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `lockFile` if it is free or its holder is dead: returns the release function, or the
 * live holder's pid (NaN when the file was unreadable mid-write) when someone else holds it.
 */
export function tryLock(lockFile: string): { release: () => void } | { holder: number } {
  for (;;) {
    try {
      const fd = openSync(lockFile, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return { release: () => rmSync(lockFile, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(lockFile, 'utf8'), 10);
    } catch {
      continue; // released between our open and read
    }
    if (pidAlive(pid) || Number.isNaN(pid)) return { holder: pid };
    // Stale: rename first, so of several processes taking it over only one removes it.
    try {
      renameSync(lockFile, `${lockFile}.stale.${process.pid}`);
      rmSync(`${lockFile}.stale.${process.pid}`, { force: true });
    } catch {
      /* another process took it over first: try again */
    }
  }
}

/** This process's callers of withLock per lock file, in turn (the file holds our own pid meanwhile). */
const turns = new Map<string, Promise<void>>();

/**
 * Runs fn holding `lockFile`, waiting (up to timeoutMs) while a live process holds it. Callers in
 * this process take turns on a promise instead of polling a file that names their own pid.
 */
export async function withLock<T>(lockFile: string, fn: () => Promise<T>, timeoutMs = 20 * 60_000): Promise<T> {
  const before = turns.get(lockFile) ?? Promise.resolve();
  let done!: () => void;
  const mine = before.then(() => new Promise<void>((resolve) => (done = resolve)));
  turns.set(lockFile, mine);
  await before;
  try {
    const t0 = Date.now();
    let got: ReturnType<typeof tryLock>;
    while ('holder' in (got = tryLock(lockFile))) {
      if (Date.now() - t0 > timeoutMs) throw new CoreMatrixError(`${lockFile}: still locked by pid ${got.holder} after ${Math.round(timeoutMs / 1000)} s`);
      await sleep(250);
    }
    try {
      return await fn();
    } finally {
      got.release();
    }
  } finally {
    done();
    if (turns.get(lockFile) === mine) turns.delete(lockFile);
  }
}
