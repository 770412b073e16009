// index.html: the suites × kernels grid, one row per suite (one of ours, or one user or corpus
// object) and one column per kernel; a square counts its cells by verdict (✓ pass, ◌ attached
// but never ran, ✗ fail, ⊗ error, ⊘ skip, ↷ expected skip, – not run). A row expands (JS) to its
// programs, one mark per loader; every square and mark opens the cells' detail: relocations,
// externs, checks, verifier statistics and logs (detail.ts).
//
// Where that detail lives depends on its size. A small run (our default matrix) keeps it inline:
// one self-contained file, each square's panel shown with CSS :target, so it works with JS off. A
// corpus run (tens of thousands of cells, ~1.6 KB of detail each) would make a page of 100+ MB,
// so its detail goes to one page per suite under cells/ next to index.html, opened in a drawer
// (an <iframe>: it works from file://, where fetch() of local files is refused) or, with JS off,
// as a page of its own. The index then stays at ~100 bytes a cell (docs/reports.md).
//
// Every value is escaped (markup.ts). Each page's Content-Security-Policy allows exactly its own
// <style> and <script> by sha256 (the cells/ pages have no script at all) and, when there are
// cells/ pages, frames from the report's own folder: should anything ever slip through, the
// browser still runs no other script.

import type { KernelRun, RunReport } from '../results.js';
import type { Finding, KernelDiff, ValueRow } from './diff.js';
import { cellId, diffSection, expectedTable, findingsList, squareBody, squareId } from './detail.js';
import { btfWords, countsWords, failures, markOf, MARKS, ms, noCounts, totalsLine, type Counts, type Grid, type Mark, type SquareState, buildGrid } from './grid.js';
import { Html, html, lines, sha256Source } from './markup.js';
import { STYLE, STYLE_SOURCE } from './style.js';

/** Symbols every font has (DejaVu too): colour emoji are missing on headless and server machines. */
const SYMBOL: Record<SquareState, string> = { pass: '✓', fail: '✗', skip: '↷', warn: '⚠', silent: '◌' };
const MARK_SYMBOL: Record<Mark, string> = { pass: '✓', silent: '◌', fail: '✗', error: '⊗', skip: '⊘', 'expected-skip': '↷', 'not-run': '–' };

/** Detail of more than this many bytes goes to cells/ pages instead of into index.html. */
export const INLINE_DETAIL_BYTES = 2_000_000;
/** With cells/ pages, index.html lists at most this many findings of each class and expected-difference rows (each suite's page has all of its own). */
const MAX_FINDINGS = 200;
const MAX_DIFF_ROWS = 300;
/** Objects named in the header. */
const MAX_OBJECTS = 8;

/** The folder the suites' pages go in, next to index.html. */
export const PAGES_DIR = 'cells';

/** Which mark a symbol in a collapsed program row stands for (the page's script reads it back). */
const SYMBOL_MARK = Object.fromEntries(MARKS.map((m) => [MARK_SYMBOL[m], m]));

const JS = `
const d=document,b=d.body,dr=d.getElementById('drawer'),fr=dr&&dr.querySelector('iframe');b.classList.add('js');
const M=${JSON.stringify(SYMBOL_MARK)};
const f=d.getElementById('only-failures');if(f){f.hidden=false;f.querySelector('input').addEventListener('change',e=>b.classList.toggle('only-failures',e.target.checked))}
function links(rows,si){[...rows.children].forEach((r,pi)=>[...r.cells].slice(1).forEach((td,ki)=>{const s=[...td.textContent];td.textContent='';
s.forEach((ch,li)=>{const m=M[ch];if(!m)return;const a=d.createElement(m==='not-run'?'span':'a');a.className='m-'+m;a.textContent=ch;
if(m!=='not-run')a.href=(dr?'${PAGES_DIR}/'+si+'.html':'')+'#c-'+ki+'-'+si+'-'+pi+'-'+li;td.append(a)})}));return rows}
function expand(tr){const open=tr.classList.toggle('open');tr.querySelector('button.x').setAttribute('aria-expanded',String(open));
if(!open){for(let n=tr.nextElementSibling;n&&n.classList.contains('prog');){const m=n.nextElementSibling;n.remove();n=m}return}
const t=d.getElementById('p-'+tr.dataset.o);if(t)tr.after(links(t.content.cloneNode(true),tr.dataset.o))}
function shut(){if(!dr||dr.hidden)return false;dr.hidden=true;return true}
d.addEventListener('click',e=>{const x=e.target.closest('button.x');if(x){expand(x.closest('tr'));return}
if(!dr)return;if(e.target.closest('#drawer a.close')){e.preventDefault();shut();return}
const a=e.target.closest('a[href^="${PAGES_DIR}/"]');if(!a||e.button||e.ctrlKey||e.metaKey||e.shiftKey||e.altKey||a.closest('#drawer'))return;
e.preventDefault();fr.src=a.getAttribute('href');dr.querySelector('a.open').setAttribute('href',a.getAttribute('href'));dr.hidden=false;dr.querySelector('a.close').focus()});
d.addEventListener('keydown',e=>{if(e.key!=='Escape'||shut())return;if(/^#(sq|c)-/.test(location.hash))location.hash='#grid'});
`;
const SCRIPT = Html.constant(JS);

