// The agent, unchanged (dist/agent.js), in arm64 guests: Debian's arm64 kernels under
// qemu-system-aarch64 (TCG, -M virt), an arm64 initramfs (harness/images/arm64-image.ts: busybox,
// Debian's arm64 node with its libraries, koffi's arm64 module, libbpf), and one CO-RE suite
// (task-fields: a kprobe reading task_struct fields) compiled once for arm64
// (-D__TARGET_ARCH_arm64, vmlinux.h from Debian's arm64 6.1 BTF) and loaded by our loader with real
// bpf() calls (syscall 280 on arm64). Its cells come back on the result port as amd64 guests' do.
//
// Witnesses that are not our code: the host's kernel headers for the syscall numbers; binutils'
// readelf for what the arm64 binaries need; in the guest, the kernel's own answers (verified_insns
// of the loaded program from BPF_OBJ_GET_INFO_BY_FD, the kprobe's hit count and the pid it read,
// which the agent compares with /proc/thread-self), bpftool's task_struct.pid offset from each
// kernel's BTF (host truth), and `uname -r` in the hello line.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { objectsRootNames } from '../../harness/core/relo/patch.js';
import { MANIFEST_SCHEMA, type RunManifest } from '../../harness/agent/manifest.js';
import { archBaseEntries, buildArchImage } from '../../harness/images/arm64-image.js';
import { dynamicDeps } from '../../harness/images/arm64-elf-deps.js';
import { buildSuiteForArch, type ArchSuiteObject } from '../../harness/images/arm64-objects.js';
import { externalizedBuiltins } from '../../harness/images/arm64-userland.js';
import type { DebianArch } from '../../harness/kernels/arch.js';
import { kernelBtfIndexFile } from '../../harness/kernels/btf-index.js';
import { type KernelArtifacts, type KernelEntry, KernelStore } from '../../harness/kernels/store.js';
import type { CellResult } from '../../harness/results.js';
import { SYSCALL_NUMBERS } from '../../harness/runtime/arch-syscalls.js';
import { hostTruthOf } from '../../harness/suites/build.js';
import { hostKeysOf } from '../../harness/suites/truth.js';
import { type BootResult, bootGuest } from '../../harness/vm/arch.js';

type ArchEntry = KernelEntry & { arch: DebianArch };
const ARM64_61: ArchEntry = { id: '6.1-arm64', series: '6.1', flavour: 'generic', suites: ['bookworm'], arch: 'arm64' };
const ARM64_7X: ArchEntry = { id: '7.x-arm64', series: '7.x', flavour: 'generic', suites: ['trixie-backports', 'sid'], arch: 'arm64' };
const SUITE = 'task-fields';

describe('system call numbers per arch', () => {
  /** `#define __NR_<name> <n>` in a kernel uapi header installed on the host (linux-libc-dev). */
  const fromHeader = (file: string, name: string): number => {
    const m = new RegExp(`^#define __NR_${name}\\s+(\\d+)\\s*$`, 'm').exec(readFileSync(file, 'utf8'));
    if (!m) throw new Error(`${file}: no __NR_${name}`);
    return Number(m[1]);
  };
  const headers = { x64: '/usr/include/x86_64-linux-gnu/asm/unistd_64.h', arm64: '/usr/include/asm-generic/unistd.h' } as const;

  it('the runtime table equals the kernel headers: x86-64 asm/unistd_64.h, arm64 asm-generic/unistd.h', () => {
    for (const [arch, file] of Object.entries(headers) as [keyof typeof headers, string][]) {
      expect(existsSync(file), `${file} (apt-get install linux-libc-dev)`).toBe(true);
      for (const [name, nr] of Object.entries(SYSCALL_NUMBERS[arch])) expect([arch, name, nr]).toEqual([arch, name, fromHeader(file, name)]);
    }
    // The two tables differ where it matters: a wrong table would call another syscall.
    expect(SYSCALL_NUMBERS.arm64.bpf).toBe(280);
    expect(SYSCALL_NUMBERS.x64.bpf).toBe(321);
  });
});

