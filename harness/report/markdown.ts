// summary.md: what needs a human, sized for a GitHub step summary ($GITHUB_STEP_SUMMARY, 1 MiB
// max) whatever the size of the run: the totals, per kernel; the suites × kernels grid (a corpus
// run lists only its suites with a problem); the cross-kernel differences; then the failures,
// one entry per program that failed the same way on several kernels (most kernels first), each
// with its log tail.
// Every list is capped, with "… and N more" pointing at index.html and report.json.

import type { CellResult, KernelRun, RunReport } from '../results.js';
import type { KernelDiff } from './diff.js';
import { btfWords, buildGrid, failures, MARKS, ms, show, SYMBOL, tail, totalsLine, visible, type Grid, type Mark } from './grid.js';

const MAX_BYTES = 900_000;
/** Failure entries (a program failing the same way on several kernels is one entry). */
const MAX_FAILURES = 40;
/** Grid rows: a run with more suites lists only those with a problem, up to this many. */
const MAX_GRID_ROWS = 40;
const MAX_FINDINGS = 30;
const MAX_DIFF_ROWS = 40;
/** Log lines per failure: fewer when there are many failures. */
const TAIL_LINES = 40;
const SHORT_TAIL_LINES = 15;

/** Escapes text for a Markdown table cell (pipes, newlines, HTML-ish brackets). */
export function mdCell(s: string): string {
  return visible(s).replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r?\n/g, ' ').replace(/`/g, "'");
}

/**
 * A value as a Markdown code span that shows exactly what the guest said: inside a code span
 * nothing is an entity or an escape, so `<` stays `<`; a backtick run inside gets a longer fence;
 * in a table cell a pipe is written `\|` (GFM splits cells before it reads code spans, and
 * unescapes that pipe inside them), and newlines become spaces (a span is one line).
 */
export function mdCode(raw: string, inTable = false): string {
  let text = visible(raw).replace(/\r?\n/g, ' ');
  if (inTable) text = text.replace(/\|/g, '\\|');
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const f = '`'.repeat(longest + 1);
  // A span that starts or ends with a backtick (or is blank-padded) needs a space inside the
  // fence; CommonMark strips exactly one from each side.
  const pad = longest > 0 || /^ .* $/.test(text) ? ' ' : '';
  return `${f}${pad}${text}${pad}${f}`;
}

