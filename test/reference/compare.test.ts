// compareXlated / compareOutcomes on instruction streams recorded from real loads in guests
// (fixtures/xlated-recorded.json: core_kernel in 6.1 and 5.10, objects.bpf.c's tp_first and
// tp_second in 6.1, each loaded by our Collection and by libbpf 1.1 in the same kernel). Every
// pair of loads got different map ids, as two loads always do.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatInsn } from '../../harness/core/insn.js';
import type { RelocationRecord } from '../../harness/core/relo/report.js';
import { compareOutcomes, compareRelocations, compareXlated, hexBytes, parseLibbpfRelos } from '../../harness/reference/compare.js';

interface Load {
  kernel: string;
  object: string;
  program: string;
  ours: { xlated: string; relocations: RelocationRecord[] };
  libbpf: { xlated: string; relocations: string[] };
}
const { loads } = JSON.parse(readFileSync(new URL('./fixtures/xlated-recorded.json', import.meta.url), 'utf8')) as { loads: Load[] };
const load = (kernel: string, program: string) => loads.find((l) => l.kernel === kernel && l.program === program)!;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const slots = (x: string) => x.length / 16;
const imm = (x: string, i: number) => new DataView(hexBytes(x).buffer).getInt32(i * 8 + 4, true);
/** A copy of `x` with slot `i`'s imm (or, `hi`, the second ld_imm64 slot's imm) set. */
function withImm(x: string, i: number, v: number, hi = false): string {
  const b = hexBytes(x);
  new DataView(b.buffer).setInt32((i + (hi ? 1 : 0)) * 8 + 4, v, true);
  return hex(b);
}
/** Slot indices of ld_imm64 map references (src MAP_FD/MAP_VALUE). */
function mapRefs(x: string): number[] {
  const b = hexBytes(x);
  const out: number[] = [];
  for (let i = 0; i < b.length / 8; i++) {
    if (b[i * 8] === 0x18) {
      if ([1, 2].includes(b[i * 8 + 1]! >> 4)) out.push(i);
      i++;
    }
  }
  return out;
}
/** The slot of the first ALU64 `mov r, imm` that a relocation patched (libbpf says which). */
function patchedMov(l: Load): { insn: number; value: number } {
  const first = parseLibbpfRelos(l.libbpf.relocations).find((r) => r.patches.length && r.patches[0]!.field === 'imm')!;
  return { insn: first.insn, value: Number(first.patches[0]!.to) };
}

