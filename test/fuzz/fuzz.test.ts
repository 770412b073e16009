// A bounded slice of the fuzzer in `npm test` (fixed seed, a few hundred mutated inputs per
// target over real clang objects and real kernel BTF), and every saved crasher replayed: each
// must now end in success or a typed one-line error naming the input.
import { beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSeeds } from '../../harness/fuzz/seeds.js';
import { judge, makeCase, runCase, TARGETS, type SeedSet, type TargetName } from '../../harness/fuzz/targets.js';
import { FormatError, CoreMatrixError, wrap } from '../../harness/core/errors.js';
import { reachable } from '../../harness/core/relo/reach.js';
import { fillKconfig } from '../../harness/core/kconfig.js';
import { loadObjectSpec } from '../../harness/core/object/index.js';
import { compileFixture } from '../fixtures/compile.js';

const SEED = 20251125;
const PER_TARGET = Number(process.env.FUZZ_TEST_RUNS ?? 300);
/** Per-input budget here: `npm run fuzz` uses 2 s; npm test shares 2 cores with other test files, so allow more before calling it a hang. */
const SLOW_MS = 5000;
const CRASHERS = join(dirname(fileURLToPath(import.meta.url)), 'crashers');

describe('fuzz oracle', () => {
  it('accepts one-line typed errors naming the input and rejects everything else', () => {
    expect(judge(new FormatError('fuzz-input.btf: bad BTF magic 0x0', 0))).toBeUndefined();
    expect(judge(new TypeError("Cannot read properties of undefined (reading 'type')"))).toMatch(/^TypeError/);
    expect(judge(new RangeError('Maximum call stack size exceeded'))).toMatch(/^RangeError/);
    expect(judge(new CoreMatrixError('fuzz-input.btf: two\nlines'))).toMatch(/multi-line/);
    expect(judge(new CoreMatrixError(`fuzz-input.btf: ${'x'.repeat(400)}`))).toMatch(/chars/);
    expect(judge(new FormatError('some.o: names another file'))).toMatch(/does not name/);
    expect(judge(wrap('fuzz-input.bpf.o', new TypeError('x is undefined')))).toMatch(/wraps TypeError/);
    expect(judge(new CoreMatrixError('fuzz-input.bpf.o: fine'))).toBeUndefined();
  });

  it('input-driven errors stay one short line whatever names the input carries', () => {
    const name = `prog\n${'x'.repeat(2000)}`;
    const e = new FormatError(`fuzz-input.bpf.o: section 3 (${name}): relocation at 96: reference to '${'y'.repeat(900)}' is not a map`, 4096);
    expect(judge(e)).toBeUndefined();
    expect(e.message).toMatch(/^fuzz-input\.bpf\.o: section 3 \(prog\?x+…x+\)/);
    expect(e.message).toMatch(/is not a map \(at offset 4096\)$/);
    expect(judge(wrap('relocate fuzz-input.bpf.o', e))).toBeUndefined();
  });
});

describe('fuzz slice', () => {
  let seeds: SeedSet;
  beforeAll(async () => {
    seeds = await loadSeeds();
  }, 300_000);

  it('has real seeds: clang objects, object and kernel BTF, kernel target slices', () => {
    expect(seeds.objects.length).toBeGreaterThanOrEqual(10);
    expect(seeds.btfs.some((s) => s.name.startsWith('vmlinux'))).toBe(true);
    expect(seeds.targets.length).toBeGreaterThan(0);
    // Structure-aware mutators need the layouts: BTF records and CO-RE records were found.
    expect(seeds.objects.some((o) => o.layout.coreRecs.length > 0)).toBe(true);
    expect(seeds.btfs.every((b) => (b.layout.btf?.types.length ?? 0) > 0)).toBe(true);
  });

  for (const target of TARGETS) {
    it(`${target}: ${PER_TARGET} mutated inputs end in success or a typed error`, () => {
      const counts = { ok: 0, typed: 0 };
      const crashes: string[] = [];
      for (let i = 0; i < PER_TARGET; i++) {
        const c = makeCase(seeds, SEED, i, target);
        const o = runCase(target, c.bytes, SLOW_MS);
        if (o.status === 'crash') crashes.push(`#${i} (${c.seed}; ${c.steps.join('; ')}): ${o.detail} at ${o.stack}`);
        else counts[o.status]++;
      }
      expect(crashes).toEqual([]);
      // The slice reaches both outcomes: mutants that still load, and ones rejected with a typed error.
      expect(counts.ok).toBeGreaterThan(PER_TARGET / 10);
      expect(counts.typed).toBeGreaterThan(PER_TARGET / 10);
    }, 60_000);
  }
});

