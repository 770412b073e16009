// `corematrix btf minimize` as a user runs it: the built CLI, suite objects, a kernel id or a BTF
// file as the source, bpftool reading the output, `corematrix relocate` against it; hostile input
// and misuse end in one line on stderr and exit 2. `btf join` keeps its own options.
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { KernelStore } from '../../harness/kernels/store.js';
import { buildSuites, vmlinuxHeader } from '../../harness/suites/build.js';
import { bpftoolDump, compileBpf, ensureBuilt, writeTmp } from '../helpers/tools.js';

const cli = (args: string[]) => spawnSync(process.execPath, ['bin/corematrix.js', ...args], { encoding: 'utf8' });

let taskFields: string;
let enums: string;
let btf61: string;
let ambiguous: string;

beforeAll(async () => {
  ensureBuilt();
  const built = await buildSuites({ names: ['task-fields', 'enums-and-sizes'] });
  [taskFields, enums] = built.map((b) => b.object) as [string, string];
  btf61 = (await new KernelStore().fetch('6.1')).btf;
  const header = await vmlinuxHeader(btf61);
  ambiguous = compileBpf('test/btfgen/fixtures/ambiguous.bpf.c', ['-D__TARGET_ARCH_x86', `-I${header.dir}`]);
}, 600_000);

type Rec = { kind: string; type: string; spec: string; local: number; target: number | null; status: string; error?: string };
const relocations = (obj: string, btf: string): Rec[] => {
  const r = cli(['relocate', obj, '--btf', btf, '--json']);
  expect(r.status, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { relocations: Rec[] }).relocations;
};
const essentials = (recs: Rec[]) => recs.map((x) => [x.kind, x.type, x.spec, x.local, x.kind === 'target_type_id' ? 'id' : x.target, x.status, x.error]);

describe('corematrix btf minimize', () => {
  it('writes a BTF bpftool reads and relocate resolves like the kernel id', () => {
    const out = writeTmp('cli-min.btf', new Uint8Array(0));
    const r = cli(['btf', 'minimize', '--object', taskFields, '--object', enums, '--btf', '6.1', '-o', out]);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^wrote ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: [\\d,]+ bytes \\(6\\.1 \\(linux-image-6\\.1\\.[^)]*\\): 4,\\d{3},\\d{3}\\), \\d+ of [\\d,]+ types, `));
    expect(lines[1]).toMatch(/^note: 1 target_type_id relocation\(s\)/);
    expect(statSync(out).size).toBeLessThan(4096);
    expect(bpftoolDump(out).some((t) => t.kind === 'STRUCT' && t.name === 'task_struct')).toBe(true);
    for (const obj of [taskFields, enums]) expect(essentials(relocations(obj, out)), obj).toEqual(essentials(relocations(obj, '6.1')));
  });

  it('takes a BTF file as the source, and prints --stats as JSON', () => {
    const out = writeTmp('cli-min-file.btf', new Uint8Array(0));
    const r = cli(['btf', 'minimize', '--object', taskFields, '--btf', btf61, '-o', out, '--stats']);
    expect(r.status, r.stderr).toBe(0);
    const stats = JSON.parse(r.stderr.trim().split('\n')[0]!) as Record<string, number | string>;
    expect(stats).toMatchObject({ btf: btf61, output: out, objects: 1, bytes: statSync(out).size, sourceBytes: statSync(btf61).size });
    // Same input, same bytes, whether the kernel is named by id or by file.
    const again = writeTmp('cli-min-id.btf', new Uint8Array(0));
    expect(cli(['btf', 'minimize', '--object', taskFields, '--btf', '6.1', '-o', again]).status).toBe(0);
    expect(readFileSync(again).equals(readFileSync(out))).toBe(true);
  });

  it('refuses misuse, hostile input and unresolvable relocations with one line and exit 2', () => {
    const out = writeTmp('cli-min-bad.btf', new Uint8Array(0));
    const cases: [string[], RegExp][] = [
      [['btf', 'minimize', '--btf', '6.1', '-o', out], /needs --object/],
      [['btf', 'minimize', '--object', taskFields, '-o', out], /needs --btf/],
      [['btf', 'minimize', '--object', taskFields, '--btf', '6.1'], /needs -o/],
      [['btf', 'minimize', '--object', 'no-such.o', '--btf', '6.1', '-o', out], /no-such\.o: no such file/],
      [['btf', 'minimize', '--object', writeTmp('garbage.o', new Uint8Array(256).fill(0x41)), '--btf', '6.1', '-o', out], /garbage\.o: .*not an ELF/],
      [['btf', 'minimize', '--object', taskFields, '--btf', writeTmp('bad.btf', new Uint8Array(64).fill(7)), '-o', out], /bad\.btf: bad BTF magic/],
      [['btf', 'minimize', '--object', taskFields, '--btf', 'no-such-kernel', '-o', out], /no-such-kernel/],
      [['btf', 'minimize', '--object', ambiguous, '--btf', '6.1', '-o', out], /ambiguous.*insn 0: byte_off struct elf_thread_core_info notes cannot be resolved against 6\.1 .*field offset ambiguity/],
      [['btf', 'minimize', '--kernels', 'all', '--object', taskFields, '--btf', '6.1', '-o', out], /btf minimize takes --btf, not --kernels/],
      [['btf', 'join', '--object', taskFields], /btf join takes --kernels, not --object/],
      [['btf'], /expected 'btf join' or 'btf minimize'/],
    ];
    for (const [args, re] of cases) {
      const r = cli(args);
      const what = args.join(' ');
      expect(r.status, `${what}: ${r.stderr}`).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines, what).toHaveLength(1);
      expect(lines[0]).toMatch(/^corematrix: /);
      expect(lines[0], what).toMatch(re);
    }
    expect(statSync(out).size).toBe(0); // nothing written on failure
  });

  it('documents both subcommands in --help', () => {
    const r = cli(['btf', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/corematrix btf join --kernels/);
    expect(r.stdout).toMatch(/corematrix btf minimize --object FILE\.o/);
  });
});
