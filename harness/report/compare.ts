// Baseline versus new run: what got worse, what got better, what moved. A regression is any new
// failure: a cell that passed (or was absent) and now fails, or a guest that booted and now does not.

import type { CellResult, CellVerdict, KernelRun, RunReport } from '../results.js';
import { reloKey, reloSubject, reloValue } from './diff.js';

export interface CompareOptions {
  /** Relative change of verifier instructions processed worth reporting (default 0.10). */
  insnThreshold?: number;
  /** ...and at least this many instructions (default 50). */
  insnMin?: number;
}

export interface CellRef {
  kernel: string;
  suite: string;
  program: string;
  loader: string;
}

export interface VerdictChange extends CellRef {
  from: CellVerdict | 'absent';
  to: CellVerdict;
  reason?: string;
}

export interface GuestChange {
  kernel: string;
  from: string;
  to: string;
  detail?: string;
}

export interface RelocationChange extends CellRef {
  subject: string;
  insn: number;
  from: string;
  to: string;
  /** The kernel package version is the same in both runs: a change here is the loader's doing. */
  sameKernel: boolean;
  kernelVersions: { base: string; head: string };
}

export interface InsnChange extends CellRef {
  from: number;
  to: number;
  delta: number;
  ratio: number;
}

export interface RunComparison {
  base: { runId: string; complete: boolean };
  head: { runId: string; complete: boolean };
  newFailures: VerdictChange[];
  newGuestFailures: GuestChange[];
  fixed: VerdictChange[];
  stillFailing: number;
  relocationChanges: RelocationChange[];
  insnChanges: InsnChange[];
  kernelsAdded: string[];
  kernelsRemoved: string[];
  kernelVersionChanges: { kernel: string; from: string; to: string }[];
  cellsAdded: CellRef[];
  cellsRemoved: CellRef[];
  objectChanges: { name: string; from: string; to: string }[];
  regression: boolean;
}

const FAILING = new Set<CellVerdict>(['fail', 'skip', 'error']);

function ref(k: KernelRun, c: CellResult): CellRef {
  return { kernel: k.kernel.id, suite: c.suite, program: c.program, loader: c.loader };
}

function cellKey(c: CellResult): string {
  return `${c.suite}\0${c.program}\0${c.loader}`;
}

export function compareRuns(base: RunReport, head: RunReport, opts: CompareOptions = {}): RunComparison {
  const threshold = opts.insnThreshold ?? 0.1;
  const insnMin = opts.insnMin ?? 50;
  const baseKernels = new Map(base.kernels.map((k) => [k.kernel.id, k]));
  const headKernels = new Map(head.kernels.map((k) => [k.kernel.id, k]));
  const cmp: RunComparison = {
    base: { runId: base.runId, complete: base.complete },
    head: { runId: head.runId, complete: head.complete },
    newFailures: [],
    newGuestFailures: [],
    fixed: [],
    stillFailing: 0,
    relocationChanges: [],
    insnChanges: [],
    kernelsAdded: [...headKernels.keys()].filter((id) => !baseKernels.has(id)),
    kernelsRemoved: [...baseKernels.keys()].filter((id) => !headKernels.has(id)),
    kernelVersionChanges: [],
    cellsAdded: [],
    cellsRemoved: [],
    objectChanges: [],
    regression: false,
  };

  const baseObjects = new Map(base.objects.map((o) => [o.name, o.sha256]));
  for (const o of head.objects) {
    const was = baseObjects.get(o.name);
    if (was !== undefined && was !== o.sha256) cmp.objectChanges.push({ name: o.name, from: was, to: o.sha256 });
  }

  for (const hk of head.kernels) {
    const bk = baseKernels.get(hk.kernel.id);
    if (hk.guest !== 'ok' && (!bk || bk.guest === 'ok'))
      cmp.newGuestFailures.push({ kernel: hk.kernel.id, from: bk?.guest ?? 'absent', to: hk.guest, ...(hk.detail ? { detail: hk.detail } : {}) });
    if (bk && bk.kernel.version !== hk.kernel.version) cmp.kernelVersionChanges.push({ kernel: hk.kernel.id, from: bk.kernel.version, to: hk.kernel.version });
    const baseCells = new Map((bk?.cells ?? []).map((c) => [cellKey(c), c]));
    for (const hc of hk.cells) {
      const bc = baseCells.get(cellKey(hc));
      const r = ref(hk, hc);
      if (!bc) {
        if (bk) cmp.cellsAdded.push(r);
        if (FAILING.has(hc.verdict)) cmp.newFailures.push({ ...r, from: 'absent', to: hc.verdict, ...(hc.reason ? { reason: hc.reason } : {}) });
        continue;
      }
      const wasFailing = FAILING.has(bc.verdict);
      const isFailing = FAILING.has(hc.verdict);
      if (isFailing && !wasFailing) cmp.newFailures.push({ ...r, from: bc.verdict, to: hc.verdict, ...(hc.reason ? { reason: hc.reason } : {}) });
      else if (wasFailing && !isFailing) cmp.fixed.push({ ...r, from: bc.verdict, to: hc.verdict });
      else if (wasFailing && isFailing) cmp.stillFailing++;

      // Relocations of the same relocation site: the target moved.
      const baseRelos = new Map(bc.relocations.map((x) => [reloKey(x), x]));
      for (const x of hc.relocations) {
        const y = baseRelos.get(reloKey(x));
        if (!y) continue;
        const from = reloValue(y);
        const to = reloValue(x);
        if (from !== to)
          cmp.relocationChanges.push({
            ...r,
            subject: reloSubject(x),
            insn: x.insn,
            from,
            to,
            sameKernel: bk!.kernel.version === hk.kernel.version && bk!.kernel.package === hk.kernel.package,
            kernelVersions: { base: bk!.kernel.version, head: hk.kernel.version },
          });
      }

      const a = bc.verifier?.insnsProcessed;
      const b = hc.verifier?.insnsProcessed;
      if (a !== undefined && b !== undefined && a !== b) {
        const delta = b - a;
        const ratio = a === 0 ? Infinity : delta / a;
        if (Math.abs(delta) >= insnMin && Math.abs(ratio) >= threshold) cmp.insnChanges.push({ ...r, from: a, to: b, delta, ratio });
      }
    }
    if (bk) {
      const headCells = new Set(hk.cells.map(cellKey));
      for (const bc of bk.cells) if (!headCells.has(cellKey(bc))) cmp.cellsRemoved.push(ref(bk, bc));
    }
  }
  cmp.regression = cmp.newFailures.length > 0 || cmp.newGuestFailures.length > 0;
  return cmp;
}

