// index.html: ONE self-contained file (inline CSS and a little inline JS, no external asset, no
// network). The suites × kernels grid is plain HTML; each square links to a panel (shown with
// CSS :target, so it works with JS off) holding every cell's relocations, externs, checks,
// verifier stats and logs. JS only adds keyboard closing and a failures-only filter.
//
// A report.json may come from anywhere (a CI artifact, a shard), so every value from it is
// escaped, numbers included: markup is built ONLY with the `html` tag below, which escapes each
// `${…}` unless it is markup the tag itself made. No string concatenation builds markup here.
// The page's Content-Security-Policy then allows exactly its own <style> and <script> (by their
// sha256): should anything ever slip through, the browser still runs no other script.

import { createHash } from 'node:crypto';
import { neverRan, type CellResult, type KernelRun, type RunReport } from '../results.js';
import { externValue, reloValue, type KernelDiff, type ValueRow } from './diff.js';
import { attachWords, btfWords, buildGrid, failures, ms, show, tail, totalsLine, visible, type Grid, type SquareState } from './grid.js';

/** Symbols every font has (DejaVu too): colour emoji are missing on headless and server machines. */
const SYMBOL: Record<SquareState, string> = { pass: '✓', fail: '✗', skip: '↷', warn: '⚠', silent: '◌' };

