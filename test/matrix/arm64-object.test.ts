// Users' objects per arch (issue 19): `--object x.bpf.o --object arm64:x.arm64.bpf.o`. A libbpf
// user builds one object per arch (-D__TARGET_ARCH_x86 / -D__TARGET_ARCH_arm64: BPF_KPROBE reads
// pt_regs' di/si on x86-64, user_pt_regs' regs[] on arm64); each kernel must load its arch's build,
// in one row of the grid. A plain object whose BTF shows another arch's build still runs there,
// and its cells say so.
//
// The objects are a suite's prog.bpf.c (task-fields: a kprobe reading its arguments and
// task_struct.pid) compiled twice, once per arch, as a user would, and another suite's x86 build
// (netns) with no arm64 counterpart. Witnesses that are not our code: bpftool's dump of each
// object's BTF (which register struct it carries), and in the guests the kernel's own verdicts
// and translated instructions of both loaders (ours and the current libbpf, cross-built for arm64).
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileHash } from '../../harness/images/base.js';
import { buildSuiteForArch } from '../../harness/images/arm64-objects.js';
import { findKernel, loadMatrix } from '../../harness/kernels/matrix.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { BUILT_FOR_CHECK, objectBuiltFor, objectsOnArch, splitArchPrefix } from '../../harness/matrix/arch-objects.js';
import { readUserObjects } from '../../harness/matrix/run.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { repoRoot } from '../../harness/paths.js';
import type { CellResult, KernelRun, RunReport } from '../../harness/results.js';
import { buildSuites } from '../../harness/suites/build.js';
import { diffKernels } from '../../harness/report/diff.js';

const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), 'cm-arm64-object-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The objects as a user's build folder holds them: one build per arch, and an x86-only one. */
const obj = { x86: join(tmp, 'x86', 'task-fields.bpf.o'), arm64: join(tmp, 'arm64', 'task-fields.arm64.bpf.o'), netns: join(tmp, 'x86', 'netns.bpf.o') };
beforeAll(async () => {
  mkdirSync(join(tmp, 'x86'));
  mkdirSync(join(tmp, 'arm64'));
  const amd = await buildSuites({ names: ['task-fields', 'netns'] });
  copyFileSync(amd.find((s) => s.name === 'task-fields')!.object, obj.x86);
  copyFileSync(amd.find((s) => s.name === 'netns')!.object, obj.netns);
  // arm64: -D__TARGET_ARCH_arm64 against the vmlinux.h of Debian's arm64 6.1, as the suites' arm64 builds.
  const btf = (await new KernelStore().fetch(findKernel(loadMatrix(), '6.1-arm64')!)).btf;
  copyFileSync((await buildSuiteForArch('task-fields', 'arm64', btf)).object, obj.arm64);
}, 600_000);

