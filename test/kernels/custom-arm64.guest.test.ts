// Custom arm64 kernels booted for real (issue 19): linux-source-6.12 + CONFIG_NET_NS=n, cross-built
// for arm64 (custom-arm64.test.ts builds them, cached by recipe), under qemu-system-aarch64 -M virt
// (TCG) with the arm64 image, the suites compiled for arm64 and our loader. The kernel's config
// (kernels/configs/base-arm64.config) must give the guests their console (PL011, ttyAMA0), their
// result port (the 16550 on virt's PCIe bus) and what the suites attach to: kprobes, and fentry
// through arm64's ftrace direct calls, which Debian's 6.1 arm64 kernel lacks.
//
// Witnesses that are not our code: the kernel's own console (`Machine model:`, the PL011 and the
// PCI 16550 as it probed them), `uname -m` and `uname -r` in the agent's hello, the kernel's
// config file, and, inside the guest, the kernel's answers the suites' checks compare (the
// verifier's acceptance, the fentry program's ring buffer records, /proc/self/ns/net's absence).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runMatrix } from '../../harness/matrix/run.js';
import { KernelStore, type KernelArtifacts } from '../../harness/kernels/store.js';
import { listSuites } from '../../harness/suites/build.js';
import type { CellResult, KernelRun, RunReport } from '../../harness/results.js';
import { ensureBuilt } from '../helpers/tools.js';
import { ARM64_KERNEL_BTF, ARM64_PAHOLE_BTF, arm64PaholeWanted } from './custom-arm64-entries.js';

/** The pahole build is a second cross build: taken when already built or asked for (CM_ARM64_PAHOLE=1). */
const paholeWanted = await arm64PaholeWanted();
if (!paholeWanted) console.log('custom arm64 btf: pahole skipped: not built yet (CM_ARM64_PAHOLE=1 builds it, about 13 min)');

const why = (k: KernelRun) => `${k.guest} ${k.detail ?? ''}\n${k.cells.filter((c) => c.verdict !== 'pass').map((c) => `${c.suite}/${c.program}: ${c.verdict} ${c.reason}`).join('\n')}\n${k.consoleTail ?? ''}`;
const cellOf = (k: KernelRun, suite: string): CellResult => k.cells.find((c) => c.suite === suite && c.loader === 'ours')!;
/** The agent's hello on the result port, as the run kept it. */
function hello(out: string, id: string): { machine?: string; release?: string } | undefined {
  return readFileSync(join(out, 'guests', `${id}.ttyS1.log`), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { t: string; machine?: string; release?: string }).find((m) => m.t === 'hello');
}
/** Suites whose spec needs a kernel module: a custom kernel has none (tinyconfig: CONFIG_MODULES=n, and tun/null_blk are not built in). */
const MODULE_SUITES = ['block-io', 'module-btf'];

