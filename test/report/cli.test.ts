// `corematrix diff` and `corematrix report merge|render|show` as a user runs them (the real CLI
// entry through tsx): exit codes 0/1/2, one-line errors naming the file, shards merged.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RunReport } from '../../harness/results.js';
import { clone, KERNELS, realRun } from './fixture.js';

const run$ = promisify(execFile);
let run: RunReport;
let dir: string;

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run$(process.execPath, ['--import', 'tsx', 'harness/cli/main.ts', ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function save(name: string, doc: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof doc === 'string' ? doc : JSON.stringify(doc));
  return p;
}

beforeAll(async () => {
  ({ run } = await realRun());
  dir = mkdtempSync(join(tmpdir(), 'cm-report-cli-'));
}, 600_000);

describe('corematrix diff', () => {
  it('exits 0 without a regression and 1 with one', async () => {
    const base = save('base.json', run);
    const same = await cli('diff', base, save('same.json', run));
    expect(same.code).toBe(0);
    expect(same.stdout).toMatch(/: no regression\n$/);
    const head = clone(run);
    Object.assign(head.kernels[3]!.cells[0]!, { verdict: 'error', reason: 'agent: timeout after 30 s' });
    const bad = await cli('diff', base, save('head.json', head));
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('REGRESSION');
    expect(bad.stdout).toContain('7.3 core-kernel/core_kernel: pass → error: agent: timeout after 30 s');
    const json = await cli('diff', '--json', base, join(dir, 'head.json'));
    expect(JSON.parse(json.stdout).regression).toBe(true);
  });

  it('exits 2 with one line naming the file on bad input', async () => {
    const base = save('base.json', run);
    const cases: [string, RegExp][] = [
      [save('trunc.json', JSON.stringify(run).slice(0, 500)), /^corematrix: .*trunc\.json: not JSON \(/],
      [save('v2.json', { ...run, schema: 2 }), /^corematrix: .*v2\.json: result schema 2 is not 1 \(written by another corematrix version\)$/],
      [save('nocells.json', { ...run, kernels: [{ ...run.kernels[0], cells: undefined }] }), /^corematrix: .*nocells\.json: kernels\[0\]\.cells: missing or not an array$/],
      [join(dir, 'missing.json'), /^corematrix: .*missing\.json: cannot read: ENOENT$/],
    ];
    for (const [file, re] of cases) {
      const r = await cli('diff', base, file);
      expect(r.code, file).toBe(2);
      expect(r.stderr.trimEnd().split('\n'), file).toHaveLength(1);
      expect(r.stderr.trimEnd()).toMatch(re);
    }
    expect((await cli('diff', base)).code).toBe(2);
  });
});

describe('corematrix report', () => {
  it('merge joins shards into one report and writes the four files', async () => {
    const a = { ...clone(run), kernels: clone(run.kernels.slice(0, 2)) };
    const b = { ...clone(run), kernels: clone(run.kernels.slice(2)), finishedAt: '2099-01-01T00:00:00.000Z' };
    const out = join(dir, 'merged');
    const r = await cli('report', 'merge', save('a.json', a), save('b.json', b), '-o', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^4 kernels, 4 cells, 0 violations, 0 unexpected differences\n/);
    for (const f of ['report.json', 'junit.xml', 'summary.md', 'index.html']) expect(existsSync(join(out, f)), f).toBe(true);
    const merged = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as RunReport;
    expect(merged.kernels.map((k) => k.kernel.id)).toEqual(KERNELS);
    expect(merged.finishedAt).toBe('2099-01-01T00:00:00.000Z');
    expect(merged.complete).toBe(true);
    expect(merged.objects).toEqual(run.objects);
  });

  it('merge marks the result incomplete when a shard is, and refuses another schema or a duplicate cell', async () => {
    const a = { ...clone(run), kernels: clone(run.kernels.slice(0, 2)) };
    const b = { ...clone(run), kernels: clone(run.kernels.slice(2)), complete: false };
    const out = join(dir, 'partial');
    expect((await cli('report', 'merge', save('a.json', a), save('b-partial.json', b), '-o', out)).stdout).toMatch(/^INCOMPLETE RUN: /);
    expect(JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')).complete).toBe(false);
    const v2 = await cli('report', 'merge', join(dir, 'a.json'), save('b-v2.json', { ...b, schema: 2 }), '-o', join(dir, 'never'));
    expect(v2.code).toBe(2);
    expect(v2.stderr).toMatch(/b-v2\.json: result schema 2 is not 1/);
    const dup = await cli('report', 'merge', join(dir, 'a.json'), join(dir, 'a.json'), '-o', join(dir, 'never'));
    expect(dup.code).toBe(2);
    expect(dup.stderr).toMatch(/^corematrix: .*a\.json: kernel 5\.10 cell core-kernel\/core_kernel\[ours\] is also in .*a\.json\n$/);
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  it('render rewrites the reports from a report.json; show prints the diff', async () => {
    const out = join(dir, 'rendered');
    const src = save('run.json', run);
    const r = await cli('report', 'render', src, '-o', out);
    expect(r.code).toBe(0);
    expect(readFileSync(join(out, 'report.json'), 'utf8')).toBe(JSON.stringify(run, null, 2) + '\n');
    const show = await cli('report', 'show', src);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/task_struct\.pid byte_off: 5\.10 → \d+, 6\.1 → \d+, 6\.1-rt → \d+, 7\.3 → \d+/);
    const broken = clone(run);
    broken.kernels[0]!.cells[0]!.object.sha256 = 'f'.repeat(64);
    const bad = await cli('report', 'show', save('bad.json', broken));
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('VIOLATION core-kernel/core_kernel: object sha256 differs');
    expect((await cli('report', 'render', src)).stderr).toBe('corematrix: report render: -o DIR is required\n');
  });
});
