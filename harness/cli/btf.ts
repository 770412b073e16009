// corematrix btf join --kernels <ids|all> -o vmlinux_joined.h
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError } from '../core/errors.js';
import { joinBtf } from '../btfjoin/join.js';
import { loadKernelBtfs } from '../btfjoin/load.js';
import type { Command } from './command.js';

const help = `usage: corematrix btf join --kernels <ids|globs|all> [-o FILE] [--stats]

Writes ONE C header (a drop-in vmlinux.h) describing the types of every selected kernel.
Types identical in all kernels appear once; a type whose layout differs keeps its name with the
newest kernel's layout, and each other layout is a flavour named after the oldest kernel that has
it (struct task_struct___5_10), which the CO-RE loader matches to task_struct. Members missing
from some kernels carry /* only in: ... */, so guard them with bpf_core_field_exists().
Enumerators of flavoured enums carry the flavour suffix too. Same kernels in, same bytes out.

  --kernels LIST  comma-separated ids or globs from kernels/matrix.yaml, or 'all' (default all);
                  the newest is the last in matrix order
  -o FILE         output file (default: stdout)
  --stats         print size figures (JSON) on stderr
  --help          this text`;

export const btfCommand: Command = {
  name: 'btf',
  help,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      options: { kernels: { type: 'string' }, output: { type: 'string', short: 'o' }, stats: { type: 'boolean' } },
      allowPositionals: true,
    });
    if (positionals[0] !== 'join' || positionals.length !== 1) throw new UsageError(`btf: expected 'btf join' (see --help), got '${positionals.join(' ')}'`);
    const selectors = (values.kernels ?? 'all').split(',').map((s) => s.trim()).filter(Boolean);
    if (selectors.length === 0) throw new UsageError('btf join: --kernels is empty');
    const inputs = await loadKernelBtfs(selectors);
    const { header, stats } = joinBtf(inputs);
    if (values.output) writeFileSync(values.output, header);
    else process.stdout.write(header);
    if (values.stats || values.output) {
      process.stderr.write(values.stats ? `${JSON.stringify(stats)}\n` : `wrote ${values.output}: ${stats.bytes} bytes, ${stats.lines} lines, ${stats.types} types (${stats.flavoured} flavoured), ${stats.onlyInMembers} members marked only-in, kernels ${stats.kernels.join(', ')}\n`);
    }
    return 0;
  },
};