describe('custom arm64 kernel, btf: kernel, every suite with our loader (qemu-system-aarch64, TCG)', () => {
  let r: RunReport;
  let k: KernelRun;
  let built: KernelArtifacts;
  const out = mkdtempSync(join(tmpdir(), 'cm-custom-arm64-'));
  beforeAll(async () => {
    ensureBuilt();
    built = await new KernelStore().fetch(ARM64_KERNEL_BTF);
    const t0 = Date.now();
    r = await runMatrix({ kernels: [], entries: [ARM64_KERNEL_BTF], loader: 'ours', jobs: 1, accel: 'tcg', outDir: out, runId: 'custom-arm64', log: () => {} });
    k = r.kernels.find((x) => x.kernel.id === ARM64_KERNEL_BTF.id)!;
    console.log(`[measure] custom arm64 (btf: kernel), ${listSuites().length} suites, loader ours: ${Date.now() - t0} ms wall, guest ${k.durationMs} ms, agent hello at ${k.bootMs} ms; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}; ${k.cells.map((c) => `${c.suite}: ${c.verdict}${c.reason ? ` (${c.reason})` : ''}`).join('; ')}`);
  }, 150 * 60_000);

  it('boots: the guest is ok, an aarch64 machine on QEMU\'s virt board running the custom release', () => {
    expect(k.guest, why(k)).toBe('ok');
    expect([k.kernel.arch, k.kernel.btf, k.kernel.release, k.accel]).toEqual(['arm64', 'kernel', built.release, 'tcg']);
    expect([hello(out, k.kernel.id)?.machine, hello(out, k.kernel.id)?.release]).toEqual(['aarch64', built.release]);
    const console_ = readFileSync(join(out, 'guests', `${k.kernel.id}.console.log`), 'utf8');
    expect(console_).toMatch(/Machine model: linux,dummy-virt/);
    // The console is the PL011; the result port is the 8250 the kernel found on virt's PCIe bus.
    expect(console_).toMatch(/ttyAMA0 at MMIO 0x9000000 .*is a PL011/);
    expect(console_).toMatch(/0000:00:0\d\.0: ttyS0 at I\/O 0x\w+ \(irq = \d+, base_baud = \d+\) is a 16550A/);
  });

  it('every suite passes but the two that need a kernel module, which are expected skips saying so', () => {
    const suites = listSuites();
    expect(new Set(k.cells.map((c) => c.suite))).toEqual(new Set(suites));
    for (const c of k.cells) {
      if (MODULE_SUITES.includes(c.suite)) {
        expect([c.suite, c.verdict]).toEqual([c.suite, 'expected-skip']);
        expect(c.reason).toMatch(/module|CONFIG_/);
      } else {
        expect([c.suite, c.program, c.verdict, c.reason]).toEqual([c.suite, c.program, 'pass', undefined]);
        for (const x of c.checks) expect([c.suite, x.name, x.ok]).toEqual([c.suite, x.name, true]);
      }
    }
  });

  it('fentry attaches on this arm64 kernel (its config has the direct calls Debian\'s 6.1 arm64 lacks) and its ring buffer records arrive', () => {
    expect(readFileSync(built.config, 'utf8')).toMatch(/^CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS=y$/m);
    const c = cellOf(k, 'ringbuf-fentry');
    expect(c.verdict, why(k)).toBe('pass');
    expect(c.checks.length).toBeGreaterThan(0);
  });

  it('the seed\'s !CONFIG_NET_NS branch: no /proc/self/ns/net, the guarded skc_net.net read poisoned and unreachable', () => {
    const netns = cellOf(k, 'netns');
    expect(netns.checks.find((c) => c.name === 'netns inode')?.observed).toBe(0);
    expect(netns.externs.find((e) => e.name === 'CONFIG_NET_NS')?.value).toBeNull();
    const net = netns.relocations.filter((x) => x.spec.includes('skc_net.net'));
    expect(net.length).toBeGreaterThan(0);
    for (const x of net) expect(x.status).toBe('poisoned');
    // BPF_KPROBE's arguments come from arm64's register file.
    expect(cellOf(k, 'task-fields').relocations.filter((x) => x.type === 'struct user_pt_regs').map((x) => [x.spec, x.target]).sort()).toEqual([['regs[0]', 0], ['regs[1]', 8]]);
  });
});

describe.runIf(paholeWanted)('custom arm64 kernel, btf: pahole (qemu-system-aarch64, TCG; when built or CM_ARM64_PAHOLE=1)', () => {
  it('relocates against the BTF pahole made from the arm64 vmlinux (shipped into the guest); fentry is the expected skip it must be', async () => {
    ensureBuilt();
    const out = mkdtempSync(join(tmpdir(), 'cm-custom-arm64-pahole-'));
    const t0 = Date.now();
    const r = await runMatrix({ kernels: [], entries: [ARM64_PAHOLE_BTF], suites: ['netns', 'kconfig', 'task-fields', 'ringbuf-fentry'], loader: 'ours', jobs: 1, accel: 'tcg', outDir: out, runId: 'custom-arm64-pahole', log: () => {} });
    const k = r.kernels.find((x) => x.kernel.id === ARM64_PAHOLE_BTF.id)!;
    console.log(`[measure] custom arm64 (btf: pahole), 4 suites, loader ours: ${Date.now() - t0} ms wall, guest ${k.durationMs} ms`);
    expect(k.guest, why(k)).toBe('ok');
    expect([k.kernel.arch, k.kernel.btf]).toEqual(['arm64', 'pahole']);
    expect(hello(out, k.kernel.id)?.machine).toBe('aarch64');
    for (const s of ['netns', 'kconfig', 'task-fields']) expect([s, cellOf(k, s).verdict], why(k)).toEqual([s, 'pass']);
    expect(cellOf(k, 'kconfig').checks.find((c) => c.name === 'CONFIG_NET_NS')).toMatchObject({ observed: 0, truth: 0, ok: true });
    const fentry = cellOf(k, 'ringbuf-fentry');
    expect(fentry.verdict).toBe('expected-skip');
    expect(fentry.reason).toMatch(/needs the kernel's own BTF .*this kernel was built without CONFIG_DEBUG_INFO_BTF \(BTF from pahole\)/);
  }, 150 * 60_000);
});
