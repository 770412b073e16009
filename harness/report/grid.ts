// The kernels × suites grid every report format shows, computed once: one state per square from
// the verdicts of its cells, the guest's fate and the cross-kernel diff, and how many cells of
// each kind a square holds (a corpus square holds many programs). A suite is one unit: one of our
// suites or one user/corpus object (`object:x.bpf.o`). Linear in the number of cells: a corpus
// run across the matrix has tens of thousands.

import { neverRan, type AttachResult, type CellResult, type CellVerdict, type KernelRun, type LoaderName, type RunReport } from '../results.js';
import type { KernelDiff } from './diff.js';

/** `silent`: everything passed, but a program attached and never ran (its hook did not fire on this kernel). */
export type SquareState = 'pass' | 'fail' | 'skip' | 'warn' | 'silent';

export const SYMBOL: Record<SquareState, string> = { pass: '✅', fail: '❌', skip: '⏭', warn: '⚠', silent: '💤' };

/**
 * What one cell counts as in a square: its verdict, or `silent` for a pass whose program attached
 * and never ran; `not-run` counts the cells a square lacks (programs other kernels reported).
 */
export type Mark = 'pass' | 'silent' | 'fail' | 'error' | 'skip' | 'expected-skip' | 'not-run';
export const MARKS: readonly Mark[] = ['pass', 'silent', 'fail', 'error', 'skip', 'expected-skip', 'not-run'];
export type Counts = Record<Mark, number>;

export function markOf(c: CellResult): Mark {
  return c.verdict === 'pass' && neverRan(c.attach) ? 'silent' : c.verdict;
}

export function noCounts(): Counts {
  return { pass: 0, silent: 0, fail: 0, error: 0, skip: 0, 'expected-skip': 0, 'not-run': 0 };
}

/** `12 pass, 1 fail, 2 not run` (marks with a count only, in MARKS order). */
export function countsWords(n: Counts): string {
  const words: Record<Mark, string> = { pass: 'pass', silent: 'attached, never ran', fail: 'fail', error: 'error', skip: 'skip', 'expected-skip': 'expected skip', 'not-run': 'not run' };
  return MARKS.filter((m) => n[m]).map((m) => `${n[m]} ${words[m]}`).join(', ') || 'no cell';
}

export interface Square {
  kernel: KernelRun;
  suite: string;
  cells: CellResult[];
  state: SquareState;
  /** One line explaining a warn square. */
  note?: string;
  /** Cells by mark, plus the suite's (program, loader) pairs this kernel did not report. */
  counts: Counts;
}

export interface Grid {
  suites: string[];
  kernels: KernelRun[];
  squares: Map<string, Square>;
  at(kernel: string, suite: string): Square;
  totals: Record<CellVerdict, number> & { cells: number };
  /** Per kernel (run order): every square's counts added up. */
  kernelTotals: Counts[];
  /** Each suite's programs, in the order they were first reported on any kernel. */
  programs: Map<string, string[]>;
  /** The loaders of the run, ours first. */
  loaders: LoaderName[];
  /** The suite a finding's `suite/program[loader]` label belongs to (suite names may hold '/'). */
  suiteOf(label: string): string | undefined;
}

export const FAILING: ReadonlySet<CellVerdict> = new Set(['fail', 'skip', 'error']);

/** The longest suite that `label` starts with followed by '/', among `suites`. */
function longestSuite(label: string, suites: ReadonlySet<string>): string | undefined {
  for (let i = label.lastIndexOf('/'); i > 0; i = label.lastIndexOf('/', i - 1)) {
    const s = label.slice(0, i);
    if (suites.has(s)) return s;
  }
  return undefined;
}

