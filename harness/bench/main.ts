// npm run bench: our figures side by side with a reference measured in the same run.
//   1. BTF parse: our parse (and parse + name index) vs libbpf's btf__parse, same file, same run.
//   2. Whole-process offline relocation of a set of objects vs `bpftool gen min_core_btf`.
//   3. `corematrix btf minimize` vs `bpftool gen min_core_btf`: time (whole process and in-process) and output size.
//   4. The matrix (seed suite) vs a bare boot of the same kernels (harness/bench/vm.ts).
//   5. The guest agent's start with and without each start-up mechanism (same kernel, same image).
//   6. Public corpora on one kernel (harness/bench/corpus.ts): our whole-object load vs the current
//      libbpf's open + bpf_object__load in the same guest, and a corpus run's wall time vs the
//      time its guest spent in bpf(BPF_PROG_LOAD).
//   7. Opt-in (BENCH_ONLY=kernel-build, about 20 min on 2 cores): a custom kernel's build with gcc
//      alone vs through an empty and a warm ccache (harness/bench/kernel-build.ts).
import { CLANG } from '../tools.js';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { parseBtf } from '../core/btf/btf.js';
import { minimizeBtf } from '../core/btf/minimize.js';
import { KernelStore } from '../kernels/store.js';
import { cacheDir, repoRoot } from '../paths.js';
import { benchAgentStart, benchVm, median } from './vm.js';
import { buildSuites } from '../suites/build.js';
import { benchCorpus, pairStats, type LoadPair } from './corpus.js';
import { benchKernelBuild } from './kernel-build.js';
import type { Accel } from '../vm/arch.js';

const KERNELS = (process.env.BENCH_KERNELS ?? '5.10,6.1,7.3').split(',');
const RUNS = Number(process.env.BENCH_RUNS ?? 30);

const fmt = (ms: number) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(1)) + ' ms';

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
}

function printTable(title: string, head: string[], rows: string[][]): void {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  console.log(`\n${title}\n${row(head, w)}\n${w.map((n) => '-'.repeat(n)).join('  ')}`);
  for (const r of rows) console.log(row(r, w));
}

function libbpfTimer(): string {
  const dir = cacheDir('bench');
  const bin = join(dir, 'btf_parse_timer');
  const src = join(repoRoot(), 'harness/bench/btf_parse_timer.c');
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    execFileSync('gcc', ['-O2', '-o', bin, src, '-lbpf'], { stdio: 'inherit' });
  }
  return bin;
}

async function benchParse(store: KernelStore): Promise<void> {
  const timer = libbpfTimer();
  const rows: string[][] = [];
  for (const id of KERNELS) {
    const k = await store.fetch(id);
    const bytes = readFileSync(k.btf);
    const parse: number[] = [];
    const indexed: number[] = [];
    let types = 0;
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      const b = parseBtf(bytes, { source: k.btf });
      const t1 = performance.now();
      b.byEssentialName('task_struct');
      const t2 = performance.now();
      parse.push(t1 - t0);
      indexed.push(t2 - t0);
      types = b.count;
    }
    const ref = JSON.parse(execFileSync(timer, [k.btf, String(RUNS)]).toString()) as { median_us: number; types: number };
    if (ref.types !== types) throw new Error(`type counts differ for ${id}: ours ${types}, libbpf ${ref.types}`);
    const ours = median(parse);
    const theirs = ref.median_us / 1000;
    rows.push([`${id} (${types} types, ${(bytes.length / 1e6).toFixed(1)} MB)`, fmt(ours), fmt(median(indexed)), fmt(theirs), (ours / theirs).toFixed(2) + '×']);
  }
  printTable(`BTF parse, median of ${RUNS} (goal: parse ≤ 1.5× libbpf btf__parse)`, ['kernel BTF', 'ours: parse', 'ours: + first look-ups', 'libbpf btf__parse', 'ratio'], rows);
}

