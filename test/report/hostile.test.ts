// A report.json may come from anywhere (a CI artifact, someone's shard), and `corematrix report
// render|merge` turns it into index.html: no value in it may run script there. A real report
// (fixture.ts: real kernels, real relocations), with every optional field filled in, holds a
// hostile payload in each of its fields in turn:
// - reading refuses it, one line naming the file and the JSON path, wherever harness/results.ts
//   declares another type (the declarations are read from results.ts by the TypeScript checker,
//   not restated here);
// - wherever a string is allowed, and wherever anything is put when reading is bypassed, the page
//   holds exactly as many < > " ' as with harmless text there (escaped text holds none), and so do
//   the cells/ pages a corpus-sized run gets instead of inline detail.
// Headless Chromium is the witness: it parses and runs the pages (every string field holding a
// payload at once), and shows that the page's policy runs its own script and no injected one.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '../../harness/core/errors.js';
import { diffKernels } from '../../harness/report/diff.js';
import { CSP, CSP_WITH_PAGES, PAGE_CSP, renderHtml } from '../../harness/report/html.js';
import { readRunReport, validateRunReport } from '../../harness/report/merge.js';
import { nodeIO, writeReports } from '../../harness/report/write.js';
import type { RunReport } from '../../harness/results.js';
import ts from 'typescript';
import { declaredLeaves, type DeclaredLeaf } from './declared.js';
import { clone, realRun } from './fixture.js';

/** One payload for every context: attribute (either quote), element text, <title>, <script>, comment. */
const PAYLOAD = `'"><img src=x onerror="document.documentElement.dataset.pwned='img'"></title></textarea></script><script>document.documentElement.dataset.pwned='script';document.title='pwned'</script><!--`;
/** The same text with the four characters markup is made of replaced: what the payload must not change. */
const harmless = (s: string) => s.replace(/</g, '[').replace(/>/g, ']').replace(/["']/g, '`');

let run: RunReport;
let declared: Map<string, DeclaredLeaf>;
let dir: string;

/**
 * The real run with every optional field present (and one guest panic and one failing cell, so
 * the console tail and the failure list are on the page too).
 */
function everyField(base: RunReport): RunReport {
  // through JSON, as a report.json is read: the fixture's cells share their KernelInfo object
  const r = JSON.parse(JSON.stringify(base)) as RunReport;
  r.host.qemu = 'QEMU emulator version 7.2.15';
  r.host.libbpf = 'libbpf 1.8.0 (linux-source-7.3)';
  r.shard = { index: 1, count: 1, arch: 'arm64' };
  r.kernels.forEach((k, i) => {
    k.kernel.btf = 'kernel';
    k.kernel.arch = 'amd64';
    k.bootMs = 2100 + i;
    k.cpus = 2;
    k.guests = 2;
    k.followUps = 1;
    k.detail = `guest detail ${i}`;
    k.consoleTail = `[    2.1] Run /init as init process\n[    2.3] line ${i}`;
    for (const c of k.cells) {
      c.kernel.btf = 'kernel';
      c.kernel.arch = 'amd64';
      c.reason = `reason ${i}`;
      c.verifier = { insnsProcessed: 17 + i, logTail: `0: (85) call bpf_probe_read_kernel#113\nprocessed ${17 + i} insns` };
      c.config = [`autoload core_kernel: yes (kernel ${i})`];
      c.xlated = '8500000071000000b7000000000000009500000000000000';
      c.attach = { status: 'attached', via: 'kprobe PMU', target: 'kprobe do_sys_openat2', reason: `attach reason ${i}`, runCount: 3 + i, runTimeNs: 900 + i, note: `read ${i} bytes` };
      c.output = { exitCode: 3 + i, signal: 'SIGKILL', tail: `output ${i}` };
    }
  });
  r.kernels[1]!.cells[0]!.verdict = 'fail';
  r.kernels[2]!.guest = 'panic';
  return r;
}

// ---- leaves of a report: where they are, and what results.ts says they may hold ---------------

interface Leaf {
  /** `kernels[0].cells[0].relocations[3].local`, as the reader names it. */
  path: string;
  declared: DeclaredLeaf;
}

/** The relocation records carry `reachable` (set by the relocation engine, read by diff and html). */
const EXTRA: DeclaredLeaf = { path: 'kernels[].cells[].relocations[].reachable', admits: new Set(['boolean']), mayBeAbsent: true };

function leaves(doc: unknown, path = '', out: Leaf[] = []): Leaf[] {
  const generic = path.replace(/\[\d+\]/g, '[]');
  const d = declared.get(generic) ?? (generic === EXTRA.path ? EXTRA : undefined);
  if (d) out.push({ path, declared: d });
  else if (Array.isArray(doc)) doc.forEach((x, i) => leaves(x, `${path}[${i}]`, out));
  else if (typeof doc === 'object' && doc !== null) for (const [k, v] of Object.entries(doc)) leaves(v, path ? `${path}.${k}` : k, out);
  else throw new Error(`${path}: a value results.ts does not declare`);
  return out;
}

const GONE = Symbol('absent');

function steps(path: string): (string | number)[] {
  return [...path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]!));
}

