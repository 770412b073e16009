// A custom kernel build's progress line says how far the compile is: kbuild's own step lines are
// counted (compile, assemble, archive, link), and nothing else in its output is.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileSteps, TYPICAL_COMPILE_STEPS } from '../../harness/kernels/build.js';
import { cacheDir } from '../../harness/paths.js';

describe('custom kernel build progress', () => {
  it('counts kbuild step lines and nothing else', () => {
    const out = [
      '  SYNC    include/config/auto.conf',
      '  CC      kernel/fork.o',
      '  AS      arch/x86/entry/entry_64.o',
      '  AR      lib/lib.a',
      '  LD      vmlinux.o',
      'kernel/fork.c:12:1: warning: CC is not a step here',
      '  CC [M]  drivers/block/null_blk/main.o',
      '  HOSTCC  scripts/kallsyms',
    ].join('\n');
    expect(compileSteps(out)).toBe(5);
    expect(compileSteps('')).toBe(0);
  });

  it('the estimate before any build is logged is what the 6.12-nonetns build logged (the build the global setup makes)', () => {
    const dir = cacheDir('kernels', 'build-logs');
    const log = readdirSync(dir).find((f) => f.startsWith('6.12-nonetns@'));
    expect(log, `a 6.12-nonetns build log in ${dir}`).toBeDefined();
    expect(compileSteps(readFileSync(join(dir, log!), 'utf8'))).toBe(TYPICAL_COMPILE_STEPS);
  });
});
