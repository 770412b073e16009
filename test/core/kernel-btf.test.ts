// Offline relocation of a clang-built CO-RE object against the vmlinux BTF of real Debian
// kernels from the store. The expected offsets, sizes and existence bits come from bpftool's
// dump of each kernel's BTF (libbpf's reader), walked by field name here: not from our engine.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeBtfIndex, encodeBtfIndex, parseBtf } from '../../harness/core/btf/btf.js';
import { readTargetBtf, relocateObject, type RelocateReport } from '../../harness/core/relocate.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { bpftoolDump, compileBpf, type BpftoolType } from '../helpers/tools.js';

const KERNELS = ['5.10', '6.1', '6.1-rt', '6.12', '7.3'];

interface Member { name: string; type_id: number; bits_offset: number }

class Witness {
  private byId = new Map<number, BpftoolType>();
  constructor(types: BpftoolType[]) {
    for (const t of types) this.byId.set(t.id, t);
  }
  private resolve(id: number): BpftoolType {
    let t = this.byId.get(id)!;
    while (['TYPEDEF', 'CONST', 'VOLATILE', 'RESTRICT', 'TYPE_TAG'].includes(t.kind)) t = this.byId.get(t.type_id as number)!;
    return t;
  }
  private structs(name: string): BpftoolType[] {
    return [...this.byId.values()].filter((t) => t.kind === 'STRUCT' && t.name === name);
  }
  /** Bit offset of a member by name, searching anonymous members like a C compiler does. */
  private find(t: BpftoolType, name: string): { bits: number; type: number } | undefined {
    for (const m of (t.members as Member[] | undefined) ?? []) {
      if (m.name === name) return { bits: m.bits_offset, type: m.type_id };
      if (m.name === '(anon)') {
        const inner = this.find(this.resolve(m.type_id), name);
        if (inner) return { bits: m.bits_offset + inner.bits, type: inner.type };
      }
    }
    return undefined;
  }
  /** Byte offset of `path` (a.b.c) in struct `root`, or undefined when any step is missing. */
  offset(root: string, path: string): number | undefined {
    for (const s of this.structs(root)) {
      let t = s;
      let bits = 0;
      let ok = true;
      for (const name of path.split('.')) {
        const f = this.find(t, name);
        if (!f) {
          ok = false;
          break;
        }
        bits += f.bits;
        t = this.resolve(f.type);
      }
      if (ok) return bits / 8;
    }
    return undefined;
  }
  size(root: string): number {
    return this.structs(root)[0]!.size as number;
  }
  enumerator(name: string): number | undefined {
    for (const t of this.byId.values()) {
      if (t.kind !== 'ENUM' && t.kind !== 'ENUM64') continue;
      const v = (t.values as { name: string; val: number }[]).find((x) => x.name === name);
      if (v) return v.val;
    }
    return undefined;
  }
  hasStruct(name: string): boolean {
    return this.structs(name).length > 0;
  }
}

const store = new KernelStore();
const object = compileBpf('test/fixtures/core_kernel.bpf.c');
const bytes = readFileSync(object);

