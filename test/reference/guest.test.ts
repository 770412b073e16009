// The differential witness in real guests (TCG): core_kernel.bpf.c, and the other loadable
// fixtures, loaded in one 5.10 and one 6.1 guest by our Collection AND by Debian's libbpf 1.1
// (the same libbpf.so.1 as on the host); the kernel's translated instructions must be identical.
// Then a deliberately broken build of our loader (one CO-RE field offset off by 8, set just
// before BPF_PROG_LOAD through Collection.load's mutateInsns hook) must be caught, naming the
// instruction. One boot per kernel.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBtf } from '../../harness/core/btf/btf.js';
import { minimizeBtf } from '../../harness/core/btf/minimize.js';
import { formatInsn } from '../../harness/core/insn.js';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { compareXlated } from '../../harness/reference/compare.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { compileBpf } from '../helpers/tools.js';
import type { GuestManifest, GuestReport } from './fixtures/guest-differential.js';
import { bundleGuestScript } from '../helpers/guest-script.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-reference-guest-'));
const fixture = (n: string) => fileURLToPath(new URL(n === 'relo_fail' ? `./fixtures/${n}.bpf.c` : `../fixtures/${n}.bpf.c`, import.meta.url));
/** Objects both loaders can open (legacy.bpf.c uses bpf_map_def maps that libbpf 1.x refuses). */
const OBJECTS = ['core_kernel', 'objects', 'btf_kinds', 'insns', 'relo_fail'];
const DELTA = 8;
/** Each guest also relocates against the other kernel's BTF (libbpf: btf_custom_path). */
const FOREIGN: Record<string, string> = { '6.1': '5.10', '5.10': '6.1' };
let agent: string;

