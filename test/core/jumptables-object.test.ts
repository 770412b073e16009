// gotox jump tables (`.jumptables`) read and linked by the pure core, on a fixture compiled here
// with clang-19 (test/fixtures/percpu-jumptables/jumptables.bpf.c: tables written as clang-20+
// emits them, each entry's target returning its own constant). Witnesses: llvm-objcopy (the
// section's bytes), llvm-readobj (the tables' symbols, the functions' extents), the fixture's
// own instructions (an entry must land on the `r0 = N` its label marks, wherever the linker put
// the function) and the UAPI header of the kernel tree the current libbpf is built from
// (BPF_MAP_TYPE_INSN_ARRAY, struct bpf_insn_array_value), compiled and run with cc.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '../../harness/core/errors.js';
import { BPF_PSEUDO_MAP_VALUE, LD_IMM64, formatInsn, readInsn } from '../../harness/core/insn.js';
import {
  INSN_ARRAY_VALUE_SIZE, JUMPTABLES_SECTION, MAP_TYPE_INSN_ARRAY, insnArrayValue, jumpTableMapDef, linkProgram, loadObjectSpec, type LinkedProgram, type ObjectSpec,
} from '../../harness/core/object/index.js';
import { kernelSelftests } from '../../harness/corpus/kernel-selftests.js';
import { reachable } from '../../harness/core/relo/reach.js';
import { readobjJson, type ReadobjJson } from '../fixtures/compile.js';
import { compileBpf, dumpSection } from '../helpers/tools.js';

let path: string;
let obj: ObjectSpec;
let ro: ReadobjJson;
let uapi: { insnArray: number; valueSize: number; origOff: number };
const tmp = mkdtempSync(join(tmpdir(), 'cm-jumptables-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  path = compileBpf(fileURLToPath(new URL('../fixtures/percpu-jumptables/jumptables.bpf.c', import.meta.url)));
  obj = loadObjectSpec(new Uint8Array(readFileSync(path)), 'jumptables.bpf.o');
  ro = readobjJson(path);
  // The newest kernel tree's UAPI (the one the current libbpf and the selftests corpus come from).
  const corpus = await kernelSelftests({ only: (n) => n === 'verifier_gotox' });
  const uapiDir = join(dirname(dirname(corpus.objects[0]!.path)), 'tree', 'tools', 'include', 'uapi', 'linux');
  // Its bpf.h and bpf_common.h over the system's other UAPI headers (types, asm).
  const header = join(tmp, 'include');
  mkdirSync(join(header, 'linux'), { recursive: true });
  for (const f of ['bpf.h', 'bpf_common.h']) copyFileSync(join(uapiDir, f), join(header, 'linux', f));
  const c = join(tmp, 'uapi.c');
  writeFileSync(c, '#include <stdio.h>\n#include <stddef.h>\n#include <linux/bpf.h>\nint main(void) { printf("%d %zu %zu\\n", BPF_MAP_TYPE_INSN_ARRAY, sizeof(struct bpf_insn_array_value), offsetof(struct bpf_insn_array_value, orig_off)); return 0; }\n');
  execFileSync('cc', ['-I', header, c, '-o', join(tmp, 'uapi')]);
  const [insnArray, valueSize, origOff] = execFileSync(join(tmp, 'uapi'), { encoding: 'utf8' }).trim().split(' ').map(Number) as [number, number, number];
  uapi = { insnArray, valueSize, origOff };
}, 20 * 60_000);

const sym = (name: string) => ro.Symbols.find((s) => s.Symbol.Name.Name === name)!.Symbol;
/** The constant each target returns (`r0 = N`), read from the linked program itself. */
const landsOn = (l: LinkedProgram, targets: number[]) => targets.map((t) => formatInsn(l.insns, t));

