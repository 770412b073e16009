// btf minimize on the kernel's own CO-RE conformance corpus (tools/testing/selftests/bpf of
// linux-source-6.12, compiled by clang-19): every test_core_reloc_X program against every
// btf__core_reloc_X* target it is run against. Where the full target BTF resolves every
// relocation, the minimal BTF must give the same records (reachability of poisoned instructions
// included); where it errors (the corpus's ambiguity cases), minimize must refuse in one line.
// The kernel's own selftest for bpftool's min_core_btf reuses this corpus the same way.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseBtf } from '../../harness/core/btf/btf.js';
import { inSourceTerms, minimizeBtf } from '../../harness/core/btf/minimize.js';
import { RelocationError } from '../../harness/core/errors.js';
import { readTargetBtf, relocateObject } from '../../harness/core/relocate.js';
import { loadCorpus, type Corpus } from '../../harness/corpus/selftests.js';

let corpus: Corpus;
beforeAll(async () => {
  corpus = await loadCorpus((s) => console.log(s));
}, 900_000);

describe('btf minimize on the kernel selftest CO-RE corpus', () => {
  it('relocates every program identically against its minimal target BTF, or refuses in one line', () => {
    let same = 0;
    let refused = 0;
    let relocations = 0;
    let fullBytes = 0;
    let minBytes = 0;
    for (const c of corpus.cases) {
      const full = readTargetBtf(readFileSync(c.target), basename(c.target));
      for (const prog of c.programs) {
        const o = { name: basename(prog), bytes: new Uint8Array(readFileSync(prog)) };
        const want = relocateObject(o.bytes, o.name, '', { vmlinux: full }, 't').report.relocations;
        const what = `${c.name} with ${o.name}`;
        if (want.some((r) => r.status === 'error')) {
          let err: unknown;
          try {
            minimizeBtf([o], full);
          } catch (e) {
            err = e;
          }
          expect(err, what).toBeInstanceOf(RelocationError);
          expect((err as Error).message, what).toMatch(new RegExp(`^${o.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .* cannot be resolved against `));
          expect((err as Error).message).not.toContain('\n');
          refused++;
          continue;
        }
        const min = minimizeBtf([o], full);
        const got = relocateObject(o.bytes, o.name, '', { vmlinux: parseBtf(min.bytes, { source: `minimal ${c.name}` }) }, 't').report.relocations;
        expect(inSourceTerms(min, got), what).toEqual(want);
        same++;
        relocations += want.length;
        fullBytes += full.bytes.length;
        minBytes += min.bytes.length;
      }
    }
    console.log(`corpus ${corpus.version}: ${same} program×target runs identical on the minimal BTF (${relocations} relocations; target BTF ${fullBytes} B in all, minimal ${minBytes} B), ${refused} refused (errors on the full BTF too)`);
    expect(same).toBeGreaterThan(60);
    expect(refused).toBeGreaterThan(0);
  });
});
