// The BTF reader, writer and sanitizer, checked against bpftool (libbpf's reader) on BTF that
// clang-19 really emitted, and on malformed input.
import { describe, expect, it } from 'vitest';
import { Btf, parseBtf, essentialName, type BtfType } from '../../harness/core/btf/btf.js';
import { Kind, KIND_NAMES } from '../../harness/core/btf/kinds.js';
import { encodeBtf, type TypeSpec } from '../../harness/core/btf/writer.js';
import { btfFeaturesUsed, sanitizeBtf, ALL_BTF_FEATURES } from '../../harness/core/btf/sanitize.js';
import { FormatError } from '../../harness/core/errors.js';
import { bpftoolDump, compileBpf, dumpSection, writeTmp, type BpftoolType } from '../helpers/tools.js';

const fixture = compileBpf('test/fixtures/btf_kinds.bpf.c');
const raw = dumpSection(fixture, '.BTF');

const ENC: Record<number, string> = { 0: '(none)', 1: 'SIGNED', 2: 'CHAR', 4: 'BOOL' };
const LINK_FUNC = ['static', 'global', 'extern'];
const LINK_VAR = ['static', 'global', 'extern'];

/** Our decoded type in bpftool's JSON shape. */
export function asBpftool(b: Btf, t: BtfType): BpftoolType {
  const base = { id: t.id, kind: KIND_NAMES[t.kind]!, name: t.name || '(anon)' };
  switch (t.kind) {
    case Kind.INT:
      return { ...base, size: t.size, bits_offset: t.bitOffset, nr_bits: t.bits, encoding: ENC[t.encoding] ?? String(t.encoding) };
    case Kind.PTR: case Kind.TYPEDEF: case Kind.VOLATILE: case Kind.CONST: case Kind.RESTRICT: case Kind.TYPE_TAG:
      return { ...base, type_id: t.type };
    case Kind.ARRAY:
      return { ...base, type_id: t.type, index_type_id: t.indexType, nr_elems: t.nelems };
    case Kind.STRUCT: case Kind.UNION:
      return { ...base, size: t.size, vlen: t.members.length, members: t.members.map((m) => ({ name: m.name || '(anon)', type_id: m.type, bits_offset: m.bitOffset, ...(m.bitfieldSize ? { bitfield_size: m.bitfieldSize } : {}) })) };
    case Kind.ENUM: case Kind.ENUM64:
      return { ...base, encoding: t.signed ? 'SIGNED' : 'UNSIGNED', size: t.size, vlen: t.values.length, values: t.values.map((v) => ({ name: v.name, val: Number(v.value) })) };
    case Kind.FWD:
      return { ...base, fwd_kind: t.union ? 'union' : 'struct' };
    case Kind.FUNC:
      return { ...base, type_id: t.type, linkage: LINK_FUNC[t.linkage] ?? String(t.linkage) };
    case Kind.FUNC_PROTO:
      return { ...base, ret_type_id: t.type, vlen: t.params.length, params: t.params.map((p) => ({ name: p.name || '(anon)', type_id: p.type })) };
    case Kind.VAR:
      return { ...base, type_id: t.type, linkage: LINK_VAR[t.linkage] ?? String(t.linkage) };
    case Kind.DATASEC:
      return { ...base, size: t.size, vlen: t.vars.length, vars: t.vars.map((v) => ({ type_id: v.type, offset: v.offset, size: v.size })) };
    case Kind.FLOAT:
      return { ...base, size: t.size };
    case Kind.DECL_TAG:
      return { ...base, type_id: t.type, component_idx: t.componentIdx };
    default:
      return base;
  }
}

function normalise(t: BpftoolType): BpftoolType {
  // bpftool prints an unsigned 32-bit ENUM value as a signed one only when the enum is signed.
  return JSON.parse(JSON.stringify(t)) as BpftoolType;
}

