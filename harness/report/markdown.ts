// summary.md: fits a GitHub step summary ($GITHUB_STEP_SUMMARY, 1 MiB max). Title with totals,
// the suites × kernels grid, the cross-kernel differences, then each failure with its log tail.

import type { RunReport } from '../results.js';
import type { KernelDiff } from './diff.js';
import { btfWords, buildGrid, failures, ms, show, SYMBOL, tail, totalsLine, visible } from './grid.js';

const MAX_BYTES = 900_000;
const MAX_FAILURES = 60;

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

export function renderMarkdown(run: RunReport, diff: KernelDiff): string {
  const g = buildGrid(run, diff);
  const out: string[] = [];
  const fails = failures(run);
  const status = !run.complete ? '⚠ INCOMPLETE' : fails.length || !diff.ok ? '❌' : '✅';
  out.push(`# ${status} corematrix ${mdCell(run.runId)} — ${totalsLine(g)}`, '');
  if (!run.complete) out.push('> [!WARNING]', '> **Incomplete run**: the run was interrupted or a shard is missing; these results are partial.', '');
  const objs = run.objects.map((o) => `\`${o.name}\` \`${o.sha256.slice(0, 12)}\``).join(', ');
  out.push(`${run.startedAt} → ${run.finishedAt} · node ${run.host.node}${run.host.qemu ? ` · qemu ${run.host.qemu}` : ''}${run.host.clang ? ` · clang ${run.host.clang}` : ''}${objs ? ` · objects ${objs}` : ''}`, '');

  // Grid: suites down, kernels across; the header carries each guest's verdict and boot time.
  const head = g.kernels.map((k) => `${mdCell(k.kernel.id)}<br>${k.guest === 'ok' ? 'ok' : `⚠ ${k.guest}`} · ${ms(k.bootMs)}${k.cpus ? ` · ${k.cpus} CPUs` : ''}${k.kernel.btf && k.kernel.btf !== 'kernel' ? `<br>BTF: ${btfWords(k.kernel.btf)}` : ''}`);
  out.push(`| suite | ${head.join(' | ')} |`, `|---|${g.kernels.map(() => ':-:').join('|')}|`);
  for (const s of g.suites) {
    const row = g.kernels.map((k) => {
      const sq = g.at(k.kernel.id, s);
      const n = sq.cells.length;
      const passed = sq.cells.filter((c) => c.verdict === 'pass').length;
      return `${SYMBOL[sq.state]}${n > 1 ? ` ${passed}/${n}` : ''}`;
    });
    out.push(`| ${mdCell(s)} | ${row.join(' | ')} |`);
  }
  out.push('', `${SYMBOL.pass} pass · ${SYMBOL.fail} fail/error · ${SYMBOL.skip} expected skip · ${SYMBOL.warn} not run or unexpected difference · ${SYMBOL.silent} attached, never ran`, '');

  // Cross-kernel differences.
  out.push('## Cross-kernel differences', '');
  out.push(`Must be equal everywhere (object sha256, relocation local side, checks = ground truth): **${diff.invariants.held}/${diff.invariants.checked}** held.`, '');
  if (diff.violations.length || diff.unexpected.length) {
    for (const v of diff.violations) out.push(`- ❌ **violation** ${mdCode(v.cell)}: ${mdCell(v.what)}`);
    for (const u of diff.unexpected) out.push(`- ⚠ **unexpected** ${mdCode(u.cell)}: ${mdCell(u.what)}`);
    out.push('');
  }
  if (diff.expected.length) {
    out.push(`| cell | what | ${diff.kernels.map(mdCell).join(' | ')} |`, `|---|---|${diff.kernels.map(() => '--:').join('|')}|`);
    let last = '';
    for (const r of diff.expected) {
      const name = r.cell === last ? '' : mdCell(r.cell);
      last = r.cell;
      const vals = diff.kernels.map((id) => {
        const v = r.values.find((x) => x.kernel === id);
        return v ? mdCode(v.value, true) : '—';
      });
      out.push(`| ${name} | ${mdCell(r.subject)}${r.local !== undefined ? ` (local ${r.local})` : ''} | ${vals.join(' | ')} |`);
    }
    out.push('');
  } else out.push('No value differs across kernels.', '');

  // Failures, each with its evidence folded.
  if (fails.length) {
    out.push(`## Failures (${fails.length})`, '');
    for (const f of fails.slice(0, MAX_FAILURES)) {
      if (!f.cell) {
        out.push(`<details><summary>❌ <b>${htmlText(f.kernel.kernel.id)}</b>: guest ${htmlText(f.kernel.guest)}${f.kernel.detail ? ` — ${htmlText(f.kernel.detail)}` : ''}</summary>`, '');
        out.push(fence(tail(f.kernel.consoleTail, 40) || '(no console captured)'), '', '</details>', '');
        continue;
      }
      const c = f.cell;
      out.push(`<details><summary>❌ <b>${htmlText(f.kernel.kernel.id)}</b> ${htmlText(c.suite)}/${htmlText(c.program)}${c.loader !== 'ours' ? ` [${c.loader}]` : ''}: ${htmlText(c.verdict)}${c.reason ? ` — ${htmlText(c.reason)}` : ''}</summary>`, '');
      const bad = c.checks.filter((x) => !x.ok);
      if (bad.length) out.push(...bad.map((x) => `- check ${mdCode(x.name)}: observed ${mdCode(show(x.observed))}, truth ${mdCode(show(x.truth))}`), '');
      const relErr = c.relocations.filter((r) => r.status === 'error' || (r.status === 'poisoned' && (r as { reachable?: boolean }).reachable));
      if (relErr.length) out.push(...relErr.map((r) => `- relocation ${mdCode(`${r.kind} ${r.type} ${r.spec}`)}: ${mdCell(r.error ?? r.status)}`), '');
      if (c.output) out.push(`output (tail), ${c.output.exitCode === null ? `killed by ${c.output.signal ?? 'a signal'}` : `exit ${c.output.exitCode}`}:`, '', fence(tail(c.output.tail, 40) || '(no output)'), '');
      const log = c.verifier?.logTail ? tail(c.verifier.logTail, 40) : c.output ? '' : tail(f.kernel.consoleTail, 30);
      if (log) out.push(c.verifier?.logTail ? 'verifier log (tail):' : 'console (tail):', '', fence(log), '');
      out.push('</details>', '');
    }
    if (fails.length > MAX_FAILURES) out.push(`… and ${fails.length - MAX_FAILURES} more failures (see report.json / index.html).`, '');
  }

  let md = out.join('\n');
  if (Buffer.byteLength(md) > MAX_BYTES) {
    md = Buffer.from(md).subarray(0, MAX_BYTES).toString().replace(/\uFFFD$/, '') + '\n\n… summary truncated to fit a GitHub step summary; see index.html for everything.\n';
  }
  return md;
}
