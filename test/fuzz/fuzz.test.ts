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

const SEED = 20251125;
const PER_TARGET = Number(process.env.FUZZ_TEST_RUNS ?? 300);
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
        const o = runCase(target, c.bytes, 2000);
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
      const o = runCase(target, new Uint8Array(readFileSync(join(CRASHERS, f))), 2000);
      expect(o.status === 'crash' ? `${o.detail} at ${o.stack}` : o.status).not.toMatch(/ at /);
    });
  }
});
