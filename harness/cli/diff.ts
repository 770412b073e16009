// `corematrix diff <base.json> <head.json>`: compares a baseline run with a new one. Exit 1 on a
// regression (a new failure), 0 otherwise, 2 on bad input (one line naming the file).
import { parseArgs } from 'node:util';
import { UsageError } from '../core/errors.js';
import { compareRuns, formatComparison } from '../report/compare.js';
import { readRunReport } from '../report/merge.js';
import type { Command } from './command.js';

const HELP = `usage: corematrix diff <base.json> <head.json> [options]

Compares two runs' report.json: new failures (exit 1), fixed cells, relocations whose target
moved, verifier instruction counts that changed, kernels and cells added or removed.

options:
  --insn-threshold F   relative change of verifier insns worth reporting (default 0.10)
  --insn-min N         ...and at least N instructions (default 50)
  --json               print the comparison as JSON
  --help               this text

exit status: 0 no regression, 1 regression, 2 bad input`;

function num(v: string | undefined, name: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`diff: ${name} must be a non-negative number, got '${v}'`);
  return n;
}

export const diffCommand: Command = {
  name: 'diff',
  help: HELP,
  async run(args) {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        allowPositionals: true,
        options: { 'insn-threshold': { type: 'string' }, 'insn-min': { type: 'string' }, json: { type: 'boolean' } },
      });
    } catch (err) {
      throw new UsageError(`diff: ${(err as Error).message.split('\n')[0]}`);
    }
    const { values, positionals } = parsed;
    if (positionals.length !== 2) throw new UsageError(`diff: expected two report files (base, head), got ${positionals.length}`);
    const [a, b] = positionals as [string, string];
    const base = await readRunReport(a);
    const head = await readRunReport(b);
    const cmp = compareRuns(base, head, { insnThreshold: num(values['insn-threshold'], '--insn-threshold', 0.1), insnMin: num(values['insn-min'], '--insn-min', 50) });
    process.stdout.write((values.json ? JSON.stringify(cmp, null, 2) : formatComparison(cmp)) + '\n');
    return cmp.regression ? 1 : 0;
  },
};