describe('BTF reader on clang-19 output', () => {
  const btf = parseBtf(raw, { source: 'btf_kinds.o' });
  const witness = bpftoolDump(fixture);

  it('decodes every type exactly as bpftool does', () => {
    expect(btf.count - 1).toBe(witness.length);
    for (const w of witness) expect(asBpftool(btf, btf.type(w.id)), `type #${w.id}`).toEqual(normalise(w));
  });

  it('covers every kind clang-19 emits, including the ones 5.10 lacks', () => {
    const kinds = new Set(witness.map((w) => w.kind));
    for (const k of ['INT', 'PTR', 'ARRAY', 'STRUCT', 'UNION', 'ENUM', 'FWD', 'TYPEDEF', 'VOLATILE', 'CONST', 'RESTRICT', 'FUNC', 'FUNC_PROTO', 'VAR', 'DATASEC', 'FLOAT', 'DECL_TAG', 'TYPE_TAG', 'ENUM64']) {
      expect(kinds.has(k), k).toBe(true);
    }
  });

  it('names types as C does', () => {
    const kinds = btf.byName('kinds').find((id) => btf.kind(id) === Kind.STRUCT)!;
    expect(btf.typeName(kinds)).toBe('struct kinds');
    const s = btf.typeOf(kinds, Kind.STRUCT);
    const byName = (n: string) => s.members.find((m) => m.name === n)!.type;
    expect(btf.typeName(byName('arr'))).toBe('char[5][4]');
    expect(btf.typeName(byName('fw'))).toBe('struct fwd_only *');
    expect(btf.sizeOf(kinds)).toBe(s.size);
    expect(btf.sizeOf(byName('arr'))).toBe(20);
    expect(btf.sizeOf(byName('b'))).toBe(8);
  });

  it('finds flavoured names by their essential name', () => {
    expect(essentialName('task_struct___old')).toBe('task_struct');
    expect(essentialName('a___b___c')).toBe('a___b');
    expect(essentialName('__x___')).toBe('__x___');
    expect(essentialName('plain')).toBe('plain');
    expect(btf.byEssentialName('kinds').length).toBeGreaterThan(0);
  });
});

describe('BTF writer', () => {
  const btf = parseBtf(raw, { source: 'btf_kinds.o' });
  const all: TypeSpec[] = [];
  for (let id = 1; id < btf.count; id++) {
    const { id: _, ...rest } = btf.type(id);
    all.push(rest as TypeSpec);
  }

  it('round-trips every type, and bpftool reads what we wrote identically', () => {
    const bytes = encodeBtf(all);
    const again = parseBtf(bytes, { source: 'rewritten' });
    for (let id = 1; id < btf.count; id++) expect(again.type(id)).toEqual(btf.type(id));
    const file = writeTmp('rewritten.btf', bytes);
    expect(bpftoolDump(file)).toEqual(bpftoolDump(fixture));
  });
});

describe('BTF sanitizer', () => {
  const btf = parseBtf(raw, { source: 'btf_kinds.o' });

  it('removes every kind a 5.10 kernel lacks and keeps ids and sizes', () => {
    const out = sanitizeBtf(btf, { ...ALL_BTF_FEATURES, float: false, declTag: false, typeTag: false, enum64: false });
    const file = writeTmp('sanitized.btf', out.bytes);
    const dumped = bpftoolDump(file);
    expect(dumped.length).toBe(btf.count - 1);
    const kinds = new Set(dumped.map((t) => t.kind));
    for (const k of ['FLOAT', 'DECL_TAG', 'TYPE_TAG', 'ENUM64']) expect(kinds.has(k), k).toBe(false);
    const s = parseBtf(out.bytes);
    const kindsId = btf.byName('kinds').find((id) => btf.kind(id) === Kind.STRUCT)!;
    expect(s.sizeOf(kindsId)).toBe(btf.sizeOf(kindsId));
    for (let id = 1; id < btf.count; id++) {
      if (btf.kind(id) === Kind.FLOAT || btf.kind(id) === Kind.ENUM64) expect(s.sizeOf(id)).toBe(btf.sizeOf(id));
    }
    expect(out.changes.join(' ')).toMatch(/FLOAT→STRUCT/);
  });

  it('changes nothing when the kernel has everything: the same bytes, loaded as they are', () => {
    const out = sanitizeBtf(btf, ALL_BTF_FEATURES);
    expect(out.changes).toEqual([]);
    expect(out.bytes).toBe(btf.bytes);
  });

  it('knows which features an object uses from the raw kinds, as bpftool lists its types', () => {
    const dumped = bpftoolDump(fixture);
    const has = (kind: string) => dumped.some((t) => t.kind === kind);
    const expected = new Set<string>();
    if (has('FLOAT')) expected.add('float');
    if (has('DECL_TAG')) expected.add('declTag');
    if (has('TYPE_TAG')) expected.add('typeTag');
    if (has('ENUM64') || dumped.some((t) => t.kind === 'ENUM' && (t as { encoding?: string }).encoding === 'SIGNED')) expected.add('enum64');
    if (dumped.some((t) => t.kind === 'FUNC' && (t as { linkage?: string }).linkage === 'global')) expected.add('funcGlobal');
    if (has('VAR') || has('DATASEC')) expected.add('datasec');
    expect(expected.size).toBeGreaterThan(3); // the fixture exists to use them
    expect(btfFeaturesUsed(btf)).toEqual(expected);
    // A feature the kernel lacks but the BTF does not use changes nothing either.
    const plain = parseBtf(encodeBtf([{ kind: Kind.INT, name: 'int', size: 4, encoding: 1, bitOffset: 0, bits: 32 }, { kind: Kind.PTR, name: '', type: 1 }]));
    expect(btfFeaturesUsed(plain)).toEqual(new Set());
    expect(sanitizeBtf(plain, { ...ALL_BTF_FEATURES, float: false, enum64: false }).bytes).toBe(plain.bytes);
    // The kernel is asked only about features the BTF uses.
    const asked: string[] = [];
    sanitizeBtf(btf, (f) => (asked.push(f), true));
    expect(new Set(asked)).toEqual(expected);
  });
});