describe('fuzz crashers (regressions)', () => {
  const files = existsSync(CRASHERS) ? readdirSync(CRASHERS).filter((f) => f.endsWith('.bin')).sort() : [];
  it('every crasher has its .txt (seed, mutation, error)', () => {
    for (const f of files) expect(readFileSync(join(CRASHERS, f.replace(/\.bin$/, '.txt')), 'utf8')).toMatch(/^target: .*\nrun seed: \d+/);
  });
  for (const f of files) {
    it(`replays ${f}`, () => {
      const target = f.split('-')[0] as TargetName;
      expect(TARGETS).toContain(target);
      const o = runCase(target, new Uint8Array(readFileSync(join(CRASHERS, f))), SLOW_MS);
      expect(o.status === 'crash' ? `${o.detail} at ${o.stack}` : o.status).not.toMatch(/ at /);
    });
  }
});

describe('crafted reachability inputs', () => {
  /** `count` functions, each `r1 = 0; loop: r1 += 1; if r1 < limit goto loop; exit`. */
  function countingLoops(count: number, limit = 1_000_000): Uint8Array {
    const b = new Uint8Array(count * 4 * 8);
    const dv = new DataView(b.buffer);
    const put = (i: number, code: number, regs: number, off: number, imm: number) => {
      b[i * 8] = code;
      b[i * 8 + 1] = regs;
      dv.setInt16(i * 8 + 2, off, true);
      dv.setInt32(i * 8 + 4, imm, true);
    };
    for (let f = 0; f < count; f++) {
      put(f * 4, 0xb7, 1, 0, 0);
      put(f * 4 + 1, 0x07, 1, 0, 1);
      put(f * 4 + 2, 0xa5, 1, -2, limit);
      put(f * 4 + 3, 0x95, 0, 0, 0);
    }
    return b;
  }

  it('a section of 64 functions that each spin on a known counter is walked in one cheap pass', () => {
    const insns = countingLoops(64);
    const t0 = performance.now();
    // Walking each function alone used to spend a 200k-step budget per function (about 64 x 0.3 s) and
    // still answer "don't know"; widening a loop's counter after 64 states ends every loop in a few steps.
    const budget = { left: 200_000 };
    const r = reachable(insns, Array.from({ length: 64 }, (_, f) => f * 4), budget);
    expect(r && [...r].every((x) => x === 1)).toBe(true);
    expect(200_000 - budget.left).toBeLessThan(64 * 4 * 80);
    expect(performance.now() - t0).toBeLessThan(2000);
    // Constants are still tracked where they matter: a branch on a known value is followed one way only.
    const b = countingLoops(1, 1000);
    b.set([0xb7, 0x02, 0, 0, 0, 0, 0, 0], 0); // r2 = 0 (instead of r1 = 0)
    b.set([0x55, 0x02, 1, 0, 0, 0, 0, 0], 8); // if r2 != 0 goto +1 (never taken)
    b.set([0x95, 0, 0, 0, 0, 0, 0, 0], 16); // exit
    const one = reachable(b, [0]);
    expect(one && [...one]).toEqual([1, 1, 1, 0]);
  });

  it('sections of one object share one step budget when given one', () => {
    const budget = { left: 1000 };
    let exhausted = 0;
    for (let s = 0; s < 40; s++) if (reachable(countingLoops(2), [0, 4], budget) === undefined) exhausted++;
    // Each section alone fits a 1000-step budget; forty of them share it, so most find it spent.
    expect(reachable(countingLoops(2), [0, 4], 1000)).toBeDefined();
    expect(exhausted).toBeGreaterThan(30);
    expect(budget.left).toBeLessThan(0);
  });

  it('a ld_imm64 in the last slot ends the path instead of reading past the section', () => {
    const b = new Uint8Array(16);
    b[0] = 0xb7; // r0 = 0
    b[8] = 0x18; // ld_imm64 r0 with no second half
    expect(reachable(b, 0)).toEqual(new Uint8Array([1, 1]));
  });
});

describe('kconfig values found by the fuzzer', () => {
  const { bytes } = compileFixture('objects');
  const spec = loadObjectSpec(bytes, 'objects.bpf.o');
  const data = () => new Uint8Array(spec.maps.find((m) => m.kind === 'kconfig')!.data!);
  const fill = (config: Record<string, string>) => fillKconfig(spec.btf, spec.externs, data(), { config: new Map(Object.entries(config)), linuxKernelVersion: 0x060100 });

  it('a negative hex value is a number (was: SyntaxError from BigInt("-0x10"))', () => {
    const r = fill({ CONFIG_HZ: '-0x10', CONFIG_BPF_SYSCALL: 'y' });
    expect(r.find((x) => x.name === 'CONFIG_HZ')?.value).toBe(-16);
  });

  it('a value the type cannot take is a typed error naming the object and the extern', () => {
    let err: unknown;
    try {
      fill({ CONFIG_BPF_SYSCALL: '42' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CoreMatrixError);
    expect((err as Error).message).toBe("objects.bpf.o: .BTF: extern CONFIG_BPF_SYSCALL (kconfig): value '42' for a bool");
    expect(() => fill({ CONFIG_HZ: '1.5', CONFIG_BPF_SYSCALL: 'n' })).toThrow(/^objects\.bpf\.o: .*CONFIG_HZ \(kconfig\): value '1\.5' is not an integer$/);
  });
});
