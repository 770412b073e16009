// .BTF.ext reader against llvm-objdump-19 (CO-RE relocations), the symbol table (func_info) and
// the C source itself (line_info line text), plus malformed input.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Btf, parseBtf } from '../../harness/core/btf/btf.js';
import { type BtfExt, parseBtfExt } from '../../harness/core/btf/ext.js';
import { Kind } from '../../harness/core/btf/kinds.js';
import { SHF_EXECINSTR, STT_FUNC, parseElf } from '../../harness/core/elf.js';
import { FormatError } from '../../harness/core/errors.js';
import { FIXTURES, compileFixture, tool } from '../fixtures/compile.js';

/** Kind names as llvm-objdump prints them, indexed by relocation kind. */
const LLVM_KIND = ['byte_off', 'byte_sz', 'field_exists', 'signed', 'lshift_u64', 'rshift_u64', 'local_type_id', 'target_type_id', 'type_exists', 'type_size', 'enumval_exists', 'enumval_value', 'type_matches'];

interface Witness { section: string; off: number; kind: string; typeId: number; text: string }

function objdumpCoreRelos(path: string): Witness[] {
  const out: Witness[] = [];
  let section = '';
  for (const line of tool('llvm-objdump-19', ['-dr', '--no-show-raw-insn', path]).split('\n')) {
    const s = /^Disassembly of section (.*):$/.exec(line);
    if (s) section = s[1]!;
    const m = /^\s+([0-9a-f]+):\s+CO-RE <(\w+)> \[(\d+)\] (.*)$/.exec(line);
    if (m) out.push({ section, off: parseInt(m[1]!, 16), kind: m[2]!, typeId: Number(m[3]), text: m[4]! });
  }
  return out;
}