describe('malformed BTF', () => {
  const expectFormatError = (bytes: Uint8Array, re: RegExp) => {
    let err: unknown;
    try {
      const b = parseBtf(bytes, { source: 'bad.btf' });
      for (let id = 1; id < b.count; id++) b.typeName(id);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FormatError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^bad\.btf: /);
    expect(msg).toMatch(re);
    expect(msg).not.toContain('\n');
  };

  it('rejects bad magic, short headers and out-of-bounds sections', () => {
    expectFormatError(new Uint8Array(10), /too short/);
    const bad = raw.slice();
    bad[0] = 0;
    expectFormatError(bad, /magic/);
    const big = raw.slice();
    new DataView(big.buffer).setUint32(12, 0x7fffffff, true);
    expectFormatError(big, /out of bounds/);
  });

  it('rejects every truncation with a FormatError, never another exception', () => {
    for (let n = 0; n < raw.length; n += 7) {
      const cut = raw.slice(0, n);
      try {
        const b = parseBtf(cut, { source: 'bad.btf' });
        for (let id = 1; id < b.count; id++) b.typeName(id);
      } catch (e) {
        expect(e, `truncated at ${n}`).toBeInstanceOf(FormatError);
      }
    }
  });

  it('rejects bad string offsets and unknown kinds', () => {
    const b = raw.slice();
    const dv = new DataView(b.buffer);
    const hdr = dv.getUint32(4, true);
    dv.setUint32(hdr + dv.getUint32(8, true), 0x00ffffff, true); // name_off of type #1
    expectFormatError(b, /name offset \d+ is outside the string section/);
    const k = raw.slice();
    const kv = new DataView(k.buffer);
    kv.setUint32(hdr + 4, 0x1f000000, true); // kind 31
    expectFormatError(k, /unknown kind 31/);
  });

  it('stops on type loops instead of hanging', () => {
    // typedef #1 -> typedef #2 -> typedef #1
    const bytes = encodeBtf([
      { kind: Kind.TYPEDEF, name: 'a', type: 2 },
      { kind: Kind.TYPEDEF, name: 'b', type: 1 },
      { kind: Kind.PTR, name: '', type: 3 },
    ]);
    const b = parseBtf(bytes, { source: 'bad.btf' });
    expect(() => b.sizeOf(1)).toThrow(/type loop/);
    expect(() => b.skipModsAndTypedefs(1)).toThrow(/type loop/);
    expect(() => b.typeName(3)).toThrow(/type loop/);
  });

  it('rejects references to types that do not exist', () => {
    const b = parseBtf(encodeBtf([{ kind: Kind.PTR, name: '', type: 99 }]), { source: 'bad.btf' });
    expect(() => b.typeName(1)).toThrow(/type id 99 out of range/);
  });
});
