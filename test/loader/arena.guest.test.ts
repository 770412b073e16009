// BPF arenas in real guests (TCG), witnessed by the current libbpf (1.8, built from the newest
// Debian linux-source) loading the same object in the same kernel and by the kernel's answers:
// arena_globals.bpf.c's `__arena` globals (.addr_space.1) read back by its programs
// (BPF_PROG_TEST_RUN) with the values the C source gives them, written between runs, and found
// where libbpf puts them (the end of the arena where the kernel takes a full-range ld_imm64
// offset); the kernel's translated instructions identical to libbpf's. Built twice: an arena whose
// user address the kernel picks at mmap, and one fixed by map_extra (mmapped there, MAP_FIXED).
// The kernel's xlated dump keeps an arena global's address as a raw user address, so where each
// load's mmap picked its own, the two dumps differ there and only there: by the distance between
// the two arenas, which the programs measure.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hexBytes } from '../../harness/reference/compare.js';
import { compileBpf } from '../helpers/tools.js';
import type { CaseReport, KfuncArenaReport } from './fixtures/kfunc-arena-guest.js';
import { runCases, type HostCase } from './fixtures/kfunc-arena-run.js';

const SRC = fileURLToPath(new URL('./fixtures/arena_globals.bpf.c', import.meta.url));
/** ARENA_PAGES in the fixture; its globals (answer first, at offset 0 of .addr_space.1) take two pages. */
const ARENA_PAGES = 8;
const GLOBAL_PAGES = 2;
const PAGE = 4096;
/** 42 + 'r' + 7 + 11 + 5: every initial value of the fixture's globals. */
const SUM_OF_INITIAL_VALUES = 179;

function cases(): HostCase[] {
  const runs: HostCase['runs'] = [
    { program: 'read_globals', input: 'none' },
    { program: 'bump_counter', input: 'none', times: 2 },
    { program: 'where_answer', input: 'none' },
    { program: 'answer_address', input: 'none' },
  ];
  return [
    { name: PICKED, object: compileBpf(SRC, ['-mcpu=v3']), runs, xlated: true },
    { name: FIXED, object: compileBpf(SRC, ['-mcpu=v3', '-DUSER_ADDR=(1ull<<44)']), runs },
  ];
}

/** BPF_PSEUDO_MAP_FD and BPF_PSEUDO_MAP_VALUE: how the kernel dumps a map reference (with the map's id). */
const MAP_REFERENCE = new Set([1, 2]);
const PICKED = 'arena (user address picked at mmap)';
const FIXED = 'arena (user address 1<<44 from map_extra)';

/**
 * Ours and libbpf's translated instructions, identical but for the ld_imm64s of arena addresses,
 * which all differ by one distance whose low 32 bits are those the programs measured between the
 * two arenas (answer_address under each loader).
 */
function expectSameUpToArenaBase(c: CaseReport): void {
  const low = (v: CaseReport['ours']) => (v.runs.answer_address as number[])[0]!;
  const measured = BigInt.asUintN(32, BigInt(low(c.ours) - low(c.libbpf)));
  for (const [program, hex] of Object.entries(c.ours.xlated ?? {})) {
    const a = hexBytes(hex);
    const b = hexBytes(c.libbpf.xlated?.[program] ?? '');
    expect(a.length, `${program}: xlated length, ours vs libbpf`).toBe(b.length);
    const dv = (x: Uint8Array) => new DataView(x.buffer, x.byteOffset, x.byteLength);
    let shifted = 0;
    for (let i = 0; i < a.length; i += 8) {
      const ldImm64 = a[i] === 0x18 && i + 16 <= a.length;
      const value = (x: Uint8Array) => (BigInt(dv(x).getUint32(i + 12, true)) << 32n) | BigInt(dv(x).getUint32(i + 4, true));
      if (ldImm64 && MAP_REFERENCE.has(a[i + 1]! >> 4)) {
        // A map (the kernel dumps its id, which each load's own map has): all but the id.
        expect([...a.subarray(i, i + 4), ...a.subarray(i + 8, i + 16)], `${program} insn ${i / 8}`).toEqual([...b.subarray(i, i + 4), ...b.subarray(i + 8, i + 16)]);
      } else if (ldImm64 && value(a) !== value(b)) {
        // Same opcode and registers, a different address: the other arena's.
        expect([...a.subarray(i, i + 4), ...a.subarray(i + 8, i + 12)], `${program} insn ${i / 8}`).toEqual([...b.subarray(i, i + 4), ...b.subarray(i + 8, i + 12)]);
        expect(BigInt.asUintN(32, value(a) - value(b)), `${program} insn ${i / 8}: distance between the arenas`).toBe(measured);
        shifted++;
      } else expect([...a.subarray(i, i + (ldImm64 ? 16 : 8))], `${program} insn ${i / 8}`).toEqual([...b.subarray(i, i + (ldImm64 ? 16 : 8))]);
      if (ldImm64) i += 8;
    }
    // When the kernel gave both loads' arenas the same user address (one was unmapped before the
    // other was mapped), nothing moved and every instruction was compared byte for byte above.
    if (program !== 'where_answer' && measured !== 0n) expect(shifted, `${program}: arena references`).toBeGreaterThan(0);
  }
}

