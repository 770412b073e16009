// Runs the built CLI's `matrix` as a user would (CI set: both loaders are the default there) and
// reads the report it wrote: for guest tests that drive whole runs.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunReport } from '../../harness/results.js';

export interface MatrixCliRun {
  report: RunReport;
  /** stdout and the tail of stderr: the message of a failing expectation. */
  out: string;
}

/** `node bin/corematrix.js matrix <args> --accel tcg --out <outDir>`, then `<outDir>/report.json`. */
export function runMatrixCli(args: string[], outDir: string): MatrixCliRun {
  const r = spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', ...args, '--accel', 'tcg', '--out', outDir], { encoding: 'utf8', env: { ...process.env, CI: '1' } });
  const out = `${r.stdout}\n${r.stderr.slice(-3000)}`;
  let report: RunReport;
  try {
    report = JSON.parse(readFileSync(join(outDir, 'report.json'), 'utf8')) as RunReport;
  } catch (e) {
    throw new Error(`matrix ${args.join(' ')} wrote no report (${(e as Error).message}):\n${out}`);
  }
  return { report, out };
}
