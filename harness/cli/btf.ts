// corematrix btf join --kernels <ids|all> -o vmlinux_joined.h
// corematrix btf minimize --object <file.o>... --btf <file|kernel-id> -o <out.btf>
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError } from '../core/errors.js';
import type { Command } from './command.js';

const help = `usage: corematrix btf join --kernels <ids|globs|all> [-o FILE] [--stats]
       corematrix btf minimize --object FILE.o [--object FILE.o]... --btf <file|kernel-id> -o OUT.btf [--stats]

btf join
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

btf minimize
Writes the smallest raw BTF (the /sys/kernel/btf/vmlinux format; bpftool and libbpf read it,
e.g. as libbpf's btf_custom_path) against which every CO-RE relocation of the objects resolves
exactly as against the full BTF: only the types, struct members and enumerators the relocations
consult, at their original offsets and sizes (the idea of 'bpftool gen min_core_btf').
Type ids are not preserved: a bpf_core_type_id_kernel() value from it is not the kernel's.

  --object FILE   a clang-built BPF object (repeat for several)
  --btf SPEC      the full BTF: a raw BTF file, an ELF with a .BTF section, or a kernel id from
                  kernels/matrix.yaml (fetched if needed)
  -o FILE         output file (required)
  --stats         print size figures (JSON) on stderr

A relocation that cannot be resolved against the full BTF at all (ambiguous, malformed) is an
error (exit 2); one that finds no type is poisoned there and stays poisoned with the output.

  --help          this text`;

async function join(values: { kernels?: string; output?: string; stats?: boolean }): Promise<number> {
  const { joinBtf } = await import('../btfjoin/join.js');
  const { loadKernelBtfs } = await import('../btfjoin/load.js');
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
}

async function minimize(values: { object?: string[]; btf?: string; output?: string; stats?: boolean }): Promise<number> {
  const objects = values.object ?? [];
  if (objects.length === 0) throw new UsageError('btf minimize needs --object <file.o> (see --help)');
  if (!values.btf) throw new UsageError('btf minimize needs --btf <file | kernel-id>');
  if (!values.output) throw new UsageError('btf minimize needs -o <out.btf>');
  for (const p of objects) if (!existsSync(p)) throw new UsageError(`${p}: no such file`);
  const { loadTarget } = await import('./relocate.js');
  const { readTargetBtf } = await import('../core/relocate.js');
  const { minimizeBtf } = await import('../core/btf/minimize.js');
  const t = await loadTarget(values.btf);
  const full = readTargetBtf(t.bytes, t.name);
  const min = minimizeBtf(objects.map((p) => ({ name: p, bytes: new Uint8Array(readFileSync(p)) })), full);
  writeFileSync(values.output, min.bytes);
  const s = min.stats;
  const n = (x: number) => String(x).replace(/\B(?=(\d{3})+$)/g, ','); // not toLocaleString: Intl costs start-up time
  if (values.stats) process.stderr.write(`${JSON.stringify({ btf: t.name, output: values.output, ...s })}\n`);
  else {
    process.stderr.write(`wrote ${values.output}: ${n(s.bytes)} bytes (${t.name}: ${n(s.sourceBytes)}), ${n(s.types)} of ${n(s.sourceTypes)} types, ` +
      `${n(s.members)} of their ${n(s.sourceMembers)} members/enumerators; ${s.relocations} relocations in ${s.objects} object(s): ${s.ok} ok, ${s.poisoned} poisoned\n`);
  }
  if (s.targetTypeIds > 0) process.stderr.write(`note: ${s.targetTypeIds} target_type_id relocation(s) (bpf_core_type_id_kernel) resolve to ids of ${values.output}, not of the kernel's BTF\n`);
  return 0;
}

export const btfCommand: Command = {
  name: 'btf',
  help,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      options: {
        kernels: { type: 'string' }, output: { type: 'string', short: 'o' }, stats: { type: 'boolean' },
        object: { type: 'string', multiple: true }, btf: { type: 'string' },
      },
      allowPositionals: true,
    });
    const sub = positionals[0];
    if (positionals.length > 1) throw new UsageError(`btf ${sub}: unexpected argument '${positionals[1]}' (see --help)`);
    if (sub === 'join') {
      if (values.object || values.btf) throw new UsageError('btf join takes --kernels, not --object/--btf (see --help)');
      return join(values);
    }
    if (sub === 'minimize') {
      if (values.kernels) throw new UsageError('btf minimize takes --btf, not --kernels (see --help)');
      return minimize(values);
    }
    throw new UsageError(`btf: expected 'btf join' or 'btf minimize' (see --help), got '${positionals.join(' ')}'`);
  },
};