interface BpftoolStruct { kind: string; name: string; members?: { name: string }[] }
/** bpftool's structs of an object's BTF. */
const structs = (file: string): BpftoolStruct[] =>
  (JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', file], { encoding: 'utf8', maxBuffer: 64 << 20 })) as { types: BpftoolStruct[] }).types.filter((t) => t.kind === 'STRUCT');
const members = (file: string, name: string) => structs(file).find((t) => t.name === name)?.members?.map((m) => m.name) ?? [];

describe('the rule (no guest)', () => {
  it("which arch an object was built for, from its BTF, agrees with bpftool's dump of the same BTF", () => {
    const built = (f: string) => objectBuiltFor(loadObjectSpec(readFileSync(f), f).btf);
    expect(built(obj.x86)).toEqual({ arch: 'amd64', evidence: 'struct pt_regs has di, si' });
    expect(built(obj.netns)).toEqual({ arch: 'amd64', evidence: 'struct pt_regs has di, si' });
    expect(built(obj.arm64)).toEqual({ arch: 'arm64', evidence: 'struct user_pt_regs has regs[]' });
    expect(members(obj.x86, 'pt_regs')).toEqual(expect.arrayContaining(['di', 'si']));
    expect(members(obj.arm64, 'user_pt_regs')).toContain('regs');
    expect(members(obj.arm64, 'pt_regs')).not.toContain('di');
  });

  it('arm64:<file> takes the row of the plain object with the same programs; each arch loads its own build', () => {
    const objects = readUserObjects([obj.x86, `arm64:${obj.arm64}`, obj.netns]);
    expect(objects.map((u) => [u.name, u.arch, u.host])).toEqual([
      ['task-fields.bpf.o', undefined, obj.x86],
      ['task-fields.bpf.o', 'arm64', obj.arm64],
      ['netns.bpf.o', undefined, obj.netns],
    ]);
    expect(objectsOnArch(objects, 'amd64').map((u) => u.host)).toEqual([obj.x86, obj.netns]);
    expect(objectsOnArch(objects, 'arm64').map((u) => u.host)).toEqual([obj.arm64, obj.netns]);
  });

  it('refused before boot, one line each: a qualified object built for another arch, an unknown arch, two builds for one arch', () => {
    expect(() => readUserObjects([`arm64:${obj.x86}`])).toThrow(`--object arm64:${obj.x86}: the object is an x86 build (__TARGET_ARCH_x86: struct pt_regs has di, si), not an arm64 one`);
    expect(() => splitArchPrefix(`x86:${obj.x86}`, '--object')).toThrow(`--object x86:${obj.x86}: 'x86' is not an arch corematrix boots (amd64, arm64, Debian's names)`);
    const second = join(tmp, 'arm64', 'again.bpf.o');
    copyFileSync(obj.arm64, second);
    expect(() => readUserObjects([obj.x86, `arm64:${obj.arm64}`, `arm64:${second}`])).toThrow(`--object arm64:${second} and arm64:${obj.arm64} are both arm64 builds of task-fields.bpf.o (the same programs): give one`);
  });
});

describe('--kernels 6.1,7.3-arm64 with a per-arch object (TCG, both loaders)', () => {
  let r: { status: number; stdout: string; stderr: string; wallMs: number };
  let report: RunReport;
  beforeAll(async () => {
    const out = join(tmp, 'run');
    const t0 = performance.now();
    r = await run(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '6.1,7.3-arm64', '--suites', 'none', '--object', obj.x86, '--object', `arm64:${obj.arm64}`, '--object', obj.netns, '--loader', 'both', '--accel', 'tcg', '--jobs', '1', '--out', out], { cwd: repoRoot(), maxBuffer: 64 << 20, env: { ...process.env, CI: '' } })
      .then((x) => ({ status: 0, stdout: x.stdout, stderr: x.stderr }))
      .catch((e: { code?: number; stdout?: string; stderr?: string }) => ({ status: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }))
      .then((x) => ({ ...x, wallMs: Math.round(performance.now() - t0) }));
    report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as RunReport;
    console.log(`[measure] matrix --kernels 6.1,7.3-arm64 --object (x86, arm64:, x86-only) --loader both: ${r.wallMs} ms wall; ${report.kernels.map((k) => `${k.kernel.id}: guest ${k.durationMs} ms`).join('; ')}; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  }, 1_200_000);

  const why = () => `exit ${r.status}\n${r.stdout}\n${r.stderr.split('\n').slice(-30).join('\n')}`;
  const kernel = (id: string): KernelRun => report.kernels.find((k) => k.kernel.id === id)!;
  const cells = (id: string, unit: string): CellResult[] => kernel(id).cells.filter((c) => c.suite === `object:${unit}`);

  it("each kernel loads its arch's build in the same row: both loaders load it, and the kernel translated the same instructions for both", () => {
    expect(report.kernels.map((k) => [k.kernel.id, k.guest]), why()).toEqual([['6.1', 'ok'], ['7.3-arm64', 'ok']]);
    for (const [id, file] of [['6.1', obj.x86], ['7.3-arm64', obj.arm64]] as const) {
      const row = cells(id, 'task-fields.bpf.o');
      expect(row.map((c) => c.loader).sort(), `${id}\n${why()}`).toEqual(['libbpf', 'ours']);
      for (const c of row) {
        expect([id, c.loader, c.verdict, c.reason]).toEqual([id, c.loader, 'pass', undefined]);
        expect(c.object).toEqual({ name: 'task-fields.bpf.o', sha256: fileHash(file) });
        expect(c.checks.some((x) => x.name === BUILT_FOR_CHECK)).toBe(false);
      }
      const libbpf = row.find((c) => c.loader === 'libbpf')!;
      expect(libbpf.checks.map((x) => [x.name, x.ok])).toEqual([['same verdict and translated instructions as our loader', true]]);
    }
    // On arm64 the arguments came from arm64's register file.
    const arm = cells('7.3-arm64', 'task-fields.bpf.o').find((c) => c.loader === 'ours')!;
    expect(arm.relocations.filter((x) => x.type === 'struct user_pt_regs').map((x) => x.spec).sort()).toEqual(['regs[0]', 'regs[1]']);
  });

  it("the report lists both builds with their sha256s; the cross-kernel diff compares each arch with itself", () => {
    expect(report.objects).toEqual(expect.arrayContaining([
      { name: 'task-fields.bpf.o', sha256: fileHash(obj.x86) },
      { name: 'task-fields.bpf.o (arm64: task-fields.arm64.bpf.o)', sha256: fileHash(obj.arm64) },
      { name: 'netns.bpf.o', sha256: fileHash(obj.netns) },
    ]));
    // No finding about the object with a build per arch: each arch's cells are compared with their own.
    const diff = diffKernels(report);
    console.log(`[measure] cross-kernel diff: ${diff.invariants.held}/${diff.invariants.checked} invariants held; ${[...diff.violations, ...diff.unexpected].map((f) => `${f.cell}: ${f.what} (${f.kernels.join(', ')})`).join(' | ')}`);
    expect([...diff.violations, ...diff.unexpected].filter((f) => f.cell.includes('task-fields'))).toEqual([]);
  });

  it("the x86-only object runs on the arm64 kernel as it is, and its cells there fail saying it is the x86 build; the log says it once", () => {
    expect(r.stderr.split('\n').filter((l) => l.includes('is an x86 build'))).toEqual([
      `matrix: --object ${obj.netns} is an x86 build (__TARGET_ARCH_x86: struct pt_regs has di, si): on 7.3-arm64 it runs as it is and its cells fail saying so; give the arm64 build with --object arm64:<file>`,
    ]);
    const arm = cells('7.3-arm64', 'netns.bpf.o');
    expect(arm.length, why()).toBeGreaterThan(0);
    for (const c of arm) {
      expect(c.object.sha256).toBe(fileHash(obj.netns));
      expect(c.verdict).toBe('fail');
      expect(c.reason).toMatch(/an x86 build \(__TARGET_ARCH_x86: struct pt_regs has di, si\) on an arm64 kernel/);
      expect(c.checks.find((x) => x.name === BUILT_FOR_CHECK)).toEqual({ name: BUILT_FOR_CHECK, observed: 'x86', truth: 'arm64', ok: false, source: "the object's BTF: struct pt_regs has di, si" });
    }
    console.log(`[measure] netns.bpf.o (x86) on 7.3-arm64: ${arm.map((c) => `${c.loader} ${c.verdict}: ${c.reason}`).join(' | ')}`);
    // On its own arch nothing is said about it.
    for (const c of cells('6.1', 'netns.bpf.o')) expect(c.checks.some((x) => x.name === BUILT_FOR_CHECK)).toBe(false);
    // A failing cell fails the run.
    expect(r.status).toBe(1);
  });
});
