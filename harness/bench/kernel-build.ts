// The custom kernel build with and without ccache (issue 18), in one run: the same recipe (an
// entry of kernels/matrix.yaml with `source:`) built three times in scratch folders, never touching
// the kernel store: with gcc alone (the reference), through an empty ccache (a fresh machine's first
// build), and through that ccache again (what a rebuild of the recipe pays: the store lost it, or a
// change that leaves most preprocessed sources alone). Long: opt in with BENCH_ONLY=kernel-build.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildKernel, CCACHE_MAX_SIZE, type CcacheStats } from '../kernels/build.js';
import { archOf } from '../kernels/arch.js';
import type { KernelStore } from '../kernels/store.js';
import { cacheDir } from '../paths.js';
import { onPath } from '../tools.js';

export interface BuildTiming {
  label: string;
  seconds: number;
  ccache?: CcacheStats;
}

/** Builds `id`'s recipe without ccache, through an empty one, then through it warm. */
export async function benchKernelBuild(store: KernelStore, id: string, log: (s: string) => void): Promise<BuildTiming[]> {
  const ccache = onPath('ccache');
  if (!ccache) throw new Error('the kernel-build bench needs ccache (apt-get install ccache)');
  const e = store.entry(id);
  if (!e.build) throw new Error(`kernel '${id}' is not built from source (no source: in its matrix entry)`);
  const arch = archOf(e);
  const recipe = await store.recipe(e, e.build);
  const deb = await store.aptFor(arch).keptDownload(e.build.source, recipe.src.version);
  const scratch = mkdtempSync(join(cacheDir('tmp'), 'bench-kernel-build-'));
  const cacheFolder = join(scratch, 'ccache');
  const runs: { label: string; withCache: boolean }[] = [
    { label: 'gcc alone (reference)', withCache: false },
    { label: 'ccache, empty (first build)', withCache: true },
    { label: 'ccache, warm (rebuild)', withCache: true },
  ];
  const out: BuildTiming[] = [];
  try {
    for (const [i, r] of runs.entries()) {
      const work = join(scratch, `build-${i}`);
      log(`kernel-build bench: ${id} ${r.label}…`);
      const b = await buildKernel({
        deb, build: e.build, arch, fragment: recipe.fragment, work, logFile: join(scratch, `build-${i}.log`), what: `bench kernel '${id}'`, onLog: () => {},
        ...(r.withCache ? { ccache: { ccache, dir: cacheFolder, maxSize: CCACHE_MAX_SIZE } } : {}),
      });
      out.push({ label: r.label, seconds: b.seconds, ...(b.ccache ? { ccache: b.ccache } : {}) });
      rmSync(work, { recursive: true, force: true });
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return out;
}
