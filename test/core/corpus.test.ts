// The kernel's CO-RE conformance corpus, relocated offline: every test_core_reloc_X program
// against every btf__core_reloc_X* target. The kernel's own test table decides which cases
// must fail; a case "fails" offline when a relocation errors (ambiguity, bad spec) or leaves a
// poisoned instruction that can run (the verifier would reject it).
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readTargetBtf, relocateObject, type RelocateReport } from '../../harness/core/relocate.js';
import { loadCorpus, type Corpus } from '../../harness/corpus/selftests.js';

let corpus: Corpus;
beforeAll(async () => {
  corpus = await loadCorpus((s) => console.log(s));
}, 900_000);

function verdict(r: RelocateReport): { failed: boolean; why: string[] } {
  const bad = r.relocations.filter((x) => x.status === 'error' || (x.status === 'poisoned' && x.reachable));
  return { failed: bad.length > 0, why: bad.map((x) => `${x.kind} ${x.type} ${x.spec}: ${x.status}${x.error ? ` (${x.error})` : ''}`) };
}

describe('kernel selftest CO-RE corpus (linux-source-6.12)', () => {
  it('relocates every case the way the kernel test table expects', () => {
    expect(corpus.cases.length).toBeGreaterThan(60);
    const mismatches: string[] = [];
    let runs = 0;
    let expectedFailures = 0;
    for (const c of corpus.cases) {
      const target = { vmlinux: readTargetBtf(readFileSync(c.target), basename(c.target)) };
      for (const prog of c.programs) {
        runs++;
        const r = relocateObject(readFileSync(prog), basename(prog), '', target, basename(c.target)).report;
        expect(r.relocations.length, `${basename(prog)} has CO-RE relocations`).toBeGreaterThan(0);
        const v = verdict(r);
        if (c.expectFail) expectedFailures++;
        if (v.failed !== c.expectFail) mismatches.push(`${c.name} with ${basename(prog)}: expected ${c.expectFail ? 'failure' : 'success'}, got ${v.failed ? `failure: ${v.why.join('; ')}` : 'success'}`);
      }
    }
    console.log(`corpus ${corpus.version}: ${runs - mismatches.length}/${runs} program×target runs as the kernel's table expects (${expectedFailures} expected failures)`);
    expect(mismatches).toEqual([]);
  });

  it('fails the ambiguous case with an ambiguity error, not a poison', () => {
    const c = corpus.cases.find((x) => x.name === 'size___err_ambiguous')!;
    const target = { vmlinux: readTargetBtf(readFileSync(c.target), 'size___err_ambiguous') };
    const r = relocateObject(readFileSync(c.programs[0]!), 'size', '', target, 'size___err_ambiguous').report;
    expect(r.relocations.some((x) => x.status === 'error' && /ambiguity/.test(x.error ?? ''))).toBe(true);
  });

  it('resolves flavoured local types onto one target type', () => {
    const c = corpus.cases.find((x) => x.name === 'flavors')!;
    const target = { vmlinux: readTargetBtf(readFileSync(c.target), 'flavors') };
    const r = relocateObject(readFileSync(c.programs[0]!), 'flavors', '', target, 'flavors').report;
    const flavoured = r.relocations.filter((x) => /___/.test(x.type));
    expect(flavoured.length).toBeGreaterThan(0);
    for (const x of flavoured) expect(x.status, `${x.type} ${x.spec}`).toBe('ok');
    expect(new Set(flavoured.map((x) => x.targetType))).toEqual(new Set(['struct core_reloc_flavors']));
  });
});
