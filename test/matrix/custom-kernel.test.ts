// The seed's machines, booted for real: a kernel built from linux-source-6.12 with
// CONFIG_NET_NS=n and without CONFIG_DEBUG_INFO_BTF. Our loader relocates against the BTF pahole
// made from the kernel's DWARF (shipped into the guest), the netns and kconfig suites show the
// !CONFIG_NET_NS branch being taken, fentry is an expected skip (it needs the kernel's own BTF),
// and the same kernel with no BTF shipped at all is the `no-btf` guest verdict.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadMatrix, type KernelEntry } from '../../harness/kernels/matrix.js';
import { runMatrix, runPassed } from '../../harness/matrix/run.js';
import { renderMarkdown } from '../../harness/report/markdown.js';
import { diffKernels } from '../../harness/report/diff.js';
import { ensureBuilt } from '../helpers/tools.js';

describe('custom kernel 6.12-nonetns in a real guest (TCG)', () => {
  it('relocates against pahole BTF, takes the !CONFIG_NET_NS branch, and says where the BTF came from', async () => {
    ensureBuilt();
    const base = loadMatrix().find((k) => k.id === '6.12-nonetns')!;
    const noBtf: KernelEntry = { ...base, id: 'test-6.12-nonetns-nobtf', build: { ...base.build!, btf: 'none' } };
    const r = await runMatrix({
      kernels: [], entries: [base, noBtf], suites: ['netns', 'kconfig', 'ringbuf-fentry', 'task-fields', 'renamed-field'],
      // Both loaders: libbpf, given pahole's BTF as btf_custom_path, is the witness for ours.
      loader: 'both', jobs: 2, accel: 'tcg', outDir: mkdtempSync(join(tmpdir(), 'cm-custom-')), runId: 'custom', log: () => {},
    });
    const k = r.kernels.find((x) => x.kernel.id === '6.12-nonetns')!;
    const why = `${k.guest} ${k.detail ?? ''}\n${k.cells.filter((c) => c.verdict !== 'pass').map((c) => `${c.suite}/${c.program}: ${c.verdict} ${c.reason}`).join('\n')}\n${k.consoleTail ?? ''}`;
    expect(k.guest, why).toBe('ok');
    expect(k.kernel.btf).toBe('pahole');
    expect(k.kernel.release).toMatch(/^6\.12\.\d+-corematrix$/);
    const cell = (suite: string) => k.cells.find((c) => c.suite === suite && c.loader === 'ours')!;
    for (const c of k.cells) expect(c.kernel.btf).toBe('pahole');

    // netns: the guarded read is not taken; the unreachable relocation of skc_net.net is poisoned.
    const netns = cell('netns');
    expect(netns.verdict, why).toBe('pass');
    const inode = netns.checks.find((c) => c.name === 'netns inode')!;
    expect(inode.observed).toBe(0);
    expect(inode.source).toMatch(/no \/proc\/self\/ns\/net .*, so 0$/);
    // `# CONFIG_NET_NS is not set`: the __weak extern stays unresolved (reported null) and reads 0.
    expect(netns.externs.find((e) => e.name === 'CONFIG_NET_NS')?.value).toBeNull();
    const net = netns.relocations.filter((x) => x.spec.includes('skc_net.net'));
    expect(net.length).toBeGreaterThan(0);
    for (const x of net) expect(x.status).toBe('poisoned');
    // kconfig: the extern says NET_NS is off, as the kernel's own config does.
    const kc = cell('kconfig');
    expect(kc.verdict, why).toBe('pass');
    const nsCheck = kc.checks.find((c) => c.name === 'CONFIG_NET_NS')!;
    expect(nsCheck.observed).toBe(0);
    expect(nsCheck.truth).toBe(0);
    expect(nsCheck.ok).toBe(true);
    // fentry needs BTF inside the kernel: an expected skip that says so.
    const fentry = cell('ringbuf-fentry');
    expect(fentry.verdict).toBe('expected-skip');
    expect(fentry.reason).toMatch(/needs the kernel's own BTF \(fentry program \S+ attaches by BTF id\); this kernel was built without CONFIG_DEBUG_INFO_BTF \(BTF from pahole\)/);
    expect(cell('task-fields').verdict, why).toBe('pass');
    expect(cell('renamed-field').verdict, why).toBe('pass');
    // libbpf in the same guest loaded every program ours did, with the same translated
    // instructions (the poisoned netns read included), and skipped fentry for the same reason.
    const theirs = k.cells.filter((c) => c.loader !== 'ours');
    expect(theirs.map((c) => `${c.suite}/${c.program}`).sort()).toEqual(k.cells.filter((c) => c.loader === 'ours').map((c) => `${c.suite}/${c.program}`).sort());
    for (const c of theirs) expect(c.verdict, `${c.suite}/${c.program} (${c.loader}): ${c.reason}`).toBe(c.suite === 'ringbuf-fentry' ? 'expected-skip' : 'pass');

    // The same kernel with no BTF shipped: a distinct guest verdict, every cell a failing skip.
    const n = r.kernels.find((x) => x.kernel.id === 'test-6.12-nonetns-nobtf')!;
    expect(n.guest, `${n.guest} ${n.detail}\n${n.consoleTail ?? ''}`).toBe('no-btf');
    expect(n.detail).toMatch(/\/sys\/kernel\/btf\/vmlinux is missing \(kernel built without CONFIG_DEBUG_INFO_BTF\)/);
    expect(n.kernel.btf).toBe('none');
    expect(n.cells.length).toBeGreaterThan(0);
    for (const c of n.cells) expect(c.verdict).toBe('skip');
    expect(runPassed(r)).toBe(false);

    // The report says where each kernel's BTF came from.
    const md = renderMarkdown(r, diffKernels(r));
    expect(md).toContain('BTF: pahole (from DWARF)');
    expect(md).toContain('BTF: none');
  }, 45 * 60_000);
});