/** Text for an element's content or a quoted attribute: control characters made visible, then escaped. */
function esc(s: string): string {
  return visible(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Markup made by the `html` tag (or this file's own CSS/JS constants): inserted as is. */
class Html {
  private constructor(readonly markup: string) {}
  /** For the `html` tag's own output and this file's constants (policy, <style>, <script>): never for report data. */
  static constant(markup: string): Html {
    return new Html(markup);
  }
  static join(parts: readonly Html[], sep = ''): Html {
    return new Html(parts.map((p) => p.markup).join(sep));
  }
}

/** What `${…}` may hold in `html`: markup from this tag, or a value (escaped); `undefined` is nothing. */
type Value = Html | string | number | undefined | readonly Value[];

function insert(v: Value): string {
  if (v instanceof Html) return v.markup;
  if (v === undefined) return '';
  if (Array.isArray(v)) return v.map(insert).join('');
  return esc(String(v));
}

/** The one way to make markup here: every interpolated value is escaped, numbers too. */
function html(parts: TemplateStringsArray, ...values: Value[]): Html {
  let out = parts[0]!;
  values.forEach((v, i) => {
    out += insert(v) + parts[i + 1]!;
  });
  return Html.constant(out);
}

/** Lines of markup, one per line in the file (easier to read and diff). */
const lines = (parts: readonly Html[]): Html => Html.join(parts, '\n');

const CSS = `
:root{--bg:#fbfbfa;--fg:#1d1f21;--mute:#5f6368;--line:#dadce0;--head:#f1f3f4;--panel:#fff;
--pass:#e6f4ea;--passfg:#0d652d;--fail:#fce8e6;--failfg:#b3261e;--skip:#eceff1;--skipfg:#455a64;--warn:#fef3d6;--warnfg:#8a4b00;--silent:#e8eaf6;--silentfg:#303f9f;
--v0:#e8f0fe;--v1:#fde7d9;--v2:#e6f4ea;--v3:#f3e8fd;--v4:#fff4c2;--v5:#e0f7fa;--link:#1a56c4}
@media (prefers-color-scheme:dark){:root{--bg:#151719;--fg:#e3e3e3;--mute:#9aa0a6;--line:#3c4043;--head:#202124;--panel:#1b1d1f;
--pass:#123821;--passfg:#81c995;--fail:#4a1612;--failfg:#f28b82;--skip:#2a3136;--skipfg:#b0bec5;--warn:#3e2f07;--warnfg:#fdd663;--silent:#1f2440;--silentfg:#9fa8da;
--v0:#1e2a44;--v1:#40281a;--v2:#15321f;--v3:#2e1f40;--v4:#3a3412;--v5:#123438;--link:#8ab4f8}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:13px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{padding:14px 20px 40px;max-width:1800px}
h1{font-size:18px;margin:0 0 2px}h2{font-size:15px;margin:22px 0 8px;border-bottom:1px solid var(--line);padding-bottom:3px}
h3{font-size:14px;margin:0}h4{font-size:12px;margin:12px 0 4px;color:var(--mute);text-transform:uppercase;letter-spacing:.04em}
h4 .mono{text-transform:none;letter-spacing:0}
a{color:var(--link)}
.mono,code,pre,td.v{font-family:ui-monospace,"JetBrains Mono","DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}
.meta{color:var(--mute)}
.banner{background:var(--warn);color:var(--warnfg);border:1px solid var(--warnfg);padding:6px 10px;margin:8px 0;font-weight:600}
.bad{background:var(--fail);color:var(--failfg);border:1px solid var(--failfg);padding:6px 10px;margin:8px 0}
table{border-collapse:collapse}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
thead th{background:var(--head);font-weight:600}
table.grid th.k{text-align:center;min-width:92px}
table.grid th.k small{display:block;font-weight:400;color:var(--mute)}
table.grid td.sq{padding:0;text-align:center}
table.grid td.sq a{display:block;padding:5px 8px;color:inherit;text-decoration:none;font-weight:600}
table.grid td.sq a:hover,table.grid td.sq a:focus{outline:2px solid var(--link);outline-offset:-2px}
.pass{background:var(--pass);color:var(--passfg)}.fail{background:var(--fail);color:var(--failfg)}
.skip{background:var(--skip);color:var(--skipfg)}.warn{background:var(--warn);color:var(--warnfg)}.silent{background:var(--silent);color:var(--silentfg)}
.g-fail{color:var(--failfg);font-weight:700}
.legend{color:var(--mute);margin:6px 0}
.legend span{display:inline-block;padding:0 6px;margin-right:6px}
table.diff td.v{text-align:right;white-space:nowrap}
table.diff td.cellname{color:var(--mute)}
.v0{background:var(--v0)}.v1{background:var(--v1)}.v2{background:var(--v2)}.v3{background:var(--v3)}.v4{background:var(--v4)}.v5{background:var(--v5)}
ul.findings{margin:4px 0;padding-left:18px}
ul.findings li.violation{color:var(--failfg)}ul.findings li.unexpected{color:var(--warnfg)}
.panel{display:none}
.panel:target{display:block;position:fixed;top:0;right:0;bottom:0;width:min(1180px,82vw);overflow:auto;background:var(--panel);
border-left:1px solid var(--line);box-shadow:-8px 0 24px rgba(0,0,0,.18);padding:12px 18px 40px;z-index:10}
.panel .close{float:right;font-size:18px;text-decoration:none;padding:0 6px}
.cell{border:1px solid var(--line);margin:10px 0;padding:8px 10px}
.verdict{display:inline-block;padding:0 6px;font-weight:700;margin-right:6px}
table.relos td{white-space:nowrap}table.relos{font-size:12px}
pre{background:var(--head);padding:6px 8px;overflow:auto;max-height:340px;white-space:pre-wrap;margin:4px 0}
.muted{color:var(--mute)}
.ok{color:var(--passfg)}.no{color:var(--failfg);font-weight:700}
body.only-failures tr.allpass{display:none}
.tools{margin:6px 0}
.tools label{color:var(--mute)}
@media print{.panel{display:block!important;position:static!important;width:auto!important;box-shadow:none!important}}
`;

const JS = `
document.addEventListener('keydown',e=>{if(e.key==='Escape'&&location.hash.startsWith('#sq-'))location.hash='#grid'});
const f=document.getElementById('only-failures');if(f){f.hidden=false;f.querySelector('input').addEventListener('change',e=>document.body.classList.toggle('only-failures',e.target.checked))}
`;

const VERDICT_CLASS: Record<string, string> = { pass: 'pass', fail: 'fail', error: 'fail', skip: 'fail', 'expected-skip': 'skip' };

// The <style> and <script> bodies exactly as written into the page: the policy names their hashes.
const STYLE = Html.constant(CSS);
const SCRIPT = Html.constant(JS);
const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
/**
 * Nothing loads from anywhere (default-src 'none'); the only style and script are the page's own
 * blocks, by hash: no other inline <script>, no on* attribute, no style attribute, no <base>.
 */
export const CSP = `default-src 'none'; style-src ${sha256(CSS)}; script-src ${sha256(JS)}; base-uri 'none'; form-action 'none'`;
const POLICY = Html.constant(CSP);

function squareId(ki: number, si: number): string {
  return `sq-${ki}-${si}`;
}

function kernelHead(k: KernelRun): Html {
  const guest = k.guest === 'ok' ? 'ok' : html`<span class="g-fail">${k.guest}</span>`;
  const title = `${k.kernel.package} ${k.kernel.version} (${k.kernel.release})${k.detail ? `: ${k.detail}` : ''}`;
  const btf = k.kernel.btf && k.kernel.btf !== 'kernel' ? html`<small>BTF: ${btfWords(k.kernel.btf)}</small>` : undefined;
  return html`<th class="k" title="${title}">${k.kernel.id}<small>${guest} · ${ms(k.bootMs)} boot${k.cpus ? ` · ${k.cpus} CPUs` : ''}</small><small class="mono">${k.kernel.version}</small>${btf}</th>`;
}

function gridTable(g: Grid): Html {
  const rows = g.suites.map((s, si) => {
    const all = g.kernels.every((k) => g.at(k.kernel.id, s).state === 'pass' || g.at(k.kernel.id, s).state === 'skip');
    const tds = g.kernels.map((k, ki) => {
      const sq = g.at(k.kernel.id, s);
      const n = sq.cells.length;
      const passed = sq.cells.filter((c) => c.verdict === 'pass').length;
      const label = `${SYMBOL[sq.state]} ${sq.state === 'skip' ? 'skip' : n ? `${passed}/${n}` : '–'}`;
      const title = `${k.kernel.id} · ${s}: ${sq.note ?? sq.cells.map((c) => `${c.program} ${c.verdict}`).join(', ')}`;
      return html`<td class="sq ${sq.state}"><a href="#${squareId(ki, si)}" title="${title}">${label}</a></td>`;
    });
    return html`<tr${all ? html` class="allpass"` : undefined}><th>${s}</th>${tds}</tr>`;
  });
  return html`<table class="grid"><thead><tr><th>suite \\ kernel</th>${g.kernels.map(kernelHead)}</tr></thead><tbody>${rows}</tbody></table>`;
}

function valueClasses(r: ValueRow): Map<string, string> {
  const distinct = [...new Set(r.values.map((v) => v.value))];
  return new Map(distinct.map((v, i) => [v, distinct.length > 1 ? `v${i % 6}` : '']));
}

function diffSection(d: KernelDiff): Html {
  const out: Html[] = [];
  out.push(html`<p>Must be equal on every kernel (object sha256, each relocation's local side, checks = ground truth): <b>${d.invariants.held}/${d.invariants.checked}</b> held.</p>`);
  if (d.violations.length || d.unexpected.length) {
    out.push(html`<ul class="findings">`);
    for (const v of d.violations) out.push(html`<li class="violation"><b>violation</b> <code>${v.cell}</code>: ${v.what}</li>`);
    for (const u of d.unexpected) out.push(html`<li class="unexpected"><b>unexpected</b> <code>${u.cell}</code>: ${u.what}</li>`);
    out.push(html`</ul>`);
  } else out.push(html`<p class="ok">No unexpected difference.</p>`);
  if (!d.expected.length) {
    out.push(html`<p class="muted">No value differs across kernels.</p>`);
    return lines(out);
  }
  out.push(html`<p class="muted">Expected to differ: relocated targets, kconfig externs, verifier counts, observed values (✓ = equals its ground truth). In each row, kernels with the same value share a colour; hover a value for the matched target type id.</p>`);
  out.push(html`<table class="diff"><thead><tr><th>cell</th><th>what</th><th>local</th>${d.kernels.map((k) => html`<th>${k}</th>`)}</tr></thead><tbody>`);
  let last = '';
  for (const r of d.expected) {
    const cls = valueClasses(r);
    const tds = d.kernels.map((id) => {
      const v = r.values.find((x) => x.kernel === id);
      if (!v) return html`<td class="v muted">—</td>`;
      const t = [v.typeId !== undefined ? `type id ${v.typeId}` : '', v.note ?? ''].filter(Boolean).join(' · ');
      return html`<td class="v ${cls.get(v.value)}"${t ? html` title="${t}"` : undefined}>${v.value}</td>`;
    });
    const name = r.cell === last ? '' : r.cell;
    last = r.cell;
    out.push(html`<tr><td class="cellname mono">${name}</td><td class="mono">${r.subject}</td><td class="v">${r.local}</td>${tds}</tr>`);
  }
  out.push(html`</tbody></table>`);
  return lines(out);
}

function cellArticle(c: CellResult): Html {
  const out: Html[] = [];
  const loader = c.loader !== 'ours' ? html` <span class="muted">[${c.loader}]</span>` : undefined;
  out.push(html`<article class="cell"><h3><span class="verdict ${VERDICT_CLASS[c.verdict] ?? 'warn'}">${c.verdict}</span>${c.program}${loader}</h3>`);
  if (c.reason) out.push(html`<p class="no">${c.reason}</p>`);
  const verifier = c.verifier?.insnsProcessed !== undefined ? ` · verifier ${c.verifier.insnsProcessed} insns processed` : '';
  out.push(html`<p class="meta mono">${c.object.name} sha256 ${c.object.sha256} · load ${c.timings.loadMs} ms · run ${c.timings.runMs} ms${verifier}</p>`);
  if (c.attach) out.push(html`<p class="${c.attach.status === 'failed' ? 'no' : neverRan(c.attach) ? 'silent' : 'meta'}">${attachWords(c.attach)}</p>`);
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

function panels(g: Grid): Html {
  const out: Html[] = [];
  g.kernels.forEach((k, ki) => {
    g.suites.forEach((s, si) => {
      const sq = g.at(k.kernel.id, s);
      out.push(html`<section class="panel" id="${squareId(ki, si)}" aria-label="${`${k.kernel.id} ${s}`}"><a class="close" href="#grid" title="close (Esc)">×</a>`);
      out.push(html`<h2>${SYMBOL[sq.state]} ${s} on ${k.kernel.id}</h2>`);
      const detail = k.detail ? ` (${k.detail})` : '';
      out.push(html`<p class="meta mono">${k.kernel.package} ${k.kernel.version} · ${k.kernel.release} · BTF ${btfWords(k.kernel.btf ?? 'kernel')} · guest ${k.guest}${detail} · boot ${ms(k.bootMs)} · ${k.accel}${k.cpus ? ` · ${k.cpus} vCPUs` : ''}</p>`);
      if (sq.note) out.push(html`<p class="banner">${sq.note}</p>`);
      for (const c of sq.cells) out.push(cellArticle(c));
      if (k.consoleTail && (k.guest !== 'ok' || sq.state === 'fail')) out.push(html`<h4>kernel console (tail)</h4><pre>${tail(k.consoleTail, 60)}</pre>`);
      out.push(html`</section>`);
    });
  });
  return lines(out);
}

export function renderHtml(run: RunReport, diff: KernelDiff): string {
  const g = buildGrid(run, diff);
  const fails = failures(run);
  const title = `corematrix ${run.runId}${run.complete ? '' : ' (INCOMPLETE)'}`;
  const objects = run.objects.map((o, i) => html`${i ? ', ' : ''}${o.name} <span class="mono">${o.sha256.slice(0, 16)}</span>`);
  const host = `node ${run.host.node}${run.host.qemu ? ` · qemu ${run.host.qemu}` : ''}${run.host.clang ? ` · clang ${run.host.clang}` : ''}`;
  const failed = fails.slice(0, 12).map((f) => (f.cell ? `${f.kernel.kernel.id} ${f.cell.suite}/${f.cell.program}` : `${f.kernel.kernel.id} guest ${f.kernel.guest}`));
  const body: Html[] = [];
  body.push(html`<main><header><h1>${title}</h1>`);
  body.push(html`<div class="meta">${totalsLine(g)} · ${run.startedAt} → ${run.finishedAt} · ${host}</div>`);
  if (objects.length) body.push(html`<div class="meta">objects: ${objects}</div>`);
  if (!run.complete) body.push(html`<div class="banner" id="incomplete">INCOMPLETE RUN — interrupted or a shard is missing; these results are partial.</div>`);
  if (fails.length) body.push(html`<div class="bad">${fails.length} failure(s): ${failed.join(', ')}${fails.length > 12 ? ', …' : ''}</div>`);
  if (!diff.ok) body.push(html`<div class="bad">cross-kernel diff: ${diff.violations.length} violation(s) of what must be equal, ${diff.unexpected.length} unexpected difference(s) — <a href="#diff">see below</a></div>`);
  body.push(html`</header>`);
  body.push(html`<h2 id="grid">Suites × kernels</h2>`);
  body.push(html`<div class="tools" id="only-failures" hidden><label><input type="checkbox"> show only rows with a problem</label></div>`);
  body.push(gridTable(g));
  body.push(html`<div class="legend"><span class="pass">${SYMBOL.pass} pass</span><span class="fail">${SYMBOL.fail} fail / error</span><span class="skip">${SYMBOL.skip} expected skip</span><span class="warn">${SYMBOL.warn} not run / unexpected difference</span><span class="silent">${SYMBOL.silent} attached, never ran</span> click a square for its relocations, externs, checks and logs</div>`);
  body.push(html`<h2 id="diff">Cross-kernel differences</h2>`);
  body.push(diffSection(diff));
  body.push(panels(g));
  body.push(html`</main>`);
  // The policy comes first in <head>: it must be in force before the <style> and <script> it names.
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${POLICY}"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title}</title>
<style>${STYLE}</style></head>
<body>
${lines(body)}
<script>${SCRIPT}</script>
</body></html>
`.markup;
}
