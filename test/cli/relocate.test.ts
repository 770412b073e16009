// `corematrix relocate` as a user runs it: the built CLI, real objects, real kernel BTF, and
// hostile input (one line on stderr, exit 2, no stack trace).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KernelStore } from '../../harness/kernels/store.js';
import { hostTruth } from '../../harness/suites/build.js';
import { compileBpf, writeTmp } from '../helpers/tools.js';

const cli = (args: string[]) => spawnSync(process.execPath, ['bin/corematrix.js', ...args], { encoding: 'utf8' });
const object = compileBpf('test/fixtures/core_kernel.bpf.c');

describe('corematrix relocate', () => {
  it('prints the documented JSON document', async () => {
    const btf = (await new KernelStore().fetch('6.1')).btf;
    const r = cli(['relocate', object, '--btf', btf, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as Record<string, unknown> & { relocations: Record<string, unknown>[]; programs: Record<string, unknown>[] };
    expect(Object.keys(doc).sort()).toEqual(['btf', 'object', 'programs', 'relocations', 'sha256']);
    expect(doc.sha256).toMatch(/^[0-9a-f]{64}$/);
    for (const rec of doc.relocations) {
      for (const k of ['section', 'insn', 'kind', 'type', 'access', 'spec', 'local', 'target', 'status']) expect(rec, k).toHaveProperty(k);
      expect(['ok', 'poisoned', 'error']).toContain(rec.status);
    }
    expect(doc.relocations.find((x) => x.spec === 'pid')).toMatchObject({ kind: 'byte_off', type: 'struct task_struct', access: '0:0', local: 0, status: 'ok' });
    expect(doc.programs).toEqual([{ name: 'core_kernel', section: 'kprobe/__set_task_comm', insns: expect.any(Number) }]);
  });

  it('takes a kernel id, and an ELF with .BTF, as the target', () => {
    const byId = cli(['relocate', object, '--btf', '7.3']);
    expect(byId.status, byId.stderr).toBe(0);
    expect(byId.stdout).toMatch(/against 7\.3 \(linux-binary-7\.3/);
    const byElf = cli(['relocate', object, '--btf', object, '--json']);
    expect(byElf.status).toBe(0);
    expect(JSON.parse(byElf.stdout).relocations.every((x: { status: string; local: number; target: number }) => x.status !== 'ok' || x.local === x.target)).toBe(true);
  });

  it("with a kernel id, the kernel's config decides kconfig branches: the NET_NS=n poison is dead code there, reachable with a bare BTF file", async () => {
    const { buildSuites } = await import('../../harness/suites/build.js');
    const [netns] = await buildSuites({ names: ['netns'] });
    const pick = (out: string) => (JSON.parse(out) as { relocations: { spec: string; status: string; reachable?: boolean }[] }).relocations.filter((x) => x.spec.includes('skc_net.net'));
    const byId = cli(['relocate', netns!.object, '--btf', '6.12-nonetns', '--json']);
    expect(byId.status, byId.stderr).toBe(0);
    const dead = pick(byId.stdout);
    expect(dead.length).toBeGreaterThan(0);
    for (const x of dead) expect(x).toMatchObject({ status: 'poisoned', reachable: false });
    const file = (await new KernelStore().fetch('6.12-nonetns')).btf;
    const live = pick(cli(['relocate', netns!.object, '--btf', file, '--json']).stdout);
    expect(live).toHaveLength(dead.length);
    for (const x of live) expect(x).toMatchObject({ status: 'poisoned', reachable: true });
  });

  it('--module adds a module\'s BTF: tun.ko\'s types relocate (by name from the package, or as a file); without it they are poisoned', async () => {
    const { buildSuites } = await import('../../harness/suites/build.js');
    const [mod] = await buildSuites({ names: ['module-btf'] });
    type Doc = { btf: string; relocations: { type: string; kind: string; status: string; target: number }[] };
    const tun = (out: string) => (JSON.parse(out) as Doc).relocations.filter((x) => x.type.startsWith('struct tun_'));
    const byName = cli(['relocate', mod!.object, '--btf', '6.1', '--module', 'tun', '--json']);
    expect(byName.status, byName.stderr).toBe(0);
    expect((JSON.parse(byName.stdout) as Doc).btf).toMatch(/^6\.1 \(.*\) \+ tun$/);
    const ok = tun(byName.stdout);
    expect(ok.length).toBeGreaterThan(5);
    for (const x of ok) expect(x.status, `${x.kind} ${x.type}`).toBe('ok');
    // bpftool reading tun.ko's BTF on 6.1's (hostTruth) is the witness for the size.
    const truth = await hostTruth('6.1', { keys: ['size.struct.tun_file'], modules: ['tun'] });
    expect(truth['size.struct.tun_file']).toBeGreaterThan(0);
    expect(ok.find((x) => x.kind === 'type_size' && x.type === 'struct tun_file___cm')!.target).toBe(truth['size.struct.tun_file']);
    // The same module given as a file (the store's decompressed .ko), against the BTF file.
    const store = new KernelStore();
    const k = await store.fetch('6.1');
    const [ko] = await store.modules(k, ['tun']);
    const byFile = cli(['relocate', mod!.object, '--btf', k.btf, '--module', ko!.path, '--json']);
    expect(tun(byFile.stdout)).toEqual(ok);
    // Without the module, nothing has those types.
    const without = tun(cli(['relocate', mod!.object, '--btf', '6.1', '--json']).stdout);
    expect(without.filter((x) => x.kind === 'byte_off').every((x) => x.status === 'poisoned')).toBe(true);
    // 5.10's modules carry no BTF; a name without a kernel id; a module file that does not exist.
    const old = cli(['relocate', mod!.object, '--btf', '5.10', '--module', 'tun']);
    expect(old.status).toBe(2);
    // (The first time 5.10's tun.ko is taken from its package, a progress line comes before the error.)
    const lines = old.stderr.trim().split('\n');
    expect(lines.slice(0, -1).every((l) => /^corematrix: kernel 5\.10: taking modules tun from /.test(l)), old.stderr).toBe(true);
    expect(lines.at(-1)).toMatch(/^corematrix: tun\.ko of 5\.10 \(.*\): ELF file has no \.BTF section$/);
    const noId = cli(['relocate', mod!.object, '--btf', k.btf, '--module', 'tun']);
    expect([noId.status, noId.stderr.trim()]).toEqual([2, 'corematrix: tun: no such file (a module name needs --btf <kernel-id>)']);
    const noFile = cli(['relocate', mod!.object, '--btf', '6.1', '--module', '/nonexistent/tun.ko']);
    expect([noFile.status, noFile.stderr.trim()]).toEqual([2, 'corematrix: /nonexistent/tun.ko: no such file']);
  });

  it('refuses hostile input with one line and exit 2', () => {
    const bytes = readFileSync(object);
    const cases: [string, Uint8Array, RegExp][] = [
      ['garbage.o', new Uint8Array(4096).fill(0x41), /not an ELF file/],
      ['truncated.o', bytes.subarray(0, 300), /past end of file|truncated|out of bounds/],
      ['empty.o', new Uint8Array(0), /too short/],
    ];
    for (const [name, data, re] of cases) {
      const path = writeTmp(name, data);
      const r = cli(['relocate', path, '--btf', '6.1']);
      expect(r.status, `${name}: ${r.stderr}`).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines, name).toHaveLength(1);
      expect(lines[0]).toMatch(/^corematrix: /);
      expect(lines[0]).toContain(name);
      expect(lines[0]).toMatch(re);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const badBtf = cli(['relocate', object, '--btf', writeTmp('bad.btf', new Uint8Array(64).fill(7))]);
    expect(badBtf.status).toBe(2);
    expect(badBtf.stderr.trim()).toMatch(/^corematrix: .*bad\.btf: bad BTF magic/);
    const noKernel = cli(['relocate', object, '--btf', 'no-such-kernel']);
    expect(noKernel.status).toBe(2);
    expect(noKernel.stderr.trim().split('\n')).toHaveLength(1);
  });
});