/** Sets the leaf at `path` to `value` (or removes it); returns how to put it back. */
function setLeaf(doc: unknown, path: string, value: unknown): () => void {
  const s = steps(path);
  let at = doc as Record<string | number, unknown>;
  for (const k of s.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
  const last = s.at(-1)!;
  const had = Object.hasOwn(at, last);
  const was = at[last];
  if (value === GONE) delete at[last];
  else at[last] = value;
  return () => {
    if (had) at[last] = was;
    else delete at[last];
  };
}

/** Runs `fn` with the leaf at `path` of `doc` set to `value` (or removed), then puts it back. */
function withLeafIn<R>(doc: unknown, path: string, value: unknown, fn: () => R): R {
  const restore = setLeaf(doc, path, value);
  try {
    return fn();
  } finally {
    restore();
  }
}

/** A copy of `doc` with the leaf at `path` set to `value` (or removed). */
function withLeaf<T>(doc: T, path: string, value: unknown): T {
  const copy = clone(doc);
  setLeaf(copy, path, value);
  return copy;
}

function leafValue(doc: unknown, path: string): unknown {
  return steps(path).reduce<unknown>((o, k) => (o as Record<string | number, unknown>)[k], doc);
}

function readError(doc: unknown): string | undefined {
  try {
    validateRunReport(doc, 'hostile.json');
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    return (e as Error).message;
  }
}

const reEscape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** How often each character markup is made of occurs in a page (escaped text holds none of them). */
const markupChars = (page: string) => ['<', '>', '"', "'"].map((c) => `${c} ${page.split(c).length - 1}`);

beforeAll(async () => {
  ({ run } = await realRun());
  declared = declaredLeaves();
  dir = mkdtempSync(join(tmpdir(), 'cm-report-hostile-'));
}, 600_000);

describe('reading a report checks every field against what results.ts declares', () => {
  it('the test report has every declared field, and nothing undeclared', () => {
    const full = everyField(run);
    const seen = new Set(leaves(full).map((l) => l.declared.path));
    expect([...declared.keys()].filter((p) => !seen.has(p))).toEqual([]);
    expect(seen.size).toBeGreaterThanOrEqual(60);
    expect(readError(full)).toBeUndefined();
  });

  it('a value of an undeclared type in any field, in turn, is refused: one line, file and JSON path', () => {
    const full = everyField(run);
    const all = leaves(full);
    expect(all.length).toBeGreaterThan(500);
    const tries: [string, unknown, (d: DeclaredLeaf) => boolean][] = [
      ['string', PAYLOAD, (d) => d.admits.has('string')],
      ['number', 1, (d) => d.admits.has('number') || d.admits.has('1')],
      ['boolean', true, (d) => d.admits.has('boolean')],
      ['null', null, (d) => d.admits.has('null')],
      ['Infinity', Infinity, () => false],
      ['an object', { a: 1 }, () => false],
      ['an array', [PAYLOAD], () => false],
    ];
    let refused = 0;
    let accepted = 0;
    for (const leaf of all) {
      const { path, declared: d } = leaf;
      for (const [kind, value, admits] of tries) {
        const err = withLeafIn(full, path, value, () => readError(full));
        if (admits(d) || (d.admits.has('unknown') && kind !== 'Infinity')) {
          expect(err, `${path} = ${kind}`).toBeUndefined();
          accepted++;
          continue;
        }
        expect(err, `${path} = ${kind}`).toBeDefined();
        expect(err!.split('\n'), path).toHaveLength(1);
        // the top-level schema keeps the reader's old message for numbers: another corematrix version
        if (path === 'schema' && kind === 'Infinity') expect(err).toBe('hostile.json: result schema Infinity is not 1 (written by another corematrix version)');
        else expect(err, `${path} = ${kind}`).toMatch(new RegExp(`^hostile\\.json: ${reEscape(path)}: expected .+, got (${reEscape(kind)}|${kind === 'string' ? '".*"' : kind})$`));
        refused++;
      }
      if (path.endsWith(']')) continue; // an array element is there or not: nothing to leave out
      const gone = withLeafIn(full, path, GONE, () => readError(full));
      if (d.mayBeAbsent) expect(gone, `${path} absent`).toBeUndefined();
      else if (path === 'schema') expect(gone).toBe('hostile.json: result schema undefined is not 1 (written by another corematrix version)');
      else expect(gone ?? `${path} absent: accepted`).toMatch(new RegExp(`^hostile\\.json: ${reEscape(path)}: missing or not .+$`));
    }
    expect(refused).toBeGreaterThan(all.length * 4);
    expect(accepted).toBeGreaterThan(all.length);
  });

  it('names the field exactly: kernels[0].cells[0].relocations[1].local', () => {
    const bad = withLeaf(run, 'kernels[0].cells[0].relocations[1].local', '<img src=x onerror=alert(1)>');
    expect(readError(bad)).toBe('hostile.json: kernels[0].cells[0].relocations[1].local: expected a number, got string');
    const verdict = withLeaf(run, 'kernels[3].cells[0].verdict', 'pwned\u001b[2J');
    expect(readError(verdict)).toBe('hostile.json: kernels[3].cells[0].verdict: expected one of pass, fail, expected-skip, skip, error, got "pwned\\u001b[2J"');
  });

  it('keeps the wording other callers rely on: another schema, a shard outside its split, a missing field', () => {
    expect(readError({ ...run, schema: 2 })).toBe('hostile.json: result schema 2 is not 1 (written by another corematrix version)');
    expect(readError({ ...run, shard: { index: 4, count: 3 } })).toBe('hostile.json: shard: not {index, count} with 1 ≤ index ≤ count');
    expect(readError({ ...run, shard: { index: '1', count: 3 } })).toBe('hostile.json: shard.index: expected an integer, got string');
    expect(readError({ ...run, kernels: [{ ...run.kernels[0], cells: undefined }] })).toBe('hostile.json: kernels[0].cells: missing or not an array');
    expect(readError({ ...run, runId: undefined })).toBe('hostile.json: runId: missing or not a string');
    expect(readError([run])).toBe('hostile.json: top level: not a JSON object');
    const old = JSON.parse(JSON.stringify(run)) as Partial<RunReport>;
    delete old.host;
    delete old.suites;
    delete old.objects;
    expect(readError(old)).toBeUndefined(); // reports written before these existed still read
    expect([old.host, old.suites, old.objects]).toEqual([{ node: '' }, [], []]);
  });

  it('reads JSON numbers too large for a double (1e999) as a bad field, not as Infinity', async () => {
    const text = JSON.stringify(run).replace(/"loadMs":\d+/, '"loadMs":1e999');
    const file = join(dir, 'huge.json');
    writeFileSync(file, text);
    await expect(readRunReport(file)).rejects.toThrow(`${file}: kernels[0].cells[0].timings.loadMs: expected a number, got Infinity`);
  });
});

const exec = promisify(execFile);
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, ['--import', 'tsx', 'harness/cli/main.ts', ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('corematrix report render|merge with a bad field', () => {
  it('exit 2 with one line naming the file and the JSON path, and write nothing', async () => {
    const bad = join(dir, 'r.json');
    writeFileSync(bad, JSON.stringify(withLeaf(run, 'kernels[0].cells[0].relocations[1].local', '<img src=x onerror=alert(1)>')));
    const out = join(dir, 'never');
    const r = await cli('report', 'render', bad, '-o', out);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`corematrix: ${bad}: kernels[0].cells[0].relocations[1].local: expected a number, got string\n`);
    const good = join(dir, 'a.json');
    writeFileSync(good, JSON.stringify({ ...run, kernels: run.kernels.slice(0, 2) }));
    const shard = join(dir, 'b.json');
    writeFileSync(shard, JSON.stringify(withLeaf({ ...run, kernels: run.kernels.slice(2) }, 'kernels[1].bootMs', '</script><script>alert(1)</script>')));
    const m = await cli('report', 'merge', good, shard, '-o', out);
    expect(m.code).toBe(2);
    expect(m.stderr).toBe(`corematrix: ${shard}: kernels[1].bootMs: expected a number, got string\n`);
    expect(existsSync(out)).toBe(false);
  });
});

describe('index.html escapes every value it shows', () => {
  it('a payload in any field, in turn, adds no markup to the page, even where reading would have refused it', () => {
    const full = everyField(run);
    const all = leaves(full);
    const shownIn = new Set<string>();
    const shownInPages = new Set<string>();
    const shown = '&#39;&quot;&gt;&lt;img src=x onerror=&quot;document.documentElement.dataset.pwned=&#39;img&#39;&quot;&gt;&lt;/title&gt;';
    for (const { path } of all) {
      const page = (doc: RunReport) => renderHtml(doc, diffKernels(doc), { detail: 'inline' }).index;
      // The same run with its detail in cells/ pages (what a corpus run gets): index.html and every page.
      const pages = (doc: RunReport) => {
        const r = renderHtml(doc, diffKernels(doc), { detail: 'pages' });
        return [r.index, ...r.pages.map((p) => p.data)].join('\n');
      };
      for (const [render, seen] of [[page, shownIn], [pages, shownInPages]] as const) {
        const hostile = withLeafIn(full, path, PAYLOAD, () => render(full));
        const plain = withLeafIn(full, path, harmless(PAYLOAD), () => render(full));
        expect(markupChars(hostile), path).toEqual(markupChars(plain));
        expect(hostile.includes('<img'), path).toBe(false);
        expect(hostile.match(/<script/g), path).toHaveLength(1);
        if (hostile.includes(shown)) seen.add(path.replace(/\[\d+\]/g, '[]'));
      }
    }
    // the payload was on the page, as text, for fields of every kind: strings, numbers, enums
    for (const p of ['runId', 'kernels[].kernel.id', 'kernels[].cells[].reason', 'kernels[].cells[].relocations[].local', 'kernels[].cells[].relocations[].insn', 'kernels[].cells[].timings.loadMs', 'kernels[].cells[].verifier.insnsProcessed', 'kernels[].cells[].relocations[].targetTypeId', 'kernels[].guest', 'kernels[].accel', 'kernels[].cells[].verdict', 'kernels[].cells[].checks[].observed', 'kernels[].cells[].externs[].value', 'kernels[].consoleTail']) {
      expect(shownIn, p).toContain(p);
      expect(shownInPages, p).toContain(p);
    }
    expect(shownIn.size).toBeGreaterThan(40);
    expect([...shownIn].filter((p) => !shownInPages.has(p))).toEqual([]);
  });

  it('has no style attribute (the policy would block it) and makes markup only with the html tag', () => {
    for (const detail of ['inline', 'pages'] as const) {
      const r = renderHtml(everyField(run), diffKernels(everyField(run)), { detail });
      for (const page of [r.index, ...r.pages.map((p) => p.data)]) expect(page).not.toMatch(/<[^>]*\sstyle=/);
    }
    // Every module that makes markup, read by the TypeScript parser: every literal holding a tag is
    // the template of an html`…`, and raw markup (Html.constant) is made only by that tag and from
    // the modules' constants (the policies, the stylesheet, the script). The markup once all in
    // html.ts is now in markup.ts (the tag), style.ts, detail.ts and html.ts.
    const untagged: string[] = [];
    const constants: string[] = [];
    for (const file of ['harness/report/markup.ts', 'harness/report/style.ts', 'harness/report/detail.ts', 'harness/report/html.ts']) {
      const src = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
      const visit = (n: ts.Node): void => {
        if ((ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n) || ts.isTemplateExpression(n)) && /<\/?[a-z!]/i.test(n.getText())) {
          const p = n.parent;
          if (!(ts.isTaggedTemplateExpression(p) && p.tag.getText() === 'html')) untagged.push(`${file}: ${n.getText().slice(0, 60)}`);
        }
        if (ts.isCallExpression(n) && n.expression.getText() === 'Html.constant') constants.push(n.arguments.map((a) => a.getText()).join());
        ts.forEachChild(n, visit);
      };
      visit(src);
    }
    expect(untagged).toEqual([]);
    expect(constants.sort()).toEqual(['CSS', 'JS', 'PAGE_CSP', 'inline ? CSP : CSP_WITH_PAGES', 'out']);
  });
});

