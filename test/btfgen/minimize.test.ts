// btf minimize ("btfgen") on real artefacts: every suite object (compiled as the matrix compiles
// them) and a fixture of harder relocation shapes, against the BTF of every default matrix kernel.
// Relocating against the minimal BTF must give the same records as against the full BTF; bpftool
// (libbpf's parser) must read the output and see every kept struct member where the full BTF has
// it; and bpftool's own `gen min_core_btf` on the same objects is the size reference.
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseBtf, type Btf } from '../../harness/core/btf/btf.js';
import { Kind } from '../../harness/core/btf/kinds.js';
import { inSourceTerms, minimizeBtf, sourceId, type MinimizedBtf, type MinimizeObject } from '../../harness/core/btf/minimize.js';
import { FormatError, RelocationError } from '../../harness/core/errors.js';
import { ReloKind } from '../../harness/core/relo/spec.js';
import type { RelocationRecord } from '../../harness/core/relo/report.js';
import { readTargetBtf, relocateObject } from '../../harness/core/relocate.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { buildSuites, vmlinuxHeader } from '../../harness/suites/build.js';
import { bpftoolDump, compileBpf, writeTmp, type BpftoolType } from '../helpers/tools.js';

// Every kernel of the default matrix, the custom CONFIG_NET_NS=n build (pahole BTF) included.
const KERNELS = ['5.10', '6.1', '6.1-cloud', '6.1-rt', '6.12', '6.12-nonetns', '7.2', '7.3', '7.x'];

let objects: (MinimizeObject & { path: string; suite?: string })[];
let ambiguous: string;
const full = new Map<string, { btf: Btf; path: string }>();

beforeAll(async () => {
  const store = new KernelStore();
  const suites = await buildSuites({ store });
  const header = await vmlinuxHeader((await store.fetch('6.1')).btf);
  const flags = ['-D__TARGET_ARCH_x86', `-I${header.dir}`];
  const shapes = compileBpf('test/btfgen/fixtures/shapes.bpf.c', flags);
  const hazards = [1, 2, 3].map((n) => compileBpf('test/btfgen/fixtures/hazards.bpf.c', [...flags, `-DHAZARD=${n}`]));
  ambiguous = compileBpf('test/btfgen/fixtures/ambiguous.bpf.c', flags);
  const named = (path: string, suite?: string) => ({ path, suite, name: path.split('/').pop()!, bytes: new Uint8Array(readFileSync(path)) });
  objects = [...suites.map((s) => named(s.object, s.name)), named(shapes), ...hazards.map((h) => named(h))];
  for (const id of KERNELS) {
    const k = await store.fetch(id);
    full.set(id, { path: k.btf, btf: readTargetBtf(readFileSync(k.btf), `${id} BTF`) });
  }
}, 600_000);

const relocs = (o: MinimizeObject, btf: Btf): RelocationRecord[] => relocateObject(o.bytes, o.name, '-', { vmlinux: btf }, 'target').report.relocations;

function expectSameRelocations(min: MinimizedBtf, o: MinimizeObject, fullBtf: Btf, what: string): number {
  const minBtf = parseBtf(min.bytes, { source: `minimal BTF for ${what}` });
  const want = relocs(o, fullBtf);
  const got = relocs(o, minBtf);
  expect(inSourceTerms(min, got), `${o.name} against ${what}`).toEqual(want);
  // The mapping above must not be what makes them equal: the raw values agree except type ids.
  got.forEach((g, i) => {
    if (g.kind !== 'target_type_id') expect([g.kind, g.spec, g.local, g.target, g.status, g.error]).toEqual([want[i]!.kind, want[i]!.spec, want[i]!.local, want[i]!.target, want[i]!.status, want[i]!.error]);
  });
  return want.length;
}

/** bpftool's reading of our output agrees with its reading of the full BTF, member by member. */
function expectKeptAsInFull(min: MinimizedBtf, minPath: string, fullTypes: Map<number, BpftoolType>): void {
  const ours = bpftoolDump(minPath);
  expect(ours.length).toBe(min.sourceIds.length - 1);
  for (const t of ours) {
    const src = fullTypes.get(sourceId(min, t.id))!;
    expect([t.kind, t.name], `type ${t.id}`).toEqual([src.kind, src.name]);
    if ('size' in src) expect(t.size, `${src.kind} ${src.name} size`).toBe(src.size);
    if ('nr_elems' in src) expect(t.nr_elems).toBe(src.nr_elems);
    const members = t.members as { name: string; bits_offset: number; bitfield_size?: number }[] | undefined;
    if (members) {
      const all = src.members as typeof members;
      const kept = min.kept.get(src.id)!;
      expect(members.map((m) => [m.name, m.bits_offset, m.bitfield_size ?? 0]), `${src.kind} ${src.name}`)
        .toEqual(kept.map((i) => [all[i]!.name, all[i]!.bits_offset, all[i]!.bitfield_size ?? 0]));
    }
    const values = t.values as { name: string; val: number }[] | undefined;
    if (values) expect(values).toEqual(min.kept.get(src.id)!.map((i) => (src.values as typeof values)[i]));
  }
}

