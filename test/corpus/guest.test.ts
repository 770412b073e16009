// The kernel's own CO-RE conformance corpus (tools/testing/selftests/bpf test_core_reloc_* against
// the btf__core_reloc_* targets, from Debian's linux-source-6.12), run for real in 6.1 and 5.10
// guests (TCG) by our loader AND by Debian's libbpf 1.1 (btf_custom_path = the target object):
// verdicts agree, the cases the kernel's table marks as failing fail in both, and every case that
// loads runs once on sys_enter with the same input and leaves byte-identical output. One image
// with every corpus object, one boot per kernel.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corpusCells, corpusInput, corpusPass, type CorpusResult, type CorpusRunCase } from '../../harness/corpus/guest.js';
import { loadCorpus, type Corpus } from '../../harness/corpus/selftests.js';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { runGuest } from '../../harness/vm/qemu.js';
import type { CorpusManifest } from './fixtures/guest-corpus.js';
import { bundleGuestScript } from '../helpers/guest-script.js';

/** The broken loader's error: one CO-RE byte offset of `flavors` moved by one int. */
const DELTA = 4;
const tmp = mkdtempSync(join(tmpdir(), 'cm-corpus-guest-'));
let agent: string;
let corpus: Corpus;

beforeAll(async () => {
  corpus = await loadCorpus();
  agent = join(tmp, 'guest-corpus.mjs');
  await bundleGuestScript(fileURLToPath(new URL('./fixtures/guest-corpus.ts', import.meta.url)), agent);
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Run {
  results: CorpusResult[];
  mutated: CorpusResult[];
  summary: { libbpf: string; ms: number; fdsLeft: number };
  release: string;
}

const guestPath = (hostPath: string) => `/t/corpus/${basename(hostPath)}`;

const runs = new Map<string, Promise<Run>>();
/** One boot per kernel with every corpus object in the image. */
function runIn(kernelId: string): Promise<Run> {
  let p = runs.get(kernelId);
  if (!p) {
    p = (async () => {
      const k = await new KernelStore().fetch(kernelId);
      const cases: CorpusRunCase[] = corpus.cases.map((c) => ({ name: c.name, target: guestPath(c.target), programs: c.programs.map(guestPath), expectFail: c.expectFail }));
      const objects = new Set(corpus.cases.flatMap((c) => [c.target, ...c.programs]));
      const manifest: CorpusManifest = { cases, mutate: { case: 'flavors', delta: DELTA } };
      const files = [
        { path: '/t/guest-corpus.mjs', source: agent },
        { path: '/t/corpus.json', data: JSON.stringify(manifest) },
        ...[...objects].map((o) => ({ path: guestPath(o), source: o })),
      ];
      const initrd = await buildInitramfs({ files, agent: false, kernelConfig: k.config, release: k.release });
      const r = await runGuest({ kernelId, vmlinuz: k.vmlinuz, initrd, append: 'cm.agent=/t/guest-corpus.mjs', accel: 'tcg', logDir: join(tmp, 'logs') });
      const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
      expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
      const results = r.messages.flatMap((m) => (m.t === 'result' && m.kind === 'corpus' ? [m.data as CorpusResult] : []));
      const mutated = r.messages.flatMap((m) => (m.t === 'result' && m.kind === 'corpus-mutated' ? [m.data as CorpusResult] : []));
      const summary = r.messages.flatMap((m) => (m.t === 'result' && m.kind === 'corpus-summary' ? [m.data as Run['summary']] : []))[0]!;
      expect(summary, JSON.stringify(r.messages.slice(-5))).toBeDefined();
      if (process.env.CM_CORPUS_DUMP) writeFileSync(`${process.env.CM_CORPUS_DUMP}-${kernelId}.json`, JSON.stringify(results, null, 1));
      const loaded = results.filter((x) => x.ours === 'loaded' && x.libbpf === 'loaded' && x.outputEqual).length;
      const failed = results.filter((x) => x.expectFail && corpusPass(x)).length;
      const bad = results.filter((x) => !corpusPass(x));
      console.log(
        `[measure] ${kernelId} (${k.release}), libbpf ${summary.libbpf}: ${results.length} runs, ${loaded} loaded by both with identical output, ` +
          `${failed} failed in both as the kernel's table expects, ${bad.length} otherwise; boot ${r.bootMs} ms, corpus ${summary.ms} ms in the guest, whole run ${Math.round(r.durationMs)} ms`,
      );
      for (const x of bad) console.log(`[measure] ${kernelId} ${x.case}/${x.program}: ours ${x.ours}, libbpf ${x.libbpf}, expectFail ${x.expectFail}: ${x.detail ?? ''} ${x.firstOutputDiff ? JSON.stringify(x.firstOutputDiff) : ''}`);
      for (const x of mutated) console.log(`[measure] ${kernelId} broken loader on ${x.case}/${x.program}: ${x.detail}; output ${JSON.stringify(x.firstOutputDiff)}`);
      return { results, mutated, summary, release: k.release };
    })();
    runs.set(kernelId, p);
  }
  return p;
}

for (const kernelId of ['6.1', '5.10']) {
  describe(`the kernel's CO-RE selftest corpus in a ${kernelId} guest (TCG), our loader vs libbpf`, () => {
    it('every case × program ran with both loaders and the verdicts agree', async () => {
      const { results, summary } = await runIn(kernelId);
      const expected = corpus.cases.flatMap((c) => c.programs.map((p) => `${c.name}/${basename(p, '.bpf.o')}`));
      expect(results.map((r) => `${r.case}/${r.program}`).sort()).toEqual(expected.sort());
      // The corpus is the real one, not a handful of files.
      expect(results.length).toBeGreaterThanOrEqual(60);
      for (const r of results) expect(r.agree, `${r.case}/${r.program}: ${r.detail}`).toBe(true);
      expect(summary.fdsLeft).toBe(0);
    }, 900_000);

    it("the cases the kernel's table marks as failing fail in both loaders", async () => {
      const { results } = await runIn(kernelId);
      const err = results.filter((r) => r.expectFail);
      expect(err.length).toBeGreaterThanOrEqual(15);
      for (const r of err) {
        expect(['relocation-failed', 'rejected'], `${r.case}/${r.program} ours: ${r.oursReason}`).toContain(r.ours);
        expect(['relocation-failed', 'rejected'], `${r.case}/${r.program} libbpf: ${r.libbpfReason}`).toContain(r.libbpf);
      }
    }, 900_000);

    it('every other case loads in both, the xlated instructions match, and one sys_enter leaves identical output bytes', async () => {
      const { results } = await runIn(kernelId);
      const ok = results.filter((r) => !r.expectFail);
      expect(ok.length).toBeGreaterThanOrEqual(40);
      for (const r of ok) {
        const what = `${r.case}/${r.program}: ${r.detail ?? ''}`;
        expect(r.ours, what).toBe('loaded');
        expect(r.libbpf, what).toBe('loaded');
        expect(r.xlatedEqual, what).toBe(true);
        expect(r.outputEqual, `${what} ${JSON.stringify(r.firstOutputDiff)}`).toBe(true);
      }
      // The programs really ran: nearly all wrote something (type_based___all_missing legitimately
      // writes zeros: every type it asks about is absent from its target).
      expect(ok.filter((r) => r.outputNonZero).length).toBeGreaterThanOrEqual(ok.length - 2);
    }, 900_000);

    it('a broken relocation in our loader is caught twice: at the xlated instruction and in the output bytes', async () => {
      const { mutated } = await runIn(kernelId);
      expect(mutated).toHaveLength(1);
      const [m] = mutated as [CorpusResult];
      expect(m.mutation, 'the mutate hook changed an instruction').toBeDefined();
      expect(m.mutation!.after - m.mutation!.before).toBe(DELTA);
      expect(m.ours).toBe('loaded');
      expect(m.libbpf).toBe('loaded');
      expect(m.agree).toBe(false);
      expect(m.xlatedEqual).toBe(false);
      expect(m.firstXlatedDiff!.insn).toBe(m.mutation!.insn);
      expect(m.outputEqual).toBe(false);
      // Ours read the input DELTA bytes further on: the pattern's byte at that offset.
      const d = m.firstOutputDiff!;
      expect(d.ours).toBe(corpusInput(256)[m.mutation!.after + d.byte]);
      expect(d.libbpf).toBe(corpusInput(256)[m.mutation!.before + d.byte]);
      expect(corpusPass(m)).toBe(false);
      expect(corpusCells([m], { id: kernelId, package: '', version: '', release: '', flavour: '' })[0]!.verdict).toBe('fail');
    }, 900_000);

    it('corpusCells: one passing cell per case × program', async () => {
      const { results, release } = await runIn(kernelId);
      const cells = corpusCells(results, { id: kernelId, package: '', version: '', release, flavour: '' });
      expect(cells).toHaveLength(results.length);
      for (const c of cells) {
        expect(c.suite).toBe('corpus');
        expect(c.verdict, `${c.program}: ${c.reason}`).toBe('pass');
      }
      const flavors = cells.find((c) => c.program === 'flavors/test_core_reloc_flavors')!;
      expect(flavors.checks.map((c) => c.name)).toEqual(['our verdict', 'libbpf verdict', 'loaders agree', 'xlated identical', 'output bytes identical']);
    }, 900_000);
  });
}