// ---- headless Chromium: the page parsed and run ---------------------------------------------

function chromium(url: string): string {
  const profile = mkdtempSync(join(tmpdir(), 'cm-chromium-'));
  try {
    return execFileSync(
      'chromium',
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--virtual-time-budget=3000', '--dump-dom', url],
      { timeout: 90_000, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 },
    ).toString();
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

/**
 * What the page became once loaded and run: a probe script (allowed by adding its own hash to the
 * page's policy, nothing else changed) waits for late handlers (an <img> error) and records every
 * element with its attribute names, the title, whether the page's own script ran (it un-hides the
 * failures-only toggle) and whether its stylesheet applies (panels hidden).
 */
interface Probe {
  title: string;
  elements: string[];
  scripts: number;
  ownScriptRan: boolean;
  panelDisplay: string;
  pwned: string | null;
}

const PROBE = `setTimeout(()=>{const r=document.documentElement,t=document.getElementById('only-failures'),p=document.querySelector('.panel');
r.dataset.probe=JSON.stringify({title:document.title,elements:[...document.querySelectorAll('*')].map(e=>[e.tagName.toLowerCase(),...e.getAttributeNames().sort()].join(' ')),
scripts:document.scripts.length,ownScriptRan:!!t&&!t.hidden,panelDisplay:p?getComputedStyle(p).display:'',pwned:r.dataset.pwned??null})},500)`;

function probed(page: string, name: string, policy = CSP): Probe {
  const hash = `'sha256-${createHash('sha256').update(PROBE).digest('base64')}'`;
  let html = page.replace(/<\/body><\/html>\n$/, `<script>${PROBE}</script></body></html>\n`);
  expect(html).not.toBe(page);
  const meta = `<meta http-equiv="Content-Security-Policy" content="${policy}">`;
  expect(html.indexOf(meta)).toBeGreaterThan(0);
  // a cells/ page has no script-src at all (default-src 'none' forbids every script): the probe's is added
  html = html.replace(meta, policy.includes('script-src ') ? meta.replace('script-src ', `script-src ${hash} `) : meta.replace(policy, `${policy}; script-src ${hash}`));
  const file = join(dir, name);
  writeFileSync(file, html);
  const dom = chromium(pathToFileURL(file).href);
  const m = / data-probe="([^"]*)"/.exec(dom);
  expect(m, `${name}: the probe did not run`).not.toBeNull();
  const text = m![1]!.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&nbsp;/g, '\u00a0').replace(/&amp;/g, '&');
  return JSON.parse(text) as Probe;
}

