// fentry.multi / fexit.multi (loader/tracing-multi.ts, runtime attachTracingMulti): the section's
// glob over the kernel's traceable functions, one tracing_multi link. Host: the functions picked
// from 7.3's BTF, held against bpftool's reading of the same BTF. Guests: the current libbpf in the
// same 7.3 guest is the witness (it attaches the same sections itself), and the kernel's run
// counts say both links ran; on 6.1, which has no such attach types, both loaders refuse.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBtf } from '../../harness/core/btf/btf.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { traceableFunction, tracingMultiIds } from '../../harness/loader/tracing-multi.js';
import type { RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { compileBpf, ensureBuilt } from '../helpers/tools.js';

interface BpftoolType { id: number; kind: string; name: string; type_id?: number; ret_type_id?: number; params?: { name: string; type_id: number }[] }

describe('the functions a glob names, in 7.3\'s BTF', () => {
  let btfPath: string;
  let types: BpftoolType[];
  beforeAll(async () => {
    btfPath = (await new KernelStore().fetch('7.3', { use: ['btf'] })).btf;
    types = (JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', btfPath], { maxBuffer: 1 << 30, encoding: 'utf8' })) as { types: BpftoolType[] }).types;
  }, 600_000);

  it('vfs_read* is the FUNCs bpftool lists by that name, in id order', () => {
    const btf = parseBtf(readFileSync(btfPath), { source: '7.3 vmlinux' });
    const ids = tracingMultiIds(btf, 'vfs_read*');
    const theirs = types.filter((t) => t.kind === 'FUNC' && /^vfs_read/.test(t.name)).map((t) => t.id);
    expect(ids).toEqual(theirs);
    expect(ids.map((id) => btf.name(id)).sort()).toEqual(['vfs_read', 'vfs_readlink', 'vfs_readv']);
  });

  it('leaves out what a trampoline cannot take: varargs, and over-16-byte struct arguments (by bpftool\'s prototypes)', () => {
    const btf = parseBtf(readFileSync(btfPath), { source: '7.3 vmlinux' });
    const byId = new Map(types.map((t) => [t.id, t]));
    const proto = (f: BpftoolType) => byId.get(f.type_id!)!;
    const funcs = types.filter((t) => t.kind === 'FUNC');
    const varargs = funcs.filter((f) => proto(f).params?.at(-1)?.type_id === 0);
    expect(varargs.map((f) => f.name)).toContain('_printk');
    for (const f of varargs) expect([f.name, traceableFunction(btf, f.id)]).toEqual([f.name, false]);
    const plain = funcs.find((f) => f.name === 'vfs_read')!;
    expect(traceableFunction(btf, plain.id)).toBe(true);
    // A struct over 16 bytes passed by value.
    const sized = (id: number): number | undefined => {
      let t = byId.get(id);
      while (t && ['TYPEDEF', 'CONST', 'VOLATILE', 'RESTRICT', 'TYPE_TAG'].includes(t.kind)) t = byId.get(t.type_id!);
      return t && (t.kind === 'STRUCT' || t.kind === 'UNION') ? (t as BpftoolType & { size: number }).size : undefined;
    };
    const bigByValue = funcs.filter((f) => proto(f).params?.some((p) => (sized(p.type_id) ?? 0) > 16));
    expect(bigByValue.length).toBeGreaterThan(0);
    for (const f of bigByValue.slice(0, 50)) expect([f.name, traceableFunction(btf, f.id)]).toEqual([f.name, false]);
  });
});

describe('fentry.multi and fexit.multi in guests, both loaders', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'cm-tracing-multi-'));
  let report: RunReport;
  let out = '';
  beforeAll(() => {
    ensureBuilt();
    const object = join(tmp, 'tracing_multi.bpf.o');
    copyFileSync(compileBpf(fileURLToPath(new URL('fixtures/tracing_multi.bpf.c', import.meta.url))), object);
    ({ report, out } = runMatrixCli(['--kernels', '7.3,6.1', '--suites', 'none', '--object', object, '--loader', 'both'], join(tmp, 'out')));
  }, 600_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const cell = (kernel: string, loader: 'ours' | 'libbpf', program: string) => {
    const k = report.kernels.find((x) => x.kernel.id === kernel)!;
    expect(k.guest, out).toBe('ok');
    return k.cells.find((c) => (loader === 'libbpf') === (c.loader === 'libbpf') && c.program === program)!;
  };

  it.each(['on_entry', 'on_exit'])('7.3: %s attaches over vfs_read* with both loaders, and both links run', (program) => {
    const ours = cell('7.3', 'ours', program);
    const lib = cell('7.3', 'libbpf', program);
    expect(ours.verdict, ours.reason).toBe('pass');
    expect(lib.verdict, lib.reason).toBe('pass');
    expect(ours.attach).toMatchObject({ status: 'attached', via: 'BPF_LINK_CREATE tracing_multi' });
    expect(ours.attach?.target).toMatch(/^f(entry|exit)\.multi vfs_read\* \(3 functions\)$/);
    expect(lib.attach?.status).toBe('attached');
    expect(ours.attach?.runCount).toBeGreaterThan(0);
    expect(lib.attach?.runCount).toBeGreaterThan(0);
  });

  it('7.3: a bare fentry.multi is not attachable for either (its tool names the functions)', () => {
    expect(cell('7.3', 'ours', 'attached_by_its_tool').attach?.status).toBe('not-attachable');
    expect(cell('7.3', 'libbpf', 'attached_by_its_tool').attach?.status).toBe('not-attachable');
    expect(cell('7.3', 'libbpf', 'attached_by_its_tool').verdict).toBe('pass');
  });

  it('6.1 has no multi-function tracing: both loaders refuse every program', () => {
    for (const p of ['on_entry', 'on_exit', 'attached_by_its_tool']) {
      expect(cell('6.1', 'ours', p).attach).toBeUndefined();
      const lib = cell('6.1', 'libbpf', p);
      expect([p, lib.checks[0]?.truth, lib.checks[0]?.observed, lib.verdict]).toEqual([p, 'rejected', 'rejected', 'pass']);
    }
  });
});
