// One kernel's objects spread over several guests of that kernel when the run has more guest
// slots than kernels: a whole corpus on one kernel would otherwise leave every core but one idle
// (TCG guests are CPU-bound, one core each). Each part is a guest of its own (same kernel, same
// image contents but its share of the objects); their cells are merged into the kernel's one row.

import type { CellResult, GuestVerdict, KernelInfo, KernelRun } from '../results.js';

/** Below this many objects a part is not worth its guest's boot (about 15 s under TCG; an object takes 2 to 5 s with both loaders, attached and run). */
export const MIN_OBJECTS_PER_PART = 8;

/**
 * How many guests each kernel's objects are spread over: the slots left over when every kernel
 * has one, shared out evenly, and never parts smaller than MIN_OBJECTS_PER_PART.
 */
export function partsPerKernel(kernels: number, slots: number, objects: number): number {
  if (kernels <= 0) return 1;
  return Math.max(1, Math.min(Math.floor(slots / kernels), Math.floor(objects / MIN_OBJECTS_PER_PART)));
}

/**
 * What an object costs a guest, in seconds under TCG, from the whole selftests corpus on 7.3 with
 * both loaders (docs/results.md): about 2 s per object (its own loads' set-up, attach, the
 * workload) and 0.3 s per program (each loader's verification, libbpf's attribution of failures).
 */
export const OBJECT_SECONDS = 2;
export const PROGRAM_SECONDS = 0.3;
export function objectWeight(programs: number): number {
  return OBJECT_SECONDS + PROGRAM_SECONDS * programs;
}

/**
 * The objects of part `index` (0-based) of `count`: each, costliest first, to the part with the
 * least work so far (the first on a tie), so that the parts' guests end together (equal weights
 * deal them out in turn); except that an object goes where the one it `follows` went (a freplace
 * into another object's program needs that object loaded in the same guest). Each part keeps the
 * objects' own order.
 */
export function partOf<T>(objects: readonly T[], index: number, count: number, follows: (o: T) => T | undefined = () => undefined, weight: (o: T) => number = () => 1): T[] {
  const part = new Map<T, number>();
  const load = new Array<number>(Math.max(1, count)).fill(0);
  const present = new Set(objects);
  const leads = objects.map((o, i) => ({ o, i, w: weight(o) })).filter(({ o }) => !present.has(follows(o) as T));
  leads.sort((a, b) => b.w - a.w || a.i - b.i);
  for (const { o, w } of leads) {
    const p = load.indexOf(Math.min(...load));
    part.set(o, p);
    load[p]! += w;
  }
  // Followers after every lead is placed (a chain follows its first object).
  for (const o of objects) {
    if (part.has(o)) continue;
    let lead = follows(o);
    for (let hops = 0; lead !== undefined && !part.has(lead) && hops < objects.length; hops++) lead = follows(lead);
    const p = lead !== undefined && part.has(lead) ? part.get(lead)! : load.indexOf(Math.min(...load));
    part.set(o, p);
    load[p]! += weight(o);
  }
  return objects.filter((o) => part.get(o) === index);
}

/** The guest's name for part `index` of `count` of kernel `id` (its log files, its progress line). */
export function partId(id: string, index: number, count: number): string {
  return count === 1 ? id : `${id}-part${index + 1}of${count}`;
}

/** The worst ending among the parts' guests: the first that did not end ok names the kernel's. */
function worst(runs: readonly KernelRun[]): KernelRun | undefined {
  return runs.find((r) => r.guest !== 'ok');
}

/**
 * The kernel's row from its parts: every part's cells in part order, the first unclean guest's
 * verdict with its detail and console tail (named by its part), the longest part's duration
 * (they ran side by side), and how many guests it took.
 */
export function mergeParts(kernel: KernelInfo, runs: readonly KernelRun[]): KernelRun {
  if (runs.length === 1) return runs[0]!;
  const bad = worst(runs);
  const cells: CellResult[] = runs.flatMap((r) => r.cells);
  const merged: KernelRun = {
    kernel: { ...kernel, ...(runs.find((r) => r.kernel.btf)?.kernel.btf ? { btf: runs.find((r) => r.kernel.btf)!.kernel.btf } : {}) },
    guest: (bad?.guest ?? 'ok') as GuestVerdict,
    accel: runs[0]!.accel,
    durationMs: Math.max(...runs.map((r) => r.durationMs)),
    cells,
    guests: runs.length,
  };
  const cpus = runs[0]!.cpus;
  if (cpus) merged.cpus = cpus;
  const followUps = runs.reduce((n, r) => n + (r.followUps ?? 0), 0);
  if (followUps) merged.followUps = followUps;
  const boots = runs.map((r) => r.bootMs).filter((b): b is number => b !== undefined);
  if (boots.length) merged.bootMs = Math.max(...boots);
  if (bad) {
    const part = runs.indexOf(bad) + 1;
    merged.detail = `guest ${part} of ${runs.length}: ${bad.detail ?? bad.guest}`;
    if (bad.consoleTail) merged.consoleTail = bad.consoleTail;
  }
  return merged;
}
