// Linked objects in a real kernel (7.3, TCG): each set of test/link/pairs.ts linked by us and by
// libbpf, both loaded by our loader in the same guest, must give the kernel's identical
// translated instructions program by program, and must run as their own tests expect:
// cilium/ebpf's linked1 + linked2 (TestLinkedELF: every winning program returns 0, every winning
// map has max_entries 1), the selftests' linked_vars, linked_funcs and linked_maps (the values
// prog_tests/linked_*.c asserts after a getpgid()), and pair_a + pair_b (149 and 147). libbpf
// (Debian's 1.1, in the image) loads our linked object too, with the same translation as its load
// of libbpf's own output. One boot.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { compareXlated } from '../../harness/reference/compare.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';
import type { Drive, GuestManifest, GuestReport, ObjectRun, SetRun } from './fixtures/guest-link.js';
import { linkSets, type LinkSets } from './pairs.js';

const KERNEL = '7.3';
const tmp = mkdtempSync(join(tmpdir(), 'cm-link-guest-'));
const DRIVE: Record<string, Drive> = { 'cilium-linked': 'test-run', pair: 'test-run', linked_vars: 'linked_vars', linked_funcs: 'linked_funcs', linked_maps: 'linked_maps' };
let sets: LinkSets;
let report: GuestReport;

beforeAll(async () => {
  sets = await linkSets(tmp);
  const agent = await bundleGuestScript(fileURLToPath(new URL('./fixtures/guest-link.ts', import.meta.url)), join(tmp, 'link.mjs'));
  const manifest: GuestManifest = {
    sets: sets.sets.map((s) => ({ name: s.name, drive: DRIVE[s.name]!, ours: `/t/${s.name}.ours.o`, reference: `/t/${s.name}.reference.o`, relinked: `/t/${s.name}.relinked.o` })),
  };
  const files = [
    { path: '/t/link.mjs', source: agent },
    { path: '/t/link.json', data: JSON.stringify(manifest) },
    ...sets.sets.flatMap((s) => [
      { path: `/t/${s.name}.ours.o`, source: s.ours },
      { path: `/t/${s.name}.reference.o`, source: s.reference.path },
      { path: `/t/${s.name}.relinked.o`, source: s.relinked },
    ]),
  ];
  const k = await new KernelStore().fetch(KERNEL);
  const initrd = await buildInitramfs({ files, agent: false, kernelConfig: k.config, release: k.release });
  const r = await runGuest({ kernelId: KERNEL, vmlinuz: k.vmlinuz, initrd, append: 'cm.agent=/t/link.mjs', accel: 'tcg', logDir: join(tmp, 'logs') });
  const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
  expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
  const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'link') as { data: GuestReport } | undefined;
  expect(msg, JSON.stringify(r.messages).slice(0, 2000)).toBeDefined();
  report = msg!.data;
  if (process.env.CM_LINK_DUMP) writeFileSync(process.env.CM_LINK_DUMP, JSON.stringify(report, null, 1));
  console.log(`[measure] ${KERNEL} (${report.release}): boot ${r.bootMs} ms, guest work ${report.ms} ms, whole run ${Math.round(r.durationMs)} ms`);
  for (const s of report.sets) {
    const line = (o: ObjectRun) => (o.error ? `error: ${o.error}` : o.programs.map((p) => `${p.name} ${p.status}${p.retval !== undefined ? ` ret ${p.retval}` : ''}`).join(', ') + (o.vars ? `; ${JSON.stringify(o.vars)}` : ''));
    console.log(`[measure] ${s.name}: ours ${line(s.ours)}\n  libbpf-linked: ${line(s.reference)}\n  libbpf loads ours: ${line(s.libbpfOurs)}\n  libbpf loads its own: ${line(s.libbpfReference)}`);
  }
}, 1_800_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const setRun = (name: string): SetRun => report.sets.find((s) => s.name === name)!;

