// The renamed-field suite rewritten against the joined header, on real guests: the same spec and
// checks as suites/renamed-field, plus `header: joined`, with prog.bpf.c =
// fixtures/renamed-field-joined.bpf.c (the old layout is the header's struct task_struct___5_10,
// not a hand-written ___old). buildSuites generates the joined header of every matrix kernel,
// compiles against it, and runMatrix boots all 8 default kernels under TCG; every cell must pass
// with the values the guest measured equal to each kernel's truth.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinBtf } from '../../harness/btfjoin/join.js';
import { loadKernelBtfs } from '../../harness/btfjoin/load.js';
import { loadObjectSpec } from '../../harness/core/object/index.js';
import { Kind } from '../../harness/core/btf/kinds.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { runMatrix, runPassed } from '../../harness/matrix/run.js';
import type { RunReport } from '../../harness/results.js';
import { buildSuites, joinedHeader, suitesDir, type BuiltSuite } from '../../harness/suites/build.js';
import { readSpec } from '../../harness/suites/spec.js';
import { ensureBuilt } from '../helpers/tools.js';

const ALL = ['5.10', '6.1', '6.1-cloud', '6.1-rt', '6.12', '7.2', '7.3', '7.x'];
/** Every kernel the default matrix boots: the Debian ones the header joins, and the custom build. */
const RUN = ['5.10', '6.1', '6.1-cloud', '6.1-rt', '6.12', '6.12-nonetns', '7.2', '7.3', '7.x'];
const store = new KernelStore();
const original = join(suitesDir(), 'renamed-field');
let dir: string;
let built: BuiltSuite;

/** A suites folder holding renamed-field with `header` set (or not) and the joined-header source. */
function suiteFolder(header: 'joined' | undefined, include = 'vmlinux_joined.h'): string {
  const root = mkdtempSync(join(tmpdir(), 'cm-joined-suites-'));
  mkdirSync(join(root, 'renamed-field'));
  const spec = readFileSync(join(original, 'spec.yaml'), 'utf8');
  writeFileSync(join(root, 'renamed-field', 'spec.yaml'), header ? spec.replace(/^name: renamed-field\n/m, `name: renamed-field\nheader: ${header}\n`) : spec);
  const src = readFileSync(new URL('./fixtures/renamed-field-joined.bpf.c', import.meta.url), 'utf8');
  expect(src).toContain('#include "vmlinux_joined.h"\n');
  writeFileSync(join(root, 'renamed-field', 'prog.bpf.c'), src.replace('#include "vmlinux_joined.h"\n', `#include "${include}"\n`));
  return root;
}

