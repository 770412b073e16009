// struct_ops programs load as libbpf loads them: each program a SEC(".struct_ops") table names
// gets attach_btf_id = the kernel's struct and expected_attach_type = its member's index there
// (without them the kernel answers ENOTSUPP). Witnesses: bpftool's dump of the object's BTF for the
// table we read, and the current libbpf on this machine's kernel for the load (same verdict, same
// translated instructions).
//
// The struct_ops map's value, laid out against a kernel's BTF as libbpf lays it out (member by
// name; data members copied, callbacks get the program's fd, the kernel's other members zero):
// checked on 6.1 and 7.3, whose struct tcp_congestion_ops orders its members differently, against
// bpftool's reading of each kernel's BTF (offsets) and llvm-objcopy's of the table's bytes. The
// kernels themselves accepting and running it is struct-ops.guest.test.ts.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseBtf, type Btf } from '../../harness/core/btf/btf.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import type { ObjectSpec } from '../../harness/core/object/types.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { BPF_F_LINK, planStructOps, structOpsValue } from '../../harness/loader/struct-ops.js';
import { differential } from '../../harness/reference/differential.js';
import { currentLibbpf } from '../../harness/reference/build.js';
import { linuxKernelVersion, readKernelConfig, unameRelease } from '../../harness/runtime/index.js';
import { compileBpf, dumpSection } from '../helpers/tools.js';

const fixture = 'test/loader/fixtures/struct_ops_cc.bpf.c';
const obj = compileBpf(fixture, ['-D__TARGET_ARCH_x86']);
const linkObj = compileBpf(fixture, ['-D__TARGET_ARCH_x86', '-DCM_CC_SECTION=".struct_ops.link"', '-DCM_CC_NAME="corematrix_link"']);
const membersObj = compileBpf('test/loader/fixtures/struct_ops_members.bpf.c', ['-D__TARGET_ARCH_x86']);

/** bpftool's members of struct `name` in a BTF file: name → byte offset. */
function bpftoolMembers(dump: string, name: string): Record<string, number> {
  const at = dump.indexOf(`] STRUCT '${name}' `);
  expect(at, `bpftool lists struct ${name}`).toBeGreaterThan(0);
  const out: Record<string, number> = {};
  for (const line of dump.slice(at).split('\n').slice(1)) {
    const m = /^\t'(\w*)' type_id=\d+ bits_offset=(\d+)$/.exec(line);
    if (!m) break;
    out[m[1]!] = Number(m[2]) / 8;
  }
  return out;
}

const cstr = (b: Uint8Array, off: number, n = 16) => {
  const s = b.subarray(off, off + n);
  const end = s.indexOf(0);
  return Buffer.from(end < 0 ? s : s.subarray(0, end)).toString('utf8');
};