describe('compareXlated on real loads', () => {
  it('the recordings cover several kernels and programs with several maps', () => {
    expect(loads.map((l) => `${l.kernel}/${l.program}`)).toEqual(['6.1/core_kernel', '6.1/tp_first', '6.1/tp_second', '5.10/core_kernel']);
    expect(new Set(mapRefs(load('6.1', 'tp_first').ours.xlated).map((i) => imm(load('6.1', 'tp_first').ours.xlated, i))).size).toBeGreaterThanOrEqual(4);
  });

  for (const l of loads) {
    it(`${l.kernel} ${l.program}: raw dumps differ only in map ids, and compare equal`, () => {
      expect(l.ours.xlated).not.toBe(l.libbpf.xlated);
      const refs = mapRefs(l.ours.xlated);
      expect(refs.length).toBeGreaterThan(0);
      expect(mapRefs(l.libbpf.xlated)).toEqual(refs);
      // Blank the map ids on both sides: then the raw bytes are identical.
      const blank = (x: string) => refs.reduce((acc, i) => withImm(acc, i, 0), x);
      expect(blank(l.ours.xlated)).toBe(blank(l.libbpf.xlated));
      expect(compareXlated(l.ours.xlated, l.libbpf.xlated)).toEqual({ equal: true, insns: slots(l.ours.xlated) });
    });
  }

  it('names the first differing instruction in both loaders words (a wrong CO-RE offset)', () => {
    for (const kernel of ['6.1', '5.10']) {
      const l = load(kernel, 'core_kernel');
      const { insn, value } = patchedMov(l);
      expect(imm(l.libbpf.xlated, insn)).toBe(value);
      const r = compareXlated(withImm(l.ours.xlated, insn, value + 8), l.libbpf.xlated);
      expect(r.equal).toBe(false);
      expect(r.firstDiff).toEqual({ insn, ours: `r1 = 0x${(value + 8).toString(16)}`, theirs: `r1 = 0x${value.toString(16)}` });
    }
  });

  it('a reference to the wrong map differs (tp_first: two .data/.bss maps swapped at one load)', () => {
    const l = load('6.1', 'tp_first');
    const refs = mapRefs(l.ours.xlated);
    const ids = refs.map((i) => imm(l.ours.xlated, i));
    // The first reference whose map was already referenced before under another slot: point it to a different, known map.
    const k = ids.findIndex((id, j) => ids.indexOf(id) < j);
    const victim = k >= 0 ? k : refs.length - 1;
    const other = ids.find((id) => id !== ids[victim])!;
    const bad = withImm(l.ours.xlated, refs[victim]!, other);
    const r = compareXlated(bad, l.libbpf.xlated);
    expect(r.equal).toBe(false);
    expect(r.firstDiff!.insn).toBe(refs[victim]);
    expect(r.firstDiff!.ours).toMatch(/\(map #\d+ of this load\)$/);
    expect(r.firstDiff!.ours).not.toBe(r.firstDiff!.theirs);
  });

  it('a wrong map value offset differs; a consistently renamed map does not', () => {
    const l = load('6.1', 'tp_second');
    const [i] = mapRefs(l.ours.xlated) as [number];
    const off = compareXlated(withImm(l.ours.xlated, i, 0x40, true), l.libbpf.xlated);
    expect(off.firstDiff!.insn).toBe(i);
    expect(off.firstDiff!.ours).toMatch(/\+0x40 ll \(map #0 of this load\)$/);
    // Every reference to that map renamed to one fresh id: still the same program.
    const id = imm(l.ours.xlated, i);
    const renamed = mapRefs(l.ours.xlated).filter((j) => imm(l.ours.xlated, j) === id).reduce((acc, j) => withImm(acc, j, 777_777), l.ours.xlated);
    expect(renamed).not.toBe(l.ours.xlated);
    expect(compareXlated(renamed, l.libbpf.xlated).equal).toBe(true);
  });

  it('callback (ld_imm64 func) and subprogram calls are compared as they are', () => {
    const l = load('6.1', 'tp_second');
    const b = hexBytes(l.ours.xlated);
    const fn = [...Array(slots(l.ours.xlated)).keys()].find((i) => b[i * 8] === 0x18 && b[i * 8 + 1]! >> 4 === 4)!;
    expect(formatInsn(b, fn)).toMatch(/^r\d = func\[/);
    const r = compareXlated(withImm(l.ours.xlated, fn, imm(l.ours.xlated, fn) + 1), l.libbpf.xlated);
    expect(r.firstDiff?.insn).toBe(fn);
  });

  it('a shorter stream differs at its end', () => {
    const l = load('5.10', 'core_kernel');
    const n = slots(l.libbpf.xlated);
    const r = compareXlated(l.ours.xlated.slice(0, -16), l.libbpf.xlated);
    expect(r.firstDiff).toEqual({ insn: n - 1, ours: `<end: ${n - 1} insns>`, theirs: 'exit' });
  });

  it("arena addresses (ld_imm64 src 0, user space) moved by one page-aligned distance are per load; anything else differs", () => {
    /** `r1 = <value> ll; r2 = <value> ll; exit` */
    const prog = (...values: bigint[]) => {
      const b = new Uint8Array((values.length * 2 + 1) * 8);
      const dv = new DataView(b.buffer);
      values.forEach((v, k) => {
        b[k * 16] = 0x18;
        b[k * 16 + 1] = k + 1;
        dv.setUint32(k * 16 + 4, Number(v & 0xffffffffn), true);
        dv.setUint32(k * 16 + 12, Number(v >> 32n), true);
      });
      b[values.length * 16] = 0x95;
      return hex(b);
    };
    const base = 0x1_0000_0000n;
    const ours = prog(base + 8n, base + 0x6000n);
    expect(compareXlated(ours, prog(base + 0x5000n + 8n, base + 0xb000n))).toEqual({ equal: true, insns: 5, userAddressDelta: '0x5000' });
    expect(compareXlated(ours, ours)).toEqual({ equal: true, insns: 5 });
    // Two distances, a distance that is no whole page, a kernel address: real differences.
    expect(compareXlated(ours, prog(base + 0x5000n + 8n, base + 0xc000n)).firstDiff?.insn).toBe(2);
    expect(compareXlated(ours, prog(base + 0x10n, base + 0x6008n)).firstDiff?.insn).toBe(0);
    const kernel = 0xffff_8880_0000_0000n;
    expect(compareXlated(prog(kernel), prog(kernel + 0x1000n)).equal).toBe(false);
  });

  it("the bpf_prog_aux pointer the verifier loads into r3 for bpf_timer_set_callback is per load (recorded on 7.3); any other kernel address differs", () => {
    const timer = JSON.parse(readFileSync(new URL('./fixtures/xlated-timer.json', import.meta.url), 'utf8')) as { ours: string; libbpf: string };
    const r = compareXlated(timer.ours, timer.libbpf);
    expect(r).toEqual({ equal: true, insns: 108, progAuxPointers: 1 });
    // The instruction it forgives: `r3 = <kernel address> ll` right before a helper call.
    const b = hexBytes(timer.ours);
    const at = 44;
    expect(formatInsn(b, at)).toMatch(/^r3 = -0x[0-9a-f]+ ll$/);
    expect(formatInsn(b, at + 2)).toMatch(/^call /);
    // The same pointer into another register, or not before a call, is a real difference.
    const other = Buffer.from(hexBytes(timer.libbpf));
    other[at * 8 + 1] = (other[at * 8 + 1]! & 0xf0) | 2; // r2 instead of r3
    const mine = Buffer.from(b);
    mine[at * 8 + 1] = (mine[at * 8 + 1]! & 0xf0) | 2;
    expect(compareXlated(hex(mine), hex(other)).firstDiff?.insn).toBe(at);
    const noCall = Buffer.from(hexBytes(timer.libbpf));
    noCall[(at + 2) * 8] = 0xb7; // r? = imm: no longer a call
    const mineNoCall = Buffer.from(b);
    mineNoCall[(at + 2) * 8] = 0xb7;
    expect(compareXlated(hex(mineNoCall), hex(noCall)).firstDiff?.insn).toBe(at);
  });

  it('rejects malformed hex', () => {
    expect(() => compareXlated('abc', load('6.1', 'core_kernel').libbpf.xlated)).toThrow(/not a hex string/);
  });
});

describe('relocation decisions: ours vs libbpf log lines', () => {
  it('parses libbpf decisions and finds them equal to ours, poisoned ones included', () => {
    for (const kernel of ['6.1', '5.10']) {
      const l = load(kernel, 'core_kernel');
      const theirs = parseLibbpfRelos(l.libbpf.relocations);
      expect(theirs.length).toBe(l.ours.relocations.length);
      expect(theirs[0]).toMatchObject({ relo: 0, insn: 1, patches: [{ field: 'imm', from: '0' }], poisoned: false });
      // 6.1 has no task_struct.state (renamed __state in 5.14), 5.10 no __state: one of the two is poisoned.
      const poisoned = l.ours.relocations.map((r, k) => (r.status === 'poisoned' ? k : -1)).filter((k) => k >= 0);
      expect(poisoned.length).toBeGreaterThan(0);
      expect(theirs.map((r, k) => (r.poisoned ? k : -1)).filter((k) => k >= 0)).toEqual(poisoned);
      expect(compareRelocations(l.ours.relocations, theirs)).toEqual({ agree: theirs.length });
    }
  });

  it('names the first relocation decided differently', () => {
    const l = load('6.1', 'core_kernel');
    const t = l.ours.relocations[1]!;
    const ours = l.ours.relocations.map((r, k) => (k === 1 ? { ...r, target: (r.target as number) + 8 } : r));
    const d = compareRelocations(ours, parseLibbpfRelos(l.libbpf.relocations));
    expect(d?.agree).toBe(1);
    expect(d?.firstDiff).toBe(`relo #1 byte_off struct task_struct tgid: ours 4 -> ${(t.target as number) + 8}, libbpf 4 -> ${t.target} (insn #14)`);
  });
});

describe('compareOutcomes', () => {
  const l = load('6.1', 'core_kernel');
  const ours = { name: 'core_kernel', status: 'loaded' as const, xlated: l.ours.xlated, relocations: l.ours.relocations };
  const theirs = { name: 'core_kernel', status: 'loaded' as const, xlated: l.libbpf.xlated, relocations: l.libbpf.relocations };
  it('same', () => {
    const c = compareOutcomes(ours, theirs);
    expect(c.verdict).toBe('same');
    expect(c.line).toBe(`core_kernel: same (${slots(l.ours.xlated)} xlated insns identical; 14 relocations agree)`);
  });
  it('differs: first insn and the relocation behind it', () => {
    const { insn, value } = patchedMov(l);
    const c = compareOutcomes(
      { ...ours, xlated: withImm(l.ours.xlated, insn, value + 8), relocations: l.ours.relocations.map((r, k) => (k === 0 ? { ...r, target: value + 8 } : r)) },
      theirs,
    );
    expect(c.verdict).toBe('differs');
    expect(c.line).toBe(
      `core_kernel: differs at xlated insn ${insn}: ours \`r1 = 0x${(value + 8).toString(16)}\`, libbpf \`r1 = 0x${value.toString(16)}\`; relocations differ: relo #0 byte_off struct task_struct pid: ours 0 -> ${value + 8}, libbpf 0 -> ${value} (insn #1)`,
    );
    expect(c.reloDiff).toMatch(/^relo #0 /);
  });
  it('one loaded, the other not; both failing alike or not', () => {
    expect(compareOutcomes(ours, { ...theirs, status: 'rejected', reason: 'verifier rejected it: R1 invalid mem access', xlated: undefined }).verdict).toBe('only-ours-loaded');
    const c = compareOutcomes({ ...ours, status: 'relocation-failed', reason: 'x', xlated: undefined }, theirs);
    expect(c.verdict).toBe('only-reference-loaded');
    expect(c.line).toMatch(/^core_kernel: libbpf loaded, ours relocation-failed: x/);
    expect(compareOutcomes({ ...ours, status: 'rejected', xlated: undefined }, { ...theirs, status: 'rejected', xlated: undefined }).verdict).toBe('same');
    expect(compareOutcomes({ ...ours, status: 'rejected', xlated: undefined }, { ...theirs, status: 'error', xlated: undefined }).verdict).toBe('differs');
    expect(compareOutcomes(ours, { ...theirs, xlated: undefined }).line).toMatch(/both loaded, but libbpf's xlated instructions are missing/);
  });
});

describe('compareXlated: jump table addresses (gotox)', () => {
  /** `r1 = <addr> ll; gotox r1; r1 = <addr2> ll; exit` as the kernel dumps a program with jump tables. */
  const program = (a: bigint, b: bigint, gotox = true): string => {
    const x = new Uint8Array(6 * 8);
    const dv = new DataView(x.buffer);
    const ld = (at: number, v: bigint) => {
      dv.setUint8(at, 0x18);
      dv.setUint8(at + 1, 1);
      dv.setUint32(at + 4, Number(v & 0xffffffffn), true);
      dv.setUint32(at + 12, Number(v >> 32n), true);
    };
    ld(0, a);
    dv.setUint8(16, gotox ? 0x0d : 0x05);
    dv.setUint8(17, gotox ? 1 : 0);
    ld(24, b);
    dv.setUint8(40, 0x95);
    return hex(x);
  };
  const A = 0xffff_8880_0100_0000n, B = 0xffff_8880_0200_0000n, C = 0xffff_8880_0300_0000n;

  it('in a program with a gotox, each load\'s INSN_ARRAY addresses compare up to a consistent renaming', () => {
    expect(compareXlated(program(A, B), program(B, C)).equal).toBe(true);
    expect(compareXlated(program(A, A), program(C, C)).equal).toBe(true);
    // One table on one side, two on the other: a real difference.
    expect(compareXlated(program(A, A), program(B, C)).equal).toBe(false);
  });

  it('without a gotox, kernel addresses must be identical', () => {
    expect(compareXlated(program(A, B, false), program(B, C, false)).equal).toBe(false);
    expect(compareXlated(program(A, B, false), program(A, B, false)).equal).toBe(true);
  });
});