describe.each(KERNELS)('CO-RE against the %s kernel BTF', (id) => {
  let report: RelocateReport;
  let w: Witness;
  beforeAll(async () => {
    const k = await store.fetch(id);
    report = relocateObject(bytes, 'core_kernel.bpf.o', '', { vmlinux: readTargetBtf(readFileSync(k.btf), k.id) }, k.id).report;
    w = new Witness(bpftoolDump(k.btf));
  }, 900_000);

  const rel = (kind: string, type: string, spec: string) => {
    const r = report.relocations.find((x) => x.kind === kind && x.type === type && x.spec === spec);
    expect(r, `${kind} ${type} ${spec}`).toBeDefined();
    return r!;
  };

  it('puts task_struct fields where the kernel has them', () => {
    for (const f of ['pid', 'tgid', 'comm']) expect(rel('byte_off', 'struct task_struct', f).target).toBe(w.offset('task_struct', f));
    expect(rel('type_size', 'struct task_struct', '').target).toBe(w.size('task_struct'));
    expect(rel('byte_sz', 'struct task_struct', 'comm').target).toBe(16);
  });

  it('takes the renamed-field branch the kernel needs', () => {
    const has = w.offset('task_struct', '__state') !== undefined;
    expect(rel('field_exists', 'struct task_struct', '__state').target).toBe(has ? 1 : 0);
    const cur = rel('byte_off', 'struct task_struct', '__state');
    const old = rel('byte_off', 'struct task_struct___old', 'state');
    if (has) {
      expect(cur.target).toBe(w.offset('task_struct', '__state'));
      expect(old.status).toBe('poisoned');
      expect(old.reachable).toBe(false);
    } else {
      expect(old.target).toBe(w.offset('task_struct', 'state'));
      expect(cur.status).toBe('poisoned');
      expect(cur.reachable).toBe(false);
    }
  });

  it('follows nested and typedef-wrapped members (the seed\'s netns path)', () => {
    expect(rel('byte_off', 'struct sock', '__sk_common.skc_net.net').target).toBe(w.offset('sock', '__sk_common.skc_net.net'));
    expect(rel('byte_off', 'struct net', 'ns.inum').target).toBe(w.offset('net', 'ns.inum'));
    expect(rel('byte_off', 'struct sock', 'sk_protocol').target).toBe(w.offset('sock', 'sk_protocol'));
  });

  it('reads enum values and type existence from the kernel', () => {
    expect(rel('enumval_exists', 'enum bpf_map_type', 'BPF_MAP_TYPE_USER_RINGBUF').target).toBe(w.enumerator('BPF_MAP_TYPE_USER_RINGBUF') === undefined ? 0 : 1);
    expect(rel('enumval_value', 'enum bpf_map_type', 'BPF_MAP_TYPE_RINGBUF').target).toBe(w.enumerator('BPF_MAP_TYPE_RINGBUF'));
    expect(rel('type_exists', 'struct bpf_iter_num', '').target).toBe(w.hasStruct('bpf_iter_num') ? 1 : 0);
  });

  it('leaves no relocation in error and no reachable poison', () => {
    expect(report.relocations.filter((x) => x.status === 'error' || (x.status === 'poisoned' && x.reachable))).toEqual([]);
  });
});

describe('the same object differs across kernels where the kernels differ', () => {
  it('has task_struct.pid at a different offset on 5.10, 6.1, 6.1-rt and 7.3', async () => {
    const offs = new Map<string, number | null>();
    for (const id of ['5.10', '6.1', '6.1-rt', '7.3']) {
      const k = await store.fetch(id);
      const r = relocateObject(bytes, 'o', '', { vmlinux: readTargetBtf(readFileSync(k.btf), id) }, id).report;
      offs.set(id, r.relocations.find((x) => x.spec === 'pid')!.target);
    }
    expect(new Set(offs.values()).size).toBe(4);
  }, 900_000);
});

describe('name look-ups on a real vmlinux BTF', () => {
  it('scanning and the hash index agree', async () => {
    const k = await store.fetch('6.1');
    const names = ['task_struct', 'sock', 'bpf_map_type', 'list_head', 'no_such_type_anywhere', 'pt_regs'];
    const scanned = readTargetBtf(readFileSync(k.btf), '6.1');
    const first = names.map((n) => [scanned.byEssentialName(n), scanned.byName(n)]);
    const indexed = readTargetBtf(readFileSync(k.btf), '6.1');
    for (let i = 0; i < 10; i++) indexed.byEssentialName('warm_up_' + i); // past the scan budget
    for (let i = 0; i < 10; i++) indexed.byName('warm_up_' + i);
    const second = names.map((n) => [indexed.byEssentialName(n), indexed.byName(n)]);
    expect(second).toEqual(first);
    expect(first[0]![0]!.length).toBeGreaterThan(0);
    // A wide sample: every 97th named type of the kernel, answered by one prefetch scan (the
    // native string search) on a fresh instance, must equal the hash index's answers.
    const sample = [...new Set(Array.from({ length: Math.floor(indexed.count / 97) }, (_, i) => indexed.type(1 + i * 97).name).filter((n) => n !== ''))];
    expect(sample.length).toBeGreaterThan(500);
    const fresh = readTargetBtf(readFileSync(k.btf), '6.1');
    fresh.prefetchEssential(sample);
    for (const n of sample) expect(fresh.byEssentialName(n), n).toEqual(indexed.byEssentialName(n));
    // The same names answered during the parse pass itself (findNames), plus the awkward ones: a
    // one-letter name, flavoured essential matches (the kernel has ___ names), absent names.
    const flavoured = [...new Set(Array.from({ length: indexed.count - 1 }, (_, i) => indexed.type(1 + i).name).filter((n) => /[^_]___[^_]/.test(n)))];
    expect(flavoured.length).toBeGreaterThan(0);
    const odd = ['a', 'u8', 'x', ...flavoured.map((n) => n.slice(0, /[^_]___[^_]/.exec(n)!.index + 1)), 'no_such_type_anywhere', 'zz_none'];
    const inPass = parseBtf(readFileSync(k.btf), { source: '6.1', findNames: [...sample, ...odd] });
    // The witness is bpftool's dump, essential names cut as libbpf cuts them (at the last x___y).
    const essential = (n: string) => {
      for (let i = n.length - 5; i >= 0; i--) if (n[i] !== '_' && n.startsWith('___', i + 1) && n[i + 4] !== '_') return n.slice(0, i + 1);
      return n;
    };
    const byEss = new Map<string, number[]>();
    for (const t of bpftoolDump(k.btf)) if (t.name !== '(anon)') byEss.set(essential(t.name), [...(byEss.get(essential(t.name)) ?? []), t.id]);
    const byExact = new Map<string, number[]>();
    for (const t of bpftoolDump(k.btf)) if (t.name !== '(anon)') byExact.set(t.name, [...(byExact.get(t.name) ?? []), t.id]);
    for (const n of [...sample, ...odd]) {
      expect(inPass.byEssentialName(n), n).toEqual(byEss.get(n) ?? []);
      expect(indexed.byEssentialName(n), n).toEqual(byEss.get(n) ?? []);
      // Exact names are answered from the essential answers at hand (no walk): the flavoured ones filtered out.
      expect(inPass.byName(n), n).toEqual(byExact.get(n) ?? []);
    }
  }, 120_000);
});

