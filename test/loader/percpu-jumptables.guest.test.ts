// Global per-CPU data (`.percpu`) and gotox jump tables (`.jumptables`), the two sections the
// whole selftests corpus on 7.3 showed libbpf 1.8 loading and ours refusing (36 programs of
// verifier_percpu_addr, test_global_percpu_data, verifier_gotox and compute_live_registers), run as
// a user runs them: `matrix --object ... --suites none --loader both` on 7.3 and on 6.1, which has
// neither. Beside them, this repo's two fixtures (test/fixtures/percpu-jumptables). libbpf 1.8 in
// the same guest is the witness: on 7.3 both loaders load the same programs, with the same
// translated instructions; on 6.1 both refuse the same programs, ours naming object and map.
//
// The kernel dumps a jump table's ld_imm64 (xlated) as the raw kernel address of that load's
// BPF_MAP_TYPE_INSN_ARRAY (the map type has no map_direct_value_meta to map it back to a map id),
// so two loads differ there as they differ in map ids: the report's comparison
// (harness/reference/compare.ts) renames those addresses consistently in a program with a gotox,
// and compares everything else byte for byte. That the tables hold
// the right targets, and `.percpu` the right bytes on every CPU, a second 7.3 guest reads back from
// the kernel (fixtures/percpu-jumptables/guest-check.ts): the fixture programs' return values
// (where gotox went) and each possible CPU's value of the per-CPU maps.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSN_SIZE, LD_IMM64 } from '../../harness/core/insn.js';
import { kernelSelftests } from '../../harness/corpus/kernel-selftests.js';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { runGuest } from '../../harness/vm/qemu.js';
import type { CheckReport } from '../fixtures/percpu-jumptables/guest-check.js';
import { bundleGuestScript } from '../helpers/guest-script.js';
import { compareXlated, hexBytes } from '../../harness/reference/compare.js';
import type { CellResult, RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { compileBpf, dumpSection, ensureBuilt } from '../helpers/tools.js';

const CORPUS = ['verifier_percpu_addr', 'test_global_percpu_data', 'verifier_gotox', 'compute_live_registers'];
/** The programs of each corpus object libbpf 1.8 loads on 7.3 (the 36). */
const LIBBPF_LOADS_ON_73: Record<string, number> = { verifier_percpu_addr: 1, test_global_percpu_data: 2, verifier_gotox: 16, compute_live_registers: 17 };

const tmp = mkdtempSync(join(tmpdir(), 'cm-percpu-jumptables-'));
let report: RunReport;
let out = '';
const fixtures: Record<string, string> = {};
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  ensureBuilt();
  const corpus = await kernelSelftests({ only: (n) => CORPUS.includes(n) });
  expect(corpus.objects.map((o) => o.name).sort()).toEqual([...CORPUS].sort());
  const objects = corpus.objects.map((o) => o.path);
  for (const f of ['percpu', 'jumptables']) {
    const dest = join(tmp, `${f}.bpf.o`);
    copyFileSync(compileBpf(fileURLToPath(new URL(`../fixtures/percpu-jumptables/${f}.bpf.c`, import.meta.url))), dest);
    fixtures[f] = dest;
    objects.push(dest);
  }
  ({ report, out } = runMatrixCli(['--kernels', '6.1,7.3', '--jobs', '1', '--suites', 'none', '--loader', 'both', ...objects.flatMap((o) => ['--object', o])], join(tmp, 'out')));
}, 20 * 60_000);

const kernel = (id: string) => {
  const k = report.kernels.find((x) => x.kernel.id === id);
  if (!k) throw new Error(`no ${id} in the report:\n${out}`);
  return k;
};
/** Per program of `object` on kernel `id`: our status and libbpf's, as the libbpf cell's comparison recorded them. */
function statuses(id: string, object: string): Map<string, { ours: string; libbpf: string; cell: CellResult; mine: CellResult }> {
  const k = kernel(id);
  const outm = new Map<string, { ours: string; libbpf: string; cell: CellResult; mine: CellResult }>();
  for (const c of k.cells.filter((x) => x.loader === 'libbpf' && x.object.name === `${object}.bpf.o`)) {
    const mine = k.cells.find((x) => x.loader !== 'libbpf' && x.object.name === c.object.name && x.program === c.program)!;
    outm.set(c.program, { ours: String(c.checks[0]!.truth), libbpf: String(c.checks[0]!.observed), cell: c, mine });
  }
  return outm;
}

