// The names loading an object looks up in a kernel's BTF (loader/kernel-names.ts), which the host
// puts in the kernel BTF index it ships so the agent never walks the kernel's types for them.
// Witness: the externs, targets and struct_ops tables as llvm-readelf and bpftool list them in the
// objects, not our reader.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { kernelLookupNames } from '../../harness/loader/kernel-names.js';
import { compileBpf } from '../helpers/tools.js';

const fixture = (n: string) => fileURLToPath(new URL(`fixtures/${n}.bpf.c`, import.meta.url));

describe('kernelLookupNames', () => {
  it('has every kfunc extern (by its name without ___flavour), the BTF attach targets and the struct_ops structs', () => {
    const kfuncs = compileBpf(fixture('kfunc_weak'));
    const names = kernelLookupNames(loadObjectSpec(readFileSync(kfuncs), 'kfunc_weak.bpf.o'));
    // The undefined symbols of the object are its externs; kconfig ones are not looked up in BTF.
    const undef = execFileSync('llvm-readelf-19', ['-s', kfuncs], { encoding: 'utf8' }).split('\n').filter((l) => / UND [A-Za-z_]/.test(l)).map((l) => l.trim().split(/\s+/).pop()!);
    const ksyms = undef.filter((n) => !n.startsWith('CONFIG_'));
    expect(ksyms.length).toBeGreaterThan(2);
    for (const k of ksyms) expect(names.has(k.replace(/___\w+$/, '')), k).toBe(true);
    expect([...names].some((n) => n.includes('___'))).toBe(false);

    const cc = compileBpf(fixture('struct_ops_cc'), ['-D__TARGET_ARCH_x86']);
    const ops = kernelLookupNames(loadObjectSpec(readFileSync(cc), 'struct_ops_cc.bpf.o'));
    expect(ops.has('tcp_congestion_ops')).toBe(true);
    expect(ops.has('bpf_struct_ops_tcp_congestion_ops')).toBe(true);

    const traced = compileBpf(fixture('attach_trace'), ['-D__TARGET_ARCH_x86']);
    const sections = execFileSync('llvm-readelf-19', ['-S', traced], { encoding: 'utf8' });
    const fentry = [...sections.matchAll(/ (?:fentry|fexit)\/(\w+) /g)].map((m) => m[1]!);
    expect(fentry.length).toBeGreaterThan(0);
    const t = kernelLookupNames(loadObjectSpec(readFileSync(traced), 'attach_trace.bpf.o'));
    for (const f of fentry) expect(t.has(f), f).toBe(true);
  });
});