function wall(cmd: string, args: string[], runs: number, env?: NodeJS.ProcessEnv): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], ...(env ? { env } : {}) });
    times.push(performance.now() - t0);
    if (r.status !== 0 && r.status !== 1) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.toString().trim()}`);
  }
  return median(times);
}

/** The objects relocated in the bench: the test fixture with kernel CO-RE reads, and every suite object. */
async function benchObjects(): Promise<string[]> {
  const dir = cacheDir('bench', 'objects');
  mkdirSync(dir, { recursive: true });
  const fixture = join(dir, 'core_kernel.bpf.o');
  execFileSync(CLANG, ['-g', '-O2', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu', '-c', join(repoRoot(), 'test/fixtures/core_kernel.bpf.c'), '-o', fixture]);
  const suites = await buildSuites({});
  return [fixture, ...suites.map((s) => s.object)];
}

/**
 * What the whole-process CLI benches share: one object and all of them, and the command as users
 * run it (bin/corematrix.js, which starts the CLI bundle from a V8 code cache written by the first
 * run of each command: the warm-up), plus the environment that runs it without the cache.
 */
async function cliBench() {
  const all = await benchObjects();
  return {
    sets: [all.slice(0, 1), all],
    cli: join(repoRoot(), 'bin/corematrix.js'),
    noCache: { ...process.env, COREMATRIX_CODE_CACHE: 'off' },
    runs: Math.max(5, Math.floor(RUNS / 3)),
  };
}

async function benchRelocate(store: KernelStore): Promise<void> {
  const { sets, cli, noCache, runs } = await cliBench();
  const rows: string[][] = [];
  const out = join(cacheDir('bench'), 'min.btf');
  for (const id of KERNELS) {
    const k = await store.fetch(id);
    for (const objs of sets) {
      const argv = [cli, 'relocate', ...objs, '--btf', k.btf, '--json'];
      wall(process.execPath, argv, 1);
      const ours = wall(process.execPath, argv, runs);
      const uncached = wall(process.execPath, argv, runs, noCache);
      const theirs = wall('bpftool', ['gen', 'min_core_btf', k.btf, out, ...objs], runs);
      rows.push([`${id}, ${objs.length} object(s)`, fmt(ours), fmt(uncached), fmt(theirs), (ours / theirs).toFixed(2) + '×']);
    }
  }
  const node = wall(process.execPath, ['-e', '0'], runs);
  printTable(`Offline relocation, whole process, median of ${runs} (goal: ≤ 1.5× bpftool; node itself starts in ${fmt(node)} here)`,
    ['target', 'corematrix relocate', 'without code cache', 'bpftool gen min_core_btf', 'ratio'], rows);
}

async function benchMinimize(store: KernelStore): Promise<void> {
  const { sets, cli, runs } = await cliBench();
  const rows: string[][] = [];
  const ours = join(cacheDir('bench'), 'min-ours.btf');
  const theirs = join(cacheDir('bench'), 'min.btf');
  for (const id of KERNELS) {
    const k = await store.fetch(id);
    const btf = parseBtf(new Uint8Array(readFileSync(k.btf)), { source: k.btf });
    for (const objs of sets) {
      const inputs = objs.map((o) => ({ name: o, bytes: new Uint8Array(readFileSync(o)) }));
      const inProcess: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        minimizeBtf(inputs, btf);
        inProcess.push(performance.now() - t0);
      }
      const a = wall(process.execPath, [cli, 'btf', 'minimize', ...objs.flatMap((o) => ['--object', o]), '--btf', k.btf, '-o', ours], runs);
      const b = wall('bpftool', ['gen', 'min_core_btf', k.btf, theirs, ...objs], runs);
      rows.push([`${id}, ${objs.length} object(s)`, fmt(a), fmt(median(inProcess)), fmt(b), (a / b).toFixed(2) + '×', `${statSync(ours).size} B`, `${statSync(theirs).size} B`]);
    }
  }
  printTable(`btf minimize, median of ${runs}`, ['target', 'ours: whole process', 'ours: in-process', 'bpftool gen min_core_btf', 'ratio', 'size: ours', 'size: bpftool'], rows);
}

async function benchMatrix(): Promise<void> {
  const kernels = (process.env.BENCH_VM_KERNELS ?? 'all').split(',');
  // Wall times move by several per cent between runs, and a first round after a change to the
  // agent also builds its images and code cache: floor and matrix run BENCH_MATRIX_ROUNDS times
  // (3 by default), every round and the medians printed.
  const n = Math.max(1, Number(process.env.BENCH_MATRIX_ROUNDS ?? 3) || 1);
  const r = await benchVm(kernels, (s) => console.error(s), { rounds: n });
  const r0 = r.rounds[r.medianRound]!;
  const plain = (ms: number | undefined, floor: number) => (ms === undefined ? ['-', '-'] : [fmt(ms), (ms / floor).toFixed(2) + '×']);
  const rows = r.rows.map((x) => [x.kernel, fmt(x.floorMs), x.floorBootMs === undefined ? '-' : fmt(x.floorBootMs), fmt(x.matrixMs), (x.matrixMs / x.floorMs).toFixed(2) + '×', ...plain(x.plainMs, x.floorMs), x.verdict]);
  rows.push(['wall, all kernels', fmt(r0.floorWallMs), '', fmt(r0.matrixWallMs), (r0.matrixWallMs / r0.floorWallMs).toFixed(2) + '×', ...plain(r.plainWallMs, r0.floorWallMs), '']);
  rows.push(['CPU of all guests (QEMU) and tools', fmt(r0.floorCpuMs), '', fmt(r0.matrixCpuMs), (r0.matrixCpuMs / r0.floorCpuMs).toFixed(2) + '×', ...plain(r.plainCpuMs, r0.floorCpuMs), '']);
  printTable(`Matrix vs bare boot, ${r.jobs} guests at a time under ${r.accel.toUpperCase()}, ${n > 1 ? `round ${r.medianRound + 1} of ${n} (the median)` : 'one round'} (goals: matrix ≤ 60 s wall, ≤ 1.5× the floor); last columns: the same matrix with the agent's start-up mechanisms off (no RNG seed, no node flags, no code cache)`,
    ['kernel', 'floor: busybox boot+poweroff', 'floor: boot to init', 'matrix: seed suite', 'ratio', 'matrix, start-up plain', 'ratio', 'matrix verdict'], rows);
  if (n === 1) return;
  const wall = r.rounds.map((x) => x.matrixWallMs / x.floorWallMs);
  const cpu = r.rounds.map((x) => x.matrixCpuMs / x.floorCpuMs);
  const roundRows = r.rounds.map((x, i) => [`${i + 1}`, fmt(x.floorWallMs), fmt(x.matrixWallMs), wall[i]!.toFixed(2) + '×', fmt(x.floorCpuMs), fmt(x.matrixCpuMs), cpu[i]!.toFixed(2) + '×']);
  const med = (f: (x: (typeof r.rounds)[number]) => number) => fmt(median(r.rounds.map(f)));
  roundRows.push(['median', med((x) => x.floorWallMs), med((x) => x.matrixWallMs), median(wall).toFixed(2) + '×', med((x) => x.floorCpuMs), med((x) => x.matrixCpuMs), median(cpu).toFixed(2) + '×']);
  printTable(`Matrix vs bare boot, ${n} rounds (goal: ≤ 1.5×)`, ['round', 'floor wall', 'matrix wall', 'ratio', 'floor CPU', 'matrix CPU', 'ratio'], roundRows);
}

