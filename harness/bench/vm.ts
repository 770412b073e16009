// Bench section for the VM pipeline: the floor (every default kernel booted to a busybox init
// that reports and powers off) versus a matrix run of the same kernels with the seed suite
// (task-fields), both with the same parallelism, wall time side by side.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage } from '../images/initramfs.js';
import { KernelStore } from '../kernels/store.js';
import { runMatrix } from '../matrix/run.js';
import { bootOrder, DurationHistory } from '../matrix/schedule.js';
import { defaultJobs, runPool } from '../vm/pool.js';
import { type Accel, type GuestRun, probeAccel, runGuest } from '../vm/qemu.js';
import type { RunReport } from '../results.js';
import { GUEST_NODE_FLAGS } from '../images/agent-cache.js';
import { emptyManifest } from '../agent/manifest.js';

export interface VmBenchRow {
  kernel: string;
  floorMs: number;
  floorBootMs?: number;
  matrixMs: number;
  /** The same matrix with the agent's start-up mechanisms off. */
  plainMs?: number;
  verdict: string;
}

/**
 * CPU time (ms) of this process's terminated, waited-for children (/proc/self/stat cutime +
 * cstime): the QEMU guests and image tools. Unlike wall time it barely moves when other work
 * shares the machine, so the bench prints it next to wall time.
 */
