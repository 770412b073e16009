// Custom arm64 kernels (issue 19): Debian's linux-source-6.12 cross-built for arm64 with the
// machine's gcc-aarch64-linux-gnu (make ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- Image), once per
// recipe, then cached. Host side: what the recipe hashes (the arch and the cross compiler's
// version), the config the guests need (kernels/configs/base-arm64.config), the Image, and the BTF
// both ways (the kernel's own .BTF, and pahole run over the arm64 vmlinux's DWARF). The guest side
// is custom-arm64.guest.test.ts. Also ccache's per-build count, held against ccache's own.
//
// Witnesses that are not our code: `aarch64-linux-gnu-gcc --version`, file(1) on the Image,
// bpftool on the BTF files, Kconfig's own .config, ccache --show-log-stats.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { archKernelBuild } from '../../harness/kernels/arch.js';
import { ccacheStatsFromLog, effectiveFragment, parseConfigLines, RECIPE_VERSION, recipeHash } from '../../harness/kernels/build.js';
import { findImageBtf } from '../../harness/kernels/extract-arm64.js';
import { loadMatrix } from '../../harness/kernels/matrix.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { onPath } from '../../harness/tools.js';
import { ARM64_KERNEL_BTF, ARM64_PAHOLE_BTF, arm64PaholeWanted } from './custom-arm64-entries.js';

/** The pahole build is a second cross build: taken when already built or asked for (CM_ARM64_PAHOLE=1). */
const paholeWanted = await arm64PaholeWanted();
if (!paholeWanted) console.log('custom arm64 btf: pahole skipped: not built yet (CM_ARM64_PAHOLE=1 builds it, about 13 min)');

const firstLine = (cmd: string) => execFileSync(cmd, ['--version'], { encoding: 'utf8' }).split('\n')[0]!.trim();

