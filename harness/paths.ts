// Where corematrix keeps what it downloads and derives. Everything here is a cache: safe to delete.
import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The cache root (COREMATRIX_CACHE, else ~/.cache/corematrix), created on first use. */
export function cacheDir(...sub: string[]): string {
  const root = process.env.COREMATRIX_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'corematrix');
  const dir = join(root, ...sub);
  mkdirSync(dir, { recursive: true });
  return dir;
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