async function benchStart(): Promise<void> {
  const kernel = process.env.BENCH_START_KERNEL ?? '6.1';
  const boots = Number(process.env.BENCH_START_BOOTS ?? 2);
  const r = await benchAgentStart(kernel, process.env.COREMATRIX_ACCEL as 'tcg' | 'kvm' | undefined, boots, (s) => console.error(s));
  const all = r.rows[0]!;
  const rows = r.rows.map((x) => [x.variant, fmt(x.startMs), x === all ? '' : (x.startMs / all.startMs).toFixed(2) + '×', fmt(x.runMs), fmt(x.cpuMs), x.cache, x.append || '-', x.verdicts.join(',')]);
  printTable(`Agent start in the guest, ${r.kernel}, one guest at a time, median of ${all.boots} boots each: init → agent hello (guest uptime: node start + agent bundle), the whole guest (wall and QEMU CPU)`,
    ['start-up mechanisms', 'init → hello', 'vs all', 'guest wall', 'guest CPU', 'code cache', 'kernel command line', 'verdicts'], rows);
}

async function benchCorpusSection(): Promise<void> {
  const kernel = process.env.BENCH_CORPUS_KERNEL ?? '7.3';
  const corpora = (process.env.BENCH_CORPUS ?? 'selftests:1/20,debian').split(',').map((s) => s.trim()).filter(Boolean);
  const accel = (process.env.COREMATRIX_ACCEL ?? 'tcg') as Accel;
  const rounds = Math.max(1, Number(process.env.BENCH_CORPUS_ROUNDS ?? 2) || 1);
  const r = await benchCorpus({ kernel, corpora, accel, rounds, log: (s) => console.error(s) });
  /** Guest-scale times in seconds. */
  const time = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : fmt(ms));
  const total = r.corpora.reduce((n, c) => n + c.objects, 0);
  // The first round is what a corpus run meets; with more rounds, the fastest of each loader too.
  const views = rounds > 1 ? (['first', 'fastest'] as const) : (['first'] as const);
  const line = (name: string, pairs: LoadPair[], objects: number) => [
    name, `${pairs.length} of ${objects}`, String(pairs.reduce((n, p) => n + p.programs, 0)),
    ...views.flatMap((w) => {
      const s = pairStats(pairs, w);
      return [time(s.ours), time(s.verifier), time(s.libbpf), s.ratio.toFixed(2) + '×', s.medianRatio.toFixed(2) + '×'];
    }),
  ];
  const rows = r.corpora.map((c) => line(c.name, r.pairs.filter((p) => p.corpus === c.name), c.objects));
  if (r.corpora.length > 1) rows.push(line('all', r.pairs, total));
  const head = (w: string) => [`${w}: ours`, 'in BPF_PROG_LOAD', 'libbpf', 'ratio (sums)', 'median per object'];
  printTable(`Whole-object load on ${r.kernel}, ${accel.toUpperCase()}, one guest (${time(r.compareWallMs)}): ours (parse, relocate, BTF, maps, every program) vs ${r.libbpf} bpf_object__open_mem + bpf_object__load, back to back, nothing attached, each object ${rounds} time(s) by each loader; first round: as a corpus run meets it${rounds > 1 ? '; fastest: the shortest load of each loader' : ''}; objects both loaded whole (goal: ≤ 1.2×)`,
    ['corpus', 'objects', 'programs', ...head('first'), ...(rounds > 1 ? head('fastest') : [])], rows);
  const only = (units: string[]) => (units.length ? ` (${units.map((u) => u.replace(/^object:/, '')).join(', ')})` : '');
  console.log(`left out: ${r.leftOut.neither} objects neither loader loaded whole (refused, or every program's autoload off); loaded whole by ours only: ${r.leftOut.oursOnly.length}${only(r.leftOut.oursOnly)}; by libbpf only: ${r.leftOut.libbpfOnly.length}${only(r.leftOut.libbpfOnly)}`);
  const ratio = (t: LoadPair['first']) => t.oursMs / Math.max(1, t.libbpfMs);
  const worst = [...r.pairs].sort((a, b) => ratio(b.first) - ratio(a.first)).slice(0, Number(process.env.BENCH_CORPUS_WORST ?? 5));
  printTable('Objects where ours is slowest against libbpf (first round)', ['object', 'programs', 'ours', 'in BPF_PROG_LOAD', 'libbpf', 'ratio', ...(rounds > 1 ? ['fastest: ours', 'libbpf'] : [])],
    worst.map((p) => [p.unit.replace(/^object:/, ''), String(p.programs), time(p.first.oursMs), time(p.first.oursVerifierMs), time(p.first.libbpfMs), ratio(p.first).toFixed(2) + '×', ...(rounds > 1 ? [time(p.fastest.oursMs), time(p.fastest.libbpfMs)] : [])]));
  const f = r.floor;
  printTable(`Corpus run (matrix --corpus ${corpora.join(' --corpus ')} --suites none, our loader, ${total} objects) on ${r.kernel}: wall vs the time its guest spent in bpf(BPF_PROG_LOAD), the verifier floor (goal: wall ≤ 1.3× the floor)`,
    ['what', 'time', 'vs floor'], [
      ['run wall (host: image, boot, guest)', time(f.wallMs), (f.wallMs / f.progLoadMs).toFixed(2) + '×'],
      ['guest (boot to power-off)', time(f.guestMs), (f.guestMs / f.progLoadMs).toFixed(2) + '×'],
      ['  of which: boot and node, to the agent\'s hello', time(f.bootMs), ''],
      [`  of which: our loads (${f.objects} objects: open, config, every program)`, time(f.oursLoadMs), (f.oursLoadMs / f.progLoadMs).toFixed(2) + '×'],
      ['  of which: attach, workload and the rest', time(f.guestMs - f.bootMs - f.oursLoadMs), ''],
      [`floor: in BPF_PROG_LOAD (${f.progLoads} calls)`, time(f.progLoadMs), '1.00×'],
      [`cells: ${f.pass} of ${f.cells} pass`, '', ''],
    ]);
}