/** The ld_imm64s of a kernel address (src 0) in a program with a gotox: its jump table loads, as the kernel dumps them. */
function jumpTableLoads(xlated: string): number {
  const x = hexBytes(xlated);
  if (!x.some((b, i) => i % INSN_SIZE === 0 && b === 0x0d)) return 0;
  let n = 0;
  for (let at = 0; at + 2 * INSN_SIZE <= x.length; at += INSN_SIZE) {
    if (x[at] !== LD_IMM64) continue;
    if ((x[at + 1]! >> 4) === 0 && new DataView(x.buffer, x.byteOffset + at + INSN_SIZE + 4, 4).getUint32(0, true) >= 0xffff8000) n++;
    at += INSN_SIZE;
  }
  return n;
}

/** The product's comparison (harness/reference/compare.ts), with the first difference in words. */
function compared(ours: string, theirs: string): { equal: boolean; detail: string } {
  const x = compareXlated(ours, theirs);
  return { equal: x.equal, detail: x.firstDiff ? `insn ${x.firstDiff.insn}: ours \`${x.firstDiff.ours}\`, libbpf \`${x.firstDiff.theirs}\`` : `${x.insns} insns` };
}

describe('.percpu and .jumptables on 7.3: both loaders load the same programs, same translated code', () => {
  it('boots both guests and compares every program', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(['6.1:ok', '7.3:ok']);
  });

  it.each(CORPUS)('%s: every program libbpf loads, ours loads, with identical xlated instructions', (object) => {
    const s = statuses('7.3', object);
    const bothLoaded = [...s.entries()].filter(([, v]) => v.libbpf === 'loaded');
    expect(bothLoaded.length, out).toBe(LIBBPF_LOADS_ON_73[object]);
    for (const [program, v] of s) {
      // Programs the verifier refuses (verifier_gotox's malformed gotox cases) are refused by both.
      expect(`${program}: ${v.ours}`, v.cell.reason).toBe(`${program}: ${v.libbpf}`);
      if (v.libbpf !== 'loaded') continue;
      const cmp = compared(v.mine.xlated!, v.cell.xlated!);
      expect(cmp.equal, `${object} ${program}: ${cmp.detail}`).toBe(true);
      // The report's own verdict for the pair: the same program.
      expect(v.cell.verdict, `${object} ${program}: ${v.cell.reason}`).toBe('pass');
      if (object === 'verifier_gotox' || (object === 'compute_live_registers' && program === 'gotox')) expect(jumpTableLoads(v.cell.xlated!), program).toBeGreaterThan(0);
    }
  });

  it('the fixtures: .percpu data and jump tables (in a program and in an appended subprogram) load for both', () => {
    for (const [object, loads] of [['percpu', ['count_percpu', 'no_percpu']], ['jumptables', ['jt_first', 'jt_second']]] as const) {
      const s = statuses('7.3', object);
      for (const p of loads) {
        const v = s.get(p)!;
        expect(`${p}: ${v.ours}/${v.libbpf}`, v.cell.reason ?? v.mine.reason).toBe(`${p}: loaded/loaded`);
        const cmp = compared(v.mine.xlated!, v.cell.xlated!);
        expect(cmp.equal, `${object} ${p}: ${cmp.detail}`).toBe(true);
        expect(v.cell.verdict, `${object} ${p}: ${v.cell.reason}`).toBe('pass');
      }
    }
    // A table whose size is no multiple of 8: both refuse the program, ours naming the table.
    const bad = statuses('7.3', 'jumptables').get('jt_bad_size')!;
    expect(`${bad.ours}/${bad.libbpf}`).toBe('error/error');
    expect(bad.mine.reason).toContain("jump table 'bad_table' (12 bytes at .jumptables+56): its size is not a multiple of 8");
  });
});