const POLICY_BASE = `default-src 'none'; style-src ${STYLE_SOURCE}; script-src ${sha256Source(JS)}; base-uri 'none'; form-action 'none'`;
/**
 * index.html's policy when its detail is inline: nothing loads from anywhere (default-src 'none');
 * the only style and script are the page's own blocks, by hash: no other inline <script>, no on*
 * attribute, no style attribute, no <base>.
 */
export const CSP = POLICY_BASE;
/** index.html's policy when its detail is in cells/ pages: the same, and frames from its own folder. */
export const CSP_WITH_PAGES = `${POLICY_BASE}; frame-src 'self'`;
/** A cells/ page's policy: its style, no script at all. */
export const PAGE_CSP = `default-src 'none'; style-src ${STYLE_SOURCE}; base-uri 'none'; form-action 'none'`;

export interface HtmlOptions {
  /** Where the cells' detail goes: inline, cells/ pages, or by size (INLINE_DETAIL_BYTES; the default). */
  detail?: 'inline' | 'pages' | 'auto';
}

export interface HtmlReport {
  /** index.html */
  index: string;
  /** cells/<suite index>.html, when the detail is not inline (names relative to the report folder). */
  pages: { name: string; data: string }[];
}

const pageName = (si: number) => `${PAGES_DIR}/${si}.html`;

/** `✓12 ✗1 –2`: a square's counts, marks with a count only. */
function countsLabel(n: Counts): string {
  return MARKS.filter((m) => n[m]).map((m) => `${MARK_SYMBOL[m]}${n[m]}`).join(' ') || '–';
}

function kernelHead(k: KernelRun): Html {
  const guest = k.guest === 'ok' ? 'ok' : html`<span class="g-fail">${k.guest}</span>`;
  const title = `${k.kernel.package} ${k.kernel.version} (${k.kernel.release})${k.detail ? `: ${k.detail}` : ''}`;
  const btf = k.kernel.btf && k.kernel.btf !== 'kernel' ? html`<small>BTF: ${btfWords(k.kernel.btf)}</small>` : undefined;
  return html`<th class="k" title="${title}">${k.kernel.id}<small>${guest} · ${ms(k.bootMs)} boot${k.cpus ? ` · ${k.cpus} CPUs` : ''}</small><small class="mono">${k.kernel.version}</small>${btf}</th>`;
}

/** Where a square or a cell opens: an anchor in this page, or in the suite's page. */
type Href = (si: number, anchor: string) => string;

function clip(s: string, n = 300): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

function allPass(g: Grid, s: string): boolean {
  return g.kernels.every((k) => g.at(k.kernel.id, s).state === 'pass' || g.at(k.kernel.id, s).state === 'skip');
}

function gridTable(g: Grid, href: Href): Html {
  const rows = g.suites.map((s, si) => {
    const tds = g.kernels.map((k, ki) => {
      const sq = g.at(k.kernel.id, s);
      const label = `${sq.state === 'warn' ? '⚠ ' : ''}${countsLabel(sq.counts)}`;
      const title = clip(`${countsWords(sq.counts)}${sq.note ? ` — ${sq.note}` : ''}`);
      return html`<td class="sq ${sq.state}"><a href="${href(si, squareId(ki, si))}" title="${title}">${label}</a></td>`;
    });
    const n = g.programs.get(s)!.length;
    return html`<tr class="obj${allPass(g, s) ? ' allpass' : ''}" id="o-${si}" data-o="${si}"><th><button class="x" type="button" aria-expanded="false" title="${`${n} program${n === 1 ? '' : 's'}`}">${s}</button></th>${tds}</tr>`;
  });
  const foot = g.kernels.map((_, ki) => html`<td title="${countsWords(g.kernelTotals[ki]!)}">${countsLabel(g.kernelTotals[ki]!)}</td>`);
  return html`<table class="grid"><thead><tr><th>suite \\ kernel</th>${g.kernels.map(kernelHead)}</tr></thead><tbody>${rows}</tbody><tfoot><tr><th>all ${g.suites.length} suites</th>${foot}</tr></tfoot></table>`;
}

/**
 * Each suite's program rows, inert until its row is expanded: a <template> is parsed but never
 * rendered, and holds only markup the html tag made. A row holds one mark symbol per loader and
 * kernel (a few bytes a cell); on expanding, the page's script turns each into a link to the cell
 * (`cellId` from the mark's position), so a corpus of 40 000 cells adds well under 1 MB here.
 */
