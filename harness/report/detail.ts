// What a square opens to: every cell of one suite on one kernel with its relocations, externs,
// checks, verifier statistics and logs, and a suite's cross-kernel differences. The same markup
// is placed inline in index.html (a small run) or in the suite's own page under cells/ (a corpus
// run), so anchors are the same in both: `sq-<kernel>-<suite>` for a square, and
// `c-<kernel>-<suite>-<program>-<loader>` (indexes) for a cell, which index.html's script can
// compute from where a mark sits in an expanded row.

import { neverRan, type CellResult, type KernelRun } from '../results.js';
import { externValue, reloValue, type Finding, type KernelDiff, type ValueRow } from './diff.js';
import { attachWords, btfWords, ms, show, tail, type Square } from './grid.js';
import { html, lines, type Html } from './markup.js';

const VERDICT_CLASS: Record<string, string> = { pass: 'pass', fail: 'fail', error: 'fail', skip: 'fail', 'expected-skip': 'skip' };

/** Lists are capped only on index.html of a large run, whose suites' pages list their own in full. */
const LISTED_PER_SUITE = ", and each suite's page its own";

export const squareId = (ki: number, si: number): string => `sq-${ki}-${si}`;
export const cellId = (ki: number, si: number, pi: number, li: number): string => `c-${ki}-${si}-${pi}-${li}`;

function valueClasses(r: ValueRow): Map<string, string> {
  const distinct = [...new Set(r.values.map((v) => v.value))];
  return new Map(distinct.map((v, i) => [v, distinct.length > 1 ? `v${i % 6}` : '']));
}

/** Findings as a list, at most `max` of each class; what is left out is counted. */
export function findingsList(violations: readonly Finding[], unexpected: readonly Finding[], max = Infinity): Html {
  if (!violations.length && !unexpected.length) return html`<p class="ok">No unexpected difference.</p>`;
  const out: Html[] = [html`<ul class="findings">`];
  for (const v of violations.slice(0, max)) out.push(html`<li class="violation"><b>violation</b> <code>${v.cell}</code>: ${v.what}</li>`);
  for (const u of unexpected.slice(0, max)) out.push(html`<li class="unexpected"><b>unexpected</b> <code>${u.cell}</code>: ${u.what}</li>`);
  out.push(html`</ul>`);
  const left = Math.max(0, violations.length - max) + Math.max(0, unexpected.length - max);
  if (left) out.push(html`<p class="muted">… and ${left} more findings: <code>corematrix report show report.json</code> lists them all${LISTED_PER_SUITE}.</p>`);
  return lines(out);
}

/** The table of values expected to differ across kernels (at most `max` rows). */
export function expectedTable(kernels: readonly string[], rows: readonly ValueRow[], max = Infinity): Html {
  if (!rows.length) return html`<p class="muted">No value differs across kernels.</p>`;
  const out: Html[] = [];
  out.push(html`<p class="muted">Expected to differ: relocated targets, kconfig externs, verifier counts, observed values (✓ = equals its ground truth). In each row, kernels with the same value share a colour; hover a value for the matched target type id.</p>`);
  out.push(html`<table class="diff"><thead><tr><th>cell</th><th>what</th><th>local</th>${kernels.map((k) => html`<th>${k}</th>`)}</tr></thead><tbody>`);
  let last = '';
  for (const r of rows.slice(0, max)) {
    const cls = valueClasses(r);
    const byKernel = new Map(r.values.map((v) => [v.kernel, v]));
    const tds = kernels.map((id) => {
      const v = byKernel.get(id);
      if (!v) return html`<td class="v muted">—</td>`;
      const t = [v.typeId !== undefined ? `type id ${v.typeId}` : '', v.note ?? ''].filter(Boolean).join(' · ');
      return html`<td class="v ${cls.get(v.value)}"${t ? html` title="${t}"` : undefined}>${v.value}</td>`;
    });
    const name = r.cell === last ? '' : r.cell;
    last = r.cell;
    out.push(html`<tr><td class="cellname mono">${name}</td><td class="mono">${r.subject}</td><td class="v">${r.local}</td>${tds}</tr>`);
  }
  out.push(html`</tbody></table>`);
  if (rows.length > max) out.push(html`<p class="muted">… and ${rows.length - max} more rows: <code>corematrix report show report.json</code> lists them all${LISTED_PER_SUITE}.</p>`);
  return lines(out);
}

/** The run's cross-kernel differences: invariants, findings, and the expected differences. */
export function diffSection(d: KernelDiff, max = { findings: Infinity, rows: Infinity }): Html {
  return lines([
    html`<p>Must be equal on every kernel (object sha256, each relocation's local side, checks = ground truth): <b>${d.invariants.held}/${d.invariants.checked}</b> held.</p>`,
    findingsList(d.violations, d.unexpected, max.findings),
    expectedTable(d.kernels, d.expected, max.rows),
  ]);
}

