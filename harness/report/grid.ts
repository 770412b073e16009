// The kernels × suites grid every report format shows, computed once: one state per square from
// the verdicts of its cells, the guest's fate and the cross-kernel diff.

import { neverRan, type AttachResult, type CellResult, type CellVerdict, type KernelRun, type RunReport } from '../results.js';
import type { KernelDiff } from './diff.js';

/** `silent`: everything passed, but a program attached and never ran (its hook did not fire on this kernel). */
export type SquareState = 'pass' | 'fail' | 'skip' | 'warn' | 'silent';

export const SYMBOL: Record<SquareState, string> = { pass: '✅', fail: '❌', skip: '⏭', warn: '⚠', silent: '💤' };

export interface Square {
  kernel: KernelRun;
  suite: string;
  cells: CellResult[];
  state: SquareState;
  /** One line explaining a warn square. */
  note?: string;
}

export interface Grid {
  suites: string[];
  kernels: KernelRun[];
  squares: Map<string, Square>;
  at(kernel: string, suite: string): Square;
  totals: Record<CellVerdict, number> & { cells: number };
}

export const FAILING: ReadonlySet<CellVerdict> = new Set(['fail', 'skip', 'error']);

export function buildGrid(run: RunReport, diff: KernelDiff): Grid {
  const suites = [...run.suites];
  for (const k of run.kernels) for (const c of k.cells) if (!suites.includes(c.suite)) suites.push(c.suite);
  const flagged = new Set<string>();
  for (const f of [...diff.violations, ...diff.unexpected]) {
    // A finding names `suite/program`; suite names may hold '/' themselves (`object:dir/x.o`), so
    // the suite is the longest one the label starts with, not the text before the first '/'.
    const suite = suites.filter((s) => f.cell.startsWith(`${s}/`)).sort((a, b) => b.length - a.length)[0];
    if (suite !== undefined) for (const k of f.kernels) flagged.add(`${k}\0${suite}`);
  }
  const squares = new Map<string, Square>();
  const totals = { pass: 0, fail: 0, 'expected-skip': 0, skip: 0, error: 0, cells: 0 };
  for (const k of run.kernels) {
    for (const suite of suites) {
      const cells = k.cells.filter((c) => c.suite === suite);
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
      squares.set(`${k.kernel.id}\0${suite}`, { kernel: k, suite, cells, state, ...(note ? { note } : {}) });
    }
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
