// kfuncs in real guests (TCG), each witnessed by the current libbpf (1.8, built from the newest
// Debian linux-source) loading the same object in the same kernel, and by the kernel's answers
// (the verifier's verdict and messages, BPF_PROG_TEST_RUN return values):
//  - kfunc_weak.bpf.c: __weak kfuncs the kernel lacks become libbpf's poisoned call (the verifier
//    names #2002000006 when it is reached; bpf_ksym_exists() guards skip it), `___flavour` externs
//    resolve by their base name when the prototypes are compatible and stay unresolved otherwise;
//  - kfunc_module.bpf.c: nf_conntrack's kfuncs, from the module's BTF: its BTF object fd in the
//    fd_array and the call's `off` naming it (5.16+), a ld_imm64 of a module kfunc (6.4+).
// On 5.10 (no kfuncs, no module BTF) both loaders refuse the module object alike.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { libbpfExternOrder } from '../../harness/core/object/externs.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { compileBpf } from '../helpers/tools.js';
import type { CaseReport, KfuncArenaReport } from './fixtures/kfunc-arena-guest.js';
import { runCases, type HostCase } from './fixtures/kfunc-arena-run.js';

const fixture = (n: string) => fileURLToPath(new URL(`./fixtures/${n}.bpf.c`, import.meta.url));

/** nf_conntrack and what it needs: libcrc32c asks the crypto API for crc32c, a module of its own on 5.10 and 6.1. */
const MODULES: Record<string, string[]> = { '5.10': ['crc32c_generic', 'nf_conntrack'], '6.1': ['crc32c_generic', 'nf_conntrack'], '7.3': ['nf_conntrack'] };

function cases(): HostCase[] {
  const weak = compileBpf(fixture('kfunc_weak'));
  const mod = compileBpf(fixture('kfunc_module'));
  return [
    { name: 'kfunc_weak', object: weak, runs: [{ program: 'flavoured', input: 'packet' }, { program: 'guarded', input: 'packet' }, { program: 'incompatible', input: 'packet' }] },
    { name: 'kfunc_module', object: mod, runs: [{ program: 'skb_lookup', input: 'packet' }, { program: 'xdp_lookup', input: 'packet' }, { program: 'module_kfunc_address', input: 'packet' }] },
    // The same, with our loader reading the modules' BTF from the kernel (BPF_OBJ_GET_INFO_BY_FD) instead of being handed /sys/kernel/btf/<module>.
    { name: 'kfunc_module (module BTF from the kernel)', object: mod, moduleBtfFiles: false, runs: [{ program: 'skb_lookup', input: 'packet' }] },
  ];
}

const byName = (rep: KfuncArenaReport, name: string): CaseReport => {
  const c = rep.cases.find((x) => x.name === name);
  expect(c, `no case ${name}`).toBeDefined();
  return c!;
};
const status = (v: CaseReport['ours'], program: string) => v.programs.find((p) => p.name === program)?.status;

/** Every program: libbpf and ours agree (verdict, and identical xlated instructions when loaded), and ran to the same values. */
function expectSameAsLibbpf(c: CaseReport): void {
  for (const cmp of c.comparisons) expect(cmp.verdict, `${c.name}: ${cmp.line}`).toBe('same');
  expect(c.ours.runs, `${c.name}: BPF_PROG_TEST_RUN, ours vs libbpf`).toEqual(c.libbpf.runs);
}

function show(kernel: string, rep: KfuncArenaReport & { libbpf: string }): void {
  console.log(`[measure] ${kernel} vs ${rep.libbpf}; kernel BTFs: ${rep.kernelBtfs.join(' ')}\n  ${rep.cases.map((c) => `${c.name}: ${c.ours.error ? `ours refused it: ${c.ours.error}; ` : ''}runs ours ${JSON.stringify(c.ours.runs)} libbpf ${JSON.stringify(c.libbpf.runs)}\n    ${c.comparisons.map((x) => x.line).join('\n    ')}`).join('\n  ')}`);
}

/**
 * Our reading of libbpf's extern list (the order it resolves ksyms in and numbers poisoned calls
 * by; kconfig offsets) against the list libbpf printed while it opened the same object.
 */
function expectLibbpfExternList(c: CaseReport): void {
  const object = cases().find((x) => x.name === c.name)!.object;
  const spec = loadObjectSpec(new Uint8Array(readFileSync(object)), object);
  const ours = libbpfExternOrder(spec.externs).map((i, index) => {
    const e = spec.externs[i]!;
    return { index, name: e.name, ...(e.kind === 'kconfig' ? { offset: e.offset } : {}) };
  });
  expect(c.libbpfExterns.length, `${c.name}: libbpf printed its extern list`).toBeGreaterThan(0);
  expect(ours, c.name).toEqual([...c.libbpfExterns].sort((a, b) => a.index - b.index));
}