describe('on 6.1 (no global per-CPU data, no instruction arrays) ours refuses what libbpf refuses', () => {
  it('.percpu: the programs using it fail, naming object and map; the others load', () => {
    for (const object of ['verifier_percpu_addr', 'test_global_percpu_data', 'percpu']) {
      for (const [program, v] of statuses('6.1', object)) expect(`${object} ${program}: ${v.ours}`, v.cell.reason).toBe(`${object} ${program}: ${v.libbpf}`);
    }
    const v = statuses('6.1', 'percpu').get('count_percpu')!;
    expect(v.ours).toBe('rejected');
    expect(v.mine.reason).toMatch(/^rejected: verifier rejected it: percpu\.bpf\.o: map '\.percpu' is referenced but wasn't created: this kernel has no global per-CPU data/);
    expect(statuses('6.1', 'percpu').get('no_percpu')!.ours).toBe('loaded');
  });

  it('.jumptables: every program with a table fails, naming object, program and table; libbpf fails the same ones', () => {
    for (const object of ['verifier_gotox', 'jumptables']) {
      const s = statuses('6.1', object);
      for (const [program, v] of s) expect(`${program}: ${v.ours}`, v.cell.reason).toBe(`${program}: ${v.libbpf}`);
      expect([...s.values()].filter((v) => v.ours === 'loaded')).toEqual([]);
    }
    const first = statuses('6.1', 'jumptables').get('jt_first')!;
    expect(first.ours).toBe('error');
    expect(first.mine.reason).toBe("error: jumptables.bpf.o: prog 'jt_first': jump table 'first_table' (.jumptables+16): map '.jumptables': bpf(BPF_MAP_CREATE): EINVAL (Invalid argument): this kernel has no BPF_MAP_TYPE_INSN_ARRAY maps, which gotox jump tables need");
  });
});

describe('7.3 read back: what the kernel holds after our loader', () => {
  let rep: CheckReport;
  beforeAll(async () => {
    const agent = await bundleGuestScript(fileURLToPath(new URL('../fixtures/percpu-jumptables/guest-check.ts', import.meta.url)), join(tmp, 'check.mjs'));
    const k = await new KernelStore().fetch('7.3');
    const files = [
      { path: '/t/check.mjs', source: agent },
      { path: '/t/percpu.bpf.o', source: fixtures.percpu! },
      { path: '/t/jumptables.bpf.o', source: fixtures.jumptables! },
    ];
    const initrd = await buildInitramfs({ files, agent: false, kernelConfig: k.config, release: k.release });
    // Two vCPUs (7.3 keeps one possible CPU with `possible_cpus=` and one vCPU): two values per map.
    const r = await runGuest({ kernelId: '7.3', vmlinuz: k.vmlinuz, initrd, append: 'cm.agent=/t/check.mjs', cpus: 2, accel: 'tcg', logDir: join(tmp, 'logs') });
    const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
    expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
    const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'percpu-jumptables') as { data: CheckReport } | undefined;
    expect(msg, JSON.stringify(r.messages)).toBeDefined();
    rep = msg!.data;
    console.log(`[measure] 7.3 read back: boot ${r.bootMs} ms, whole run ${Math.round(r.durationMs)} ms; ${JSON.stringify(rep)}`);
  }, 300_000);

  it('global per-CPU data: each .percpu* section is a PERCPU_ARRAY named by its section (15 characters), its bytes on every possible CPU', () => {
    expect(rep.probes.percpuData).toBe('supported');
    expect(rep.possibleCpus).toBe(2);
    expect(rep.percpu.outcomes).toEqual({ count_percpu: 'loaded', no_percpu: 'loaded' });
    const section = (name: string) => Buffer.from(dumpSection(fixtures.percpu!, name)).toString('hex');
    const want = { '.percpu': '.percpu', '.percpu.a_long_section_name': '.percpu.a_long_' };
    expect(Object.keys(rep.percpu.maps).sort()).toEqual(Object.keys(want).sort());
    for (const [name, kernelName] of Object.entries(want)) {
      const m = rep.percpu.maps[name]!;
      expect({ kernelName: m.kernelName, type: m.type, valueSize: m.valueSize, maxEntries: m.maxEntries, flags: m.flags })
        .toEqual({ kernelName, type: 6 /* BPF_MAP_TYPE_PERCPU_ARRAY */, valueSize: section(name).length / 2, maxEntries: 1, flags: 0 });
      expect(m.created).toEqual(Array(2).fill(section(name)));
    }
  });

  it('a program writes its own CPU\'s copy: after one run on CPU 0 only CPU 0\'s values moved (hits 7→8, pair.b 100→103, flag 5→4)', () => {
    expect(rep.percpu.runRetval).toBe(0);
    const main = rep.percpu.maps['.percpu']!;
    expect(main.afterRun[0]).toBe('08000000' + '00000000' + '03000000' + '00000000' + '6700000000000000');
    expect(main.afterRun.slice(1)).toEqual(main.created.slice(1));
    const flag = rep.percpu.maps['.percpu.a_long_section_name']!;
    expect(flag.afterRun).toEqual(['04', '05']);
  });

  it('jump tables: gotox lands where each table says, in a program and in its appended subprogram', () => {
    expect(rep.probes.insnArray).toBe('supported');
    expect(rep.jumptables.outcomes.jt_first).toBe('loaded');
    expect(rep.jumptables.outcomes.jt_second).toBe('loaded');
    expect(rep.jumptables.outcomes.jt_bad_size).toMatch(/^error: jumptables\.bpf\.o: prog 'jt_bad_size': jump table 'bad_table' .*: its size is not a multiple of 8$/);
    // jt_first takes entry 2 (30); jt_second calls table_sub (entry 1: 41), then takes its entry 1 (60).
    expect(rep.jumptables.retvals).toEqual({ jt_first: 30, jt_second: 60 });
  });
});
