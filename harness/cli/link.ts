// corematrix link -o <out.o> <a.o> <b.o>...
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../core/errors.js';
import { linkObjects } from '../core/link/index.js';
import { loadObjectSpec } from '../core/object/index.js';
import type { Command } from './command.js';

const help = `usage: corematrix link -o <out.o> <a.o> <b.o>...

Links BPF objects compiled from several .c files into one object, as libbpf's static linker
(\`bpftool gen object out.o a.o b.o\`) does: same-named sections appended, global symbols
resolved across the objects (a strong definition beats a weak one; an extern takes the
definition of another object; two strong definitions are an error), maps declared \`extern\` in
one object and defined in another merged (their definitions must match), relocations, BTF
(de-duplicated) and .BTF.ext moved with their sections. The order of the inputs decides which
weak definition wins and where each input's code lands.

  -o, --output <file>   the linked object to write
  --json                print what was resolved as JSON (each global: where it is defined,
                        which inputs name it)

Exit status: 0 when linked, 2 when an input is unusable or the objects do not link (one line
names the input and what is wrong).`;

export const linkCommand: Command = {
  name: 'link',
  help,
  async run(args) {
    const { values, positionals } = parseArgs({ args, options: { output: { type: 'string', short: 'o' }, json: { type: 'boolean' } }, allowPositionals: true });
    if (!values.output) throw new UsageError('link needs -o <out.o> (see --help)');
    if (positionals.length === 0) throw new UsageError('link needs at least one object to link (see --help)');
    for (const p of positionals) if (!existsSync(p)) throw new UsageError(`${p}: no such file`);
    const result = linkObjects(positionals.map((p) => ({ name: p, bytes: new Uint8Array(readFileSync(p)) })));
    writeFileSync(values.output, result.bytes);
    if (values.json) {
      process.stdout.write(JSON.stringify({ output: values.output, bytes: result.bytes.length, inputs: positionals, globals: result.globals, btfTypes: result.btfTypes }, null, 2) + '\n');
      return 0;
    }
    // What our own reader makes of the result: the programs and maps a loader will see.
    const spec = loadObjectSpec(result.bytes, values.output);
    const extern = result.globals.filter((g) => !g.definedIn).map((g) => g.name);
    const lines = [
      `${values.output}: ${result.bytes.length} bytes from ${positionals.map((p) => basename(p)).join(' + ')}`,
      `  programs: ${spec.programs.map((p) => `${p.name} (${p.section})`).join(', ') || 'none'}`,
      `  maps: ${spec.maps.map((m) => m.name).join(', ') || 'none'}`,
      `  globals: ${result.globals.length - extern.length} defined, ${result.globals.filter((g) => g.mentionedIn.length > 1).length} shared across objects${extern.length ? `; left to the loader: ${extern.join(', ')}` : ''}`,
      `  BTF: ${result.btfTypes.inputs} types in, ${result.btfTypes.output} out`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};