describe('a kernel BTF opened from a precomputed index', () => {
  it('answers exactly as a full parse, and an index of other bytes is a one-line error', async () => {
    for (const id of ['5.10', '7.3']) {
      const bytes = readFileSync((await store.fetch(id)).btf);
      const full = parseBtf(bytes, { source: id });
      const roots = ['task_struct', 'sock', 'bpf_map_type', 'no_such_type_anywhere'];
      // Through the bytes the guest receives (encode → decode), as harness/kernels/btf-index.ts ships it.
      const index = decodeBtfIndex(encodeBtfIndex(full.index(roots)), `${id}.idx`);
      const fromIndex = parseBtf(bytes, { source: id, index, findNames: [...roots, 'pt_regs'] });
      expect(fromIndex.count, id).toBe(full.count);
      for (let t = 1; t < full.count; t += 37) expect(fromIndex.type(t), `${id} #${t}`).toEqual(full.type(t));
      expect(fromIndex.type(full.count - 1)).toEqual(full.type(full.count - 1));
      for (const n of [...roots, 'pt_regs', 'list_head']) {
        expect(fromIndex.byEssentialName(n), n).toEqual(full.byEssentialName(n));
        expect(fromIndex.byName(n), n).toEqual(full.byName(n));
      }
      expect(index.essential.get('task_struct')!.length).toBeGreaterThan(0);
      expect(index.essential.get('no_such_type_anywhere')).toEqual([]);
    }
    // The index of one kernel given with another's bytes, a torn index, a wrong file.
    const b510 = readFileSync((await store.fetch('5.10')).btf);
    const b73 = readFileSync((await store.fetch('7.3')).btf);
    const idx73 = parseBtf(b73).index();
    expect(() => parseBtf(b510, { source: '5.10', index: idx73 })).toThrow(/^5\.10: the BTF index was made for \d+ bytes of BTF, this is \d+$/);
    expect(() => parseBtf(b73, { source: '7.3', index: { ...idx73, offsets: idx73.offsets.subarray(1) } })).toThrow(/^7\.3: the BTF index does not fit this BTF's type section$/);
    expect(() => parseBtf(b73, { source: '7.3', index: { ...idx73, offsets: idx73.offsets.subarray(0, idx73.offsets.length - 1) } })).toThrow(/^7\.3: the BTF index's last record does not end the type section$/);
    const enc = encodeBtfIndex(idx73);
    expect(() => decodeBtfIndex(enc.subarray(0, enc.length - 1), 'k.idx')).toThrow(/^k\.idx: \d+ bytes, but its header says \d+$/);
    expect(() => decodeBtfIndex(b73.subarray(0, 64), 'k.idx')).toThrow(/^k\.idx: not a BTF index \(no CMBTFIX1 magic\)$/);
  }, 120_000);
});