interface BpftoolType { id: number; kind: string; name: string; size?: number; vlen?: number; members?: { name: string }[] }
const bpftoolTypes = (btf: string): BpftoolType[] => (JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', btf], { maxBuffer: 1 << 30, encoding: 'utf8' })) as { types: BpftoolType[] }).types;

/** What every arm64 guest needs of the kernel's config (harness/vm/arch.ts's devices, the suites' attach kinds). */
function expectGuestConfig(config: Map<string, string>): void {
  for (const o of ['CONFIG_ARM64', 'CONFIG_SERIAL_AMBA_PL011', 'CONFIG_SERIAL_AMBA_PL011_CONSOLE', 'CONFIG_PCI_HOST_GENERIC', 'CONFIG_SERIAL_8250', 'CONFIG_SERIAL_8250_PCI',
    'CONFIG_BLK_DEV_INITRD', 'CONFIG_DEVTMPFS', 'CONFIG_BPF_SYSCALL', 'CONFIG_BPF_JIT', 'CONFIG_KPROBES', 'CONFIG_KPROBE_EVENTS', 'CONFIG_BPF_EVENTS',
    'CONFIG_DYNAMIC_FTRACE_WITH_ARGS', 'CONFIG_DYNAMIC_FTRACE_WITH_CALL_OPS', 'CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS', 'CONFIG_DEBUG_INFO_DWARF5']) {
    expect([o, config.get(o)]).toEqual([o, 'y']);
  }
  expect(config.get('CONFIG_NET_NS')).toBe('n');
  expect(config.get('CONFIG_NAMESPACES')).toBe('y');
  expect(config.get('CONFIG_ACPI') ?? 'n').toBe('n');
}

describe('the arm64 build recipe', () => {
  it('cross-compiles on this x86-64 host: ARCH=arm64, aarch64-linux-gnu-, arch/arm64/boot/Image (amd64 stays native bzImage)', () => {
    expect(archKernelBuild('arm64', 'x64')).toEqual({ kernelArch: 'arm64', target: 'Image', image: 'arch/arm64/boot/Image', crossCompile: 'aarch64-linux-gnu-', compilerPackage: 'gcc-aarch64-linux-gnu' });
    expect(archKernelBuild('arm64', 'arm64').crossCompile).toBe('');
    expect(archKernelBuild('amd64', 'x64')).toEqual({ kernelArch: 'x86', target: 'bzImage', image: 'arch/x86/boot/bzImage', crossCompile: '', compilerPackage: 'gcc' });
  });

  it('applies base.config, then base-arm64.config, then the entry\'s fragment; amd64\'s text has no arm64 lines', () => {
    const arm = effectiveFragment(ARM64_KERNEL_BTF.build!, 'arm64');
    const at = (s: string) => arm.indexOf(s);
    expect(at('# kernels/configs/base.config')).toBe(0);
    expect(at('# kernels/configs/base-arm64.config')).toBeGreaterThan(at('CONFIG_BPF_SYSCALL=y'));
    expect(at('CONFIG_SERIAL_AMBA_PL011=y')).toBeGreaterThan(at('# kernels/configs/base-arm64.config'));
    expect(at('# CONFIG_NET_NS is not set')).toBeGreaterThan(at('CONFIG_SERIAL_AMBA_PL011=y'));
    // base-arm64.config turns off what base.config asks for amd64 (ACPI): later lines win.
    expect(parseConfigLines(arm).get('CONFIG_ACPI')).toBe('n');
    const amd = effectiveFragment(loadMatrix().find((k) => k.id === '6.12-nonetns')!.build!);
    expect(amd).not.toContain('base-arm64');
    expect(parseConfigLines(amd).get('CONFIG_ACPI')).toBe('y');
  });

  it('hashes the arch and the cross compiler\'s version; an amd64 recipe hashes as it did before arches', async () => {
    const store = new KernelStore();
    const r = await store.recipe(ARM64_KERNEL_BTF, ARM64_KERNEL_BTF.build!);
    const pahole = firstLine('pahole');
    const cross = firstLine('aarch64-linux-gnu-gcc');
    expect(cross).toMatch(/^aarch64-linux-gnu-gcc /);
    const arm = { recipe: RECIPE_VERSION, arch: 'arm64' as const, source: 'linux-source-6.12', sourceVersion: r.src.version, fragment: effectiveFragment(ARM64_KERNEL_BTF.build!, 'arm64'), gcc: cross, pahole };
    expect(r.hash).toBe(recipeHash(arm));
    expect(r.hash).not.toBe(recipeHash({ ...arm, gcc: firstLine('gcc') }));
    const { arch: _arch, ...noArch } = arm;
    expect(r.hash).not.toBe(recipeHash(noArch));
    const e = loadMatrix().find((k) => k.id === '6.12-nonetns')!;
    const a = await store.recipe(e, e.build!);
    expect(a.hash).toBe(recipeHash({ recipe: RECIPE_VERSION, source: 'linux-source-6.12', sourceVersion: a.src.version, fragment: effectiveFragment(e.build!), gcc: firstLine('gcc'), pahole }));
  });
});

describe.runIf(onPath('ccache'))('ccache counts', () => {
  it('one build\'s hits and misses from its stats log are what ccache --show-log-stats says', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-ccache-'));
    writeFileSync(join(dir, 'a.c'), 'int f(void) { return 1; }\n');
    writeFileSync(join(dir, 'b.c'), 'int g(void) { return 2; }\n');
    const env = { ...process.env, CCACHE_DIR: join(dir, 'cache'), CCACHE_STATSLOG: join(dir, 'stats.log') };
    const cc = (...args: string[]) => execFileSync('ccache', ['gcc', ...args], { cwd: dir, env, stdio: 'pipe' });
    cc('-c', 'a.c', '-o', 'a.o');
    cc('-c', 'a.c', '-o', 'a.o');
    cc('-c', 'b.c', '-o', 'b.o');
    cc('a.o', 'b.o', '-shared', '-o', 'ab.so');
    const mine = ccacheStatsFromLog(readFileSync(join(dir, 'stats.log'), 'utf8'));
    expect(mine).toEqual({ hits: 1, misses: 2, other: 1 });
    const theirs = execFileSync('ccache', ['--show-log-stats'], { env, encoding: 'utf8' });
    expect(theirs).toMatch(new RegExp(`^\\s+Hits:\\s+${mine.hits} / ${mine.hits + mine.misses}\\b`, 'm'));
    expect(theirs).toMatch(new RegExp(`^\\s+Misses:\\s+${mine.misses} / ${mine.hits + mine.misses}\\b`, 'm'));
  });
});