beforeAll(async () => {
  agent = join(tmp, 'reference-differential.mjs');
  await bundleGuestScript(fileURLToPath(new URL('./fixtures/guest-differential.ts', import.meta.url)), agent);
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const runs = new Map<string, Promise<GuestReport>>();
/** One boot per kernel, shared by the tests of that kernel. */
function runIn(kernelId: string): Promise<GuestReport> {
  let p = runs.get(kernelId);
  if (!p) {
    p = (async () => {
      const store = new KernelStore();
      const k = await store.fetch(kernelId);
      const other = await store.fetch(FOREIGN[kernelId]!);
      const manifest: GuestManifest = {
        objects: OBJECTS.map((n) => ({ name: n, path: `/t/${n}.bpf.o` })),
        mutate: { object: 'core_kernel', program: 'core_kernel', delta: DELTA },
        foreignBtf: { kernel: FOREIGN[kernelId]!, path: '/t/foreign.btf', minimized: '/t/foreign-min.btf' },
      };
      // The other kernel's BTF cut down for core_kernel by our btf minimize: libbpf judges it.
      const coreKernel = compileBpf(fixture('core_kernel'));
      const min = minimizeBtf([{ name: 'core_kernel.bpf.o', bytes: new Uint8Array(readFileSync(coreKernel)) }], parseBtf(new Uint8Array(readFileSync(other.btf)), { source: other.btf }));
      const files = [
        { path: '/t/foreign.btf', source: other.btf },
        { path: '/t/foreign-min.btf', data: min.bytes },
        { path: '/t/reference-differential.mjs', source: agent },
        { path: '/t/reference.json', data: JSON.stringify(manifest) },
        ...OBJECTS.map((n) => ({ path: `/t/${n}.bpf.o`, source: compileBpf(fixture(n)) })),
      ];
      const initrd = await buildInitramfs({ files, agent: false, kernelConfig: k.config, release: k.release });
      const r = await runGuest({ kernelId, vmlinuz: k.vmlinuz, initrd, append: 'cm.agent=/t/reference-differential.mjs', accel: 'tcg', logDir: join(tmp, 'logs') });
      const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
      expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
      const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'reference-differential');
      expect(msg, JSON.stringify(r.messages)).toBeDefined();
      const rep = (msg as { data: GuestReport }).data;
      if (process.env.CM_REFERENCE_DUMP) writeFileSync(`${process.env.CM_REFERENCE_DUMP}-${kernelId}.json`, JSON.stringify(rep, null, 1));
      const progs = rep.results.flatMap((x) => x.comparisons);
      const tally = new Map<string, number>();
      for (const c of progs) tally.set(c.verdict, (tally.get(c.verdict) ?? 0) + 1);
      const counts = [...tally].map(([v, n]) => `${n} ${v}`).join(', ');
      console.log(`[measure] ${kernelId} (${k.release}), libbpf ${rep.libbpf}: boot ${r.bootMs} ms, whole run ${Math.round(r.durationMs)} ms; ${progs.length} programs compared: ${counts}`);
      for (const x of rep.results) console.log(`[measure] ${kernelId} ${x.object}: ours ${x.oursMs} ms, libbpf ${x.referenceMs} ms\n  ${x.comparisons.map((c) => c.line).join('\n  ')}`);
      console.log(`[measure] ${kernelId} with ${FOREIGN[kernelId]}'s BTF: ${rep.foreign.comparisons.map((c) => c.line).join('; ')}`);
      console.log(`[measure] ${kernelId} broken loader: ${rep.mutated.comparisons.map((c) => c.line).join('; ')}`);
      return rep;
    })();
    runs.set(kernelId, p);
  }
  return p;
}

for (const kernelId of ['6.1', '5.10']) {
  describe(`our loader vs libbpf in a ${kernelId} guest (TCG)`, () => {
    it('core_kernel: both load it, same CO-RE decisions, identical xlated instructions', async () => {
      const rep = await runIn(kernelId);
      expect(rep.libbpf).toMatch(/^v1\./);
      const core = rep.results.find((x) => x.object === 'core_kernel')!;
      expect(core.comparisons).toHaveLength(1);
      const [c] = core.comparisons as [(typeof core.comparisons)[number]];
      expect(c.line, c.line).toMatch(/^core_kernel: same \(\d+ xlated insns identical; 14 relocations agree\)$/);
      expect(c.verdict).toBe('same');
      const ours = core.ours[0]!;
      const theirs = core.reference[0]!;
      expect(ours.status).toBe('loaded');
      expect(theirs.status).toBe('loaded');
      // Two real loads: different maps, so the raw dumps differ and only the normalisation makes them equal.
      expect(ours.xlated).not.toBe(theirs.xlated);
      expect(ours.insnsProcessed).toBe(theirs.insnsProcessed);
      // The field that was renamed in 5.14 (state -> __state): the two kernels take different branches.
      const state = ours.relocations.find((r) => r.kind === 'field_exists' && r.spec === '__state')!;
      expect(state.target).toBe(kernelId === '5.10' ? 0 : 1);
      expect(rep.fdsLeft).toBe(0);
    }, 600_000);

    it('every fixture program: whenever both loaders load it, the xlated instructions are identical; libbpf never loads what we refuse', async () => {
      const rep = await runIn(kernelId);
      const all = rep.results.flatMap((x) => x.comparisons);
      expect(all.length).toBeGreaterThanOrEqual(11);
      const both = all.filter((c) => c.xlated);
      for (const c of both) expect(c.xlated!.equal, c.line).toBe(true);
      for (const c of all) expect(c.verdict, c.line).not.toBe('only-reference-loaded');
      // Not only shared refusals: real programs went through both loaders.
      expect(both.length).toBeGreaterThanOrEqual(2);
      // Where libbpf refuses a whole object (one missing non-weak ksym fails every program of it),
      // the reason names libbpf's own first complaint, not just "failed to load object".
      for (const r of rep.results.flatMap((x) => x.reference)) if (r.status === 'error') expect(r.reason, r.name).not.toMatch(/\): failed to load object/);
    }, 600_000);

    it('an unguarded read of a field this kernel lacks: both loaders poison it and the verifier refuses the same program', async () => {
      const rep = await runIn(kernelId);
      const r = rep.results.find((x) => x.object === 'relo_fail')!;
      // task_struct.state became __state in 5.14.
      const [good, bad] = kernelId === '5.10' ? ['old_state', 'new_state'] : ['new_state', 'old_state'];
      expect(r.comparisons.find((c) => c.program === good)!.line).toMatch(new RegExp(`^${good}: same \\(\\d+ xlated insns identical; 1 relocations agree\\)$`));
      const c = r.comparisons.find((x) => x.program === bad)!;
      expect(c.verdict, c.line).toBe('same');
      const ours = r.ours.find((p) => p.name === bad)!;
      const theirs = r.reference.find((p) => p.name === bad)!;
      expect(ours.relocations.map((x) => x.status)).toEqual(['poisoned']);
      expect(theirs.status).toBe('rejected');
      expect(theirs.reason).toMatch(/unknown#195896080 \(poisoned CO-RE relocation: relo #\d+: (no matching targets found|substituting insn #\d+ w\/ invalid insn)\)$/);
    }, 600_000);

    it(`relocating against ${FOREIGN[kernelId]}'s BTF (libbpf btf_custom_path): same decisions, identical xlated, unlike the native load`, async () => {
      const rep = await runIn(kernelId);
      const [c] = rep.foreign.comparisons as [(typeof rep.foreign.comparisons)[number]];
      expect(c.line, c.line).toMatch(/^core_kernel: same \(\d+ xlated insns identical; 14 relocations agree\)$/);
      const native = rep.results.find((x) => x.object === 'core_kernel')!;
      // The other kernel's offsets really were used by both loaders.
      expect(compareXlated(rep.foreign.ours[0]!.xlated!, native.ours[0]!.xlated!).equal).toBe(false);
      expect(compareXlated(rep.foreign.reference[0]!.xlated!, native.reference[0]!.xlated!).equal).toBe(false);
      const state = rep.foreign.ours[0]!.relocations.find((r) => r.kind === 'field_exists' && r.spec === '__state')!;
      expect(state.target).toBe(FOREIGN[kernelId] === '5.10' ? 0 : 1);
    }, 600_000);

    it(`against ${FOREIGN[kernelId]}'s BTF minimized by btf minimize, libbpf translates exactly as against the full BTF`, async () => {
      const rep = await runIn(kernelId);
      const [c] = rep.foreignMin.comparisons as [(typeof rep.foreignMin.comparisons)[number]];
      expect(c.line, c.line).toMatch(/^core_kernel: same \(\d+ xlated insns identical; 14 relocations agree\)$/);
      // libbpf is the witness: its load with the minimal BTF as btf_custom_path equals its load with the full one.
      const full = rep.foreign.reference[0]!;
      const small = rep.foreignMin.reference[0]!;
      expect(small.status).toBe('loaded');
      const same = compareXlated(small.xlated!, full.xlated!);
      expect(same.equal, same.firstDiff ? JSON.stringify(same.firstDiff) : '').toBe(true);
    }, 600_000);

    it('a broken relocation in our loader is caught at the instruction it broke', async () => {
      const rep = await runIn(kernelId);
      const m = rep.mutation!;
      expect(m, 'the mutate hook ran').toBeDefined();
      expect(m.after - m.before).toBe(DELTA);
      const [c] = rep.mutated.comparisons as [(typeof rep.mutated.comparisons)[number]];
      expect(c.verdict, c.line).toBe('differs');
      // The kernel keeps the CO-RE'd ALU immediate as it was: the xlated index is the patched index
      // for this program (no instruction before it is expanded).
      expect(c.xlated!.firstDiff!.insn).toBe(m.insn);
      const asText = (imm: number) => formatInsn(new Uint8Array([0xb7, 0x01, 0, 0, imm & 0xff, (imm >> 8) & 0xff, (imm >> 16) & 0xff, imm >>> 24]), 0).split(' = ')[1];
      expect(c.xlated!.firstDiff!.ours).toContain(asText(m.after)!);
      expect(c.xlated!.firstDiff!.theirs).toContain(asText(m.before)!);
      expect(c.line).toContain(`differs at xlated insn ${m.insn}`);
    }, 600_000);
  });
}
