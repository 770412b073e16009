// A suite's own command (spec `exec`) in real guests (TCG), 5.10 and 7.3, with the fixture suites
// of test/suites/fixtures/exec through `matrix --suites-dir`, beside a CLI --exec:
//  - exec-suite's check.sh (shipped with data/ to /cm/suites/exec-suite) asks the kernel about its
//    BPF settings (sysctls against data/expected.txt and the kernel's config, the bpf filesystem)
//    and passes on both; a copy whose data expects a wrong answer fails, saying which;
//  - exec-exit3's command fails with exit 3 on 7.3 and is an expected skip on 5.10, below the
//    suite's minimum kernel, as its program's cell is;
//  - exec-timeout's command outlives its exec.timeout (5 s): killed with what it started;
//  - the --exec command runs after the suites' commands and sees both suites' check.sh, each in
//    its own folder;
//  - every command's cell is in report.json, junit.xml, summary.md and index.html, and a guest
//    that panics before the commands ran has a not-run cell for each;
//  - on 6.1-arm64 the same script runs as it is (the arch rules of docs/exec.md).
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileHash } from '../../harness/images/base.js';
import { runMatrix } from '../../harness/matrix/run.js';
import { validateRunReport } from '../../harness/report/validate.js';
import type { CellResult, KernelRun, RunReport } from '../../harness/results.js';
import { ensureBuilt, runCli } from '../helpers/tools.js';

