// arm64 kernels in the matrix, through the real CLI (`node bin/corematrix.js matrix`, dist/ as
// `npm run build` made it): `--kernels 7.3-arm64,6.1-arm64` names the arm64 builds of the matrix's
// 7.3 and 6.1 entries; each boots under qemu-system-aarch64 (TCG) with an arm64 image, the suites
// compiled once for arm64, and our agent; the cells land in the report as amd64 guests' do. With
// `--loader both` the reference runs there too: the current libbpf cross-built for arm64
// (harness/reference/build.ts) loads the same objects in the same guest, and the kernel's
// translated instructions of both loads must be identical.
//
// Witnesses that are not our code: the guest's console (the kernel's own `Machine model:` line of
// QEMU's virt board) and `uname -m` in the agent's hello; bpftool's task_struct.pid offset from
// each kernel's BTF; the kernel's config file for the kconfig externs; binutils' readelf for the
// arm64 module the store took out of the arm64 package; in the guest, the kernel's own answers
// (the kprobe's hits, the tun device it made), which the suites' checks compare.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findKernel, loadMatrix } from '../../harness/kernels/matrix.js';
import { type KernelArtifacts, KernelStore } from '../../harness/kernels/store.js';
import { cacheDir, repoRoot } from '../../harness/paths.js';
import { currentLibbpf, type CurrentLibbpf } from '../../harness/reference/build.js';
import type { CellResult, KernelRun, RunReport } from '../../harness/results.js';

const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), 'cm-arm64-matrix-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface CliRun {
  status: number;
  stdout: string;
  stderr: string;
  report: RunReport;
  out: string;
  wallMs: number;
}

/** `corematrix matrix <args> --accel tcg --jobs 1 --out <tmp>` as a user runs it; its report.json read back. */
async function matrix(name: string, args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const out = join(tmp, name);
  const t0 = performance.now();
  const r = await run(process.execPath, ['bin/corematrix.js', 'matrix', ...args, '--accel', 'tcg', '--jobs', '1', '--out', out], { cwd: repoRoot(), maxBuffer: 64 << 20, env: { ...process.env, CI: '', ...env } })
    .then((x) => ({ status: 0, stdout: x.stdout, stderr: x.stderr }))
    .catch((e: { code?: number; stdout?: string; stderr?: string }) => ({ status: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }));
  const wallMs = Math.round(performance.now() - t0);
  return { ...r, out, wallMs, report: JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as RunReport };
}

const why = (r: CliRun) => `exit ${r.status}\n${r.stdout}\n${r.stderr.split('\n').slice(-40).join('\n')}`;
const kernelOf = (r: CliRun, id: string): KernelRun => r.report.kernels.find((k) => k.kernel.id === id)!;
const cellOf = (k: KernelRun, suite: string, loader = 'ours'): CellResult => k.cells.find((c) => c.suite === suite && c.loader === loader)!;