/** The reached poisoned call, as the verifier and libbpf name it. */
function expectPoisonedCall(c: CaseReport): void {
  expectLibbpfExternList(c);
  expect(status(c.ours, 'reached')).toBe('rejected');
  expect(status(c.libbpf, 'reached')).toBe('rejected');
  // The verifier quotes the helper id our loader wrote: 2002000000 + the extern's position in
  // libbpf's sorted extern list (CONFIG_CORE_Z, CONFIG_CORE_A, bpf_cgroup_from_id___mine,
  // bpf_cgroup_release___fwd, bpf_cgroup_release___mine, bpf_corematrix_absent,
  // corematrix_missing_kfunc), which libbpf printed.
  expect(c.ours.programs.find((p) => p.name === 'reached')!.reason).toBe("verifier rejected it: kfunc 'corematrix_missing_kfunc' is referenced but wasn't resolved (invalid func unknown#2002000006)");
  // libbpf wrote the same immediate into its own load of the program: the verifier quotes it.
  expect(c.libbpf.programs.find((p) => p.name === 'reached')!.log!.join('\n')).toMatch(/invalid func unknown#2002000006$/m);
}

describe('kfuncs in guests, against libbpf 1.8 in the same kernel (TCG)', () => {
  it('7.3: flavours resolve by base name, weak kfuncs are poisoned, nf_conntrack kfuncs come from its module BTF', async () => {
    const rep = await runCases('7.3', cases(), MODULES['7.3']);
    show('7.3', rep);
    expect(rep.modules.at(-1)).toMatchObject({ outcome: 'loaded' });
    expect(rep.kernelBtfs).toContain('nf_conntrack');
    const weak = byName(rep, 'kfunc_weak');
    expectSameAsLibbpf(weak);
    // bpf_cgroup_from_id___mine is bpf_cgroup_from_id (root cgroup found); the ___fwd flavour's parameter matches no kernel type.
    expect(weak.ours.runs).toEqual({ flavoured: [1], guarded: [4], incompatible: [6] });
    expectPoisonedCall(weak);
    for (const name of ['kfunc_module', 'kfunc_module (module BTF from the kernel)']) {
      const mod = byName(rep, name);
      expectSameAsLibbpf(mod);
      expect(mod.ours.error, name).toBeUndefined();
    }
    const mod = byName(rep, 'kfunc_module');
    // The lookup ran in nf_conntrack and found nothing: -ENOENT (2), as the kernel's own test_bpf_nf expects.
    expect(mod.ours.runs).toEqual({ skb_lookup: [102], xdp_lookup: [102], module_kfunc_address: [5] });
  }, 600_000);

  it('6.1: the same from nf_conntrack; a ld_imm64 of a kfunc (6.4+) and bpf_cgroup_from_id (6.2) are not there yet', async () => {
    const rep = await runCases('6.1', cases(), MODULES['6.1']);
    show('6.1', rep);
    expect(rep.modules.map((m) => m.outcome)).not.toContainEqual(expect.stringMatching(/^error/));
    expect(rep.kernelBtfs).toContain('nf_conntrack');
    const weak = byName(rep, 'kfunc_weak');
    expectSameAsLibbpf(weak);
    expect(weak.ours.runs).toEqual({ flavoured: [2], guarded: [4], incompatible: [6] });
    expectPoisonedCall(weak);
    const mod = byName(rep, 'kfunc_module');
    expectSameAsLibbpf(mod);
    expect(mod.ours.runs).toEqual({ skb_lookup: [102], xdp_lookup: [102], module_kfunc_address: 'not loaded' });
    expect(status(mod.ours, 'module_kfunc_address')).toBe('rejected');
    expectSameAsLibbpf(byName(rep, 'kfunc_module (module BTF from the kernel)'));
  }, 600_000);

  it('5.10 (no kfuncs, no module BTF): weak kfuncs behave alike; the module object is refused by both loaders', async () => {
    const rep = await runCases('5.10', cases(), MODULES['5.10']);
    show('5.10', rep);
    // nf_conntrack is loaded, but 5.10 has no BTF for modules.
    expect(rep.modules.at(-1)).toMatchObject({ outcome: 'loaded' });
    expect(rep.kernelBtfs).toEqual(['vmlinux']);
    const weak = byName(rep, 'kfunc_weak');
    expectSameAsLibbpf(weak);
    expect(weak.ours.runs).toEqual({ flavoured: [2], guarded: [4], incompatible: [6] });
    expectPoisonedCall(weak);
    const mod = byName(rep, 'kfunc_module');
    expectSameAsLibbpf(mod);
    // The first strong kfunc in libbpf's order names the refusal.
    expect(mod.ours.error).toMatch(/extern \(func ksym\) 'bpf_ct_release___flavoured': not found in the kernel's or its modules' BTF$/);
    expect(mod.libbpf.programs.every((p) => p.status === 'error'), JSON.stringify(mod.libbpf.programs)).toBe(true);
    expect(mod.libbpf.programs[0]!.log!.join('\n')).toMatch(/extern \(func ksym\) 'bpf_ct_release___flavoured': not found in kernel or module BTFs/);
  }, 600_000);
});