function childrenCpuMs(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after "(comm)": state is index 0, so cutime (field 16) and cstime (17) are 13 and 14.
    return ((Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK;
  } catch {
    return NaN;
  }
}
/** The median (upper middle for an even count). */
export function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** sysconf(_SC_CLK_TCK): 100 on every Linux architecture node runs on. */
const CLK_TCK = 100;

/** One round of the bench: the floor, then the matrix, wall and CPU time of each. */
export interface VmBenchRound {
  floorWallMs: number;
  floorCpuMs: number;
  matrixWallMs: number;
  matrixCpuMs: number;
}

/**
 * The floor and the matrix with the seed suite, `rounds` times (setup once: kernels, the busybox
 * image, the accelerator), then once the matrix with the start-up mechanisms off unless
 * BENCH_MATRIX_PLAIN=0. Per-kernel rows are those of the median round (by wall ratio): the first
 * round after a change to the agent also builds its images and code cache.
 */
export async function benchVm(kernels: string[], log: (s: string) => void, opts: { rounds?: number } = {}): Promise<{ rounds: VmBenchRound[]; medianRound: number; plainWallMs?: number; plainCpuMs?: number; rows: VmBenchRow[]; jobs: number; accel: string }> {
  const store = new KernelStore();
  const entries = store.select(kernels);
  const arts = await Promise.all(entries.map((e) => store.fetch(e)));
  const ids = entries.map((e) => e.id);
  const jobs = defaultJobs();
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-'));
  const image = await buildImage({ files: [], base: 'busybox' });
  // Decide the accelerator before timing anything: the probe boot (several seconds when KVM
  // hangs) would otherwise be charged to whichever side runs first.
  const accel = await probeAccel(arts[0]!.vmlinuz, image.path);
  const history = new DurationHistory();
  const rounds: VmBenchRound[] = [];
  const runs: { floor: Map<string, GuestRun>; report: RunReport }[] = [];
  for (let i = 0; i < Math.max(1, opts.rounds ?? 1); i++) {
    const c0 = childrenCpuMs();
    const t0 = performance.now();
    // The floor boots in the order the matrix's scheduler would pick from its own history (longest
    // first), so both sides get the same scheduling.
    const floorOrder = bootOrder(arts, (k) => k.id, history.lookup('bench-floor'), jobs);
    const floor = new Map(await runPool(floorOrder, jobs, async (k, signal) =>
      [k.id, await runGuest({ kernelId: k.id, vmlinuz: k.vmlinuz, initrd: image.path, append: 'cm.init=hello', accel, logDir: join(dir, 'floor'), signal })] as const));
    history.record('bench-floor', new Map([...floor].filter(([, g]) => g.verdict === 'ok').map(([id, g]) => [id, g.durationMs])));
    const floorWallMs = performance.now() - t0;
    const floorCpuMs = childrenCpuMs() - c0;
    log(`bench: floor done in ${(floorWallMs / 1000).toFixed(1)} s`);
    const c1 = childrenCpuMs();
    const t1 = performance.now();
    const report = await runMatrix({ kernels: ids, suites: ['task-fields'], jobs, accel, outDir: join(dir, `matrix-${i}`), runId: 'bench', log: () => {} });
    rounds.push({ floorWallMs, floorCpuMs, matrixWallMs: performance.now() - t1, matrixCpuMs: childrenCpuMs() - c1 });
    runs.push({ floor, report });
  }
  // The same matrix with the agent's start-up mechanisms off (no RNG seed, no node flags, no
  // code cache); its boot-order history is its own.
  let plain: { wallMs: number; cpuMs: number; rows: Map<string, number> } | undefined;
  if (process.env.BENCH_MATRIX_PLAIN !== '0') {
    const c2 = childrenCpuMs();
    const t2 = performance.now();
    const rp = await runMatrix({ kernels: ids, suites: ['task-fields'], jobs, accel, outDir: join(dir, 'matrix-plain'), runId: 'bench-plain', guestStart: 'plain', log: () => {} });
    plain = { wallMs: performance.now() - t2, cpuMs: childrenCpuMs() - c2, rows: new Map(rp.kernels.map((k) => [k.kernel.id, k.durationMs])) };
  }
  const ratios = rounds.map((x) => x.matrixWallMs / x.floorWallMs);
  const medianRound = ratios.indexOf(median(ratios));
  const { floor, report } = runs[medianRound]!;
  const rows = ids.map((id): VmBenchRow => {
    const f = floor.get(id)!;
    const run = report.kernels.find((r) => r.kernel.id === id);
    const pass = run ? run.cells.every((c) => c.verdict === 'pass') : false;
    return { kernel: id, floorMs: f.durationMs, floorBootMs: f.bootMs, matrixMs: run?.durationMs ?? NaN, plainMs: plain?.rows.get(id), verdict: run ? `${run.guest}${pass ? '' : ' (cells failed)'}` : 'missing' };
  });
  return { rounds, medianRound, plainWallMs: plain?.wallMs, plainCpuMs: plain?.cpuMs, rows, jobs, accel };
}

export interface AgentStartRow {
  variant: string;
  append: string;
  /** Medians over the boots: guest uptime from /init starting to the agent's hello, and the whole guest run. */
  startMs: number;
  runMs: number;
  /** CPU time of the guest's QEMU process, boot to power-off. */
  cpuMs: number;
  boots: number;
  /** What the launcher said about the code cache (first boot). */
  cache: string;
  verdicts: string[];
}

/**
 * The agent's start-up mechanisms, each switched off in turn on the same kernel and image
 * (images/init reads the switches from the kernel command line): init → hello is node's start
 * plus loading the agent bundle. The agent runs a manifest with no suites, so it finishes as
 * soon as it has read the kernel's facts.
 */
export async function benchAgentStart(kernel: string, accel: Accel | undefined, boots: number, log: (s: string) => void): Promise<{ kernel: string; rows: AgentStartRow[] }> {
  const store = new KernelStore();
  const k = await store.fetch(store.select([kernel])[0]!);
  const manifest = emptyManifest({ id: k.id, package: k.package, version: k.version, release: k.release, flavour: k.flavour });
  const image = await buildImage({ files: [{ path: '/cm/run.json', data: JSON.stringify(manifest) }], kernelConfig: k.config, release: k.release });
  const acc = accel ?? (await probeAccel(k.vmlinuz, image.path));
  const variants: [string, string][] = [
    ['all (seed, ' + GUEST_NODE_FLAGS.join(' ') + ', code cache)', ''],
    ['without the code cache', 'cm.codecache=off'],
    ['without node flags', 'cm.node= cm.codecache=off'],
    ['without the RNG seed', 'cm.seed=off'],
    ['none of them', 'cm.node= cm.codecache=off cm.seed=off'],
  ];
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-start-'));
  // One guest at a time, so each boot's CPU time (QEMU's, from the children's rusage) is its own;
  // the variants take turns so a change in the machine's load spreads over all of them.
  const jobsList = Array.from({ length: boots }, () => variants).flat().map(([variant, append], n) => ({ variant, append, n }));
  const runs = await runPool(jobsList, 1, async (j, signal) => {
    const c0 = childrenCpuMs();
    const r = await runGuest({ kernelId: `${k.id}-${j.n}`, vmlinuz: k.vmlinuz, initrd: image.path, append: j.append, accel: acc, logDir: join(dir, 'start'), signal });
    return { variant: j.variant, r, cpuMs: childrenCpuMs() - c0 };
  });
  const rows = variants.map(([variant, append]): AgentStartRow => {
    const mine = runs.filter((x) => x.variant === variant);
    const cacheLine = mine[0]?.r.messages.find((m) => m.t === 'log' && m.msg.startsWith('start: code cache'));
    return {
      variant, append, boots: mine.length,
      startMs: median(mine.map((x) => (x.r.bootMs ?? NaN) - (x.r.initMs ?? NaN))),
      runMs: median(mine.map((x) => x.r.durationMs)),
      cpuMs: median(mine.map((x) => x.cpuMs)),
      cache: cacheLine && cacheLine.t === 'log' ? cacheLine.msg.replace(/^start: code cache /, '').replace(/ \(.*$/, '') : 'not used',
      verdicts: mine.map((x) => x.r.verdict),
    };
  });
  log(`bench: agent start done (${runs.length} boots of ${k.id})`);
  return { kernel: k.id, rows };
}