describe('struct_ops', () => {
  it('reads each table: its struct, its bytes, and which program each function pointer names', () => {
    const spec = loadObjectSpec(readFileSync(obj), 'struct_ops_cc.bpf.o');
    expect(spec.structOps).toMatchObject([{
      name: 'cm_cc', section: '.struct_ops', type: 'tcp_congestion_ops',
      programs: [
        { member: 'init', program: 'cm_init' }, { member: 'ssthresh', program: 'cm_ssthresh' },
        { member: 'cong_avoid', program: 'cm_cong_avoid' }, { member: 'undo_cwnd', program: 'cm_undo_cwnd' },
      ],
    }]);
    // The table's bytes are the section's (one variable): llvm-objcopy's reading of it.
    expect(spec.structOps[0]!.data).toEqual(dumpSection(obj, '.struct_ops'));
    expect(spec.btf.name(spec.structOps[0]!.typeId)).toBe('tcp_congestion_ops');
    // bpftool's reading of the same BTF: the variable, its section and its struct.
    const dump = execFileSync('bpftool', ['btf', 'dump', 'file', obj], { encoding: 'utf8' });
    expect(dump).toMatch(/\] VAR 'cm_cc' type_id=\d+, linkage=global/);
    expect(dump).toMatch(/\] DATASEC '\.struct_ops' size=\d+ vlen=1/);
    const link = loadObjectSpec(readFileSync(linkObj), 'struct_ops_cc_link.bpf.o');
    expect(link.structOps).toMatchObject([{ name: 'cm_cc', section: '.struct_ops.link', type: 'tcp_congestion_ops' }]);
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

describe('struct_ops map value, laid out against a kernel (6.1, 7.3)', () => {
  const kernels: Record<string, { btf: Btf; dump: string }> = {};
  let spec: ObjectSpec;
  let members: ObjectSpec;
  beforeAll(async () => {
    for (const id of ['6.1', '7.3']) {
      const path = (await new KernelStore().fetch(id)).btf;
      kernels[id] = { btf: parseBtf(new Uint8Array(readFileSync(path)), { source: `${id} vmlinux` }), dump: execFileSync('bpftool', ['btf', 'dump', 'file', path], { encoding: 'utf8', maxBuffer: 1 << 30 }) };
    }
    spec = loadObjectSpec(readFileSync(obj), 'struct_ops_cc.bpf.o');
    members = loadObjectSpec(readFileSync(membersObj), 'struct_ops_members.bpf.o');
  }, 300_000);

  for (const id of ['6.1', '7.3']) {
    it(`${id}: the kernel's value type and size; name copied and each program's fd placed where bpftool says the kernel's members are`, () => {
      const { btf, dump } = kernels[id]!;
      const plan = planStructOps(spec.structOps[0]!, spec.btf, btf, 'struct_ops_cc.bpf.o');
      const value = bpftoolMembers(dump, 'bpf_struct_ops_tcp_congestion_ops');
      const ops = bpftoolMembers(dump, 'tcp_congestion_ops');
      expect(dump).toContain(`[${plan.valueTypeId}] STRUCT 'bpf_struct_ops_tcp_congestion_ops' size=${plan.valueSize} `);
      expect(plan).toMatchObject({ name: 'cm_cc', struct: 'tcp_congestion_ops', link: false, dataOffset: value.data, skipped: [], kernelHasLinks: id === '7.3' });
      expect(Object.fromEntries(plan.slots.map((s) => [s.member, s.offset]))).toEqual({
        init: value.data! + ops.init!, ssthresh: value.data! + ops.ssthresh!, cong_avoid: value.data! + ops.cong_avoid!, undo_cwnd: value.data! + ops.undo_cwnd!,
      });
      // Only the name is set: every other byte of the value is zero.
      expect(cstr(plan.template, value.data! + ops.name!)).toBe('corematrix_cc');
      expect(plan.template.reduce((n, b) => n + (b ? 1 : 0), 0)).toBe('corematrix_cc'.length);
      // Program fds as u64s in their slots, nothing else touched.
      const fds: Record<string, number> = { cm_init: 11, cm_ssthresh: 12, cm_cong_avoid: 13, cm_undo_cwnd: 14 };
      const v = structOpsValue(plan, (p) => fds[p]!);
      const dv = new DataView(v.buffer);
      for (const s of plan.slots) expect(dv.getBigUint64(s.offset, true)).toBe(BigInt(fds[s.program]!));
      expect(cstr(v, value.data! + ops.name!)).toBe('corematrix_cc');
      const link = loadObjectSpec(readFileSync(linkObj), 'l.o');
      expect(planStructOps(link.structOps[0]!, link.btf, btf, 'l.o')).toMatchObject({ link: true, valueSize: plan.valueSize });
      expect(BPF_F_LINK).toBe(8192);
    });
  }

  it('7.3 and 6.1 put name at different offsets: the same table gives each its own layout', () => {
    const name = (id: string) => {
      const { dump } = kernels[id]!;
      return bpftoolMembers(dump, 'bpf_struct_ops_tcp_congestion_ops').data! + bpftoolMembers(dump, 'tcp_congestion_ops').name!;
    };
    expect(name('6.1')).not.toBe(name('7.3'));
    for (const id of ['6.1', '7.3']) expect(cstr(planStructOps(spec.structOps[0]!, spec.btf, kernels[id]!.btf, 'x').template, name(id))).toBe('corematrix_cc');
  });

  const table = (name: string) => {
    const t = members.structOps.find((x) => x.name === name);
    expect(t, name).toBeDefined();
    return t!;
  };
  const plan = (name: string) => planStructOps(table(name), members.btf, kernels['7.3']!.btf, 'struct_ops_members.bpf.o');

  it('members the kernel lacks are left out when zero (a callback there too); flavoured structs are their base struct', () => {
    const p = plan('so_zero');
    const { dump } = kernels['7.3']!;
    const value = bpftoolMembers(dump, 'bpf_struct_ops_tcp_congestion_ops');
    const ops = bpftoolMembers(dump, 'tcp_congestion_ops');
    expect(table('so_zero').type).toBe('tcp_congestion_ops___zero');
    expect(p.struct).toBe('tcp_congestion_ops');
    expect(p.skipped).toEqual(['cm_no_such_callback', 'cm_no_such_field']);
    expect(p.slots.map((s) => s.program)).toEqual(['mb_init', 'mb_ssthresh', 'mb_undo']);
    expect(new DataView(p.template.buffer).getUint32(value.data! + ops.flags!, true)).toBe(1);
    expect(cstr(p.template, value.data! + ops.name!)).toBe('cm_members');
  });

  it('a member set in the object and missing in the kernel, or of another size, kind or shape, is an error naming the table and member', () => {
    const where = (t: string) => `struct_ops_members.bpf.o: struct_ops ${t} (struct tcp_congestion_ops): member`;
    expect(() => plan('so_set')).toThrow(`${where('so_set')} 'cm_no_such_field': set in the object, but the kernel's struct tcp_congestion_ops has no member 'cm_no_such_field'`);
    expect(() => plan('so_size')).toThrow(`${where('so_size')} 'flags': the object's __u64 (8 bytes) does not match the kernel's u32 (4 bytes)`);
    expect(() => plan('so_kind')).toThrow(`${where('so_kind')} 'name': the object's int (4 bytes) does not match the kernel's char[16] (16 bytes)`);
    expect(() => plan('so_notfunc')).toThrow(`${where('so_notfunc')} 'flags': names program 'mb_init', but the kernel's member is u32, not a function pointer`);
    expect(() => plan('so_bitfield')).toThrow(`${where('so_bitfield')} 'flags': bitfield members are not supported`);
    expect(() => plan('so_gone')).toThrow(`${where('so_gone')} 'cm_no_such_callback': names program 'mb_gone', but the kernel's struct tcp_congestion_ops has no member 'cm_no_such_callback'`);
  });

  it('a callback the kernel lacks, set to a program, fails the object for the current libbpf too (the witness for so_gone)', async () => {
    const lib = await currentLibbpf();
    const { loadWithLibbpf } = await import('../../harness/reference/libbpf.js');
    const r = loadWithLibbpf(new Uint8Array(readFileSync(membersObj)), 'struct_ops_members.bpf.o', { library: { so: lib.so, version: lib.version, source: lib.source } });
    try {
      const gone = r.outcomes.find((o) => o.name === 'mb_gone')!;
      expect(gone.status).toBe('error');
      expect(gone.log.join('\n')).toMatch(/struct_ops init_kern so_gone: Cannot find member cm_no_such_callback in kernel BTF/);
    } finally {
      r.close();
    }
  }, 120_000);

  it('a kernel without the struct_ops type refuses the table, naming it', () => {
    const t = { ...table('so_zero'), type: 'cm_no_such_ops' };
    expect(() => planStructOps(t, members.btf, kernels['6.1']!.btf, 'x.o')).toThrow("x.o: struct_ops so_zero (struct cm_no_such_ops): struct bpf_struct_ops_cm_no_such_ops is not found in the kernel's BTF");
  });
});
