// compareXlated / compareOutcomes on instruction streams recorded from real loads: core_kernel.bpf.c
// loaded by our Collection and by libbpf 1.1 in the same kernel (fixtures/core_kernel-xlated.json,
// recorded by the differential run; the two loads got different map ids, as every pair of loads does).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { RelocationRecord } from '../../harness/core/relo/report.js';
import { compareOutcomes, compareRelocations, compareXlated, hexBytes, parseLibbpfRelos } from '../../harness/reference/compare.js';

const rec = JSON.parse(readFileSync(new URL('./fixtures/core_kernel-xlated.json', import.meta.url), 'utf8')) as {
  ours: { xlated: string; relocations: RelocationRecord[] };
  libbpf: { xlated: string; relocations: string[] };
};

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
/** A copy of `x` with slot `i`'s imm (or, `hi`, the second ld_imm64 slot's imm) set. */
function withImm(x: string, i: number, imm: number, hi = false): string {
  const b = hexBytes(x);
  new DataView(b.buffer).setInt32((i + (hi ? 1 : 0)) * 8 + 4, imm, true);
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

describe('compareXlated on real loads', () => {
  it('the two loads differ in raw bytes (map ids) yet compare equal', () => {
    expect(rec.ours.xlated).not.toBe(rec.libbpf.xlated);
    const refs = mapRefs(rec.ours.xlated);
    expect(refs.length).toBeGreaterThan(0);
    // Only the map-id word differs between the raw streams.
    for (const i of refs) expect(hexBytes(rec.ours.xlated)[i * 8 + 4]).not.toBe(hexBytes(rec.libbpf.xlated)[i * 8 + 4]);
    const r = compareXlated(rec.ours.xlated, rec.libbpf.xlated);
    expect(r).toEqual({ equal: true, insns: hexBytes(rec.ours.xlated).length / 8 });
  });

  it('names the first differing instruction in both loaders words (a wrong CO-RE offset)', () => {
    // Slot 1 is `r1 = 0x4f0` on the recording kernel: task_struct.pid, libbpf's relo #0.
    const bad = withImm(rec.ours.xlated, 1, 0x4f8);
    const r = compareXlated(bad, rec.libbpf.xlated);
    expect(r.equal).toBe(false);
    expect(r.firstDiff).toEqual({ insn: 1, ours: 'r1 = 0x4f8', theirs: 'r1 = 0x4f0' });
  });

  it('a wrong map value offset differs; a consistently renamed map does not', () => {
    const [i] = mapRefs(rec.ours.xlated) as [number];
    const off = compareXlated(withImm(rec.ours.xlated, i, 8, true), rec.libbpf.xlated);
    expect(off.equal).toBe(false);
    expect(off.firstDiff!.insn).toBe(i);
    expect(off.firstDiff!.ours).toMatch(/map_value\[\d+\]\+0x8 ll \(map #0 of this load\)/);
    expect(compareXlated(withImm(rec.ours.xlated, i, 123456), rec.libbpf.xlated).equal).toBe(true);
  });

  it('two references to one map in ours but two maps in theirs differ', () => {
    // Duplicate the map reference so the stream holds two ld_imm64 of the same map, then give the
    // second copy another map id on one side only.
    const [i] = mapRefs(rec.ours.xlated) as [number];
    const twice = (x: string) => x.slice(0, (i + 2) * 16) + x.slice(i * 16, (i + 2) * 16) + x.slice((i + 2) * 16);
    const a = twice(rec.ours.xlated);
    const b = withImm(twice(rec.libbpf.xlated), i + 2, 999_999);
    expect(compareXlated(a, twice(rec.libbpf.xlated)).equal).toBe(true);
    const r = compareXlated(a, b);
    expect(r.firstDiff).toMatchObject({ insn: i + 2 });
    expect(r.firstDiff!.ours).toContain('(map #0 of this load)');
    expect(r.firstDiff!.theirs).toContain('(map #1 of this load)');
  });

  it('a shorter stream differs at its end', () => {
    const n = hexBytes(rec.libbpf.xlated).length / 8;
    const r = compareXlated(rec.ours.xlated.slice(0, -16), rec.libbpf.xlated);
    expect(r.firstDiff).toEqual({ insn: n - 1, ours: `<end: ${n - 1} insns>`, theirs: 'exit' });
  });

  it('rejects malformed hex', () => {
    expect(() => compareXlated('abc', rec.libbpf.xlated)).toThrow(/not a hex string/);
  });
});

describe('relocation decisions: ours vs libbpf log lines', () => {
  it('parses libbpf decisions and finds them equal to ours', () => {
    const theirs = parseLibbpfRelos(rec.libbpf.relocations);
    expect(theirs.length).toBe(rec.ours.relocations.length);
    expect(theirs[0]).toEqual({ relo: 0, insn: 1, patches: [{ field: 'imm', from: '0', to: '1264' }], poisoned: false });
    // task_struct___old.state does not exist on the recording kernel: both poison it.
    const poisonedOurs = rec.ours.relocations.findIndex((r) => r.status === 'poisoned');
    expect(poisonedOurs).toBeGreaterThanOrEqual(0);
    expect(theirs[poisonedOurs]!.poisoned).toBe(true);
    expect(compareRelocations(rec.ours.relocations, theirs)).toEqual({ agree: theirs.length });
  });

  it('names the first relocation decided differently', () => {
    const ours = rec.ours.relocations.map((r, k) => (k === 1 ? { ...r, target: (r.target as number) + 8 } : r));
    const d = compareRelocations(ours, parseLibbpfRelos(rec.libbpf.relocations));
    expect(d?.agree).toBe(1);
    expect(d?.firstDiff).toBe(`relo #1 byte_off struct task_struct tgid: ours 4 -> 1276, libbpf 4 -> 1268 (insn #14)`);
  });
});

describe('compareOutcomes', () => {
  const ours = { name: 'core_kernel', status: 'loaded' as const, xlated: rec.ours.xlated, relocations: rec.ours.relocations };
  const theirs = { name: 'core_kernel', status: 'loaded' as const, xlated: rec.libbpf.xlated, relocations: rec.libbpf.relocations };
  it('same', () => {
    const c = compareOutcomes(ours, theirs);
    expect(c.verdict).toBe('same');
    expect(c.line).toBe(`core_kernel: same (${hexBytes(rec.ours.xlated).length / 8} xlated insns identical; 14 relocations agree)`);
  });
  it('differs: first insn and the relocation behind it', () => {
    const c = compareOutcomes(
      { ...ours, xlated: withImm(rec.ours.xlated, 1, 0x4f8), relocations: rec.ours.relocations.map((r, k) => (k === 0 ? { ...r, target: 1272 } : r)) },
      theirs,
    );
    expect(c.verdict).toBe('differs');
    expect(c.line).toBe('core_kernel: differs at xlated insn 1: ours `r1 = 0x4f8`, libbpf `r1 = 0x4f0`; relocations differ: relo #0 byte_off struct task_struct pid: ours 0 -> 1272, libbpf 0 -> 1264 (insn #1)');
  });
  it('one loaded, the other not; both failing alike', () => {
    expect(compareOutcomes(ours, { ...theirs, status: 'rejected', reason: 'verifier rejected it: R1 invalid mem access', xlated: undefined }).verdict).toBe('only-ours-loaded');
    const c = compareOutcomes({ ...ours, status: 'relocation-failed', reason: 'x', xlated: undefined }, theirs);
    expect(c.verdict).toBe('only-reference-loaded');
    expect(c.line).toMatch(/^core_kernel: libbpf loaded, ours relocation-failed: x/);
    expect(compareOutcomes({ ...ours, status: 'rejected', xlated: undefined }, { ...theirs, status: 'rejected', xlated: undefined }).verdict).toBe('same');
    expect(compareOutcomes({ ...ours, status: 'rejected', xlated: undefined }, { ...theirs, status: 'error', xlated: undefined }).verdict).toBe('differs');
  });
});