export function cellArticle(c: CellResult, id: string): Html {
  const out: Html[] = [];
  const loader = c.loader !== 'ours' ? html` <span class="muted">[${c.loader}]</span>` : undefined;
  out.push(html`<article class="cell" id="${id}"><h3><span class="verdict ${VERDICT_CLASS[c.verdict] ?? 'warn'}">${c.verdict}</span>${c.program}${loader}</h3>`);
  if (c.reason) out.push(html`<p class="no">${c.reason}</p>`);
  const verifier = c.verifier?.insnsProcessed !== undefined ? ` · verifier ${c.verifier.insnsProcessed} insns processed` : '';
  out.push(html`<p class="meta mono">${c.object.name} sha256 ${c.object.sha256} · load ${c.timings.loadMs} ms · run ${c.timings.runMs} ms${verifier}</p>`);
  if (c.attach) out.push(html`<p class="${c.attach.status === 'failed' ? 'no' : neverRan(c.attach) ? 'silent' : 'meta'}">${attachWords(c.attach)}</p>`);
  if (c.config?.length) out.push(html`<h4>object config on this kernel</h4><ul class="mono">${c.config.map((l) => html`<li>${l}</li>`)}</ul>`);
  if (c.checks.length) {
    out.push(html`<h4>checks (observed vs ground truth)</h4><table><thead><tr><th></th><th>check</th><th>observed</th><th>truth</th><th>source</th></tr></thead><tbody>`);
    for (const x of c.checks)
      out.push(html`<tr><td class="${x.ok ? 'ok' : 'no'}">${x.ok ? '✓' : '✗'}</td><td class="mono">${x.name}</td><td class="v mono">${show(x.observed)}</td><td class="v mono">${show(x.truth)}</td><td class="muted">${x.source}</td></tr>`);
    out.push(html`</tbody></table>`);
  }
  if (c.relocations.length) {
    const sections = [...new Set(c.relocations.map((r) => r.section))];
    out.push(html`<h4>CO-RE relocations <span class="mono">${sections.join(', ')}</span></h4><table class="relos"><thead><tr><th>insn</th><th>kind</th><th>local type</th><th>spec</th><th>local → target</th><th>target type (id)</th><th>access</th></tr></thead><tbody>`);
    for (const r of c.relocations) {
      const cls = r.status === 'ok' ? '' : r.status === 'poisoned' && !(r as { reachable?: boolean }).reachable ? 'muted' : 'no';
      const where = `${sections.length > 1 ? `${r.section}+` : '#'}${r.insn}`;
      const targetType = `${r.targetType ?? ''}${r.targetTypeId !== undefined ? ` (${r.targetTypeId})` : ''}`;
      const access = `${r.access}${r.targetAccess !== undefined ? ` → ${r.targetAccess}` : ''}`;
      out.push(
        html`<tr><td class="mono" title="${r.section}">${where}</td><td class="mono">${r.kind}</td><td class="mono">${r.type}</td><td class="mono">${r.spec}</td><td class="v mono ${cls}">${r.local} → ${reloValue(r)}</td><td class="mono muted">${targetType}</td><td class="mono muted">${access}</td></tr>`,
      );
    }
    out.push(html`</tbody></table>`);
  }
  if (c.externs.length) {
    out.push(html`<h4>externs</h4><table><tbody>`);
    for (const x of c.externs) out.push(html`<tr><td class="mono">${x.name}</td><td class="muted">${x.kind}</td><td class="v mono">${externValue(x.name, x.value)}</td></tr>`);
    out.push(html`</tbody></table>`);
  }
  if (c.output) out.push(html`<h4>output (tail) · ${c.output.exitCode === null ? `killed by ${c.output.signal ?? 'a signal'}` : `exit ${c.output.exitCode}`}</h4><pre>${c.output.tail || '(no output)'}</pre>`);
  if (c.verifier?.logTail) out.push(html`<h4>verifier log (tail)</h4><pre>${tail(c.verifier.logTail, 80)}</pre>`);
  if (c.xlated) out.push(html`<details><summary class="muted">translated instructions (${c.xlated.length / 16} insns)</summary><pre>${c.xlated.replace(/(.{16})/g, '$1\n')}</pre></details>`);
  out.push(html`</article>`);
  return lines(out);
}

/** The body of one square: its kernel, its note, each cell (`ids`: its anchor, in cell order), and the console when it matters. */
export function squareBody(k: KernelRun, sq: Square, ids: readonly string[], symbol: string): Html {
  const out: Html[] = [];
  out.push(html`<h2>${symbol} ${sq.suite} on ${k.kernel.id}</h2>`);
  const detail = k.detail ? ` (${k.detail})` : '';
  out.push(html`<p class="meta mono">${k.kernel.package} ${k.kernel.version} · ${k.kernel.release} · BTF ${btfWords(k.kernel.btf ?? 'kernel')} · guest ${k.guest}${detail} · boot ${ms(k.bootMs)} · ${k.accel}${k.cpus ? ` · ${k.cpus} vCPUs` : ''}</p>`);
  if (sq.note) out.push(html`<p class="banner">${sq.note}</p>`);
  sq.cells.forEach((c, n) => out.push(cellArticle(c, ids[n]!)));
  if (k.consoleTail && (k.guest !== 'ok' || sq.state === 'fail')) out.push(html`<h4>kernel console (tail)</h4><pre>${tail(k.consoleTail, 60)}</pre>`);
  return lines(out);
}
