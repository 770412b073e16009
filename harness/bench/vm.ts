// Bench section for the VM pipeline: the floor (every default kernel booted to a busybox init
// that reports and powers off) versus a matrix run of the same kernels with the seed suite
// (task-fields), both with the same parallelism, wall time side by side.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage } from '../images/initramfs.js';
import { KernelStore } from '../kernels/store.js';
import { runMatrix } from '../matrix/run.js';
import { defaultJobs, runPool } from '../vm/pool.js';
import { probeAccel, runGuest } from '../vm/qemu.js';

export interface VmBenchRow {
  kernel: string;
  floorMs: number;
  floorBootMs?: number;
  matrixMs: number;
  verdict: string;
}

export async function benchVm(kernels: string[], log: (s: string) => void): Promise<{ floorWallMs: number; matrixWallMs: number; rows: VmBenchRow[]; jobs: number; accel: string }> {
  const store = new KernelStore();
  const entries = store.select(kernels);
  const arts = await Promise.all(entries.map((e) => store.fetch(e)));
  const jobs = defaultJobs();
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-'));
  const image = await buildImage({ files: [], base: 'busybox' });
  // Decide the accelerator before timing anything: the probe boot (several seconds when KVM
  // hangs) would otherwise be charged to whichever side runs first.
  const accel = await probeAccel(arts[0]!.vmlinuz, image.path);
  const t0 = performance.now();
  const floor = await runPool(arts, jobs, async (k, signal) => {
    return runGuest({ kernelId: k.id, vmlinuz: k.vmlinuz, initrd: image.path, append: 'cm.init=hello', accel, logDir: join(dir, 'floor'), signal });
  });
  const floorWallMs = performance.now() - t0;
  log(`bench: floor done in ${(floorWallMs / 1000).toFixed(1)} s`);
  const t1 = performance.now();
  const report = await runMatrix({ kernels: entries.map((e) => e.id), suites: ['task-fields'], jobs, accel, outDir: join(dir, 'matrix'), runId: 'bench', log: () => {} });
  const matrixWallMs = performance.now() - t1;
  const rows = arts.map((k, i): VmBenchRow => {
    const run = report.kernels.find((r) => r.kernel.id === k.id);
    const pass = run ? run.cells.every((c) => c.verdict === 'pass') : false;
    return { kernel: k.id, floorMs: floor[i]!.durationMs, floorBootMs: floor[i]!.bootMs, matrixMs: run?.durationMs ?? NaN, verdict: run ? `${run.guest}${pass ? '' : ' (cells failed)'}` : 'missing' };
  });
  return { floorWallMs, matrixWallMs, rows, jobs, accel };
}