describe('arm64 image parts', () => {
  let parts: Awaited<ReturnType<typeof archBaseEntries>>;
  beforeAll(async () => {
    parts = await archBaseEntries('arm64');
  }, 600_000);

  /** readelf (binutils reads any arch's ELF): machine, interpreter, NEEDED. */
  const readelf = (file: string) => {
    const h = execFileSync('readelf', ['-h', '-l', '-d', '-W', file], { encoding: 'utf8' });
    return {
      machine: /Machine:\s+(.*)/.exec(h)?.[1]?.trim(),
      interpreter: /\[Requesting program interpreter: (.*)\]/.exec(h)?.[1],
      needed: [...h.matchAll(/\(NEEDED\)\s+Shared library: \[(.*)\]/g)].map((m) => m[1]!),
    };
  };

  it("node, every library it loads, koffi's module and libbpf are aarch64; each NEEDED (as readelf reads it) is in the image", () => {
    const files = new Map(parts.entries.filter((e) => e.kind === 'file' && 'source' in e).map((e) => [e.path, (e as { source: string }).source]));
    const elfs = [...files].filter(([path]) => path === 'bin/node' || /\.so(\.|$)|\.node$/.test(path));
    expect(elfs.length).toBeGreaterThan(15);
    for (const [path, source] of elfs) {
      const r = readelf(source);
      expect([path, r.machine]).toEqual([path, 'AArch64']);
      const ours = dynamicDeps(readFileSync(source), path);
      expect([path, ours.needed]).toEqual([path, r.needed]);
      if (r.interpreter) {
        expect(ours.interpreter).toBe(r.interpreter);
        expect(files.has(r.interpreter.replace(/^\//, '')), `${path}: interpreter ${r.interpreter} in the image`).toBe(true);
      }
      for (const soname of r.needed) expect(files.has(`usr/lib/aarch64-linux-gnu/${soname}`), `${path} needs ${soname}`).toBe(true);
    }
    expect(readelf(files.get('bin/node')!).interpreter).toBe('/lib/ld-linux-aarch64.so.1');
    expect(parts.userland.nodeVersion).toMatch(/^20\./);
    expect(files.has('usr/lib/aarch64-linux-gnu/libbpf.so.1')).toBe(true);
    // koffi's arm64 module, at the version of the koffi whose JavaScript the agent bundles, in both places koffi looks.
    const bundled = /^\/\/ koffi (\S+)\n/.exec(readFileSync('dist/agent.js', 'latin1').slice(0, 64))?.[1];
    expect(parts.koffi.version).toBe(bundled);
    expect(files.get('node_modules/@koromix/koffi-linux-arm64/linux_arm64/koffi.node')).toBe(parts.koffi.native);
    expect(parts.entries).toContainEqual({ kind: 'symlink', path: 'build/koffi/linux_arm64/koffi.node', target: '../../../node_modules/@koromix/koffi-linux-arm64/linux_arm64/koffi.node' });
    // Debian's node reads its externalized builtins at start-up: each one named in libnode is in the image.
    const builtins = externalizedBuiltins(readFileSync(files.get('usr/lib/aarch64-linux-gnu/libnode.so.115')!));
    expect(builtins).toContain('/usr/share/nodejs/cjs-module-lexer/lexer.js');
    for (const b of builtins) expect(files.has(b.slice(1)), b).toBe(true);
    console.log(`[measure] arm64 userland: nodejs ${parts.userland.nodeVersion}, ${parts.userland.libraries.size} libraries, ${builtins.length} externalized builtins, from ${parts.userland.packages.length} packages; koffi ${parts.koffi.package}@${parts.koffi.version}`);
  });
});

describe('the agent in arm64 guests: one arm64 object, our loader, cells on the result port', () => {
  const store = new KernelStore();
  let suite: ArchSuiteObject;
  const offsets = new Map<string, number>();
  beforeAll(async () => {
    // One object for every arm64 kernel, compiled against the 6.1 arm64 header (as amd64's suites are against 6.1's).
    suite = await buildSuiteForArch(SUITE, 'arm64', (await store.fetch(ARM64_61)).btf);
  }, 600_000);
  afterAll(() => {
    // The field moved between the two kernels, and the one object read it right on both.
    if (offsets.size === 2) expect(new Set(offsets.values()).size).toBe(2);
  });

  async function runAgent(k: KernelArtifacts): Promise<{ r: BootResult; cells: CellResult[]; truth: Record<string, unknown>; imageMs: number }> {
    const spec = loadObjectSpec(readFileSync(suite.object), `${SUITE}.bpf.o`);
    const index = kernelBtfIndexFile({ path: k.btf, sha256: k.sha256.btf }, objectsRootNames([spec]));
    const truth = await hostTruthOf(k, hostKeysOf([suite.spec]));
    const manifest: RunManifest = {
      schema: MANIFEST_SCHEMA,
      kernel: { id: k.id, package: k.package, version: k.version, release: k.release, flavour: k.flavour, btf: 'kernel' },
      suites: [{ spec: suite.spec, object: `/cm/objects/${SUITE}.bpf.o`, sha256: suite.sha256 }],
      objects: [], hostTruth: truth, suiteTimeoutMs: 120_000, loader: 'ours',
      btfIndex: { btf: '/cm/kernel.btf', index: '/cm/kernel.btf.idx' },
    };
    const image = await buildArchImage({
      arch: 'arm64', kernelConfig: k.config, release: k.release,
      files: [
        { path: '/cm/run.json', data: JSON.stringify(manifest) },
        { path: `/cm/objects/${SUITE}.bpf.o`, source: suite.object },
        { path: '/cm/kernel.btf', source: k.btf },
        { path: '/cm/kernel.btf.idx', source: index },
      ],
    });
    const r = await bootGuest({ arch: 'arm64', vmlinuz: k.vmlinuz, initrd: image.path, timeoutMs: 400_000 });
    const cells = r.messages.flatMap((m) => (m.t === 'result' && m.kind === 'cell' ? [m.data as CellResult] : []));
    return { r, cells, truth, imageMs: image.buildMs };
  }

  function expectLoadedAndRight(k: KernelArtifacts, run: Awaited<ReturnType<typeof runAgent>>): void {
    const { r, cells, truth } = run;
    const why = `${r.detail ?? ''}\n${r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n')}\n${r.console.slice(-30).join('\n')}`;
    expect(r.verdict, why).toBe('ok');
    expect(r.release).toBe(k.release);
    // The agent says what `uname -m` says (the arm64 node's process.arch is 'arm64').
    expect(r.machine).toBe('aarch64');
    expect(cells, why).toHaveLength(1);
    const c = cells[0]!;
    expect(c.reason, why).toBeUndefined();
    expect([c.suite, c.program, c.loader, c.verdict]).toEqual([SUITE, 'set_task_comm', 'ours', 'pass']);
    expect(c.object.sha256).toBe(suite.sha256);
    expect(c.kernel.release).toBe(k.release);
    // The kernel verified it (bpf_prog_info.verified_insns of the loaded program).
    expect(c.verifier?.insnsProcessed).toBeGreaterThan(20);
    // The kprobe ran once, in the kernel, and read this guest's pid through the relocated offset.
    const check = (name: string) => c.checks.find((x) => x.name === name)!;
    for (const x of c.checks) expect([x.name, x.ok, x.observed]).toEqual([x.name, true, x.truth]);
    expect(check('kprobe hits').observed).toBe(1);
    expect(check('pid via BPF_CORE_READ').source).toMatch(/^agent: /);
    // The relocated offset is bpftool's, from this kernel's BTF.
    expect(check('relocated offset of pid').observed).toBe(truth['offset.task_struct.pid']);
    const pid = c.relocations.find((x) => x.type === 'struct task_struct' && x.spec === 'pid')!;
    expect(pid.target).toBe(truth['offset.task_struct.pid']);
    offsets.set(k.id, pid.target as number);
    // An arm64 object: BPF_KPROBE's arguments are regs[0] and regs[1] of arm64's struct user_pt_regs.
    expect(c.relocations.filter((x) => x.type === 'struct user_pt_regs').map((x) => [x.spec, x.target]).sort()).toEqual([['regs[0]', 0], ['regs[1]', 8]]);
  }

  const measure = (k: KernelArtifacts, run: Awaited<ReturnType<typeof runAgent>>) => {
    const { r, cells } = run;
    const phases = r.messages.find((m) => m.t === 'log' && m.msg.startsWith('agent phases:'));
    const c = cells[0];
    // The kernel's own timestamp of its last words.
    const off = r.console.map((l) => /^\[\s*(\d+\.\d+)\] reboot: Power down/.exec(l)).find(Boolean)?.[1];
    return `[measure] ${k.package} ${k.version} (arm64, TCG, neoverse-n1): image ${run.imageMs} ms; /init at ${r.initMs} ms guest uptime, agent hello at ${r.helloBootMs} ms (node + agent start ${r.helloBootMs! - r.initMs!} ms), suite load ${c?.timings.loadMs} ms + run ${c?.timings.runMs} ms, power down at ${off} s guest uptime, ${r.wallMs} ms after spawn\n  ${phases && 'msg' in phases ? phases.msg : ''}`;
  };

  it('7.3 arm64 (the newest 7.x the store finds): task-fields loads, attaches and passes', async () => {
    const k = await store.fetch(ARM64_7X);
    const run = await runAgent(k);
    expectLoadedAndRight(k, run);
    console.log(measure(k, run));
  }, 600_000);

  it('6.1 arm64: the same object loads, attaches and passes', async () => {
    const k = await store.fetch(ARM64_61);
    const run = await runAgent(k);
    expectLoadedAndRight(k, run);
    console.log(measure(k, run));
  }, 600_000);
});