function programTemplates(g: Grid, ids: CellIds): Html {
  const out: Html[] = [];
  g.suites.forEach((s, si) => {
    const programs = g.programs.get(s)!;
    if (!programs.length) return;
    const cls = allPass(g, s) ? 'prog allpass' : 'prog';
    const rows = programs.map((_, pi) => {
      const tds = g.kernels.map((_k, ki) => html`<td>${g.loaders.map((_l, li) => MARK_SYMBOL[ids.markAt(si, ki, pi, li)])}</td>`);
      return html`<tr class="${cls}"><th>${programs[pi]}</th>${tds}</tr>`;
    });
    out.push(html`<template id="p-${si}">${rows}</template>`);
  });
  return lines(out);
}

/** Each cell's anchor (by program and loader index), and the mark at each position of an expanded row. */
interface CellIds {
  /** Anchors of a square's cells, in the square's cell order. */
  of(si: number, ki: number): string[];
  markAt(si: number, ki: number, pi: number, li: number): Mark;
}

function cellIds(g: Grid): CellIds {
  const anchors: string[][][] = [];
  const marks = new Map<string, Mark>();
  g.suites.forEach((s, si) => {
    const pIndex = new Map(g.programs.get(s)!.map((p, i) => [p, i]));
    anchors.push(
      g.kernels.map((k, ki) => {
        const seen = new Set<string>();
        return g.at(k.kernel.id, s).cells.map((c, n) => {
          const pi = pIndex.get(c.program)!;
          const li = g.loaders.indexOf(c.loader);
          const id = cellId(ki, si, pi, li);
          // The same cell reported twice (the diff flags it): the first one is the one linked to.
          if (seen.has(id)) return `${id}-${n}`;
          seen.add(id);
          marks.set(id, markOf(c));
          return id;
        });
      }),
    );
  });
  return {
    of: (si, ki) => anchors[si]![ki]!,
    markAt: (si, ki, pi, li) => marks.get(cellId(ki, si, pi, li)) ?? 'not-run',
  };
}

function legend(g: Grid): Html {
  const loaders = g.loaders.length > 1 ? ` · an expanded row has one mark per loader (${g.loaders.join(', ')})` : '';
  return html`<div class="legend"><span class="pass">${MARK_SYMBOL.pass} pass</span><span class="silent">${MARK_SYMBOL.silent} attached, never ran</span><span class="fail">${MARK_SYMBOL.fail} fail ${MARK_SYMBOL.error} error ${MARK_SYMBOL.skip} could not run</span><span class="skip">${MARK_SYMBOL['expected-skip']} expected skip</span><span class="warn">${MARK_SYMBOL['not-run']} not run · ${SYMBOL.warn} unexpected difference</span> click a square for its relocations, externs, checks and logs; a suite's name lists its programs${loaders}</div>`;
}

/** Findings and expected rows per suite (a finding names `suite/program[loader]`). */
function bySuite(g: Grid, diff: KernelDiff): Map<string, { violations: Finding[]; unexpected: Finding[]; rows: ValueRow[] }> {
  const out = new Map(g.suites.map((s) => [s, { violations: [] as Finding[], unexpected: [] as Finding[], rows: [] as ValueRow[] }]));
  for (const v of diff.violations) out.get(g.suiteOf(v.cell) ?? '')?.violations.push(v);
  for (const u of diff.unexpected) out.get(g.suiteOf(u.cell) ?? '')?.unexpected.push(u);
  for (const r of diff.expected) out.get(r.suite)?.rows.push(r);
  return out;
}