/** The page exactly as written, loaded and run by Chromium: what its DOM says afterwards. */
function loaded(page: string, name: string): { dom: string; title: string; toggleShown: boolean; pwned: string | undefined } {
  const file = join(dir, name);
  writeFileSync(file, page);
  const dom = chromium(pathToFileURL(file).href);
  const root = /<html\b[^>]*>/.exec(dom)?.[0] ?? '';
  const toggle = /<div class="tools" id="only-failures"( hidden="")?>/.exec(dom);
  expect(toggle, `${name}: no failures-only toggle`).not.toBeNull();
  return { dom, title: /<title>([^<]*)<\/title>/.exec(dom)?.[1] ?? '', toggleShown: toggle![1] === undefined, pwned: / data-pwned="([^"]*)"/.exec(root)?.[1] };
}

/** Every field that admits a string holds `make(n)`, n numbering the distinct values (equal stays equal). */
function everyStringField(full: RunReport, make: (n: number) => string): { doc: RunReport; runId: string } {
  const doc = clone(full);
  const numbers = new Map<string, number>();
  for (const { path, declared: d } of leaves(full)) {
    if (!d.admits.has('string') && !d.admits.has('unknown')) continue;
    const key = JSON.stringify(leafValue(full, path));
    if (!numbers.has(key)) numbers.set(key, numbers.size);
    setLeaf(doc, path, make(numbers.get(key)!));
  }
  return { doc, runId: make(numbers.get(JSON.stringify(full.runId))!) };
}

