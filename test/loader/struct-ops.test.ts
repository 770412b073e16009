// struct_ops programs load as libbpf loads them: each program a SEC(".struct_ops") table names
// gets attach_btf_id = the kernel's struct and expected_attach_type = its member's index there
// (without them the kernel answers ENOTSUPP). Witnesses: bpftool's dump of the object's BTF for the
// table we read, and the current libbpf on this machine's kernel for the load (same verdict, same
// translated instructions).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseBtf } from '../../harness/core/btf/btf.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { differential } from '../../harness/reference/differential.js';
import { currentLibbpf } from '../../harness/reference/build.js';
import { linuxKernelVersion, readKernelConfig, unameRelease } from '../../harness/runtime/index.js';
import { compileBpf } from '../helpers/tools.js';

const obj = compileBpf('test/loader/fixtures/struct_ops_cc.bpf.c', ['-D__TARGET_ARCH_x86']);

describe('struct_ops', () => {
  it('reads each table: its struct, and which program each function pointer names', () => {
    const spec = loadObjectSpec(readFileSync(obj), 'struct_ops_cc.bpf.o');
    expect(spec.structOps).toEqual([{
      name: 'cm_cc', section: '.struct_ops', type: 'tcp_congestion_ops',
      programs: [
        { member: 'init', program: 'cm_init' }, { member: 'ssthresh', program: 'cm_ssthresh' },
        { member: 'cong_avoid', program: 'cm_cong_avoid' }, { member: 'undo_cwnd', program: 'cm_undo_cwnd' },
      ],
    }]);
    // bpftool's reading of the same BTF: the variable, its section and its struct.
    const dump = execFileSync('bpftool', ['btf', 'dump', 'file', obj], { encoding: 'utf8' });
    expect(dump).toMatch(/\] VAR 'cm_cc' type_id=\d+, linkage=global/);
    expect(dump).toMatch(/\] DATASEC '\.struct_ops' size=\d+ vlen=1/);
  });

  it.runIf(existsSync('/sys/kernel/btf/vmlinux'))('its programs load with our loader exactly as with the current libbpf', async () => {
    const lib = await currentLibbpf();
    const kernelBtf = parseBtf(readFileSync('/sys/kernel/btf/vmlinux'), { source: '/sys/kernel/btf/vmlinux' });
    const d = differential(new Uint8Array(readFileSync(obj)), 'struct_ops_cc.bpf.o', {
      kernelBtf, kernelBtfName: '/sys/kernel/btf/vmlinux', kconfig: { config: readKernelConfig(unameRelease()).config, linuxKernelVersion: linuxKernelVersion() },
      library: { so: lib.so, version: lib.version, source: lib.source },
    });
    expect(d.ours.map((o) => `${o.name}:${o.status}`).sort()).toEqual(['cm_cong_avoid:loaded', 'cm_init:loaded', 'cm_ssthresh:loaded', 'cm_undo_cwnd:loaded']);
    expect(d.comparisons.map((c) => c.verdict), d.comparisons.map((c) => c.line).join('\n')).toEqual(['same', 'same', 'same', 'same']);
  }, 120_000);
});
