// Bench section `corpus`: public corpora (the kernel's selftests slice, Debian's objects) on one
// kernel, in two guests:
//   1. load comparison (load-guest.ts as the guest's agent): each object loaded whole by our
//      loader and by the current libbpf (bpf_object__open_mem + bpf_object__load), back to back
//      in the same guest, nothing attached;
//   2. the corpus run as a user runs it (`matrix --corpus ... --suites none`, our loader): its
//      wall time next to the time its guest spent inside bpf(BPF_PROG_LOAD), the verifier's
//      floor. The agent reports that time (protocol.ts PROG_LOAD_TOTAL) and each object's load
//      (LOAD_TIMING); they are read back from the guest's result-port log.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { buildInitramfs } from '../images/initramfs.js';
import { kernelBtfIndexFile } from '../kernels/btf-index.js';
import { KernelStore } from '../kernels/store.js';
import { repoRoot } from '../paths.js';
import { decodeMessage, LOAD_TIMING, PROG_LOAD_TOTAL, type LoadTiming, type ProgLoadTotal } from '../protocol.js';
import { currentLibbpf } from '../reference/build.js';
import type { Accel } from '../vm/arch.js';
import { runGuest } from '../vm/qemu.js';
import { BENCH_LOAD_INPUT, BENCH_LOAD_KIND, type BenchLoadInput, type BenchLoadRow, type LoaderTiming } from './load-record.js';
import { median } from './vm.js';

/** One corpus as `--corpus` names it, and its object files on the host. */
export interface BenchCorpus {
  name: string;
  objects: string[];
}

/** Fetches (cached) the corpora `specs` names: `selftests[:N/M]`, `debian`, `cilium`. */
export async function corpusObjects(specs: string[], log: (s: string) => void): Promise<BenchCorpus[]> {
  const out: BenchCorpus[] = [];
  for (const spec of specs) {
    if (spec === 'debian') {
      const { debianObjects } = await import('../corpus/debian-objects.js');
      out.push({ name: spec, objects: (await debianObjects(log)).objects.map((o) => o.path) });
    } else if (spec === 'cilium') {
      const { ciliumTestdata } = await import('../corpus/cilium-testdata.js');
      out.push({ name: spec, objects: (await ciliumTestdata(log)).objects.map((o) => o.path) });
    } else if (/^selftests(:\d+\/\d+)?$/.test(spec)) {
      const { kernelSelftests, sliceOf } = await import('../corpus/kernel-selftests.js');
      const slice = /^selftests:(\d+)\/(\d+)$/.exec(spec);
      const c = await kernelSelftests({ log, ...(slice ? { only: sliceOf(Number(slice[1]), Number(slice[2])) } : {}) });
      out.push({ name: spec, objects: c.objects.map((o) => o.path) });
    } else throw new Error(`BENCH_CORPUS: '${spec}' is not selftests[:N/M], debian or cilium`);
  }
  return out;
}

/** One object both loaders loaded whole in the same guest, every round. */
export interface LoadPair {
  corpus: string;
  unit: string;
  programs: number;
  /**
   * The first round: as a corpus run meets the object (our loader's look-ups in the kernel's BTF
   * not yet cached, libbpf's dlopen and probes done before the first object).
   */
  first: { oursMs: number; oursVerifierMs: number; libbpfMs: number };
  /** The fastest round of each loader (our look-ups cached by then). */
  fastest: { oursMs: number; oursVerifierMs: number; libbpfMs: number };
}

export interface CorpusBench {
  kernel: string;
  libbpf: string;
  corpora: { name: string; objects: number }[];
  /** Guest 1: objects both loaders loaded whole, and those left out (by one loader only: their names). */
  pairs: LoadPair[];
  leftOut: { neither: number; oursOnly: string[]; libbpfOnly: string[] };
  compareWallMs: number;
  /** Guest 2: the corpus run with our loader. */
  floor: { wallMs: number; guestMs: number; bootMs: number; progLoadMs: number; progLoads: number; oursLoadMs: number; objects: number; cells: number; pass: number };
}

