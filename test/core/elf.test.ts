// ELF reader against llvm-readobj-19 (the witness) on clang-compiled objects, plus malformed input.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EM_BPF, EM_X86_64, SHT_NOBITS, type ElfFile, parseElf } from '../../harness/core/elf.js';
import { FormatError } from '../../harness/core/errors.js';
import { compileFixture, readobjJson, scratchDir, type ReadobjJson } from '../fixtures/compile.js';

/** Parses and walks everything the reader exposes, so lazy parts are exercised too. */
function walk(bytes: Uint8Array, source = 'x.o'): ElfFile {
  const elf = parseElf(bytes, source);
  void elf.symbols;
  for (const s of elf.sections) {
    elf.data(s);
    if (s.type === 9) elf.relocationsFor(elf.sectionAt(s.info));
  }
  void elf.license;
  void elf.kernVersion;
  return elf;
}

describe('ELF reader', () => {
  const cleanup: string[] = [];
  afterAll(() => cleanup.forEach((d) => rmSync(d, { recursive: true, force: true })));
  let obj: { path: string; bytes: Uint8Array };
  let ro: ReadobjJson;
  beforeAll(() => {
    obj = compileFixture('objects');
    ro = readobjJson(obj.path);
  });

  it('reads the same section headers as llvm-readobj', () => {
    const elf = parseElf(obj.bytes, 'objects.bpf.o');
    expect(elf.machine).toBe(EM_BPF);
    expect(elf.sections.length).toBe(ro.Sections.length);
    for (const { Section: w } of ro.Sections) {
      const s = elf.sections[w.Index]!;
      expect({ name: s.name, type: s.type, flags: s.flags, offset: s.offset, size: s.size, link: s.link, info: s.info, align: s.addralign, entsize: s.entsize })
        .toEqual({ name: w.Name.Name, type: w.Type.Value, flags: w.Flags.Value, offset: w.Offset, size: w.Size, link: w.Link, info: w.Info, align: w.AddressAlignment, entsize: w.EntrySize });
      if (w.Name.Name) expect(elf.section(w.Name.Name)?.index).toBeDefined();
    }
  });

  it('reads the same symbols as llvm-readobj', () => {
    const elf = parseElf(obj.bytes, 'objects.bpf.o');
    expect(elf.symbols.length).toBe(ro.Symbols.length);
    ro.Symbols.forEach(({ Symbol: w }, i) => {
      const s = elf.symbols[i]!;
      // llvm-readobj names section symbols after their section; the raw st_name is empty.
      const name = w.Type.Value === 3 ? elf.sections[s.shndx]!.name : s.name;
      expect({ name, value: s.value, size: s.size, bind: s.bind, type: s.type, vis: s.visibility, shndx: s.shndx })
        .toEqual({ name: w.Name.Name, value: w.Value, size: w.Size, bind: w.Binding.Value, type: w.Type.Value, vis: w.Other.Value & 3, shndx: w.Section.Value });
    });
  });

  it('reads the same relocations as llvm-readobj', () => {
    const elf = parseElf(obj.bytes, 'objects.bpf.o');
    let n = 0;
    for (const group of ro.Relocations) {
      const relSec = elf.sections[group.SectionIndex]!;
      const ours = elf.rels(relSec);
      expect(ours.length).toBe(group.Relocs.length);
      group.Relocs.forEach(({ Relocation: w }, i) => {
        const r = ours[i]!;
        expect({ offset: r.offset, type: r.type, sym: r.sym }).toEqual({ offset: w.Offset, type: w.Type.Value, sym: w.Symbol.Value });
        n++;
      });
      expect(elf.relocationsFor(elf.sections[relSec.info]!).length).toBe(group.Relocs.length);
    }
    expect(n).toBeGreaterThan(20);
  });

  it('reads license, version and NOBITS sections', () => {
    const elf = parseElf(obj.bytes, 'objects.bpf.o');
    expect(elf.license).toBe('GPL');
    expect(elf.kernVersion).toBeUndefined();
    const bss = elf.section('.bss')!;
    expect(bss.type).toBe(SHT_NOBITS);
    expect(elf.data(bss)).toEqual(new Uint8Array(bss.size));
    const legacy = compileFixture('legacy');
    const l = parseElf(legacy.bytes, 'legacy.bpf.o');
    expect(l.license).toBe('Dual BSD/GPL');
    expect(l.kernVersion).toBe(0x050a00);
  });

  it('extracts .BTF from an x86-64 object (as from vmlinux)', () => {
    const dir = scratchDir();
    cleanup.push(dir);
    const btf = join(dir, 'btf.bin');
    const x86 = join(dir, 'x86.o');
    execFileSync('llvm-objcopy-19', ['--dump-section', `.BTF=${btf}`, obj.path]);
    execFileSync('clang-19', ['-O2', '-c', '-x', 'c', '-o', x86, '-'], { input: 'int answer(void) { return 42; }\n' });
    execFileSync('llvm-objcopy-19', ['--add-section', `.BTF=${btf}`, x86]);
    const elf = parseElf(new Uint8Array(readFileSync(x86)), 'x86.o');
    expect(elf.machine).toBe(EM_X86_64);
    expect(Buffer.from(elf.data(elf.section('.BTF')!)).equals(readFileSync(btf))).toBe(true);
  });

  it('rejects every truncation with a FormatError', () => {
    const full = obj.bytes;
    let rejected = 0;
    for (let len = 0; len < full.length; len += len < 128 ? 1 : 13) {
      try {
        walk(full.subarray(0, len));
      } catch (e) {
        expect(e, `truncated at ${len}`).toBeInstanceOf(FormatError);
        expect((e as Error).message).toMatch(/^x\.o: /);
        rejected++;
        continue;
      }
      throw new Error(`truncation at ${len} of ${full.length} bytes was accepted`);
    }
    expect(rejected).toBeGreaterThan(1000);
  });

  it('names the section, what is wrong and the offset', () => {
    const elf = parseElf(obj.bytes, 'a.o');
    const shoff = Number(new DataView(obj.bytes.buffer, obj.bytes.byteOffset).getBigUint64(40, true));
    const rel = elf.section('.rel.text')!;
    const bad = new Uint8Array(obj.bytes);
    const dv = new DataView(bad.buffer);
    dv.setBigUint64(shoff + rel.index * 64 + 24, BigInt(obj.bytes.length - 8), true);
    expect(() => walk(bad, 'a.o')).toThrow(new RegExp(`^a\\.o: section ${rel.index} \\(\\.rel\\.text\\) extends past end of file \\(at offset ${obj.bytes.length - 8}\\)$`));

    const badName = new Uint8Array(obj.bytes);
    new DataView(badName.buffer).setUint32(shoff + 3 * 64, 0xffffff, true);
    expect(() => walk(badName, 'a.o')).toThrow(/^a\.o: section 3 has a bad name offset 16777215/);

    const symtab = elf.sections.find((s) => s.type === 2)!;
    const badSym = new Uint8Array(obj.bytes);
    new DataView(badSym.buffer).setUint32(symtab.offset + 5 * 24, 0x7fffffff, true);
    expect(() => walk(badSym, 'a.o')).toThrow(/^a\.o: symbol 5 has a bad name offset/);

    const badRel = new Uint8Array(obj.bytes);
    new DataView(badRel.buffer).setUint32(rel.offset + 12, 9999, true);
    expect(() => walk(badRel, 'a.o')).toThrow(/refers to symbol 9999, out of range/);

    const badMagic = new Uint8Array(obj.bytes);
    badMagic[1] = 0;
    expect(() => walk(badMagic, 'a.o')).toThrow(/^a\.o: not an ELF file/);
  });

  it('never throws anything but FormatError on random corruption', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const ehdrAndShdrs = (b: Uint8Array) => {
      const shoff = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(40, true));
      return [0, 64, shoff, b.length] as const;
    };
    const [, , shoff, end] = ehdrAndShdrs(obj.bytes);
    for (let k = 0; k < 3000; k++) {
      const b = new Uint8Array(obj.bytes);
      // Corrupt the headers mostly: that is where the reader trusts the file.
      const inHeaders = rnd() < 0.7;
      const pos = inHeaders ? (rnd() < 0.2 ? Math.floor(rnd() * 64) : shoff + Math.floor(rnd() * (end - shoff))) : Math.floor(rnd() * b.length);
      b[pos] = Math.floor(rnd() * 256);
      if (rnd() < 0.5) b[pos + 1] = 0xff;
      try {
        walk(b);
      } catch (e) {
        if (!(e instanceof FormatError)) throw new Error(`corruption at ${pos}: ${String(e)}`);
      }
    }
  });
});
