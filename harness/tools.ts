// The host tools corematrix runs by name (scripts/setup.mjs and .ci/run install them).
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';

/** The BPF compiler: Debian bookworm's clang 19 (suites, fixtures, the selftest corpus, cm-seed). */
export const CLANG = 'clang-19';

/** The executable `name` on PATH, or undefined (as the shell would find it). */
export function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = join(dir || '.', name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}