describe('btf minimize', () => {
  it.each(KERNELS)('%s: each object relocates against its own minimal BTF exactly as against the full one', (id) => {
    const { btf } = full.get(id)!;
    let n = 0;
    for (const o of objects) {
      const min = minimizeBtf([o], btf);
      n += expectSameRelocations(min, o, btf, `${id}, minimized for ${o.name}`);
    }
    expect(n).toBeGreaterThan(90);
  });

  it.each(KERNELS)('%s: all objects together: same relocations, bpftool reads it, kept members as in the full BTF', (id) => {
    const { btf, path } = full.get(id)!;
    const min = minimizeBtf(objects, btf);
    for (const o of objects) expectSameRelocations(min, o, btf, `${id}, minimized for all objects`);
    const out = writeTmp(`min-${id}.btf`, min.bytes);
    expectKeptAsInFull(min, out, new Map(bpftoolDump(path).map((t) => [t.id, t])));
    expect(min.bytes.length).toBeLessThan(btf.bytes.length / 1000);
    // Same input, same bytes.
    expect(Buffer.from(minimizeBtf(objects, parseBtf(readFileSync(path))).bytes).equals(Buffer.from(min.bytes))).toBe(true);
  });

  it('keeps what the relocation shapes need, and no more than it must', () => {
    const { btf } = full.get('7.3')!;
    const shapes = objects.find((o) => o.name.startsWith('shapes'))!;
    const min = minimizeBtf([shapes], btf);
    const m = parseBtf(min.bytes);
    const members = (name: string) => {
      const [id] = m.byName(name).filter((i) => m.kind(i) === Kind.STRUCT);
      return m.typeOf(id!, Kind.STRUCT).members.map((x) => x.name);
    };
    // mm (field read), pid (the ___dup match), pid_links (array path), comm; parent behind ___ptrs.
    expect(members('task_struct')).toEqual(['pid', 'pid_links', 'parent', 'comm', 'mm'].sort((a, b) => order(btf, 'task_struct', a) - order(btf, 'task_struct', b)));
    // The zero-length __pkt_type_offset is not the last member of its (anonymous) struct inside
    // sk_buff: that struct's last member comes along, so the array does not become flexible.
    const holder = [...Array(m.count).keys()].find((i) => m.kind(i) === Kind.STRUCT && m.typeOf(i, Kind.STRUCT).members.some((x) => x.name === '__pkt_type_offset'))!;
    const kept = m.typeOf(holder, Kind.STRUCT).members.map((x) => x.name);
    const whole = btf.typeOf(sourceId(min, holder), Kind.STRUCT).members.map((x) => x.name);
    expect(whole.indexOf('__pkt_type_offset')).toBeLessThan(whole.length - 1);
    expect(kept.at(-1)).toBe(whole.at(-1));
    // Both kernel syscall_tp_t types are candidates, each with its own members.
    expect(m.byName('syscall_tp_t').map((i) => m.typeOf(i, Kind.STRUCT).members.map((x) => x.name).join()).sort()).toEqual(['syscall_nr,args', 'syscall_nr,ret']);
    // The pointee of mm is kept as a named empty struct, not void.
    const mm = m.typeOf(m.byName('task_struct').find((i) => m.kind(i) === Kind.STRUCT)!, Kind.STRUCT).members.find((x) => x.name === 'mm')!;
    expect(m.typeName(mm.type)).toBe('struct mm_struct *');
    expect(m.typeOf(m.byName('mm_struct')[0]!, Kind.STRUCT).members).toEqual([]);
    // ___dup: two local members (enumerators) match `next` (BPF_MAP_TYPE_HASH), so two are kept.
    expect(members('list_head')).toEqual(['next', 'prev']);
    expect(m.typeOf(m.byName('bpf_map_type')[0]!, Kind.ENUM).values.map((v) => v.name)).toEqual(['BPF_MAP_TYPE_UNSPEC', 'BPF_MAP_TYPE_HASH']);
  });

  it('is smaller than bpftool gen min_core_btf on the same objects, for every kernel', () => {
    const rows: string[] = [];
    for (const id of KERNELS) {
      const { btf, path } = full.get(id)!;
      const t0 = performance.now();
      const min = minimizeBtf(objects, btf);
      const ours = performance.now() - t0;
      const out = writeTmp(`bpftool-min-${id}.btf`, new Uint8Array(0));
      const t1 = performance.now();
      execFileSync('bpftool', ['gen', 'min_core_btf', path, out, ...objects.map((o) => o.path)], { stdio: 'pipe' });
      const theirs = performance.now() - t1;
      const size = statSync(out).size;
      expect(size).toBeGreaterThan(24); // bpftool did produce something
      expect(min.bytes.length).toBeLessThan(size);
      rows.push(`${id.padEnd(9)} full ${btf.bytes.length} B, bpftool ${size} B (${theirs.toFixed(0)} ms incl. process), ours ${min.bytes.length} B (${ours.toFixed(0)} ms)`);
    }
    console.log(`btf minimize, ${objects.length} objects:\n${rows.join('\n')}`);
  });

  it('writes the same bytes as bpftool for the suites with only field relocations', () => {
    // Both keep the same paths, members and string order for field relocations; the two differ
    // only where we keep more (pointees, type_matches, unmatched candidates). These four suites
    // read no pointer whose pointee is not on a path, so the outputs must be byte for byte equal.
    const fieldOnly = objects.filter((o) => ['bitfields', 'netns', 'renamed-field', 'task-fields'].includes(o.suite ?? ''));
    expect(fieldOnly).toHaveLength(4);
    for (const id of KERNELS) {
      const { btf, path } = full.get(id)!;
      for (const o of fieldOnly) {
        const min = minimizeBtf([o], btf);
        expect(min.relocations[0]!.relocations.every((r) => r.kind <= ReloKind.FIELD_RSHIFT_U64)).toBe(true);
        const out = writeTmp(`bpftool-${id}-${o.name}.btf`, new Uint8Array(0));
        execFileSync('bpftool', ['gen', 'min_core_btf', path, out, o.path], { stdio: 'pipe' });
        expect(Buffer.from(min.bytes).equals(readFileSync(out)), `${o.name} on ${id}`).toBe(true);
      }
    }
  });

  it("bpftool's min_core_btf changes two hazard fixtures' results (our engine on its output); ours does not", () => {
    // Why minimize keeps pointees and the member after a zero-length array (see minimize.ts):
    // bpftool 7.1 (Debian bookworm) does neither, and relocating against its output flips a
    // type_matches from 0 to 1 and resolves an out-of-bounds access the full BTF poisons.
    const { btf, path } = full.get('6.1')!;
    const flipped: string[] = [];
    for (const o of objects.filter((x) => x.name.startsWith('hazards'))) {
      const out = writeTmp(`bpftool-${o.name}.btf`, new Uint8Array(0));
      execFileSync('bpftool', ['gen', 'min_core_btf', path, out, o.path], { stdio: 'pipe' });
      const want = relocs(o, btf);
      const theirs = relocs(o, parseBtf(readFileSync(out), { source: out }));
      theirs.forEach((r, i) => {
        if (r.target !== want[i]!.target || r.status !== want[i]!.status) flipped.push(`${r.kind} ${r.type} ${r.spec}: ${want[i]!.target ?? want[i]!.status} → ${r.target ?? r.status}`);
      });
      expectSameRelocations(minimizeBtf([o], btf), o, btf, `6.1, minimized for ${o.name}`);
    }
    expect(flipped).toEqual(['type_matches struct task_struct___voidmm : 0 → 1', 'byte_off struct sk_buff___flex __pkt_type_offset[1]: poisoned → 129']);
  });

  it('refuses a relocation no BTF can resolve, and malformed objects, with one line', () => {
    const { btf } = full.get('6.1')!;
    const amb = { name: 'ambiguous.bpf.o', bytes: new Uint8Array(readFileSync(ambiguous)) };
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e as Error;
      }
      throw new Error('did not throw');
    };
    const e1 = err(() => minimizeBtf([objects[0]!, amb], btf));
    expect(e1).toBeInstanceOf(RelocationError);
    expect(e1.message).toMatch(/^ambiguous\.bpf\.o: kprobe\/do_nanosleep insn 0: byte_off struct elf_thread_core_info notes cannot be resolved against 6\.1 BTF: field offset ambiguity/);
    expect(e1.message).not.toContain('\n');
    const bytes = objects[0]!.bytes;
    for (const [name, data, re] of [
      ['garbage.o', new Uint8Array(512).fill(0x41), /^garbage\.o: .*not an ELF/],
      ['truncated.o', bytes.subarray(0, 400), /^truncated\.o: /],
      ['empty.o', new Uint8Array(0), /^empty\.o: /],
    ] as const) {
      const e = err(() => minimizeBtf([{ name, bytes: data }], btf));
      expect(e, name).toBeInstanceOf(FormatError);
      expect(e.message).toMatch(re);
      expect(e.message).not.toContain('\n');
    }
  });
});

/** Index of a member in a struct of the full BTF (to state expected member order). */
function order(btf: Btf, struct: string, member: string): number {
  const id = btf.byName(struct).find((i) => btf.kind(i) === Kind.STRUCT)!;
  return btf.typeOf(id, Kind.STRUCT).members.findIndex((m) => m.name === member);
}
