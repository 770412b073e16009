// Bad input to `corematrix matrix` is found before any kernel is fetched or any report folder is
// made, and said in one line naming what is wrong, exit 2: --object files are read on the host as
// `relocate` reads them; --out is checked before it is created.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileBpf } from '../helpers/tools.js';

const matrix = (args: string[]) => spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '6.1', '--suites', 'none', ...args], { encoding: 'utf8' });

describe('matrix --object, checked on the host first', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-objects-'));

  it('a missing object is a usage error (exit 2), and no report folder is made', () => {
    const out = join(dir, 'out-missing');
    const r = matrix(['--object', join(dir, 'nope.o'), '--out', out]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`corematrix: ${join(dir, 'nope.o')}: no such object file\n`);
    expect(existsSync(out)).toBe(false);
  });

  it('a file that is not an ELF object, and a truncated one, are one line each naming the file (exit 2)', () => {
    const junk = join(dir, 'junk.o');
    writeFileSync(junk, 'this is not an ELF file at all\n');
    const real = readFileSync(compileBpf('test/faults/fixtures/oob.bpf.c'));
    const cut = join(dir, 'cut.o');
    writeFileSync(cut, real.subarray(0, Math.floor(real.length / 2)));
    for (const f of [junk, cut]) {
      const out = join(dir, `out-${f.endsWith('junk.o') ? 'junk' : 'cut'}`);
      const r = matrix(['--object', f, '--out', out]);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`^corematrix: ${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `));
      expect(existsSync(out)).toBe(false);
    }
  });

  it('--out under /proc or /sys is refused at once (a recursive mkdir there never returns)', () => {
    for (const d of ['/proc/corematrix-x', '/sys/corematrix-x']) {
      const r = spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '6.1', '--suites', 'none', '--out', d], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status).toBe(2);
      expect(r.stderr).toBe(`corematrix: --out ${d}: ${d.split('/')[1]} is a kernel file system, not a place for reports\n`);
    }
  });

  it('an --out that cannot be made says which folder and why', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    const r = matrix(['--out', join(file, 'sub')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`corematrix: --out ${join(file, 'sub')}: cannot create ${join(file, 'sub')} (a part of the path is a file)\n`);
  });
});