describe('.jumptables', () => {
  it('is kept as the section holds it, and each ld_imm64 of a table is a jump table relocation naming its symbol', () => {
    expect(Buffer.from(obj.jumpTables!).toString('hex')).toBe(Buffer.from(dumpSection(path, JUMPTABLES_SECTION)).toString('hex'));
    const jt = [...obj.relocs.values()].flat().filter((r) => r.kind === 'jumptable');
    expect(jt.map((r) => r.kind === 'jumptable' && r.symbol).sort()).toEqual(['bad_table', 'first_table', 'second_table', 'second_table', 'sub_table']);
    for (const r of jt) {
      if (r.kind !== 'jumptable') continue;
      expect({ offset: r.offset, size: r.size }).toEqual({ offset: sym(r.symbol).Value, size: sym(r.symbol).Size });
    }
  });

  it('a program first in its section: entries are its own instruction indices, the load points at table #0', () => {
    const l = linkProgram(obj, 'jt_first');
    expect(l.jumpTables).toHaveLength(1);
    const t = l.jumpTables[0]!;
    expect({ symbol: t.symbol, offset: t.offset, insns: t.insns }).toEqual({ symbol: 'first_table', offset: sym('first_table').Value, insns: [0] });
    expect(landsOn(l, t.targets)).toEqual(['r0 = 0xa', 'r0 = 0x14', 'r0 = 0x1e']);
    const ld = readInsn(l.insns, 0);
    expect({ code: ld.code, src: ld.src, off: ld.off, imm: ld.imm, hi: readInsn(l.insns, 1).imm }).toEqual({ code: LD_IMM64, src: BPF_PSEUDO_MAP_VALUE, off: 0, imm: 0, hi: 0 });
    expect(l.mapRefs).toEqual([]);
  });

  it('a program further into its section and the subprogram appended to it: every entry moves with its function', () => {
    const l = linkProgram(obj, 'jt_second');
    // The witness for the move: where the functions are in the object and where they went.
    expect(sym('jt_second').Value).toBeGreaterThan(0);
    expect(sym('table_sub').Value).toBeGreaterThan(0);
    expect(l.layout.map((f) => f.name)).toEqual(['jt_second', 'table_sub']);
    expect(l.jumpTables.map((t) => t.symbol)).toEqual(['second_table', 'sub_table']);
    const [second, sub] = l.jumpTables as [LinkedProgram['jumpTables'][0], LinkedProgram['jumpTables'][0]];
    expect(landsOn(l, second.targets)).toEqual(['r0 = 0x32', 'r0 = 0x3c']);
    expect(landsOn(l, sub.targets)).toEqual(['r0 = 0x28', 'r0 = 0x29']);
    const subStart = l.layout[1]!.start;
    for (const target of sub.targets) expect(target).toBeGreaterThanOrEqual(subStart);
    // One table loaded twice is one table (one map) with both loads pointing at it.
    expect(second.insns).toHaveLength(2);
    for (const [index, t] of l.jumpTables.entries()) {
      for (const i of t.insns) expect(readInsn(l.insns, i)).toMatchObject({ code: LD_IMM64, src: BPF_PSEUDO_MAP_VALUE, imm: index, off: 0 });
    }
    expect(sub.insns[0]).toBeGreaterThanOrEqual(subStart);
  });

  it('a table libbpf would refuse (its size no multiple of 8) fails the link, naming object, program and table', () => {
    expect(sym('bad_table').Size).toBe(12);
    expect(() => linkProgram(obj, 'jt_bad_size')).toThrow(FormatError);
    expect(() => linkProgram(obj, 'jt_bad_size')).toThrow("jumptables.bpf.o: prog 'jt_bad_size': jump table 'bad_table' (12 bytes at .jumptables+56): its size is not a multiple of 8");
  });

  it('each table becomes the BPF_MAP_TYPE_INSN_ARRAY libbpf creates: u32 keys, one bpf_insn_array_value per entry', () => {
    expect(MAP_TYPE_INSN_ARRAY).toBe(uapi.insnArray);
    expect(INSN_ARRAY_VALUE_SIZE).toBe(uapi.valueSize);
    const t = linkProgram(obj, 'jt_first').jumpTables[0]!;
    expect(jumpTableMapDef(t)).toEqual({ name: '.jumptables', type: uapi.insnArray, keySize: 4, valueSize: uapi.valueSize, maxEntries: 3, flags: 0 });
    const v = insnArrayValue(t.targets[2]!);
    expect(v.length).toBe(uapi.valueSize);
    expect(new DataView(v.buffer).getUint32(uapi.origOff, true)).toBe(t.targets[2]);
    expect([...v].filter((_, i) => i < uapi.origOff || i >= uapi.origOff + 4).every((b) => b === 0)).toBe(true);
  });
});

describe('reachability with an indirect jump', () => {
  it('gives up at a gotox (its targets are in a map, not the code), so a poisoned instruction behind it counts as reachable', () => {
    // gotox r1; exit; r0 = 0xbad (where a table could point); exit
    const insns = new Uint8Array(32);
    const dv = new DataView(insns.buffer);
    dv.setUint8(0, 0x0d);
    dv.setUint8(1, 1);
    dv.setUint8(8, 0x95);
    dv.setUint8(16, 0xb7);
    dv.setInt32(20, 0xbad, true);
    dv.setUint8(24, 0x95);
    expect(formatInsn(insns, 0)).toMatch(/^gotox r1/);
    expect(reachable(insns, 0)).toBeUndefined();
    // The same program with a plain `goto +0` is exactly known: the third instruction is dead.
    dv.setUint8(0, 0x05);
    dv.setUint8(1, 0);
    expect(reachable(insns, 0)).toEqual(new Uint8Array([1, 1, 0, 0]));
  });
});
