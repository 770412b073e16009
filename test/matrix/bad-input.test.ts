// Bad input to `corematrix matrix` is found before any kernel is fetched or any report folder is
// made, and said in one line naming what is wrong, exit 2: --object files are read on the host as
// `relocate` reads them; --out is checked before it is created; a --suites-dir spec's mistakes name
// the file where it is. A kernel that cannot be fetched is said on stdout with its reason.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
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

  it('a cache that cannot be made says which folder, why and what to set (under /proc: refused at once)', () => {
    const file = join(dir, 'cache-file');
    writeFileSync(file, '');
    const withCache = (cache: string) => spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '6.1', '--suites', 'none', '--out', join(dir, 'out-cache')], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, COREMATRIX_CACHE: cache } });
    const r = withCache(join(file, 'c'));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`^corematrix: cache ${join(file, 'c')}: cannot create ${join(file, 'c')}/\\S+ \\(a part of the path is a file\\); set COREMATRIX_CACHE to a writable folder\n$`));
    const p = withCache('/proc/cm-cache');
    expect(p.status).toBe(2);
    expect(p.stderr).toBe('corematrix: cache /proc/cm-cache: proc is a kernel file system, not a place for a cache (set COREMATRIX_CACHE)\n');
  });
});

describe('matrix --suites-dir: spec errors name the real file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-suites-dir-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** A copy of suites/globals named `name`, its spec changed by `edit`. */
  const suite = (name: string, edit: (spec: string) => string): string => {
    mkdirSync(join(dir, name), { recursive: true });
    cpSync('suites/globals/prog.bpf.c', join(dir, name, 'prog.bpf.c'));
    const spec = join(dir, name, 'spec.yaml');
    writeFileSync(spec, edit(readFileSync('suites/globals/spec.yaml', 'utf8').replace('name: globals', `name: ${name}`)));
    return spec;
  };
  const lineOfText = (file: string, text: string) => readFileSync(file, 'utf8').split('\n').findIndex((l) => l.includes(text)) + 1;

  it('a spec mistake names <dir>/<suite>/spec.yaml, a file that exists, at the line of the mistake', () => {
    const spec = suite('misspelt', (s) => s.replace('minKernel:', 'minkernel:'));
    const r = matrix(['--suites-dir', dir, '--suites', 'misspelt', '--out', join(dir, 'out')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`corematrix: ${spec}:${lineOfText(spec, 'minkernel:')}: unknown key 'minkernel' (allowed: `);
    expect(existsSync(spec)).toBe(true);
    expect(existsSync(join(dir, 'out'))).toBe(false);
  });

  it('a YAML syntax error names the real file and the line of the unclosed bracket', () => {
    const spec = suite('unclosed', (s) => s.replace('1015, 1500]', '1015, 1500\n  # packets\n'));
    const r = matrix(['--suites-dir', dir, '--suites', 'unclosed', '--out', join(dir, 'out')]);
    expect(r.status).toBe(2);
    const line = lineOfText(spec, '1015, 1500');
    expect(r.stderr).toContain(`corematrix: ${spec}:${line}: YAML error: a ',' is missing after this entry, or the '[' of line ${line} is not closed (js-yaml: missed comma between flow collection entries, at line ${line + 3})\n`);
  });
});

describe('a run where no kernel could be fetched', () => {
  // A copy of the CLI whose kernels/matrix.yaml pins a version Debian never had; the package
  // index comes from the shared apt cache (no network once cached).
  const repo = mkdtempSync(join(tmpdir(), 'cm-repo-'));
  afterAll(() => rmSync(repo, { recursive: true, force: true }));
  mkdirSync(join(repo, 'dist'));
  mkdirSync(join(repo, 'kernels'));
  for (const f of ['bin', 'images', 'package.json']) cpSync(f, join(repo, f), { recursive: true });
  for (const f of ['dist/corematrix.cjs', 'dist/agent.js']) cpSync(f, join(repo, f));
  symlinkSync(join(process.cwd(), 'node_modules'), join(repo, 'node_modules'));
  writeFileSync(join(repo, 'kernels/matrix.yaml'), 'kernels:\n  - id: "6.1"\n    series: "6.1"\n    flavour: generic\n    suites: [bookworm]\n    version: 6.1.999-1\n');

  it('says why on stdout, with each kernel and its reason, and exits non-zero', () => {
    const out = join(repo, 'out');
    const r = spawnSync(process.execPath, [join(repo, 'bin/corematrix.js'), 'matrix', '--kernels', '6.1', '--suites', 'none', '--out', out], { encoding: 'utf8', cwd: repo, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(1);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^run \S+: 1 kernels, 0 cells: 0 pass, 0 fail, 0 error, 0 skip, 0 expected skip in [\d.]+ s$/);
    expect(lines[1]).toMatch(/^no kernel could be fetched: 6\.1: kernel '6\.1' \(6\.1 generic\): pinned version 6\.1\.999-1 is not in bookworm, which has [\d.\-, and]+ \(newest: linux-image-6\.1\.0-\d+-amd64-unsigned 6\.1\.\d+-\d+\)$/);
    expect(r.stdout).not.toContain('any more');
    expect(lines[2]).toBe(`  ${join(out, 'junit.xml')}`);
  });
});
