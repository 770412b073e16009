// Where corematrix keeps what it downloads and derives. Everything here is a cache: safe to delete.
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from './core/errors.js';

/** The cache root (COREMATRIX_CACHE, else ~/.cache/corematrix), created on first use. */
export function cacheDir(...sub: string[]): string {
  const root = process.env.COREMATRIX_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'corematrix');
  const dir = join(root, ...sub);
  // Under /proc or /sys Node's recursive mkdir never returns: refuse them before trying.
  if (/^\/(proc|sys)(\/|$)/.test(resolve(root))) throw new UsageError(`cache ${root}: ${resolve(root).split('/')[1]} is a kernel file system, not a place for a cache (set COREMATRIX_CACHE)`);
  ensureDir(dir, `cache ${root}`, 'set COREMATRIX_CACHE to a writable folder');
  return dir;
}

const MKDIR_WHY: Record<string, string> = { EROFS: 'the file system is read-only', EACCES: 'permission denied', EPERM: 'permission denied', ENOTDIR: 'a part of the path is a file', ENOSPC: 'no space left', EEXIST: 'a file of that name exists' };

/** mkdir -p, with a failure as one line: which folder, why (and what to do). Returns the first folder it made, if any. */
export function ensureDir(dir: string, what: string, hint?: string): string | undefined {
  try {
    return mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw mkdirFailure(err, what, dir, hint);
  }
}

/** A failed mkdir as one line naming `what`, the folder and why; anything but an errno error is returned as it is. */
export function mkdirFailure(err: unknown, what: string, dir: string, hint?: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (!e.code) return err;
  return new UsageError(`${what}: cannot create ${e.path ?? dir} (${MKDIR_WHY[e.code] ?? e.code})${hint ? `; ${hint}` : ''}`);
}

/** The repository root (works from harness/*.ts under vitest and from the dist/ bundles). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (dir.endsWith('/harness') || dir.endsWith('/dist')) return resolve(dir, '..');
    dir = resolve(dir, '..');
  }
  return process.cwd();
}

let tmpSerial = 0;
/**
 * Replaces `path` with `data` atomically: readers (other runs sharing the cache) see the old file
 * or the new one, never a torn one. The temporary name is unique per process and call.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.${process.pid}.${++tmpSerial}.tmp`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Marks a cache file as just used (its mtime, which pruneCache keeps by) and says whether it is
 * there. One call, so another run's pruneCache cannot delete it between a check and the touch.
 */
export function touchCached(file: string): boolean {
  const now = new Date();
  try {
    utimesSync(file, now, now);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * Keeps the `keep` most recently used files ending in `suffix` in a cache folder and deletes the
 * rest, except `current` and anything younger than `minAgeMs` (another run may be using it).
 */
export function pruneCache(dir: string, suffix: string, keep: number, current?: string, minAgeMs = 15 * 60_000): void {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(suffix))
    .map((f) => {
      try {
        return { p: join(dir, f), m: statSync(join(dir, f)).mtimeMs };
      } catch {
        return undefined; // deleted by another run meanwhile
      }
    })
    .filter((x): x is { p: string; m: number } => x !== undefined)
    .sort((a, b) => b.m - a.m);
  for (const f of files.slice(keep)) {
    if (f.p === current || Date.now() - f.m <= minAgeMs) continue;
    try {
      unlinkSync(f.p);
    } catch {
      /* already gone */
    }
  }
}