describe('index.html in headless Chromium: hostile values stay text; only the page\'s own script runs', () => {
  let full: RunReport;
  let plain: Probe;
  beforeAll(async () => {
    expect(existsSync('/usr/bin/chromium'), 'Debian package chromium must be installed (apt-get install -y chromium)').toBe(true);
    full = everyField(run);
    const { doc } = everyStringField(full, (n) => `${harmless(PAYLOAD)} ${n}`);
    const out = join(dir, 'plain');
    await writeReports(validateRunReport(clone(doc), 'plain.json'), out);
    plain = probed(readFileSync(join(out, 'index.html'), 'utf8'), 'plain.html');
  });

  it('the page runs its own script and stylesheet under its policy', () => {
    expect(plain.ownScriptRan).toBe(true);
    expect(plain.panelDisplay).toBe('none');
    expect(plain.scripts).toBe(2); // the page's and the probe's
    expect(plain.pwned).toBeNull();
    expect(plain.elements.length).toBeGreaterThan(500);
  });

  it('with a payload in every string field at once (rendered by `corematrix report render`), the page is the one of harmless text', async () => {
    const { doc, runId } = everyStringField(full, (n) => `${PAYLOAD} ${n}`);
    const src = join(dir, 'hostile.json');
    writeFileSync(src, JSON.stringify(doc));
    const out = join(dir, 'hostile');
    const r = await cli('report', 'render', src, '-o', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const got = probed(readFileSync(join(out, 'index.html'), 'utf8'), 'hostile.html');
    expect(got.pwned).toBeNull();
    expect(got.title).toBe(`corematrix ${runId}`);
    expect(got.ownScriptRan).toBe(true);
    expect(got.scripts).toBe(2);
    expect(got.elements).toEqual(plain.elements);
  });

  it('with a payload in every string field at once, the corpus layout (index.html and its cells/ pages) is the one of harmless text', async () => {
    const probeAll = async (doc: RunReport, name: string) => {
      const out = join(dir, name);
      await writeReports(validateRunReport(clone(doc), `${name}.json`), out, nodeIO, { detail: 'pages' });
      const pages = readdirSync(join(out, 'cells')).sort();
      expect(pages.length).toBeGreaterThan(0);
      return {
        index: probed(readFileSync(join(out, 'index.html'), 'utf8'), `${name}-index.html`, CSP_WITH_PAGES),
        pages: pages.map((p) => probed(readFileSync(join(out, 'cells', p), 'utf8'), `${name}-${p}`, PAGE_CSP)),
      };
    };
    const { doc, runId } = everyStringField(full, (n) => `${PAYLOAD} ${n}`);
    const plainPages = await probeAll(everyStringField(full, (n) => `${harmless(PAYLOAD)} ${n}`).doc, 'plain-pages');
    const got = await probeAll(doc, 'hostile-pages');
    expect(got.index.pwned).toBeNull();
    expect(got.index.title).toBe(`corematrix ${runId}`);
    expect(got.index.ownScriptRan).toBe(true);
    expect(got.index.scripts).toBe(2);
    expect(got.index.elements).toEqual(plainPages.index.elements);
    for (const [i, p] of got.pages.entries()) {
      expect(p.pwned).toBeNull();
      expect(p.scripts).toBe(1); // the probe's only: a page has none of its own
      expect(p.elements).toEqual(plainPages.pages[i]!.elements);
      expect(p.elements.length).toBeGreaterThan(100);
    }
  });

  it('Chromium runs the page as written: its own script runs; markup that did get in (a renderer bug) does not run, and runs without the policy', async () => {
    const out = join(dir, 'as-written');
    await writeReports(full, out);
    const page = readFileSync(join(out, 'index.html'), 'utf8');
    const own = loaded(page, 'own.html');
    expect(own.toggleShown).toBe(true); // hidden in the HTML: only the page's script shows it
    expect(own.pwned).toBeUndefined();
    const markup = `<img src=x onerror="document.documentElement.dataset.pwned='img'"><script>document.documentElement.dataset.pwned='script';document.title='pwned'</script><svg onload="document.documentElement.dataset.pwned='svg'"></svg>`;
    const injected = page.replace('<h2 id="grid">', `${markup}<h2 id="grid">`);
    expect(injected).not.toBe(page);
    const blocked = loaded(injected, 'injected.html');
    expect(blocked.dom).toContain('<img src="x" onerror='); // it is in the DOM…
    expect(blocked.dom).toContain('<svg onload=');
    expect(blocked.pwned).toBeUndefined(); // …and did not run
    expect(blocked.title).toBe(`corematrix ${full.runId}`);
    expect(blocked.toggleShown).toBe(true);
    const meta = `<meta http-equiv="Content-Security-Policy" content="${CSP}">`;
    expect(injected).toContain(meta);
    const open = loaded(injected.replace(meta, ''), 'injected-no-policy.html');
    expect(open.pwned).toBeDefined();
    expect(open.title).toBe('pwned');
  });
});