/** A fenced block whose fence is longer than any backtick run inside. */
function fence(raw: string, lang = 'text'): string {
  const text = visible(raw);
  const longest = Math.max(2, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const f = '`'.repeat(longest + 1);
  return `${f}${lang}\n${text}\n${f}`;
}

function htmlText(s: string): string {
  return visible(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const MARK_HEAD: Record<Mark, string> = { pass: '✅ pass', silent: '💤 never ran', fail: '❌ fail', error: 'error', skip: 'skip', 'expected-skip': '⏭ expected skip', 'not-run': 'not run' };

/** One row per kernel: its guest and its cells by mark. */
function perKernel(g: Grid): string[] {
  const out = [`| kernel | guest | boot | ${MARKS.map((m) => MARK_HEAD[m]).join(' | ')} |`, `|---|---|--:|${MARKS.map(() => '--:').join('|')}|`];
  g.kernels.forEach((k, ki) => {
    const t = g.kernelTotals[ki]!;
    out.push(`| ${mdCell(k.kernel.id)} | ${k.guest === 'ok' ? 'ok' : `⚠ ${mdCell(k.guest)}`} | ${ms(k.bootMs)} | ${MARKS.map((m) => (t[m] ? String(t[m]) : '')).join(' | ')} |`);
  });
  return out;
}

/** The grid: every suite when there are few; otherwise the suites with a problem, capped. */
function gridRows(g: Grid): string[] {
  const head = g.kernels.map((k) => `${mdCell(k.kernel.id)}<br>${k.guest === 'ok' ? 'ok' : `⚠ ${k.guest}`} · ${ms(k.bootMs)}${k.cpus ? ` · ${k.cpus} CPUs` : ''}${k.kernel.btf && k.kernel.btf !== 'kernel' ? `<br>BTF: ${btfWords(k.kernel.btf)}` : ''}`);
  const out = [`| suite | ${head.join(' | ')} |`, `|---|${g.kernels.map(() => ':-:').join('|')}|`];
  const fine = (s: string) => g.kernels.every((k) => ['pass', 'skip'].includes(g.at(k.kernel.id, s).state));
  const listed = g.suites.length <= MAX_GRID_ROWS ? g.suites : g.suites.filter((s) => !fine(s));
  for (const s of listed.slice(0, MAX_GRID_ROWS)) {
    const row = g.kernels.map((k) => {
      const sq = g.at(k.kernel.id, s);
      const n = sq.cells.length;
      const passed = sq.cells.filter((c) => c.verdict === 'pass').length;
      return `${SYMBOL[sq.state]}${n > 1 ? ` ${passed}/${n}` : ''}`;
    });
    out.push(`| ${mdCell(s)} | ${row.join(' | ')} |`);
  }
  const more = listed.length - Math.min(listed.length, MAX_GRID_ROWS);
  const quiet = g.suites.length - listed.length;
  if (more || quiet) out.push('', [more ? `… and ${more} more suites with a problem` : '', quiet ? `${quiet} suites pass (or skip as expected) on every kernel` : ''].filter(Boolean).join('; ') + ': every suite is in index.html.');
  return out;
}

/** Failures: guests first, then one entry per (suite, program, loader, verdict, reason) with the kernels it failed on. */
function failureGroups(run: RunReport): { guest?: KernelRun; cell?: CellResult; kernels: KernelRun[] }[] {
  const all = failures(run);
  const out: { guest?: KernelRun; cell?: CellResult; kernels: KernelRun[] }[] = all.filter((f) => !f.cell).map((f) => ({ guest: f.kernel, kernels: [f.kernel] }));
  const groups = new Map<string, { cell: CellResult; kernels: KernelRun[] }>();
  for (const f of all) {
    if (!f.cell) continue;
    const c = f.cell;
    const key = JSON.stringify([c.suite, c.program, c.loader, c.verdict, c.reason ?? '']);
    const g = groups.get(key);
    if (g) g.kernels.push(f.kernel);
    else groups.set(key, { cell: c, kernels: [f.kernel] });
  }
  // Those failing on the most kernels first (a loader's bug fails everywhere), then in run order.
  out.push(...[...groups.values()].sort((a, b) => b.kernels.length - a.kernels.length));
  return out;
}

export function renderMarkdown(run: RunReport, diff: KernelDiff): string {
  const g = buildGrid(run, diff);
  const out: string[] = [];
  const fails = failures(run);
  const status = !run.complete ? '⚠ INCOMPLETE' : fails.length || !diff.ok ? '❌' : '✅';
  out.push(`# ${status} corematrix ${mdCell(run.runId)} — ${totalsLine(g)}`, '');
  if (!run.complete) out.push('> [!WARNING]', '> **Incomplete run**: the run was interrupted or a shard is missing; these results are partial.', '');
  const shown = run.objects.slice(0, 5);
  const objs = shown.map((o) => `\`${o.name}\` \`${o.sha256.slice(0, 12)}\``).join(', ') + (run.objects.length > shown.length ? ` and ${run.objects.length - shown.length} more` : '');
  out.push(`${run.startedAt} → ${run.finishedAt} · node ${run.host.node}${run.host.qemu ? ` · qemu ${run.host.qemu}` : ''}${run.host.clang ? ` · clang ${run.host.clang}` : ''}${shown.length ? ` · objects ${objs}` : ''}`, '');

  // Per kernel, then the grid: suites down, kernels across; the header carries each guest's verdict and boot time.
  out.push(...perKernel(g), '');
  out.push(...gridRows(g));
  out.push('', `${SYMBOL.pass} pass · ${SYMBOL.fail} fail/error · ${SYMBOL.skip} expected skip · ${SYMBOL.warn} not run or unexpected difference · ${SYMBOL.silent} attached, never ran`, '');

  // Cross-kernel differences: what must be equal and is not first, then what differs as expected.
  out.push('## Cross-kernel differences', '');
  out.push(`Must be equal everywhere (object sha256, relocation local side, checks = ground truth): **${diff.invariants.held}/${diff.invariants.checked}** held.`, '');
  if (diff.violations.length || diff.unexpected.length) {
    const findings = [...diff.violations.map((v) => `- ❌ **violation** ${mdCode(v.cell)}: ${mdCell(v.what)}`), ...diff.unexpected.map((u) => `- ⚠ **unexpected** ${mdCode(u.cell)}: ${mdCell(u.what)}`)];
    out.push(...findings.slice(0, MAX_FINDINGS));
    if (findings.length > MAX_FINDINGS) out.push(`- … and ${findings.length - MAX_FINDINGS} more (${diff.violations.length} violations, ${diff.unexpected.length} unexpected in all): see index.html, or \`corematrix report show report.json\`.`);
    out.push('');
  }
  if (diff.expected.length) {
    out.push(`| cell | what | ${diff.kernels.map(mdCell).join(' | ')} |`, `|---|---|${diff.kernels.map(() => '--:').join('|')}|`);
    let last = '';
    for (const r of diff.expected.slice(0, MAX_DIFF_ROWS)) {
      const name = r.cell === last ? '' : mdCell(r.cell);
      last = r.cell;
      const byKernel = new Map(r.values.map((v) => [v.kernel, v]));
      const vals = diff.kernels.map((id) => {
        const v = byKernel.get(id);
        return v ? mdCode(v.value, true) : '—';
      });
      out.push(`| ${name} | ${mdCell(r.subject)}${r.local !== undefined ? ` (local ${r.local})` : ''} | ${vals.join(' | ')} |`);
    }
    out.push('');
    if (diff.expected.length > MAX_DIFF_ROWS) out.push(`… and ${diff.expected.length - MAX_DIFF_ROWS} more values that differ across kernels as expected: see index.html (each suite's page) or report.json.`, '');
  } else out.push('No value differs across kernels.', '');

  // Failures, each with its evidence folded; a program failing the same way on several kernels once.
  if (fails.length) {
    const groups = failureGroups(run);
    const lines = groups.length > 10 ? SHORT_TAIL_LINES : TAIL_LINES;
    out.push(`## Failures (${fails.length})`, '');
    for (const f of groups.slice(0, MAX_FAILURES)) {
      if (f.guest) {
        out.push(`<details><summary>❌ <b>${htmlText(f.guest.kernel.id)}</b>: guest ${htmlText(f.guest.guest)}${f.guest.detail ? ` — ${htmlText(f.guest.detail)}` : ''}</summary>`, '');
        out.push(fence(tail(f.guest.consoleTail, lines) || '(no console captured)'), '', '</details>', '');
        continue;
      }
      const c = f.cell!;
      const where = f.kernels.map((k) => k.kernel.id).join(', ');
      out.push(`<details><summary>❌ <b>${htmlText(where)}</b> ${htmlText(c.suite)}/${htmlText(c.program)}${c.loader !== 'ours' ? ` [${c.loader}]` : ''}: ${htmlText(c.verdict)}${c.reason ? ` — ${htmlText(c.reason)}` : ''}</summary>`, '');
      if (f.kernels.length > 1) out.push(`The same on ${f.kernels.length} kernels; the evidence below is ${htmlText(f.kernels[0]!.kernel.id)}'s.`, '');
      const bad = c.checks.filter((x) => !x.ok);
      if (bad.length) out.push(...bad.map((x) => `- check ${mdCode(x.name)}: observed ${mdCode(show(x.observed))}, truth ${mdCode(show(x.truth))}`), '');
      const relErr = c.relocations.filter((r) => r.status === 'error' || (r.status === 'poisoned' && (r as { reachable?: boolean }).reachable));
      if (relErr.length) out.push(...relErr.map((r) => `- relocation ${mdCode(`${r.kind} ${r.type} ${r.spec}`)}: ${mdCell(r.error ?? r.status)}`), '');
      if (c.output) out.push(`output (tail), ${c.output.exitCode === null ? `killed by ${c.output.signal ?? 'a signal'}` : `exit ${c.output.exitCode}`}:`, '', fence(tail(c.output.tail, lines) || '(no output)'), '');
      const log = c.verifier?.logTail ? tail(c.verifier.logTail, lines) : c.output ? '' : tail(f.kernels[0]!.consoleTail, Math.min(lines, 30));
      if (log) out.push(c.verifier?.logTail ? 'verifier log (tail):' : 'console (tail):', '', fence(log), '');
      out.push('</details>', '');
    }
    if (groups.length > MAX_FAILURES) {
      const left = groups.slice(MAX_FAILURES).reduce((n, f) => n + f.kernels.length, 0);
      out.push(`… and ${left} more failures (${groups.length - MAX_FAILURES} more programs or guests): see index.html, or report.json.`, '');
    }
  }

  let md = out.join('\n');
  if (Buffer.byteLength(md) > MAX_BYTES) {
    md = Buffer.from(md).subarray(0, MAX_BYTES).toString().replace(/\uFFFD$/, '') + '\n\n… summary truncated to fit a GitHub step summary; see index.html for everything.\n';
  }
  return md;
}