function show(kernel: string, rep: KfuncArenaReport & { libbpf: string }): void {
  console.log(`[measure] ${kernel} vs ${rep.libbpf}\n  ${rep.cases.map((c) => `${c.name}: ${c.ours.error ? `ours refused it: ${c.ours.error}; ` : ''}${c.libbpf.error ? `libbpf: ${c.libbpf.error}; ` : ''}runs ours ${JSON.stringify(c.ours.runs)} libbpf ${JSON.stringify(c.libbpf.runs)}\n    ${c.comparisons.map((x) => x.line).join('\n    ')}`).join('\n  ')}`);
}

/** Both loaders loaded every program with the same xlated instructions (see above where the arena's address was picked), and each ran to the same values. */
function expectSameAsLibbpf(c: CaseReport): void {
  expect(c.ours.programs.map((p) => p.status), c.name).toEqual(['loaded', 'loaded', 'loaded', 'loaded']);
  expect(c.libbpf.programs.map((p) => p.status), c.name).toEqual(['loaded', 'loaded', 'loaded', 'loaded']);
  const { answer_address: _ours, ...ours } = c.ours.runs;
  const { answer_address: _theirs, ...theirs } = c.libbpf.runs;
  expect(ours, `${c.name}: BPF_PROG_TEST_RUN, ours vs libbpf`).toEqual(theirs);
  if (c.name === PICKED) expectSameUpToArenaBase(c);
  else for (const cmp of c.comparisons) expect(cmp.verdict, `${c.name}: ${cmp.line}`).toBe('same');
}

describe('BPF arena globals in guests, against libbpf 1.8 in the same kernel (TCG)', () => {
  it('7.3: the globals arrive with their initial values, at the end of the arena, as libbpf puts them', async () => {
    const rep = await runCases('7.3', cases());
    show('7.3', rep);
    for (const c of rep.cases) {
      expectSameAsLibbpf(c);
      // 7.3 takes a map-value offset anywhere in an arena (libbpf's FEAT_LDIMM64_FULL_RANGE_OFF),
      // so libbpf puts the globals in the last pages that hold them.
      expect(c.ours.runs, c.name).toMatchObject({ read_globals: [SUM_OF_INITIAL_VALUES], bump_counter: [6, 7], where_answer: [(ARENA_PAGES - GLOBAL_PAGES) * PAGE] });
    }
  }, 600_000);

  it('6.12: arenas (6.9+); the globals go where libbpf puts them on this kernel', async () => {
    const rep = await runCases('6.12', cases());
    show('6.12', rep);
    for (const c of rep.cases) {
      expectSameAsLibbpf(c);
      expect(c.ours.runs.read_globals, c.name).toEqual([SUM_OF_INITIAL_VALUES]);
      expect(c.ours.runs.bump_counter, c.name).toEqual([6, 7]);
      expect([[0], [(ARENA_PAGES - GLOBAL_PAGES) * PAGE]], c.name).toContainEqual(c.ours.runs.where_answer);
    }
  }, 600_000);

  it('6.1 (no arenas): both loaders refuse the object at the arena map', async () => {
    const rep = await runCases('6.1', cases());
    show('6.1', rep);
    for (const c of rep.cases) {
      for (const cmp of c.comparisons) expect(cmp.verdict, `${c.name}: ${cmp.line}`).toBe('same');
      expect(c.ours.error, c.name).toMatch(/map 'arena': bpf\(BPF_MAP_CREATE\): EINVAL/);
      expect(c.libbpf.programs.every((p) => p.status === 'error'), JSON.stringify(c.libbpf.programs)).toBe(true);
    }
  }, 600_000);
});