interface BpftoolType { id: number; kind: string; name: string; members?: { name: string; bits_offset: number }[] }
/** bpftool's types of a BTF file, or of a module's .BTF on top of its kernel's (`base`): not our BTF reader. */
const bpftoolTypes = (btf: string, base?: string): BpftoolType[] =>
  (JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', btf, ...(base ? ['-B', base] : [])], { maxBuffer: 1 << 30, encoding: 'utf8' })) as { types: BpftoolType[] }).types;
/** bpftool's byte offset of `struct <type>`'s member `member`. */
function bpftoolOffset(types: BpftoolType[], type: string, member: string): number {
  const t = types.find((x) => x.kind === 'STRUCT' && x.name === type);
  return t!.members!.find((m) => m.name === member)!.bits_offset / 8;
}

const ARM64 = ['6.1-arm64', '7.3-arm64'];
const SUITES = ['task-fields', 'kconfig', 'module-btf'];
/** The check a libbpf cell of `--loader both` carries: the differential against our loader in the same guest. */
const SAME = 'same verdict and translated instructions as our loader';

/** A libbpf cell of `--loader both`: passed, loaded by the arm64 build `lib`, its xlated instructions identical to ours (the kernel's dump of both loads). */
function expectReferenceAgrees(kernel: string, c: CellResult, lib: CurrentLibbpf): void {
  expect([kernel, c.suite, c.verdict, c.reason]).toEqual([kernel, c.suite, 'pass', undefined]);
  expect(c.checks.map((x) => [x.name, x.observed, x.truth, x.ok])).toEqual([[SAME, 'loaded', 'loaded', true]]);
  expect(c.checks[0]!.source).toBe(`libbpf ${lib.version} (${lib.source}) in this guest vs our loader, BPF_OBJ_GET_INFO_BY_FD xlated`);
  expect(c.xlated?.length, `${kernel} ${c.suite}: libbpf's xlated`).toBeGreaterThan(0);
}

describe('corematrix matrix --kernels 7.3-arm64,6.1-arm64 (qemu-system-aarch64, TCG)', () => {
  const store = new KernelStore();
  const kernels = new Map<string, KernelArtifacts>();
  let r: CliRun;
  let lib: CurrentLibbpf;
  beforeAll(async () => {
    r = await matrix('arm64', ['--kernels', '7.3-arm64,6.1-arm64', '--suites', SUITES.join(','), '--loader', 'both']);
    // The run built (or found) it: this call finds the same cached build.
    lib = await currentLibbpf(() => {}, { arch: 'arm64' });
    const m = loadMatrix();
    for (const id of ARM64) kernels.set(id, await store.fetch(findKernel(m, id)!));
    console.log(`[measure] matrix --kernels 7.3-arm64,6.1-arm64 --suites ${SUITES.join(',')} --loader both --jobs 1: ${r.wallMs} ms wall; ${r.report.kernels.map((k) => `${k.kernel.id}: guest ${k.durationMs} ms, agent hello at ${k.bootMs} ms`).join('; ')}; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  }, 1_200_000);

  it('exits 0: both arm64 guests ok under TCG, every cell passes, ours and the reference (libbpf) alike', () => {
    expect(r.status, why(r)).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/^run \S+: 2 kernels, 12 cells: 12 pass, 0 fail, 0 error, 0 skip, 0 expected skip in [\d.]+ s$/);
    // Matrix order (6.1 before 7.3), whatever order they were asked in.
    expect(r.report.kernels.map((k) => [k.kernel.id, k.kernel.arch, k.guest, k.accel])).toEqual(ARM64.map((id) => [id, 'arm64', 'ok', 'tcg']));
    expect(r.stderr).toContain('matrix: 3 suite(s) compiled once for arm64: task-fields (');
    expect(r.stderr).not.toContain('reference loader (libbpf) is not available');
    expect(r.report.host.libbpf).toBe(`arm64: libbpf ${lib.version} (${lib.source})`);
    for (const k of r.report.kernels) {
      const k0 = kernels.get(k.kernel.id)!;
      expect([k.kernel.package, k.kernel.release]).toEqual([k0.package, k0.release]);
      expect(k0.release).toMatch(/-arm64$/);
      expect(k.cells.map((c) => `${c.suite} ${c.loader} ${c.verdict}`).sort()).toEqual(SUITES.flatMap((s) => [`${s} libbpf pass`, `${s} ours pass`]).sort());
      for (const c of k.cells.filter((x) => x.loader === 'libbpf')) expectReferenceAgrees(k.kernel.id, c, lib);
      for (const c of k.cells.filter((x) => x.loader === 'ours')) {
        expect(c.kernel.arch).toBe('arm64');
        expect(c.checks.length, `${k.kernel.id} ${c.suite}`).toBeGreaterThan(0);
        for (const x of c.checks) expect([k.kernel.id, c.suite, x.name, x.ok]).toEqual([k.kernel.id, c.suite, x.name, true]);
      }
    }
  });

  it("ringbuf-fentry on 6.1-arm64: an expected skip naming the option its spec needs and the kernel's config lacks", async () => {
    const f = await matrix('fentry', ['--kernels', '6.1-arm64', '--suites', 'ringbuf-fentry', '--loader', 'ours']);
    expect(f.status, why(f)).toBe(0);
    const c = cellOf(kernelOf(f, '6.1-arm64'), 'ringbuf-fentry');
    expect([c.verdict, c.reason]).toEqual(['expected-skip', "needs CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS, not set in this kernel's config"]);
    // The witness: the kernel package's own config file.
    expect(readFileSync(kernels.get('6.1-arm64')!.config, 'utf8')).not.toMatch(/^CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS=[ym]$/m);
    expect(readFileSync(kernels.get('7.3-arm64')!.config, 'utf8')).toMatch(/^CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS=y$/m);
  }, 600_000);

  it('the guests were arm64 machines: the kernel names QEMU\'s virt board, the agent says aarch64', () => {
    for (const id of ARM64) {
      expect(readFileSync(join(r.out, 'guests', `${id}.console.log`), 'utf8')).toMatch(/Machine model: linux,dummy-virt/);
      const hello = readFileSync(join(r.out, 'guests', `${id}.ttyS1.log`), 'utf8').split('\n').map((l) => (l.startsWith('{') ? (JSON.parse(l) as { t: string; machine?: string; release?: string }) : undefined)).find((m) => m?.t === 'hello');
      expect([hello?.machine, hello?.release]).toEqual(['aarch64', kernels.get(id)!.release]);
    }
  });

  it('one arm64 object per suite, the same bytes on both kernels, listed as arm64 objects in the report', () => {
    for (const s of SUITES) {
      const [a, b] = r.report.kernels.map((k) => cellOf(k, s).object);
      expect(a).toEqual(b);
      expect(r.report.objects).toContainEqual({ name: `${s}.bpf.o (arm64)`, sha256: a!.sha256 });
    }
    // BPF_KPROBE's arguments come from arm64's register file.
    for (const k of r.report.kernels) {
      expect(cellOf(k, 'task-fields').relocations.filter((x) => x.type === 'struct user_pt_regs').map((x) => [x.spec, x.target]).sort()).toEqual([['regs[0]', 0], ['regs[1]', 8]]);
    }
  });

  it("task_struct.pid is relocated to bpftool's offset on each kernel (the field moved between 6.1 and 7.3)", () => {
    const offsets = r.report.kernels.map((k) => {
      const pid = cellOf(k, 'task-fields').relocations.find((x) => x.type === 'struct task_struct' && x.spec === 'pid')!;
      expect(pid.target).toBe(bpftoolOffset(bpftoolTypes(kernels.get(k.kernel.id)!.btf), 'task_struct', 'pid'));
      return pid.target;
    });
    expect(offsets[0]).not.toBe(offsets[1]);
  });

  it("kconfig externs are the kernel's config file's values", () => {
    for (const k of r.report.kernels) {
      const config = readFileSync(kernels.get(k.kernel.id)!.config, 'utf8');
      const hz = Number(/^CONFIG_HZ=(\d+)$/m.exec(config)![1]);
      const ext = Object.fromEntries(cellOf(k, 'kconfig').externs.map((x) => [x.name, x.value]));
      expect(ext['CONFIG_HZ']).toBe(hz);
      expect(ext['CONFIG_PHYLIB']).toBe(/^CONFIG_PHYLIB=(.)$/m.exec(config)?.[1] ?? null);
    }
  });

  it("module-btf: tun.ko from the arm64 package (an AArch64 module of that release), relocated against its own BTF as bpftool reads it, the kprobe on it hit twice", async () => {
    for (const k of r.report.kernels) {
      const k0 = kernels.get(k.kernel.id)!;
      const [tun] = await store.modules(k0, ['tun']);
      expect(execFileSync('readelf', ['-h', tun!.path], { encoding: 'utf8' })).toMatch(/Machine:\s+AArch64/);
      expect(execFileSync('readelf', ['-p', '.modinfo', tun!.path], { encoding: 'utf8' })).toContain(`vermagic=${k0.release} `);
      const c = cellOf(k, 'module-btf');
      expect(c.checks.find((x) => x.name === 'kprobe hits (tun_chr_ioctl)')?.observed).toBe(2);
      // The module's types number on from the kernel's: the type id and the offset are the module BTF's.
      const types = bpftoolTypes(tun!.path, k0.btf);
      const relo = (type: string, kind: string, spec = '') => c.relocations.find((x) => x.type === type && x.kind === kind && x.spec === spec)!.target;
      expect(relo('struct tun_struct___cm', 'target_type_id')).toBe(types.find((t) => t.kind === 'STRUCT' && t.name === 'tun_struct')!.id);
      expect(relo('struct tun_struct___cm', 'target_type_id')).toBeGreaterThan(bpftoolTypes(k0.btf).length);
      expect(relo('struct tun_file___cm', 'byte_off', 'detached')).toBe(bpftoolOffset(types, 'tun_file', 'detached'));
    }
  });
});

describe('arm64 and amd64 kernels in one run', () => {
  it('--kernels 6.1,6.1-arm64: one report, each arch its own object and its own build of the reference; the diff compares like with like', async () => {
    const r = await matrix('mixed', ['--kernels', '6.1,6.1-arm64', '--suites', 'task-fields', '--loader', 'both']);
    console.log(`[measure] matrix --kernels 6.1,6.1-arm64 --suites task-fields --loader both --jobs 1: ${r.wallMs} ms wall; ${r.report.kernels.map((k) => `${k.kernel.id}: guest ${k.durationMs} ms`).join('; ')}`);
    expect(r.report.kernels.map((k) => [k.kernel.id, k.kernel.arch, k.guest])).toEqual([['6.1', undefined, 'ok'], ['6.1-arm64', 'arm64', 'ok']]);
    const amd = kernelOf(r, '6.1');
    const arm = kernelOf(r, '6.1-arm64');
    // Both arches: ours and the reference pass, each reference the current libbpf built for that arch (same source, same version).
    const [amdLib, armLib] = [await currentLibbpf(), await currentLibbpf(() => {}, { arch: 'arm64' })];
    expect(r.report.host.libbpf).toBe(`libbpf ${amdLib.version} (${amdLib.source}); arm64: libbpf ${armLib.version} (${armLib.source})`);
    expect([cellOf(amd, 'task-fields').verdict, cellOf(amd, 'task-fields', 'libbpf').verdict]).toEqual(['pass', 'pass']);
    expect(cellOf(arm, 'task-fields').verdict).toBe('pass');
    expectReferenceAgrees('6.1-arm64', cellOf(arm, 'task-fields', 'libbpf'), armLib);
    expect(cellOf(amd, 'task-fields').object.sha256).not.toBe(cellOf(arm, 'task-fields').object.sha256);
    expect(r.report.objects.map((o) => o.name)).toEqual(['task-fields.bpf.o', 'task-fields.bpf.o (arm64)']);
    // Each arch's cells compared with their own arch's: no object or relocation "differs" between them.
    expect(r.stdout, why(r)).not.toContain('cross-kernel diff:');
    expect(r.status, why(r)).toBe(0);
  }, 900_000);

  it('--loader libbpf on an arm64 kernel: the guest boots and libbpf loads the suite on its own (no comparison), beside the suite\'s checks (exit 0)', async () => {
    const r = await matrix('libbpf-only', ['--kernels', '6.1-arm64', '--suites', 'task-fields', '--loader', 'libbpf']);
    expect(r.status, why(r)).toBe(0);
    const k = kernelOf(r, '6.1-arm64');
    expect([k.guest, k.kernel.arch]).toEqual(['ok', 'arm64']);
    // A suite's checks are always ours (as on amd64); the libbpf cell is libbpf's load alone.
    expect(k.cells.map((c) => [c.suite, c.loader, c.verdict]).sort()).toEqual([['task-fields', 'libbpf', 'pass'], ['task-fields', 'ours', 'pass']]);
    const c = cellOf(k, 'task-fields', 'libbpf');
    expect(c.checks).toEqual([]);
    // The kernel translated what libbpf loaded (BPF_OBJ_GET_INFO_BY_FD), and the verifier counted its instructions.
    expect(c.xlated?.length).toBeGreaterThan(0);
    expect(c.verifier?.insnsProcessed).toBeGreaterThan(0);
  }, 600_000);
});

describe('an arm64 reference that cannot be built (no cross compiler)', () => {
  /**
   * The CLI's environment without the cross toolchain: a PATH of links to /usr/bin less
   * aarch64-linux-gnu-*, and a cache whose folders are the real ones (kernels, apt states,
   * images…) but for an empty libbpf/ (no arm64 build to fall back on).
   */
  function withoutCross(): Record<string, string> {
    const bin = join(tmp, 'bin-without-cross');
    mkdirSync(bin);
    for (const f of readdirSync('/usr/bin')) if (!f.startsWith('aarch64-linux-gnu-')) symlinkSync(join('/usr/bin', f), join(bin, f));
    const cache = join(tmp, 'cache-without-libbpf');
    mkdirSync(join(cache, 'libbpf'), { recursive: true });
    const real = cacheDir();
    for (const f of readdirSync(real)) if (f !== 'libbpf') symlinkSync(join(real, f), join(cache, f));
    return { PATH: `${bin}:/usr/sbin`, COREMATRIX_CACHE: cache };
  }
  const WHY = 'libbpf build for arm64: needs gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (Debian); `npm run setup` installs them (aarch64-linux-gnu-gcc: not found)';

  it("--loader both: ours runs and passes, each libbpf cell is an error naming the build's one line, said once in the log (exit 1); --loader libbpf boots nothing", async () => {
    const env = withoutCross();
    const r = await matrix('no-cross', ['--kernels', '6.1-arm64', '--suites', 'task-fields', '--loader', 'both'], env);
    expect(r.status, why(r)).toBe(1);
    expect(r.stderr.split('\n').filter((l) => l.includes('reference loader (libbpf) is not available'))).toEqual([
      `matrix: the reference loader (libbpf) is not available on arm64 guests (${WHY}): 6.1-arm64 run ours only, their libbpf cells are errors`,
    ]);
    const k = kernelOf(r, '6.1-arm64');
    expect(k.guest).toBe('ok');
    expect(cellOf(k, 'task-fields').verdict).toBe('pass');
    expect([cellOf(k, 'task-fields', 'libbpf').verdict, cellOf(k, 'task-fields', 'libbpf').reason]).toEqual(['error', `the reference loader (libbpf) is not available on arm64 guests (${WHY})`]);
    expect(r.report.host.libbpf).toBeUndefined();

    const only = await matrix('no-cross-libbpf', ['--kernels', '6.1-arm64', '--suites', 'task-fields', '--loader', 'libbpf'], env);
    expect(only.status, why(only)).toBe(1);
    expect(only.report.kernels.map((x) => [x.kernel.id, x.guest, x.detail])).toEqual([
      ['6.1-arm64', 'harness-error', `the reference loader (libbpf) is not available on arm64 guests (${WHY}): not booted (--loader libbpf)`],
    ]);
  }, 900_000);
});