function cellName(r: CellRef): string {
  return `${r.kernel} ${r.suite}/${r.program}${r.loader === 'ours' ? '' : `[${r.loader}]`}`;
}

/** The comparison as text for a terminal or a CI log. */
export function formatComparison(c: RunComparison, o: { limit?: number } = {}): string {
  const lines: string[] = [];
  const mark = (x: { complete: boolean }) => (x.complete ? '' : ' (INCOMPLETE)');
  lines.push(`baseline ${c.base.runId}${mark(c.base)} → ${c.head.runId}${mark(c.head)}: ${c.regression ? 'REGRESSION' : 'no regression'}`);
  // `limit`: at most that many lines per section (a corpus run's comparison goes into CI step
  // summaries, which GitHub caps at 1 MiB); comparison.json always has every item.
  const limit = o.limit ?? Infinity;
  const section = <T>(title: string, items: T[], fmt: (x: T) => string) => {
    if (!items.length) return;
    lines.push(`${title} (${items.length}):`);
    for (const x of items.slice(0, limit)) lines.push(`  ${fmt(x)}`);
    if (items.length > limit) lines.push(`  … and ${items.length - limit} more (comparison.json lists them all)`);
  };
  section('new guest failures', c.newGuestFailures, (g) => `${g.kernel}: ${g.from} → ${g.to}${g.detail ? ` (${g.detail})` : ''}`);
  section('new failures', c.newFailures, (f) => `${cellName(f)}: ${f.from} → ${f.to}${f.reason ? `: ${f.reason}` : ''}`);
  section('fixed', c.fixed, (f) => `${cellName(f)}: ${f.from} → ${f.to}`);
  if (c.stillFailing) lines.push(`still failing: ${c.stillFailing}`);
  section('kernel versions changed', c.kernelVersionChanges, (k) => `${k.kernel}: ${k.from} → ${k.to}`);
  section('relocations changed', c.relocationChanges, (r) => `${cellName(r)} ${r.subject} (insn ${r.insn}): ${r.from} → ${r.to}${r.sameKernel ? ' [same kernel package!]' : ` [kernel ${r.kernelVersions.base} → ${r.kernelVersions.head}]`}`);
  section('verifier instruction counts changed', c.insnChanges, (i) => `${cellName(i)}: ${i.from} → ${i.to} (${i.delta > 0 ? '+' : ''}${i.delta}, ${Number.isFinite(i.ratio) ? `${i.ratio > 0 ? '+' : ''}${(i.ratio * 100).toFixed(1)}%` : 'new'})`);
  section('objects rebuilt', c.objectChanges, (o) => `${o.name}: ${o.from.slice(0, 12)} → ${o.to.slice(0, 12)}`);
  section('kernels added', c.kernelsAdded, (k) => k);
  section('kernels removed', c.kernelsRemoved, (k) => k);
  section('cells added', c.cellsAdded, cellName);
  section('cells removed', c.cellsRemoved, cellName);
  return lines.join('\n');
}