async function main(): Promise<void> {
  const store = new KernelStore({ log: (s) => console.error(s) });
  const only = process.env.BENCH_ONLY?.split(',');
  console.log(`corematrix bench — ${new Date().toISOString()}, node ${process.version}, ${KERNELS.join(' ')}`);
  if (!only || only.includes('parse')) await benchParse(store);
  if (!only || only.includes('relocate')) await benchRelocate(store);
  if (!only || only.includes('minimize')) await benchMinimize(store);
  if (!only || only.includes('matrix')) await benchMatrix();
  if (!only || only.includes('start')) await benchStart();
  if (!only || only.includes('corpus')) await benchCorpusSection();
  if (only?.includes('kernel-build')) await benchKernelBuildSection(store);
}

async function benchKernelBuildSection(store: KernelStore): Promise<void> {
  const id = process.env.BENCH_BUILD_KERNEL ?? '6.12-nonetns';
  const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
  const runs = await benchKernelBuild(store, id, (s) => console.error(s));
  const ref = runs[0]!.seconds;
  printTable(`7. custom kernel build: ${id} (-j${availableParallelism()}, load average ${load0} at the start, ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]} at the end)`, ['build', 'wall', 'vs gcc alone', 'compilations from the cache'], runs.map((r) => [
    r.label, `${r.seconds} s`, `${(r.seconds / ref).toFixed(2)}×`, r.ccache ? `${r.ccache.hits} of ${r.ccache.hits + r.ccache.misses}` : '',
  ]));
}

main().catch((e: unknown) => {
  console.error(`bench: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