/** Both runs loaded the same programs, and each program's xlated instructions are identical (map ids renamed). */
function expectSameTranslation(a: ObjectRun, b: ObjectRun, what: string): number {
  expect(a.error, `${what}: ${a.file}`).toBeUndefined();
  expect(b.error, `${what}: ${b.file}`).toBeUndefined();
  expect(a.programs.map((p) => `${p.name} ${p.status}`), what).toEqual(b.programs.map((p) => `${p.name} ${p.status}`));
  let compared = 0;
  for (const p of a.programs) {
    const q = b.programs.find((x) => x.name === p.name)!;
    if (p.status !== 'loaded') continue;
    const c = compareXlated(p.xlated!, q.xlated!);
    expect(c.equal, `${what}: ${p.name}: ${JSON.stringify(c.firstDiff)}`).toBe(true);
    compared++;
  }
  return compared;
}

describe(`linked objects in a ${KERNEL} guest (TCG)`, () => {
  for (const name of ['cilium-linked', 'linked_funcs', 'linked_vars', 'linked_maps', 'pair']) {
    it(`${name}: our loader translates our linked object exactly as libbpf's linked object`, () => {
      const s = setRun(name);
      const n = expectSameTranslation(s.ours, s.reference, name);
      expect(n).toBe(s.ours.programs.length);
      expect(n).toBeGreaterThan(0);
    });
  }

  it('cilium linked1 + linked2: every winning program returns 0 and every winning map has max_entries 1 (TestLinkedELF)', () => {
    for (const o of [setRun('cilium-linked').ours, setRun('cilium-linked').reference]) {
      expect(o.programs.map((p) => [p.name, p.retval])).toEqual([['entry_l2', 0], ['entry_l1_s', 0], ['entry_ww', 0], ['entry_l1', 0], ['entry_l1_w', 0]]);
      expect(o.maps!.map((m) => [m.name, m.maxEntries])).toEqual([['map_l1_s', 1], ['map_ww', 1], ['map_l1', 1], ['map_l1_w', 1], ['map_l2', 1], ['map_legacy_l1_s', 1], ['map_legacy_l2_s', 1]]);
    }
  });

  it('pair_a + pair_b: prog_a returns 149 and prog_b 147, from either linker', () => {
    for (const o of [setRun('pair').ours, setRun('pair').reference]) expect(o.programs.map((p) => [p.name, p.retval])).toEqual([['prog_a', 149], ['prog_b', 147]]);
  });

  it('linked_vars: the values prog_tests/linked_vars.c expects (strong beats weak, first weak wins)', () => {
    const want = { output_bss1: 6000, output_bss2: 6000, output_data1: 13, output_data2: 13, output_rodata1: 133, output_rodata2: 133 };
    expect(setRun('linked_vars').ours.vars).toEqual(want);
    expect(setRun('linked_vars').reference.vars).toEqual(want);
  });

  it('linked_funcs: the values prog_tests/linked_funcs.c expects (extern functions across files, the first weak one wins, __hidden)', () => {
    const want = { output_val1: 4000, output_ctx1: 121, output_weak1: 42, output_val2: 6000, output_ctx2: 121, output_weak2: 0 };
    expect(setRun('linked_funcs').ours.vars).toEqual(want);
    expect(setRun('linked_funcs').reference.vars).toEqual(want);
  });

  it('linked_maps: the values prog_tests/linked_maps.c expects (an extern map is the other file\'s map)', () => {
    const want = { output_first1: 2000, output_second1: 2, output_weak1: 2 };
    expect(setRun('linked_maps').ours.vars).toEqual(want);
    expect(setRun('linked_maps').reference.vars).toEqual(want);
  });

  it('libbpf loads our linked objects and translates them as it translates its own', () => {
    for (const name of ['linked_funcs', 'linked_vars', 'linked_maps', 'pair']) {
      const s = setRun(name);
      const n = expectSameTranslation(s.libbpfOurs, s.libbpfReference, `libbpf on ${name}`);
      expect(n, name).toBeGreaterThan(0);
    }
    // cilium/ebpf's legacy `maps` definitions: libbpf ≥ 1.0 refuses to open either object, alike.
    const c = setRun('cilium-linked');
    expect(c.libbpfOurs.error).toMatch(/legacy map definitions in 'maps' section are not supported/);
    expect(c.libbpfOurs.error).toBe(c.libbpfReference.error);
  });
});
