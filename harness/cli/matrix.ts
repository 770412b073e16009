// corematrix matrix: the main job.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../core/errors.js';
import { repoRoot } from '../paths.js';
import type { Command } from './command.js';

const help = `usage: corematrix matrix [options]

Boots every selected kernel under QEMU, loads the same compiled suite objects in each with our
relocating loader, checks what the programs observed against ground truth measured in the guest,
and writes reports/<run-id>/ (report.json, junit.xml, summary.md, index.html).

  --kernels <ids|globs>  comma-separated matrix ids or globs (default: all of kernels/matrix.yaml)
  --suites <names>       comma-separated suite names (default: all in suites/; 'none' for
                         only --object files)
  --object <file.o>      also load this clang-built object in every guest (repeatable): each
                         program is reported as loaded, rejected (with the verifier log) or
                         relocation failed (which field)
  --jobs <n>             guests in parallel (default: number of cores)
  --accel <auto|kvm|tcg> acceleration; auto uses KVM only after a probe boot proves it works
  --timeout <seconds>    per-guest budget (default: 120 s + 60 s per suite)
  --out <dir>            report directory (default: reports/<run-id>)

Exit status: 0 when every cell met its expectation, 1 otherwise, 2 for bad usage.`;

export const matrixCommand: Command = {
  name: 'matrix',
  summary: 'boot the kernel matrix and run every suite in each guest',
  help,
  async run(args) {
    const { values } = parseArgs({
      args,
      options: {
        kernels: { type: 'string' }, suites: { type: 'string' }, jobs: { type: 'string' }, accel: { type: 'string' },
        timeout: { type: 'string' }, out: { type: 'string' }, object: { type: 'string', multiple: true },
      },
    });
    const accel = (values.accel ?? 'auto') as 'auto' | 'kvm' | 'tcg';
    if (!['auto', 'kvm', 'tcg'].includes(accel)) throw new UsageError(`--accel must be auto, kvm or tcg, not '${values.accel}'`);
    const jobs = values.jobs ? Number(values.jobs) : undefined;
    if (jobs !== undefined && (!Number.isInteger(jobs) || jobs < 1)) throw new UsageError(`--jobs must be a positive integer, not '${values.jobs}'`);
    const timeout = values.timeout ? Number(values.timeout) : undefined;
    if (timeout !== undefined && !(timeout > 0)) throw new UsageError(`--timeout must be a number of seconds, not '${values.timeout}'`);
    const { runMatrix, runPassed } = await import('../matrix/run.js');
    const { defaultJobs } = await import('../vm/pool.js');
    const { writeReports } = await import('../report/index.js');
    const runId = new Date().toISOString().replace(/[:.]/g, '-').replace('Z', '');
    const outDir = resolve(values.out ?? join(repoRoot(), 'reports', runId));
    mkdirSync(outDir, { recursive: true });
    const ctl = new AbortController();
    const stop = (sig: string) => {
      if (ctl.signal.aborted) return;
      process.stderr.write(`corematrix: ${sig}: stopping guests, writing a partial report\n`);
      ctl.abort(new Error(sig));
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    const t0 = performance.now();
    const report = await runMatrix({
      kernels: values.kernels ? values.kernels.split(',').map((s) => s.trim()).filter(Boolean) : ['all'],
      suites: values.suites === 'none' ? [] : values.suites ? values.suites.split(',').map((s) => s.trim()).filter(Boolean) : undefined,
      objects: values.object,
      jobs: jobs ?? defaultJobs(),
      accel,
      outDir,
      runId,
      timeoutMs: timeout ? timeout * 1000 : undefined,
      signal: ctl.signal,
      log: (l) => process.stderr.write(l + '\n'),
      progress: (k, s) => process.stderr.write(`[${k}] ${s}\n`),
    });
    const { files } = await writeReports(report, outDir);
    const cells = report.kernels.flatMap((k) => k.cells);
    const count = (v: string) => cells.filter((c) => c.verdict === v).length;
    process.stdout.write(
      `${report.complete ? '' : 'INCOMPLETE '}run ${runId}: ${report.kernels.length} kernels, ${cells.length} cells: ` +
        `${count('pass')} pass, ${count('fail')} fail, ${count('error')} error, ${count('skip')} skip, ${count('expected-skip')} expected skip ` +
        `in ${((performance.now() - t0) / 1000).toFixed(1)} s\n${files.map((f) => `  ${f}`).join('\n')}\n`,
    );
    return runPassed(report) ? 0 : 1;
  },
};