/** The `result` records of one kind a guest sent, from its result-port log. */
function guestRecords<T>(logDir: string, kind: string): T[] {
  return readdirSync(logDir).filter((f) => f.endsWith('.ttyS1.log')).flatMap((f) =>
    readFileSync(join(logDir, f), 'utf8').split('\n').flatMap((line) => {
      const m = decodeMessage(line);
      return m?.t === 'result' && m.kind === kind ? [m.data as T] : [];
    }));
}

/** The load-comparison guest script, bundled as the guest agent is (koffi stays in the image). */
async function bundleLoadGuest(outfile: string): Promise<string> {
  // esbuild (a devDependency) is loaded at run time: the bench runs from the repository.
  const { build } = createRequire(import.meta.url)('esbuild') as typeof import('esbuild');
  await build({
    entryPoints: [join(repoRoot(), 'harness/bench/load-guest.ts')], outfile, bundle: true, platform: 'node', target: 'node20', format: 'esm',
    external: ['koffi'], logLevel: 'warning',
    banner: { js: "import { createRequire as __cmCreateRequire } from 'node:module'; const require = __cmCreateRequire(import.meta.url);" },
  });
  return outfile;
}

/**
 * What one loader took for an object over the rounds: the shortest load (the machine's other work
 * only ever adds time, and under TCG a guest's clock runs on while its vCPU waits for the host),
 * when every round loaded it whole.
 */
function fastest(samples: LoaderTiming[]): LoaderTiming | undefined {
  if (!samples.length || !samples.every((x) => x.whole)) return undefined;
  return samples.reduce((a, b) => (b.ms < a.ms ? b : a));
}