describe('custom arm64 kernel: linux-source-6.12 + CONFIG_NET_NS=n, cross-built (cached by recipe)', () => {
  const store = new KernelStore({ log: (l) => console.log(l) });

  it('btf: kernel: an arm64 Image of the configured release, the guests\' devices and fentry\'s trampolines built in, the kernel\'s own BTF', async () => {
    const t0 = Date.now();
    const k = await store.fetch(ARM64_KERNEL_BTF);
    console.log(`[measure] custom arm64 ${k.release} (btf: kernel): ${((Date.now() - t0) / 1000).toFixed(1)} s here (${k.build?.seconds ?? '?'} s build); Image ${k.sizes.vmlinuz} bytes, BTF ${k.sizes.btf} bytes`);
    expect([k.arch, k.flavour, k.btfSource, k.package]).toEqual(['arm64', 'custom', 'kernel', 'linux-source-6.12']);
    expect(k.release).toMatch(/^6\.12\.\d+-corematrix$/);
    expect(k.banner.split(' ')[0]).toBe(k.release);
    expect(k.compression).toBe('Image');
    expect(execFileSync('file', ['-b', k.vmlinuz], { encoding: 'utf8' })).toMatch(/^Linux kernel ARM64 boot executable Image, little-endian, 4K pages/);
    expect(readFileSync(k.vmlinuz).toString('latin1')).toContain(`Linux version ${k.release} `);
    // The manifest's log is the cross build's: make was told the arch and the cross compiler.
    expect(readFileSync(k.build!.log, 'utf8')).toMatch(/^### make Image: make O=\S+ ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- (CC=ccache aarch64-linux-gnu-gcc HOSTCC=ccache gcc )?-j\d+ Image$/m);
    const config = parseConfigLines(readFileSync(k.config, 'utf8'));
    expectGuestConfig(config);
    expect(config.get('CONFIG_DEBUG_INFO_BTF')).toBe('y');
    // The BTF the store kept is the Image's own (what /sys/kernel/btf/vmlinux serves), and bpftool
    // reads arm64's register file and the seed's empty possible_net_t in it.
    expect(findImageBtf(readFileSync(k.vmlinuz)).btf.equals(readFileSync(k.btf))).toBe(true);
    const types = bpftoolTypes(k.btf);
    expect(types.find((t) => t.kind === 'STRUCT' && t.name === 'user_pt_regs')?.members?.map((m) => m.name)).toEqual(['regs', 'sp', 'pc', 'pstate']);
    const netT = types.find((t) => t.kind === 'TYPEDEF' && t.name === 'possible_net_t') as BpftoolType & { type_id: number };
    expect(types.find((t) => t.id === netT.type_id)).toMatchObject({ kind: 'STRUCT', size: 0, vlen: 0 });
  }, 120 * 60_000);

  it.runIf(paholeWanted)('btf: pahole (when built or CM_ARM64_PAHOLE=1): built without CONFIG_DEBUG_INFO_BTF, its BTF made by pahole from the arm64 vmlinux\'s DWARF', async () => {
    const t0 = Date.now();
    const k = await store.fetch(ARM64_PAHOLE_BTF);
    console.log(`[measure] custom arm64 ${k.release} (btf: pahole): ${((Date.now() - t0) / 1000).toFixed(1)} s here (${k.build?.seconds ?? '?'} s build); BTF ${k.sizes.btf} bytes`);
    expect([k.arch, k.btfSource]).toEqual(['arm64', 'pahole']);
    const config = parseConfigLines(readFileSync(k.config, 'utf8'));
    expectGuestConfig(config);
    expect(config.get('CONFIG_DEBUG_INFO_BTF')).toBe('n');
    expect(readFileSync(k.build!.log, 'utf8')).toMatch(/^### pahole: pahole -J --btf_encode_detached=\S+ \S+\/vmlinux$/m);
    expect(() => findImageBtf(readFileSync(k.vmlinuz))).toThrow(/no vmlinux BTF in the image/);
    const types = bpftoolTypes(k.btf);
    expect(types.length).toBeGreaterThan(10_000);
    expect(types.find((t) => t.kind === 'STRUCT' && t.name === 'user_pt_regs')?.members?.map((m) => m.name)).toEqual(['regs', 'sp', 'pc', 'pstate']);
    expect(types.some((t) => t.kind === 'STRUCT' && t.name === 'task_struct')).toBe(true);
  }, 120 * 60_000);
});