export function buildGrid(run: RunReport, diff: KernelDiff): Grid {
  const suites = [...new Set([...run.suites, ...run.kernels.flatMap((k) => k.cells.map((c) => c.suite))])];
  const suiteSet = new Set(suites);
  const suiteOf = (label: string) => longestSuite(label, suiteSet);
  const flagged = new Set<string>();
  for (const f of [...diff.violations, ...diff.unexpected]) {
    // A finding names `suite/program`; suite names may hold '/' themselves (`object:dir/x.o`), so
    // the suite is the longest one the label starts with, not the text before the first '/'.
    const suite = suiteOf(f.cell);
    if (suite !== undefined) for (const k of f.kernels) flagged.add(`${k}\0${suite}`);
  }
  // What each suite should report on every kernel: its (program, loader) pairs seen anywhere.
  const programs = new Map<string, string[]>(suites.map((s) => [s, []]));
  const seenPrograms = new Set<string>();
  const pairs = new Map<string, Set<string>>(suites.map((s) => [s, new Set()]));
  const loaderSet = new Set<LoaderName>();
  for (const k of run.kernels)
    for (const c of k.cells) {
      loaderSet.add(c.loader);
      pairs.get(c.suite)!.add(`${c.program}\0${c.loader}`);
      if (!seenPrograms.has(`${c.suite}\0${c.program}`)) {
        seenPrograms.add(`${c.suite}\0${c.program}`);
        programs.get(c.suite)!.push(c.program);
      }
    }
  const loaders = [...loaderSet].sort((a, b) => (a === 'ours' ? -1 : b === 'ours' ? 1 : a < b ? -1 : 1));

  const squares = new Map<string, Square>();
  const totals = { pass: 0, fail: 0, 'expected-skip': 0, skip: 0, error: 0, cells: 0 };
  const kernelTotals: Counts[] = [];
  for (const k of run.kernels) {
    const bySuite = new Map<string, CellResult[]>();
    for (const c of k.cells) {
      let list = bySuite.get(c.suite);
      if (!list) bySuite.set(c.suite, (list = []));
      list.push(c);
    }
    const kt = noCounts();
    for (const suite of suites) {
      const cells = bySuite.get(suite) ?? [];
      const counts = noCounts();
      for (const c of cells) counts[markOf(c)]++;
      counts['not-run'] = Math.max(0, pairs.get(suite)!.size - new Set(cells.map((c) => `${c.program}\0${c.loader}`)).size);
      for (const m of MARKS) kt[m] += counts[m];
      let state: SquareState;
      let note: string | undefined;
      if (cells.length === 0) {
        state = 'warn';
        note = k.guest === 'ok' ? 'no result' : `not run: guest ${k.guest}`;
      } else if (cells.some((c) => FAILING.has(c.verdict))) state = 'fail';
      else if (cells.every((c) => c.verdict === 'expected-skip')) state = 'skip';
      else if (flagged.has(`${k.kernel.id}\0${suite}`)) {
        state = 'warn';
        note = 'unexpected cross-kernel difference';
      } else if (cells.some((c) => neverRan(c.attach))) {
        state = 'silent';
        const quiet = cells.filter((c) => neverRan(c.attach)).map((c) => c.program);
        note = `attached, never ran: ${[...new Set(quiet)].join(', ')}`;
      } else state = 'pass';
      squares.set(`${k.kernel.id}\0${suite}`, { kernel: k, suite, cells, state, counts, ...(note ? { note } : {}) });
    }
    kernelTotals.push(kt);
    for (const c of k.cells) {
      totals[c.verdict]++;
      totals.cells++;
    }
  }
  return {
    suites,
    kernels: run.kernels,
    squares,
    at: (kernel, suite) => squares.get(`${kernel}\0${suite}`)!,
    totals,
    kernelTotals,
    programs,
    loaders,
    suiteOf,
  };
}

/** `12 cells: 10 pass, 1 fail, 1 expected-skip` */
export function totalsLine(g: Grid): string {
  const t = g.totals;
  const parts = [`${t.pass} pass`];
  for (const v of ['fail', 'error', 'skip', 'expected-skip'] as const) if (t[v]) parts.push(`${t[v]} ${v}`);
  return `${g.kernels.length} kernels, ${t.cells} cells: ${parts.join(', ')}`;
}

/** The last `n` lines of a log, without trailing blank lines. */
export function tail(text: string | undefined, n = 40): string {
  if (!text) return '';
  const lines = text.replace(/\s+$/, '').split('\n');
  return lines.slice(-n).join('\n');
}

export function ms(n: number | undefined): string {
  if (n === undefined) return '–';
  return n >= 10_000 ? `${(n / 1000).toFixed(0)} s` : n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`;
}

/** Cells that failed, in kernel then suite order, plus guests that did not end cleanly. */
export function failures(run: RunReport): { kernel: KernelRun; cell?: CellResult }[] {
  const out: { kernel: KernelRun; cell?: CellResult }[] = [];
  for (const k of run.kernels) {
    if (k.guest !== 'ok') out.push({ kernel: k });
    for (const c of k.cells) if (FAILING.has(c.verdict)) out.push({ kernel: k, cell: c });
  }
  return out;
}

/** A check or extern value as text. */
export function show(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === undefined) return '–';
  return JSON.stringify(v);
}

/** Control characters (from consoles and verifier logs) as visible \xNN escapes; tabs and newlines stay. */
export function visible(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Where a kernel's BTF came from, in words (KernelInfo.btf). */
export function btfWords(b: string): string {
  return b === 'pahole' ? 'pahole (from DWARF)' : b === 'none' ? 'none' : 'kernel';
}

/** A program's attach result in words: "attached kprobe do_sys_openat2 via kprobe PMU, ran 3 times". */
export function attachWords(a: AttachResult): string {
  if (a.status === 'not-attachable') return `not attachable here: ${a.reason ?? ''}`;
  if (a.status === 'failed') return `attach failed: ${a.reason ?? ''}`;
  const ran = a.runCount === undefined ? ' (no run statistics)' : a.runCount === 0 ? ', never ran' : `, ran ${a.runCount} time${a.runCount === 1 ? '' : 's'}${a.runTimeNs ? ` (${Math.round(a.runTimeNs / a.runCount)} ns each)` : ''}`;
  return `attached ${a.target ?? ''} via ${a.via ?? '?'}${ran}${a.note ? `; ${a.note}` : ''}`;
}