export async function benchCorpus(o: { kernel: string; corpora: string[]; accel: Accel; rounds: number; log: (s: string) => void }): Promise<CorpusBench> {
  const { runMatrix, readUserObjects, guestLibbpfPath } = await import('../matrix/run.js');
  const corpora = await corpusObjects(o.corpora, o.log);
  const objects = corpora.flatMap((c) => c.objects);
  // The names a corpus run gives the objects (its cells and records are keyed by them), in order.
  const users = readUserObjects(objects, new Map(), { lenient: true });
  const names = users.map((u) => `object:${u.name}`);
  const corpusOf = new Map<string, string>();
  let i = 0;
  for (const c of corpora) for (let n = 0; n < c.objects.length; n++) corpusOf.set(names[i++]!, c.name);
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-corpus-'));
  const store = new KernelStore({ log: o.log });
  const k = await store.fetch(store.select([o.kernel])[0]!);

  // 1. Both loaders, object by object, in one guest.
  const lib = await currentLibbpf(o.log);
  const so = guestLibbpfPath(lib.version);
  const guestPath = (n: number, host: string) => `/cm/bench/objs/${n}-${basename(host)}`;
  // The host's index of what the objects look up in the kernel's BTF, as runMatrix ships it.
  const lookups = [...new Set(users.flatMap((u) => u.kernelNames ?? []))];
  const btfIndex = { btf: '/cm/bench/kernel.btf', index: '/cm/bench/kernel.btf.idx', names: lookups };
  const input: BenchLoadInput = { objects: objects.map((p, n) => ({ unit: names[n]!, path: guestPath(n, p) })), libbpf: { so, version: lib.version, source: lib.source }, rounds: o.rounds, btfIndex };
  const script = await bundleLoadGuest(join(dir, 'load-guest.mjs'));
  const initrd = await buildInitramfs({
    files: [
      { path: '/cm/bench/load.mjs', source: script },
      { path: BENCH_LOAD_INPUT, data: JSON.stringify(input) },
      { path: so, source: lib.so },
      { path: btfIndex.btf, source: k.btf },
      { path: btfIndex.index, source: kernelBtfIndexFile({ path: k.btf, sha256: k.sha256.btf }, lookups) },
      ...objects.map((p, n) => ({ path: guestPath(n, p), source: p })),
    ],
    agent: false, kernelConfig: k.config, release: k.release,
  });
  const t0 = performance.now();
  const g = await runGuest({ kernelId: k.id, vmlinuz: k.vmlinuz, initrd, append: 'cm.agent=/cm/bench/load.mjs', accel: o.accel, logDir: join(dir, 'load'), heartbeatTimeoutMs: 120_000, timeoutMs: 900_000 });
  const compareWallMs = performance.now() - t0;
  const rows = g.messages.flatMap((m) => (m.t === 'result' && m.kind === BENCH_LOAD_KIND ? (m.data as BenchLoadRow[]) : []));
  if (g.verdict !== 'ok' || !rows.length) throw new Error(`load comparison on ${k.id}: guest ${g.verdict}${g.detail ? `: ${g.detail}` : ''} (${g.consoleLog})`);
  o.log(`bench: load comparison on ${k.id}: ${(compareWallMs / 1000).toFixed(1)} s`);
  const pairs = rows.flatMap((r): LoadPair[] => {
    const [ours, libbpf] = [fastest(r.ours), fastest(r.libbpf)];
    if (!ours || !libbpf) return [];
    const timing = (a: LoaderTiming, b: LoaderTiming) => ({ oursMs: a.ms, oursVerifierMs: a.progLoadMs ?? 0, libbpfMs: b.ms });
    return [{ corpus: corpusOf.get(r.unit) ?? '?', unit: r.unit, programs: libbpf.loaded, first: timing(r.ours[0]!, r.libbpf[0]!), fastest: timing(ours, libbpf) }];
  });

  // 2. The corpus run as a user runs it, our loader.
  const outDir = join(dir, 'run');
  const t1 = performance.now();
  const report = await runMatrix({ kernels: [o.kernel], suites: [], corpusObjects: objects, loader: 'ours', jobs: 1, accel: o.accel, outDir, runId: 'bench-corpus', log: () => {} });
  const wallMs = performance.now() - t1;
  const run = report.kernels[0];
  if (!run || run.guest !== 'ok') throw new Error(`corpus run on ${o.kernel}: guest ${run?.guest ?? 'missing'}${run?.detail ? `: ${run.detail}` : ''}`);
  o.log(`bench: corpus run on ${o.kernel}: ${(wallMs / 1000).toFixed(1)} s`);
  const total = guestRecords<ProgLoadTotal>(join(outDir, 'guests'), PROG_LOAD_TOTAL)[0];
  if (!total) throw new Error(`corpus run on ${o.kernel}: the agent sent no ${PROG_LOAD_TOTAL} record (an agent built before it?)`);
  const loads = guestRecords<LoadTiming>(join(outDir, 'guests'), LOAD_TIMING);
  return {
    kernel: `${k.id} (${k.package} ${k.version})`,
    libbpf: `libbpf ${lib.version} (${lib.source})`,
    corpora: corpora.map((c) => ({ name: c.name, objects: c.objects.length })),
    pairs, compareWallMs,
    leftOut: {
      neither: rows.filter((r) => !fastest(r.ours) && !fastest(r.libbpf)).length,
      oursOnly: rows.filter((r) => fastest(r.ours) && !fastest(r.libbpf)).map((r) => r.unit),
      libbpfOnly: rows.filter((r) => !fastest(r.ours) && fastest(r.libbpf)).map((r) => r.unit),
    },
    floor: {
      wallMs, guestMs: run.durationMs, bootMs: run.bootMs ?? NaN, progLoadMs: total.ms, progLoads: total.calls,
      oursLoadMs: loads.reduce((n, t) => n + t.loadMs, 0), objects: loads.length,
      cells: run.cells.length, pass: run.cells.filter((c) => c.verdict === 'pass').length,
    },
  };
}

/** Sums, and the median of per-object ratios, of one round's (first or fastest) times. */
export function pairStats(pairs: LoadPair[], which: 'first' | 'fastest'): { ours: number; verifier: number; libbpf: number; ratio: number; medianRatio: number } {
  const sum = (f: (p: LoadPair['first']) => number) => pairs.reduce((n, p) => n + f(p[which]), 0);
  const ours = sum((p) => p.oursMs);
  const libbpf = sum((p) => p.libbpfMs);
  return { ours, verifier: sum((p) => p.oursVerifierMs), libbpf, ratio: ours / libbpf, medianRatio: pairs.length ? median(pairs.map((p) => p[which].oursMs / Math.max(1, p[which].libbpfMs))) : NaN };
}
