// Maps and libbpf's special externs exactly as libbpf makes them, in real guests (TCG): 5.10 (no
// bpf_get_attach_cookie, no bloom filter, no user ring buffer) and 6.1. Two views per kernel:
//  - the matrix run itself (runMatrix, loader 'both'): the agent loads the objects with our loader
//    and, in the same guest, with Debian's libbpf 1.1; our cells must pass, and libbpf's cells
//    (same verdict and identical translated instructions: a wrong extern value changes the code
//    the verifier keeps) must pass too;
//  - a guest script reading back what was created (maps-externs-check.ts): every map's definition
//    from the kernel, ours against libbpf's, the extern values against /proc/kallsyms and the
//    kernel's BTF, the perf event array against the possible CPUs, the pin reused and refused.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { runMatrix } from '../../harness/matrix/run.js';
import type { CellResult } from '../../harness/results.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';
import type { Objects, Report } from '../runtime/fixtures/maps-externs-check.js';
import { expectReport } from '../runtime/fixtures/maps-externs-expect.js';
import { compileObjects } from '../runtime/fixtures/maps-externs-objects.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-maps-externs-'));
let agent: string;
let objects: Objects;

beforeAll(async () => {
  objects = await compileObjects();
  agent = await bundleGuestScript(fileURLToPath(new URL('../runtime/fixtures/guest-maps-externs.ts', import.meta.url)), join(tmp, 'maps-externs.mjs'));
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** `append`: extra kernel arguments (possible_cpus=N makes N CPUs possible with one vCPU online). */
async function readBack(kernelId: string, append = ''): Promise<Report> {
  const k = await new KernelStore().fetch(kernelId);
  const files = [
    { path: '/t/maps-externs.mjs', source: agent },
    { path: '/t/maps_externs.bpf.o', source: objects.mapsExterns },
    { path: '/t/newer_maps.bpf.o', source: objects.newerMaps },
    { path: '/t/pin_conflict.bpf.o', source: objects.pinConflict },
  ];
  const initrd = await buildInitramfs({ files, agent: false, kernelConfig: k.config, release: k.release });
  const r = await runGuest({ kernelId, vmlinuz: k.vmlinuz, initrd, append: `cm.agent=/t/maps-externs.mjs ${append}`.trim(), accel: 'tcg', logDir: join(tmp, 'logs') });
  const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
  expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
  const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'maps-externs') as { data: { report: Report; ms: number } } | undefined;
  expect(msg, JSON.stringify(r.messages)).toBeDefined();
  const rep = msg!.data.report;
  const m = rep.maps.ours.maps;
  console.log(`[measure] ${kernelId} (${rep.release}): boot ${r.bootMs} ms, checks ${msg!.data.ms} ms, whole run ${Math.round(r.durationMs)} ms; possible ${rep.possibleText} → events max_entries ${m.events?.maxEntries}, rb ${m.rb?.maxEntries}; wrapper ${rep.maps.ours.vars.wrapper_seen} (${rep.kallsymsWrapper.symbol} in kallsyms: ${rep.kallsymsWrapper.present}), cookie ${rep.maps.ours.vars.cookie_seen} (BTF: ${rep.btfCookieHelper}); newer_maps: ${rep.newer.ours.error ?? `bloom map_extra ${rep.newer.ours.maps.bloom?.mapExtra}, user_rb ${rep.newer.ours.maps.user_rb?.maxEntries}`}`);
  return rep;
}

async function matrixCells(kernelId: string): Promise<CellResult[]> {
  const r = await runMatrix({
    kernels: [kernelId], jobs: 1, accel: 'tcg', outDir: join(tmp, `matrix-${kernelId}`), runId: 'maps-externs', log: () => {},
    suites: [], objects: [objects.mapsExterns, objects.newerMaps], loader: 'both',
  });
  const k = r.kernels[0]!;
  expect(k.guest, `${k.detail}\n${k.consoleTail}`).toBe('ok');
  console.log(`[measure] ${kernelId} matrix (loader both): ${Math.round(k.durationMs)} ms\n  ${k.cells.map((c) => `${c.loader} ${c.suite} ${c.program}: ${c.verdict}${c.reason ? ` (${c.reason})` : ''}`).join('\n  ')}`);
  return k.cells;
}

/** The matrix names a user's object by its file name (the compile cache's, with a content hash). */
const suiteOf = (object: keyof Objects) => `object:${basename(objects[object])}`;

/** The cells of one object, by "loader program" → verdict. */
const verdicts = (cells: CellResult[], object: keyof Objects) =>
  Object.fromEntries(cells.filter((c) => c.suite === suiteOf(object)).map((c) => [`${c.loader} ${c.program}`, c.verdict]));

const externs = (cells: CellResult[]) =>
  Object.fromEntries(cells.find((c) => c.suite === suiteOf('mapsExterns') && c.loader === 'ours')!.externs.map((e) => [e.name, e.value]));

describe('maps and special externs in guests (TCG)', () => {
  it('5.10: the matrix run, both loaders: maps_externs passes everywhere; newer_maps is refused by both, naming the map', async () => {
    const cells = await matrixCells('5.10');
    expect(verdicts(cells, 'mapsExterns')).toEqual({ 'ours on_bpf': 'pass', 'ours copy_externs': 'pass', 'libbpf on_bpf': 'pass', 'libbpf copy_externs': 'pass' });
    expect(externs(cells)).toMatchObject({ LINUX_HAS_SYSCALL_WRAPPER: true, LINUX_HAS_BPF_COOKIE: false });
    // Refused as a whole, so each of its programs fails with the object's reason.
    const ours = cells.find((c) => c.suite === suiteOf('newerMaps') && c.loader === 'ours')!;
    expect(ours.verdict).toBe('fail');
    expect(ours.reason).toMatch(/^error: newer_maps\.bpf-[0-9a-f]+\.o: map 'bloom': bpf\(BPF_MAP_CREATE\): EINVAL \(Invalid argument\): kernel lacks map:BLOOM_FILTER \(needs Linux 5\.16 or later\)$/);
    // libbpf refuses it too: the libbpf cell compares verdicts, and they agree.
    const theirs = cells.find((c) => c.suite === suiteOf('newerMaps') && c.loader === 'libbpf')!;
    expect(theirs.verdict, theirs.reason).toBe('pass');
    expect(theirs.checks[0]).toMatchObject({ observed: 'error', truth: 'error', ok: true });
  }, 150_000);

  it('5.10: what was created, read back, equals libbpf and the kernel', async () => {
    expectReport(await readBack('5.10'), { where: '5.10', newerMaps: false, kprobes: true });
  }, 150_000);

  it('6.1: the matrix run, both loaders: every cell passes', async () => {
    const cells = await matrixCells('6.1');
    expect(verdicts(cells, 'mapsExterns')).toEqual({ 'ours on_bpf': 'pass', 'ours copy_externs': 'pass', 'libbpf on_bpf': 'pass', 'libbpf copy_externs': 'pass' });
    expect(verdicts(cells, 'newerMaps')).toEqual({ 'ours bloom_roundtrip': 'pass', 'libbpf bloom_roundtrip': 'pass' });
    expect(externs(cells)).toMatchObject({ LINUX_HAS_SYSCALL_WRAPPER: true, LINUX_HAS_BPF_COOKIE: true });
  }, 150_000);

  it('6.1 with three possible CPUs (one online): what was created, read back, equals libbpf and the kernel', async () => {
    const rep = await readBack('6.1', 'possible_cpus=3');
    // The perf event array follows the possible CPUs, not the online one.
    expect(rep.possibleText).toBe('0-2');
    expect(rep.maps.ours.maps.events!.maxEntries).toBe(3);
    expectReport(rep, { where: '6.1', newerMaps: true, kprobes: true });
  }, 150_000);
});