beforeAll(async () => {
  ensureBuilt();
  dir = suiteFolder('joined');
  [built] = await buildSuites({ suitesDir: dir, store });
}, 300_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('renamed-field against the joined header', () => {
  it('compiles against the joined header of all 8 kernels, and needs it', async () => {
    expect(built.spec.header).toBe('joined');
    expect(built.spec.checks).toEqual(readSpec(join(original, 'spec.yaml')).checks);
    // The header buildSuites used is byte for byte what `btf join --kernels all` writes today.
    const h = await joinedHeader(store);
    expect(h.kernels).toEqual(ALL);
    const fresh = joinBtf(await loadKernelBtfs(ALL, store)).header;
    expect(readFileSync(join(h.dir, 'vmlinux_joined.h'), 'utf8') === fresh).toBe(true);
    // The object carries the header's flavour as its local type.
    const obj = loadObjectSpec(new Uint8Array(readFileSync(built.object)), built.name);
    const names = new Set<string>();
    for (let id = 1; id < obj.btf.count; id++) if (obj.btf.kind(id) === Kind.STRUCT) names.add(obj.btf.name(id));
    expect(names.has('task_struct___5_10')).toBe(true);
    expect(names.has('task_struct___old')).toBe(false);
    // With `header: joined`, "vmlinux.h" is the joined header too; against one kernel's
    // vmlinux.h (no header field) the same source does not compile: 6.1 has no ___5_10 flavour.
    const shim = suiteFolder('joined', 'vmlinux.h');
    const plain = suiteFolder(undefined, 'vmlinux.h');
    try {
      expect((await buildSuites({ suitesDir: shim, store }))[0]!.spec.header).toBe('joined');
      await expect(buildSuites({ suitesDir: plain, store })).rejects.toThrow(/prog\.bpf\.c: clang-19 failed: .*task_struct___5_10/);
    } finally {
      rmSync(shim, { recursive: true, force: true });
      rmSync(plain, { recursive: true, force: true });
    }
  }, 300_000);

  it('passes on every kernel of the default matrix in real guests (TCG)', async () => {
    const out = mkdtempSync(join(tmpdir(), 'cm-joined-run-'));
    const t0 = performance.now();
    const r = await runMatrix({ kernels: RUN, suitesDir: dir, suites: ['renamed-field'], jobs: 2, accel: 'tcg', outDir: out, runId: 'joined', log: () => {} });
    const wall = (performance.now() - t0) / 1000;
    expect(r.kernels.map((k) => k.kernel.id)).toEqual(RUN);
    for (const k of r.kernels) {
      const id = k.kernel.id;
      expect(k.guest, `${id}: ${k.detail}\n${k.consoleTail}`).toBe('ok');
      expect(k.cells, id).toHaveLength(1);
      const c = k.cells[0]!;
      expect(c.object.sha256, id).toBe(built.sha256); // one object, the same bytes everywhere
      expect(c.verdict, `${id}: ${c.reason}`).toBe('pass');
      // Every check the spec defines, each observed value equal to the truth measured for this kernel.
      expect(c.checks.map((x) => x.name), id).toEqual(built.spec.checks.map((x) => x.name));
      for (const x of c.checks) expect(x.ok && Number(x.observed) === Number(x.truth), `${id} ${x.name}: observed ${String(x.observed)}, truth ${String(x.truth)}`).toBe(true);
      const check = (name: string) => c.checks.find((x) => x.name.startsWith(name))!.observed;
      const old = id === '5.10';
      expect(check('branch taken'), id).toBe(old ? 1 : 2);
      expect(check('task state'), id).toBe(0);
      expect(check('kprobe hits'), id).toBeGreaterThan(0);
      expect(check(old ? 'size of state' : 'size of __state'), id).toBe(old ? 8 : 4);
      // The guest's relocations: the ___5_10 flavour matched task_struct on 5.10 only.
      const live = (type: string) => c.relocations.filter((x) => x.type === type && x.kind === 'byte_off').map((x) => x.status);
      expect(live('struct task_struct___5_10'), id).toEqual(old ? ['ok'] : ['poisoned']);
      expect(live('struct task_struct'), id).toEqual(old ? ['poisoned'] : ['ok']);
      if (old) expect(c.relocations.find((x) => x.type === 'struct task_struct___5_10' && x.kind === 'byte_off')!.targetType).toBe('struct task_struct');
    }
    expect(runPassed(r)).toBe(true);
    console.log(`renamed-field (joined header): ${r.kernels.length} kernels, ${r.kernels.flatMap((k) => k.cells).filter((c) => c.verdict === 'pass').length} cells pass in ${wall.toFixed(1)} s`);
    rmSync(out, { recursive: true, force: true });
  }, 400_000);

  it('runs from the CLI with --suites-dir (5.10 and 6.1, both branches)', () => {
    const out = mkdtempSync(join(tmpdir(), 'cm-joined-cli-'));
    const r = spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--suites-dir', dir, '--kernels', '5.10,6.1', '--jobs', '2', '--accel', 'tcg', '--loader', 'ours', '--out', out], { encoding: 'utf8', env: { ...process.env, CI: '1' } });
    expect(r.status, `${r.stdout}\n${r.stderr.slice(-2000)}`).toBe(0);
    expect(r.stdout).toMatch(/: 2 kernels, 2 cells: 2 pass, 0 fail/);
    const rep = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as RunReport;
    expect(rep.suites).toEqual(['renamed-field']);
    expect(rep.objects).toEqual([{ name: 'renamed-field.bpf.o', sha256: built.sha256 }]);
    const branch = rep.kernels.map((k) => `${k.kernel.id}:${k.cells[0]!.checks.find((c) => c.name.startsWith('branch taken'))!.observed}`);
    expect(branch).toEqual(['5.10:1', '6.1:2']);
    rmSync(out, { recursive: true, force: true });
  }, 300_000);

  it('a --suites-dir that does not exist is a usage error, before anything runs', () => {
    const r = spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--suites-dir', join(dir, 'nope'), '--kernels', '6.1'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`corematrix: --suites-dir ${join(dir, 'nope')}: no such folder\n`);
  });
});
