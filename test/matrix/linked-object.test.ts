// `matrix --object a.o+b.o`: an object built from two .c files, linked on the host before anything
// boots (harness/matrix/linked-objects.ts, our linker), then loaded in a 7.3 guest (TCG) by both
// loaders: libbpf, loading the same linked file, agrees program by program. Bad parts are one line
// and exit 2 before a kernel is fetched.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import type { RunReport } from '../../harness/results.js';
import { compileBpf, ensureBuilt, runCli } from '../helpers/tools.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-linked-'));
const fixture = (n: string) => fileURLToPath(new URL(`../link/fixtures/${n}.bpf.c`, import.meta.url));
let a: string;
let b: string;
beforeAll(() => {
  ensureBuilt();
  a = compileBpf(fixture('pair_a'));
  b = compileBpf(fixture('pair_b'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('--object a.o+b.o', () => {
  it('refuses a missing part or objects that do not link, naming them, exit 2, nothing booted', async () => {
    const missing = await runCli(['matrix', '--kernels', '7.3', '--suites', 'none', '--object', `${a}+/nonexistent/b.o`, '--out', join(tmp, 'x')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--object \S+\+\/nonexistent\/b\.o: \/nonexistent\/b\.o: no such file/);
    const twice = await runCli(['matrix', '--kernels', '7.3', '--suites', 'none', '--object', `${a}+${a}`, '--out', join(tmp, 'y')]);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/symbol 'prog_a' defined in both/);
    expect(twice.stderr.trim().split('\n').filter((l) => /defined in both/.test(l))).toHaveLength(1);
  });

  it('links on the host and loads the linked object with both loaders in a 7.3 guest, program by program alike', async () => {
    const out = join(tmp, 'run');
    const r = await runCli(['matrix', '--kernels', '7.3', '--suites', 'none', '--object', `${a}+${b}`, '--loader', 'both', '--accel', 'tcg', '--out', out], 600_000);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as RunReport;
    expect(report.kernels.map((k) => k.guest), `${r.stdout}\n${r.stderr}`).toEqual(['ok']);
    const linkedName = `${a.split('/').pop()!.replace(/\.o$/, '')}+${b.split('/').pop()!.replace(/\.o$/, '')}.o`;
    expect(r.stderr).toContain(`linked into `);
    const cells = report.kernels[0]!.cells.filter((c) => c.object.name === linkedName);
    // Every program of both sources is in the one object, and both loaders loaded each with the same translated code.
    const path = /linked into (\S+)/.exec(r.stderr)![1]!;
    const programs = loadObjectSpec(readFileSync(path), linkedName).programs.map((p) => p.name).sort();
    expect(programs).toEqual(['prog_a', 'prog_b']);
    for (const loader of ['ours', 'libbpf'] as const) {
      expect(cells.filter((c) => c.loader === loader).map((c) => c.program).sort(), loader).toEqual(programs);
    }
    for (const c of cells) expect(c.verdict, `${c.loader} ${c.program}: ${c.reason}`).toBe('pass');
    for (const c of cells.filter((x) => x.loader === 'libbpf')) expect(c.checks[0]?.observed, c.program).toBe('loaded');
  }, 600_000);
});