/** One suite on every kernel, as a page of its own under cells/ (no script; links back to the grid). */
function suitePage(run: RunReport, g: Grid, diff: KernelDiff, si: number, bodies: Html[], own: { violations: Finding[]; unexpected: Finding[]; rows: ValueRow[] }): string {
  const s = g.suites[si]!;
  const total = noCounts();
  for (const k of g.kernels) for (const m of MARKS) total[m] += g.at(k.kernel.id, s).counts[m];
  const n = g.programs.get(s)!.length;
  const sections = g.kernels.map((_, ki) => html`<section class="kernel" id="${squareId(ki, si)}">${bodies[ki]}</section>`);
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${Html.constant(PAGE_CSP)}"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${s} · corematrix ${run.runId}</title>
<style>${STYLE}</style></head>
<body><main>
<p class="meta"><a href="../index.html#o-${si}" target="_top">corematrix ${run.runId}</a> · ${totalsLine(g)}</p>
<h1>${s}</h1>
<div class="meta">${n} program${n === 1 ? '' : 's'} × ${g.kernels.length} kernels: ${countsWords(total)}</div>
<h2>Cross-kernel differences</h2>
${findingsList(own.violations, own.unexpected)}
${expectedTable(diff.kernels, own.rows)}
${lines(sections)}
</main></body></html>
`.markup;
}

export function renderHtml(run: RunReport, diff: KernelDiff, opts: HtmlOptions = {}): HtmlReport {
  const g = buildGrid(run, diff);
  const fails = failures(run);
  // Every square's detail, rendered once; where it goes is decided by its size.
  const ids = cellIds(g);
  const bodies = g.suites.map((s, si) => g.kernels.map((k, ki) => squareBody(k, g.at(k.kernel.id, s), ids.of(si, ki), SYMBOL[g.at(k.kernel.id, s).state])));
  const detailBytes = bodies.reduce((n, row) => row.reduce((m, b) => m + b.markup.length, n), 0);
  const inline = opts.detail === 'inline' || (opts.detail !== 'pages' && detailBytes <= INLINE_DETAIL_BYTES);
  const href: Href = inline ? (_si, anchor) => `#${anchor}` : (si, anchor) => `${pageName(si)}#${anchor}`;

  const title = `corematrix ${run.runId}${run.complete ? '' : ' (INCOMPLETE)'}`;
  const shown = run.objects.slice(0, MAX_OBJECTS);
  const objects = shown.map((o, i) => html`${i ? ', ' : ''}${o.name} <span class="mono">${o.sha256.slice(0, 16)}</span>`);
  const moreObjects = run.objects.length > shown.length ? ` and ${run.objects.length - shown.length} more` : '';
  const host = `node ${run.host.node}${run.host.qemu ? ` · qemu ${run.host.qemu}` : ''}${run.host.clang ? ` · clang ${run.host.clang}` : ''}`;
  const failed = fails.slice(0, 12).map((f) => (f.cell ? `${f.kernel.kernel.id} ${f.cell.suite}/${f.cell.program}` : `${f.kernel.kernel.id} guest ${f.kernel.guest}`));
  const body: Html[] = [];
  body.push(html`<main><header><h1>${title}</h1>`);
  body.push(html`<div class="meta">${totalsLine(g)} · ${run.startedAt} → ${run.finishedAt} · ${host}</div>`);
  if (objects.length) body.push(html`<div class="meta">objects: ${objects}${moreObjects}</div>`);
  if (!run.complete) body.push(html`<div class="banner" id="incomplete">INCOMPLETE RUN — interrupted or a shard is missing; these results are partial.</div>`);
  if (fails.length) body.push(html`<div class="bad">${fails.length} failure(s): ${failed.join(', ')}${fails.length > 12 ? ', …' : ''}</div>`);
  if (!diff.ok) body.push(html`<div class="bad">cross-kernel diff: ${diff.violations.length} violation(s) of what must be equal, ${diff.unexpected.length} unexpected difference(s) — <a href="#diff">see below</a></div>`);
  body.push(html`</header>`);
  body.push(html`<h2 id="grid">Suites × kernels</h2>`);
  body.push(html`<div class="tools" id="only-failures" hidden><label><input type="checkbox"> show only rows with a problem</label></div>`);
  body.push(gridTable(g, href));
  body.push(legend(g));
  body.push(programTemplates(g, ids));
  body.push(html`<h2 id="diff">Cross-kernel differences</h2>`);
  body.push(diffSection(diff, inline ? undefined : { findings: MAX_FINDINGS, rows: MAX_DIFF_ROWS }));
  const pages: HtmlReport['pages'] = [];
  if (inline) {
    g.suites.forEach((s, si) =>
      g.kernels.forEach((k, ki) => body.push(html`<section class="panel" id="${squareId(ki, si)}" aria-label="${`${k.kernel.id} ${s}`}"><a class="close" href="#grid" title="close (Esc)">×</a>
${bodies[si]![ki]}
</section>`)),
    );
  } else {
    const own = bySuite(g, diff);
    g.suites.forEach((s, si) => pages.push({ name: pageName(si), data: suitePage(run, g, diff, si, bodies[si]!, own.get(s)!) }));
    body.push(html`<aside id="drawer" hidden aria-label="cell detail"><div class="bar"><a class="close" href="#grid" title="close (Esc)">×</a><a class="open" href="#grid" target="_blank" rel="noopener">open as a page ↗</a></div><iframe name="detail" title="cell detail"></iframe></aside>`);
  }
  body.push(html`</main>`);
  // The policy comes first in <head>: it must be in force before the <style> and <script> it names.
  const index = html`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${Html.constant(inline ? CSP : CSP_WITH_PAGES)}"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title}</title>
<style>${STYLE}</style></head>
<body>
${lines(body)}
<script>${SCRIPT}</script>
</body></html>
`.markup;
  return { index, pages };
}