describe('.BTF.ext reader', () => {
  let path: string;
  let bytes: Uint8Array;
  let btf: Btf;
  let extBytes: Uint8Array;
  let ext: BtfExt;
  beforeAll(() => {
    ({ path, bytes } = compileFixture('objects'));
    const elf = parseElf(bytes, 'objects.bpf.o');
    btf = parseBtf(elf.data(elf.section('.BTF')!), { source: 'objects.bpf.o: .BTF' });
    extBytes = elf.data(elf.section('.BTF.ext')!);
    ext = parseBtfExt(extBytes, btf, 'objects.bpf.o');
  });

  it('reads the CO-RE relocations llvm-objdump prints', () => {
    const witness = objdumpCoreRelos(path);
    expect(witness.length).toBeGreaterThanOrEqual(9);
    const ours = [...ext.coreRelos].flatMap(([section, l]) => l.map((r) => ({ section, ...r })));
    expect(ours.length).toBe(witness.length);
    const key = (s: string, o: number) => `${s}@${o}`;
    const bySite = new Map(ours.map((r) => [key(r.section, r.insnOff), r]));
    const kinds = new Set<string>();
    for (const w of witness) {
      const r = bySite.get(key(w.section, w.off));
      expect(r, `${w.section}+${w.off}`).toBeDefined();
      expect(LLVM_KIND[r!.kind]).toBe(w.kind);
      expect(r!.typeId).toBe(w.typeId);
      kinds.add(w.kind);
      const field = /\(([\d:]+)\)$/.exec(w.text);
      if (r!.kind <= 5) {
        expect(r!.accessStr).toBe(field![1]);
      } else if (r!.kind === 10 || r!.kind === 11) {
        // "enum E::NAME = value": the access string is the enumerator's index.
        const t = btf.type(r!.typeId);
        if (t.kind !== Kind.ENUM && t.kind !== Kind.ENUM64) throw new Error('enumval relo on a non-enum');
        const v = t.values[Number(r!.accessStr)]!;
        expect(w.text).toBe(`${btf.typeName(r!.typeId)}::${v.name} = ${v.value}`);
      } else {
        expect(r!.accessStr).toBe('0');
        expect(w.text).toBe(btf.typeName(r!.typeId));
      }
    }
    expect([...kinds].sort()).toEqual(['byte_off', 'enumval_value', 'field_exists', 'type_exists', 'type_size']);
  });

  it('has one func_info per function symbol, naming it', () => {
    const elf = parseElf(bytes, 'objects.bpf.o');
    let n = 0;
    for (const sym of elf.symbols) {
      if (sym.type !== STT_FUNC || !(elf.sections[sym.shndx]!.flags & SHF_EXECINSTR)) continue;
      const sec = elf.sections[sym.shndx]!.name;
      const recs = ext.funcInfo.get(sec)!.filter((f) => f.insnOff === sym.value);
      expect(recs.length, sym.name).toBe(1);
      expect(btf.kind(recs[0]!.typeId)).toBe(Kind.FUNC);
      expect(btf.name(recs[0]!.typeId)).toBe(sym.name);
      n++;
    }
    expect([...ext.funcInfo.values()].flat().length).toBe(n);
    expect(ext.funcInfoRecSize).toBe(8);
    expect(ext.lineInfoRecSize).toBe(16);
  });

  it('line_info points at the real source lines', () => {
    const src = readFileSync(join(FIXTURES, 'objects.bpf.c'), 'utf8').split('\n');
    const all = [...ext.lineInfo.values()].flat();
    expect(all.length).toBeGreaterThan(50);
    for (const l of all) {
      expect(btf.str(l.fileNameOff)).toMatch(/objects\.bpf\.c$/);
      expect(btf.str(l.lineOff).trim()).toBe(src[l.line - 1]!.trim());
      expect(l.col).toBeLessThanOrEqual(src[l.line - 1]!.length + 1);
    }
    for (const l of ext.lineInfo.values()) for (let i = 1; i < l.length; i++) expect(l[i]!.insnOff).toBeGreaterThanOrEqual(l[i - 1]!.insnOff);
  });

  it('rejects every truncation with a FormatError', () => {
    for (let len = 0; len < extBytes.length; len++) {
      expect(() => parseBtfExt(extBytes.subarray(0, len), btf, 'a.o'), `truncated at ${len}`).toThrow(FormatError);
    }
  });

  it('names bad offsets, record sizes and kinds', () => {
    const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
    const hdr = dv(extBytes).getUint32(4, true);
    const funcOff = hdr + dv(extBytes).getUint32(8, true);
    const coreOff = hdr + dv(extBytes).getUint32(24, true);

    const badName = new Uint8Array(extBytes);
    dv(badName).setUint32(funcOff + 4, 0xfffffff, true);
    expect(() => parseBtfExt(badName, btf, 'a.o')).toThrow(/^a\.o: \.BTF\.ext: func_info section name: bad string offset 268435455 \(at offset \d+\)$/);

    const badRec = new Uint8Array(extBytes);
    dv(badRec).setUint32(funcOff, 3, true);
    expect(() => parseBtfExt(badRec, btf, 'a.o')).toThrow(/func_info record size 3 is invalid/);

    const badAccess = new Uint8Array(extBytes);
    dv(badAccess).setUint32(coreOff + 4 + 8 + 8, 0xfffffff, true);
    expect(() => parseBtfExt(badAccess, btf, 'a.o')).toThrow(/core_relo in '.*': access string: bad string offset/);

    const badKind = new Uint8Array(extBytes);
    dv(badKind).setUint32(coreOff + 4 + 8 + 12, 99, true);
    expect(() => parseBtfExt(badKind, btf, 'a.o')).toThrow(/unknown kind 99/);

    const badCount = new Uint8Array(extBytes);
    dv(badCount).setUint32(funcOff + 8, 0x10000000, true);
    expect(() => parseBtfExt(badCount, btf, 'a.o')).toThrow(/past the end of the subsection/);

    const badMagic = new Uint8Array(extBytes);
    badMagic[0] = 0;
    expect(() => parseBtfExt(badMagic, btf, 'a.o')).toThrow(/^a\.o: \.BTF\.ext: bad magic/);
  });

  it('never throws anything but FormatError on random corruption', () => {
    let seed = 777;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let k = 0; k < 3000; k++) {
      const b = new Uint8Array(extBytes);
      const pos = Math.floor(rnd() * b.length);
      b[pos] = Math.floor(rnd() * 256);
      try {
        parseBtfExt(b, btf, 'a.o');
      } catch (e) {
        if (!(e instanceof FormatError)) throw new Error(`corruption at ${pos}: ${String(e)}`);
      }
    }
  });
});
