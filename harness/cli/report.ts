// `corematrix report merge|render|show`: writes the four reports (report.json, junit.xml,
// summary.md, index.html) from shards or from one saved report.json.
import { parseArgs } from 'node:util';
import { UsageError } from '../core/errors.js';
import { diffKernels, formatKernelDiff } from '../report/diff.js';
import { mergeReports, readRunReport } from '../report/merge.js';
import { writeReports } from '../report/write.js';
import type { Command } from './command.js';

const HELP = `usage: corematrix report <merge|render|show> [options]

  report merge <part.json>... -o DIR   merge shards of one run into one report and write
                                       DIR/{report.json,junit.xml,summary.md,index.html}
  report render <report.json> -o DIR   write the four reports again from a saved report.json
  report show <report.json>            print the cross-kernel diff (exit 1 on a violation or an
                                       unexpected difference)

options:
  -o, --out DIR   output directory (created if missing)
  --help          this text

Reports of another result schema are refused (exit 2).`;

export const reportCommand: Command = {
  name: 'report',
  help: HELP,
  async run(args) {
    let parsed;
    try {
      parsed = parseArgs({ args, allowPositionals: true, options: { out: { type: 'string', short: 'o' } } });
    } catch (err) {
      throw new UsageError(`report: ${(err as Error).message.split('\n')[0]}`);
    }
    const { values, positionals } = parsed;
    const [sub, ...files] = positionals;
    if (sub === 'show') {
      if (files.length !== 1) throw new UsageError('report show: expected one report.json');
      const d = diffKernels(await readRunReport(files[0]!));
      process.stdout.write(formatKernelDiff(d) + '\n');
      return d.ok ? 0 : 1;
    }
    if (sub !== 'merge' && sub !== 'render') throw new UsageError(`report: unknown subcommand '${sub ?? ''}' (merge, render, show)`);
    if (!values.out) throw new UsageError(`report ${sub}: -o DIR is required`);
    if (files.length === 0) throw new UsageError(`report ${sub}: no input report`);
    if (sub === 'render' && files.length !== 1) throw new UsageError('report render: expected one report.json (use merge for shards)');
    const parts = [];
    for (const f of files) parts.push(await readRunReport(f));
    const run = sub === 'merge' ? mergeReports(parts, files) : parts[0]!;
    const { files: written } = await writeReports(run, values.out);
    const d = diffKernels(run);
    const cells = run.kernels.reduce((n, k) => n + k.cells.length, 0);
    process.stdout.write(`${run.complete ? '' : 'INCOMPLETE RUN: '}${run.kernels.length} kernels, ${cells} cells, ${d.violations.length} violations, ${d.unexpected.length} unexpected differences\n${written.join('\n')}\n`);
    return 0;
  },
};
