// Hidden global functions (usdt.bpf.h's bpf_usdt_arg) load as libbpf loads them: their BTF FUNC
// made static, so the verifier checks them in their caller's context. Without that the verifier
// rejects the USDT program ("invalid mem access 'mem_or_null'") while libbpf loads it. Compared on
// this machine's kernel (root may call bpf() here) with the current libbpf: same verdict, same
// translated instructions.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseBtf } from '../../harness/core/btf/btf.js';
import { Kind, FUNC_STATIC, FUNC_GLOBAL } from '../../harness/core/btf/kinds.js';
import { sanitizeBtf, ALL_BTF_FEATURES } from '../../harness/core/btf/sanitize.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { differential } from '../../harness/reference/differential.js';
import { currentLibbpf } from '../../harness/reference/build.js';
import { linuxKernelVersion, readKernelConfig, unameRelease } from '../../harness/runtime/index.js';
import { compileBpf } from '../helpers/tools.js';

const obj = compileBpf('test/loader/fixtures/usdt_hidden.bpf.c', ['-D__TARGET_ARCH_x86']);

describe('hidden global functions', () => {
  it('are read as hidden from the ELF symbol table, and only they are loaded static', () => {
    const spec = loadObjectSpec(readFileSync(obj), 'usdt_hidden.bpf.o');
    const hidden = spec.functions.filter((f) => f.hidden).map((f) => f.name).sort();
    // llvm-readelf's reading of the symbol table is the witness: global or weak FUNCs of hidden or internal visibility.
    const readelf = execFileSync('llvm-readelf-19', ['-s', '--wide', obj], { encoding: 'utf8' });
    const witness = [...readelf.matchAll(/\bFUNC\s+(?:GLOBAL|WEAK)\s+(?:HIDDEN|INTERNAL)\s+\S+\s+(\S+)$/gm)].map((m) => m[1]!).sort();
    expect(witness).toContain('bpf_usdt_arg');
    expect(hidden).toEqual(witness);
    const out = parseBtf(sanitizeBtf(spec.btf, ALL_BTF_FEATURES, new Set(hidden)).bytes);
    for (let id = 1; id < out.count; id++) {
      if (out.kind(id) !== Kind.FUNC) continue;
      const want = hidden.includes(out.name(id)) ? FUNC_STATIC : spec.btf.vlen(id);
      expect(out.vlen(id), out.name(id)).toBe(want);
    }
    expect([...Array(spec.btf.count).keys()].some((id) => id > 0 && spec.btf.kind(id) === Kind.FUNC && spec.btf.vlen(id) === FUNC_GLOBAL)).toBe(true);
  });

  it.runIf(existsSync('/sys/kernel/btf/vmlinux'))('a USDT program loads with our loader exactly as with the current libbpf', async () => {
    const lib = await currentLibbpf();
    const kernelBtf = parseBtf(readFileSync('/sys/kernel/btf/vmlinux'), { source: '/sys/kernel/btf/vmlinux' });
    const d = differential(new Uint8Array(readFileSync(obj)), 'usdt_hidden.bpf.o', {
      kernelBtf, kernelBtfName: '/sys/kernel/btf/vmlinux', kconfig: { config: readKernelConfig(unameRelease()).config, linuxKernelVersion: linuxKernelVersion() },
      library: { so: lib.so, version: lib.version, source: lib.source },
    });
    expect(d.ours.map((o) => `${o.name}:${o.status}:${o.reason ?? ''}`)).toEqual(['on_probe:loaded:']);
    expect(d.comparisons.map((c) => `${c.program}:${c.verdict}`), d.comparisons.map((c) => c.line).join('\n')).toEqual(['on_probe:same']);
  }, 120_000);
});