const FIXTURES = 'test/suites/fixtures/exec';
const KERNELS = ['5.10', '7.3'];
const CLI_EXEC = 'ls /cm/suites/*/check.sh; echo "CM_FILES=$CM_FILES"';
const tmp = mkdtempSync(join(tmpdir(), 'cm-suite-exec-'));
beforeAll(() => ensureBuilt());
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const readReport = (dir: string): RunReport => validateRunReport(JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')), 'report.json');
const cellOf = (k: KernelRun, suite: string, program = '(exec)'): CellResult => {
  const c = k.cells.find((x) => x.suite === suite && x.program === program);
  if (!c) throw new Error(`${k.kernel.id}: no cell ${suite}/${program}: ${k.cells.map((x) => `${x.suite}/${x.program}`).join(', ')}`);
  return c;
};
/** Everything about a kernel's run a failed expectation should show. */
const why = (k: KernelRun) => `${k.kernel.id}: guest ${k.guest} ${k.detail ?? ''}\n${JSON.stringify(k.cells.map((c) => [c.suite, c.program, c.verdict, c.reason, c.output]), null, 1).slice(0, 4000)}\n${k.consoleTail ?? ''}`;

describe('spec exec in real guests (TCG)', () => {
  it('5.10 and 7.3: each suite\'s command is a cell of the suite, after the agent\'s work, before --exec', async () => {
    const out = join(tmp, 'fixtures');
    const t0 = performance.now();
    const r = await runCli(['matrix', '--kernels', KERNELS.join(','), '--suites-dir', FIXTURES, '--loader', 'ours', '--jobs', '1', '--accel', 'tcg', '--exec', CLI_EXEC, '--out', out], 900_000);
    const report = readReport(out);
    const ms = (k: KernelRun, s: string, p?: string) => cellOf(k, s, p).timings.runMs;
    console.log(`[measure] fixtures via the CLI: ${Math.round(performance.now() - t0)} ms; ${report.kernels.map((k) => `${k.kernel.id} guest ${k.durationMs} ms (boot ${k.bootMs} ms), exec-suite ${ms(k, 'exec-suite')} ms, exec-timeout ${ms(k, 'exec-timeout')} ms`).join('; ')}`);
    // Failing cells (exit 3, the timeout): the run fails.
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
    expect(report.kernels.map((k) => k.kernel.id)).toEqual(KERNELS);
    for (const k of report.kernels) {
      expect(k.guest, why(k)).toBe('ok');
      // The suites' programs ran as usual (exec-exit3's only from 6.1).
      expect(cellOf(k, 'exec-suite', 'count_runs').verdict, why(k)).toBe('pass');
      expect(cellOf(k, 'exec-timeout', 'count_runs').verdict, why(k)).toBe('pass');

      const check = cellOf(k, 'exec-suite');
      expect(check.verdict, why(k)).toBe('pass');
      expect(check.loader).toBe('ours');
      expect(check.object).toEqual({ name: 'exec-suite/check.sh', sha256: fileHash(join(FIXTURES, 'exec-suite', 'check.sh')) });
      expect(check.output!.exitCode).toBe(0);
      // What the kernel answered, line by line (the script exits 1 on a wrong one).
      expect(check.output!.tail.split('\n')).toEqual([
        `kernel ${k.kernel.id} (${k.kernel.release})`,
        'kernel/bpf_stats_enabled = 0',
        'kernel/bpf_stats_enabled takes 1 and 0',
        // Debian sets CONFIG_BPF_UNPRIV_DEFAULT_OFF=y on both.
        'kernel/unprivileged_bpf_disabled = 2, as the config says',
        '/sys/fs/bpf: bpf filesystem, nothing pinned',
        'ok',
      ]);

      const timeout = cellOf(k, 'exec-timeout');
      expect(timeout.verdict).toBe('fail');
      expect(timeout.reason).toBe('killed after 5 s (exec.timeout): started in /cm/suites/exec-timeout');
      expect(timeout.output).toEqual({ exitCode: null, signal: 'SIGKILL', tail: 'started in /cm/suites/exec-timeout' });
      expect(timeout.timings.runMs).toBeGreaterThanOrEqual(5000);
      expect(timeout.timings.runMs).toBeLessThan(20_000);

      // --exec last: it sees both suites' check.sh, each under its own suite.
      const cli = k.cells.find((c) => c.suite.startsWith('exec:'))!;
      expect(cli.verdict, why(k)).toBe('pass');
      expect(cli.program).toBe('(command)');
      expect(cli.output!.tail).toBe('/cm/suites/exec-suite/check.sh\n/cm/suites/exec-timeout/check.sh\nCM_FILES=/cm/files');
      const order = k.cells.filter((c) => c.program === '(exec)' || c.program === '(command)').map((c) => c.suite);
      expect(order).toEqual(['exec-exit3', 'exec-suite', 'exec-timeout', cli.suite]);
      // The commands came after every program's cell.
      expect(k.cells.slice(-4).map((c) => c.program)).toEqual(['(exec)', '(exec)', '(exec)', '(command)']);
    }
    const [old, cur] = report.kernels;
    // Below the suite's minimum kernel its command is not run, for the suite's reason.
    const skipped = cellOf(old!, 'exec-exit3');
    expect(skipped.verdict).toBe('expected-skip');
    expect(skipped.reason).toMatch(/^needs kernel 6\.1, this is 5\.10\.\d+$/);
    expect(skipped.output).toBeUndefined();
    expect(cellOf(old!, 'exec-exit3', 'count_runs').verdict).toBe('expected-skip');
    const exit3 = cellOf(cur!, 'exec-exit3');
    expect(exit3.verdict).toBe('fail');
    expect(exit3.reason).toBe('exit 3: to-stderr');
    expect(exit3.output).toEqual({ exitCode: 3, tail: 'to-stdout\nto-stderr' });
    expect(exit3.timings.runMs).toBeGreaterThanOrEqual(1000);

    // The report's readers show them as cells of their suites.
    const junit = readFileSync(join(out, 'junit.xml'), 'utf8');
    expect(junit).toContain('<testcase classname="7.3.exec-exit3" name="(exec)"');
    expect(junit).toMatch(/<testcase classname="7\.3\.exec-timeout" name="\(exec\)" time="5\.\d+">\n\s*<failure message="killed after 5 s \(exec\.timeout\): started in \/cm\/suites\/exec-timeout" type="fail">started in \/cm\/suites\/exec-timeout<\/failure>/);
    expect(junit).toMatch(/<testcase classname="5\.10\.exec-exit3" name="\(exec\)" time="0\.000">\n\s*<skipped/);
    const md = readFileSync(join(out, 'summary.md'), 'utf8');
    expect(md).toMatch(/\| exec-suite \| ✅ 2\/2 \| ✅ 2\/2 \|/);
    expect(md).toContain('<b>7.3</b> exec-exit3/(exec): fail — exit 3: to-stderr');
    expect(md).toMatch(/output \(tail\), exit 3:\n\n```text\nto-stdout\nto-stderr\n```/);
    expect(md).toContain('exec-timeout/(exec): fail — killed after 5 s (exec.timeout)');
    expect(readFileSync(join(out, 'index.html'), 'utf8')).toContain('output (tail) · exit 3</h4><pre>to-stdout\nto-stderr</pre>');
    // The command's program is one of the run's objects, as --exec's is.
    expect(report.objects).toContainEqual({ name: 'exec-suite/check.sh', sha256: fileHash(join(FIXTURES, 'exec-suite', 'check.sh')) });
  }, 900_000);

  it('7.3: the same check.sh fails, naming the answer, when its data expects another one', async () => {
    const dir = join(tmp, 'wrong');
    cpSync(join(FIXTURES, 'exec-suite'), join(dir, 'exec-suite'), { recursive: true });
    writeFileSync(join(dir, 'exec-suite', 'data', 'expected.txt'), 'kernel/bpf_stats_enabled 1\n');
    const report = await runMatrix({ kernels: ['7.3'], suitesDir: dir, jobs: 1, accel: 'tcg', outDir: join(tmp, 'wrong-out'), runId: 'wrong', log: () => {} });
    const k = report.kernels[0]!;
    expect(k.guest, why(k)).toBe('ok');
    const c = cellOf(k, 'exec-suite');
    expect(c.verdict, why(k)).toBe('fail');
    expect(c.reason).toBe('exit 1: FAIL: kernel/bpf_stats_enabled is 0, expected 1');
    expect(c.output!.exitCode).toBe(1);
    // Its identity is the script's bytes (unchanged), as --exec's is its program's.
    expect(c.object.sha256).toBe(fileHash(join(FIXTURES, 'exec-suite', 'check.sh')));
  }, 600_000);

  it('7.3: a guest that ends before the commands ran owes a not-run cell for each', async () => {
    const report = await runMatrix({
      kernels: ['7.3'], suitesDir: FIXTURES, suites: ['exec-suite', 'exec-timeout'], exec: { command: 'true', files: [], timeoutMs: 60_000 },
      faults: { panicAfterSuite: 'exec-suite' }, jobs: 1, accel: 'tcg', outDir: join(tmp, 'panic'), runId: 'panic', log: () => {},
    });
    const k = report.kernels[0]!;
    expect(k.guest, why(k)).toBe('panic');
    expect(k.cells.map((c) => `${c.suite}/${c.program}:${c.verdict}`)).toEqual([
      'exec-suite/count_runs:pass', 'exec-timeout/count_runs:error', 'exec-suite/(exec):error', 'exec-timeout/(exec):error', 'exec:true/(command):error',
    ]);
    for (const c of k.cells.slice(1)) expect(c.reason).toMatch(/^not run: the guest ended \(panic\) after the agent's last step: suite exec-suite/);
    expect(cellOf(k, 'exec-suite').object).toEqual({ name: 'exec-suite/check.sh', sha256: fileHash(join(FIXTURES, 'exec-suite', 'check.sh')) });
  }, 600_000);

  it('6.1-arm64: the same script runs as it is on an arm64 kernel, and the limit kills there too', async () => {
    const t0 = performance.now();
    const report = await runMatrix({ kernels: ['6.1-arm64'], suitesDir: FIXTURES, suites: ['exec-suite', 'exec-timeout'], jobs: 1, accel: 'tcg', outDir: join(tmp, 'arm64'), runId: 'arm64', log: () => {} });
    const k = report.kernels[0]!;
    console.log(`[measure] 6.1-arm64: ${Math.round(performance.now() - t0)} ms; guest ${k.durationMs} ms, exec-suite ${cellOf(k, 'exec-suite').timings.runMs} ms, exec-timeout ${cellOf(k, 'exec-timeout').timings.runMs} ms`);
    expect(k.guest, why(k)).toBe('ok');
    const check = cellOf(k, 'exec-suite');
    expect(check.verdict, why(k)).toBe('pass');
    expect(check.output!.tail.split('\n')[0]).toBe(`kernel 6.1-arm64 (${k.kernel.release})`);
    expect(check.output!.tail.endsWith('\nok')).toBe(true);
    expect(cellOf(k, 'exec-timeout').reason).toBe('killed after 5 s (exec.timeout): started in /cm/suites/exec-timeout');
  }, 900_000);
});
