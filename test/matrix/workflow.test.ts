// .github/workflows/nightly.yml cannot run here, so: it parses, its jobs fit together (shards,
// artifact names, step ids), and every corematrix command in it names a real subcommand and real
// flags of the BUILT CLI (its --help) and is executed here the way the workflow runs it, on real
// reports (a matrix shard command with --list appended instead of booting).
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { isCorpusName } from '../../harness/cli/matrix.js';
import { loadMatrix } from '../../harness/kernels/matrix.js';
import { shardOf } from '../../harness/matrix/shard.js';
import type { RunReport } from '../../harness/results.js';
import { clone, realRun } from '../report/fixture.js';
import { ensureBuilt } from '../helpers/tools.js';

const run$ = promisify(execFile);
const ROOT = resolve('.');
const BIN = join(ROOT, 'bin', 'corematrix.js');

async function cli(args: string[], cwd = ROOT): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run$(process.execPath, [BIN, ...args], { cwd, timeout: 300_000, env: { ...process.env, CI: '1' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

interface Step { name?: string; id?: string; uses?: string; run?: string; if?: string; with?: Record<string, unknown> }
interface Job { 'runs-on': string; needs?: string | string[]; if?: string; strategy?: { matrix: { shard: (number | string)[]; include?: unknown[] } }; steps: Step[] }
interface Workflow { name: string; on: Record<string, unknown>; env: Record<string, unknown>; jobs: Record<string, Job> }

const text = readFileSync(join(ROOT, '.github/workflows/nightly.yml'), 'utf8');
const wf = yaml.load(text) as Workflow;
const SHARDS = Number(wf.env.SHARDS);
/** The shard jobs: their name and the split their command takes (`matrix.split`). */
const SPLITS = (wf.jobs.shard!.strategy!.matrix.include as { shard: number | string; split: string }[]);

/** Every `npx --no corematrix …` command line of a job, up to a redirection or pipe. */
function invocations(job: string): string[] {
  return wf.jobs[job]!.steps.flatMap((s) => [...(s.run ?? '').matchAll(/npx --no corematrix ([^\n>|;&]+)/g)].map((m) => m[1]!.trim()));
}

function expand(cmd: string, shard: number | string): string[] {
  const split = SPLITS.find((x) => x.shard === shard)?.split ?? '';
  return cmd.replace(/\$\{\{\s*matrix\.split\s*\}\}/g, split).replace(/\$\{\{\s*matrix\.shard\s*\}\}/g, String(shard)).replace(/\$\{\{\s*env\.SHARDS\s*\}\}/g, String(SHARDS)).split(/\s+/);
}

let run: RunReport;
let dir: string;
beforeAll(async () => {
  ensureBuilt();
  ({ run } = await realRun());
  dir = mkdtempSync(join(tmpdir(), 'cm-workflow-'));
}, 600_000);

describe('nightly.yml', () => {
  it('parses; scheduled and dispatchable; jobs, shards, artifacts and step ids fit together', () => {
    expect(wf.name).toBe('nightly');
    const cron = (wf.on.schedule as { cron: string }[])[0]!.cron;
    expect(cron.split(/\s+/)).toHaveLength(5);
    expect('workflow_dispatch' in wf.on).toBe(true);
    expect(Object.keys(wf.jobs).sort()).toEqual(['corpus', 'merge', 'newest', 'shard']);
    expect(invocations('corpus')[0]).toContain('--corpus ${{ matrix.corpus }} --loader both');
    const corpora = (wf.jobs.corpus!.strategy!.matrix.include as { corpus: string }[]).map((x) => x.corpus);
    expect(corpora).toEqual(['debian', 'cilium', 'selftests:1/4', 'selftests:2/4', 'selftests:3/4', 'selftests:4/4']);
    for (const c of corpora) expect(isCorpusName(c), c).toBe(true);
    // The amd64 kernels split in SHARDS, the arm64 kernels in a shard of their own.
    expect(wf.jobs.shard!.strategy!.matrix.shard).toEqual([...Array.from({ length: SHARDS }, (_, i) => i + 1), 'arm64']);
    expect(SPLITS).toEqual([...Array.from({ length: SHARDS }, (_, i) => ({ shard: i + 1, split: `--arch amd64 --shard ${i + 1}/${SHARDS}` })), { shard: 'arm64', split: '--arch arm64 --shard 1/1' }]);
    expect(wf.jobs.merge!.needs).toBe('shard');
    expect(wf.jobs.newest!.needs).toBe('merge');
    for (const j of Object.values(wf.jobs)) {
      expect(j['runs-on']).toBeTruthy();
      for (const s of j.steps) if (s.uses) expect(s.uses).toMatch(/^actions\/[a-z-]+(\/[a-z]+)?@v\d+$/);
    }
    const upload = wf.jobs.shard!.steps.find((s) => s.uses?.startsWith('actions/upload-artifact'))!;
    expect(upload.with!.name).toBe('shard-${{ matrix.shard }}');
    expect(upload.with!.path).toBe('reports/shard-${{ matrix.shard }}/');
    expect(invocations('shard')[0]).toContain('--out reports/shard-${{ matrix.shard }}');
    const download = wf.jobs.merge!.steps.find((s) => s.uses?.startsWith('actions/download-artifact'))!;
    expect(download.with).toMatchObject({ pattern: 'shard-*', path: 'shards' });
    const ids = new Set(wf.jobs.merge!.steps.map((s) => s.id).filter(Boolean));
    for (const s of wf.jobs.merge!.steps) for (const m of (s.if ?? '').matchAll(/steps\.(\w+)\./g)) expect(ids.has(m[1]!), m[1]).toBe(true);
    // Both the cache restore and the save use the same key family.
    const keys = wf.jobs.merge!.steps.filter((s) => s.uses?.startsWith('actions/cache/')).map((s) => String(s.with!.key));
    expect(keys).toEqual(['corematrix-baseline-${{ github.run_id }}', 'corematrix-baseline-${{ github.run_id }}']);
  });

  it('names only subcommands and flags the built CLI has', async () => {
    const top = await cli(['--help']);
    const subs = new Set([...top.stdout.matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]!));
    const all = Object.keys(wf.jobs).flatMap(invocations);
    expect(all.length).toBeGreaterThanOrEqual(5);
    for (const cmd of all) {
      const [sub, ...rest] = expand(cmd, 1);
      expect(subs.has(sub!), `${sub} is not a corematrix command`).toBe(true);
      const help = (await cli([sub!, '--help'])).stdout;
      for (const flag of rest.filter((t) => t.startsWith('-'))) expect(help, `${sub} ${flag}`).toMatch(new RegExp(`(^|[\\s,])${flag}(?=[\\s,=]|$)`, 'm'));
      if (sub === 'report') expect(help).toContain(`report ${rest[0]} `);
    }
  });

  it('the install step reads the exact apt-get command scripts/setup.mjs prints', () => {
    const setup = readFileSync(join(ROOT, 'scripts/setup.mjs'), 'utf8');
    expect(setup).toContain('run as root:\\n  ${cmd}');
    expect(setup).toMatch(/const cmd = `apt-get update && /);
    const step = wf.jobs.shard!.steps.find((s) => s.run?.includes('scripts/setup.mjs'))!.run!;
    const sed = /sed -n '([^']+)'/.exec(step)![1]!;
    const sample = 'corematrix setup: missing Debian packages: cpio, lz4\nrun as root:\n  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cpio lz4\n';
    expect(execFileSync('sed', ['-n', sed], { input: sample, encoding: 'utf8' })).toBe('apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cpio lz4\n');
  });

  it('runs the shard, merge, diff and newest commands as written (shards listed instead of booted)', async () => {
    const [shardCmd] = invocations('shard');
    const listed = new Map<number | string, string[]>();
    for (const { shard } of SPLITS) {
      const r = await cli([...expand(shardCmd!, shard), '--list'], dir);
      expect(r.code, r.stderr).toBe(0);
      listed.set(shard, r.stdout.split('\n').filter(Boolean).map((l) => l.split('\t')[0]!));
    }
    // Every kernel of the matrix in exactly one shard; the arm64 ones in theirs.
    expect([...listed.values()].flat().sort()).toEqual(loadMatrix().map((e) => e.id).sort());
    expect(listed.get('arm64')!.sort()).toEqual(loadMatrix().filter((e) => e.arch === 'arm64').map((e) => e.id).sort());
    expect(listed.get('arm64')!.length).toBeGreaterThan(0);

    // What the shard jobs upload: real reports, one per shard, recording their shard and arch.
    const amd64 = clone(run).kernels.filter((k) => (k.kernel.arch ?? 'amd64') === 'amd64');
    for (const { shard } of SPLITS) {
      mkdirSync(join(dir, 'shards', `shard-${shard}`), { recursive: true });
      const part: RunReport = shard === 'arm64'
        ? { ...clone(run), kernels: clone(run).kernels.filter((k) => k.kernel.arch === 'arm64'), shard: { index: 1, count: 1, arch: 'arm64' } }
        : { ...clone(run), kernels: shardOf(amd64, { index: Number(shard), count: SHARDS }), shard: { index: Number(shard), count: SHARDS, arch: 'amd64' } };
      writeFileSync(join(dir, 'shards', `shard-${shard}`, 'report.json'), JSON.stringify(part));
    }
    const [mergeCmd, diffCmd] = invocations('merge');
    const glob = (args: string[]) => args.flatMap((a) => (a === 'shards/shard-*/report.json' ? SPLITS.map(({ shard }) => `shards/shard-${shard}/report.json`) : [a]));
    const m = await cli(glob(expand(mergeCmd!, 0)), dir);
    expect(m.code, m.stderr).toBe(0);
    const merged = JSON.parse(readFileSync(join(dir, 'reports/nightly/report.json'), 'utf8')) as RunReport;
    expect(merged.complete).toBe(true);
    expect(merged.kernels.map((k) => k.kernel.id).sort()).toEqual(run.kernels.map((k) => k.kernel.id).sort());
    for (const f of ['summary.md', 'junit.xml', 'index.html']) expect(existsSync(join(dir, 'reports/nightly', f))).toBe(true);
    // The completeness probe of the "New baseline" step.
    const probe = /node -p "([^"]+)"/.exec(wf.jobs.merge!.steps.find((s) => s.id === 'complete')!.run!)![1]!;
    expect(execFileSync(process.execPath, ['-p', probe], { cwd: dir, encoding: 'utf8' }).trim()).toBe('true');

    mkdirSync(join(dir, 'baseline'), { recursive: true });
    cpSync(join(dir, 'reports/nightly/report.json'), join(dir, 'baseline/report.json'));
    const same = await cli(expand(diffCmd!, 0), dir);
    expect(same.code, same.stderr).toBe(0);
    expect(same.stdout).toMatch(/no regression/);
    // A cell that passed in the baseline fails tonight: exit 1, which the workflow turns into a red job.
    const worse = clone(merged);
    const cell = worse.kernels[0]!.cells[0]!;
    cell.verdict = 'fail';
    cell.reason = 'injected for the workflow test';
    writeFileSync(join(dir, 'reports/nightly/report.json'), JSON.stringify(worse));
    const bad = await cli(expand(diffCmd!, 0), dir);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/REGRESSION/);
    writeFileSync(join(dir, 'reports/nightly/report.json'), JSON.stringify(merged));

    for (const cmd of invocations('newest')) {
      const r = await cli([...expand(cmd, 0), '--list'], dir);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^newest: /m);
    }
  }, 600_000);
});
