// The four report files from a real run (plus injected failures with hostile text): JSON round
// trip, JUnit well-formed under a strict XML parser, Markdown for a step summary, HTML rendered
// by headless Chromium (grid squares present, pixels not blank, panels open with JS off), and a
// full disk that leaves no report.json behind.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { diffKernels } from '../../harness/report/diff.js';
import { renderJunit } from '../../harness/report/junit.js';
import { nodeIO, writeReports, type ReportIO } from '../../harness/report/write.js';
import type { RunReport } from '../../harness/results.js';
import { decodePng, colours, share } from './png.js';
import { clone, KERNELS, realRun } from './fixture.js';
import { all, parseXml } from './xml.js';

const HOSTILE = 'R0 invalid mem access \'scalar\' <&> "quoted" ]]> \u0001\u001b[0m tab\tend';
let run: RunReport;
/** The real run with one failing cell (hostile verifier log), one error, one guest panic. */
let broken: RunReport;

function tmp(name: string): string {
  return mkdtempSync(join(tmpdir(), `cm-report-${name}-`));
}

beforeAll(async () => {
  ({ run } = await realRun());
  broken = clone(run);
  const c61 = broken.kernels[1]!.cells[0]!;
  c61.verdict = 'fail';
  c61.reason = `verifier rejected core_kernel: ${HOSTILE}`;
  c61.verifier = { insnsProcessed: 17, logTail: `0: (85) call bpf_probe_read_kernel#113\n1: ${HOSTILE}\nprocessed 17 insns` };
  c61.checks[0]!.observed = 0;
  c61.checks[0]!.ok = false;
  const rt = broken.kernels[2]!;
  rt.guest = 'panic';
  rt.detail = 'Kernel panic - not syncing: Attempted to kill init!';
  rt.consoleTail = '[    2.1] Run /init as init process\n[    2.3] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100';
  rt.cells = [];
}, 600_000);

describe('writeReports', () => {
  it('writes the four files; report.json is the run as is, and no temporary is left', async () => {
    const dir = tmp('ok');
    const { files } = await writeReports(run, dir);
    expect(files.map((f) => f.slice(dir.length + 1))).toEqual(['junit.xml', 'summary.md', 'index.html', 'report.json']);
    expect(readdirSync(dir).sort()).toEqual(['index.html', 'junit.xml', 'report.json', 'summary.md']);
    expect(JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'))).toEqual(run);
    expect(readFileSync(join(dir, 'report.json'), 'utf8')).toMatch(/^\{\n  "schema": 1,/);
  });

  it('on a full disk throws one line naming the file and leaves no report.json (nor temporaries)', async () => {
    const dir = tmp('enospc');
    const io: ReportIO = {
      ...nodeIO,
      async writeDurable(path, data) {
        if (path.includes('report.json')) {
          writeFileSync(path, data.slice(0, 100)); // the disk filled up part way
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        }
        return nodeIO.writeDurable(path, data);
      },
    };
    const err = await writeReports(run, dir, io).then(() => undefined, (e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toBe(`write ${join(dir, 'report.json')}: ENOSPC: no space left on device, write`);
    expect(err!.message).not.toContain('\n');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a failing rename also cleans up and never leaves a half-written report.json', async () => {
    const dir = tmp('eio');
    const io: ReportIO = { ...nodeIO, rename: async (a, b) => (b.endsWith('report.json') ? Promise.reject(Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO' })) : nodeIO.rename(a, b)) };
    await expect(writeReports(run, dir, io)).rejects.toThrow(/^write .*report\.json: EIO: i\/o error, rename$/);
    expect(existsSync(join(dir, 'report.json'))).toBe(false);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('junit.xml', () => {
  it('is well-formed: a testsuite per kernel, a testcase per cell, hostile text escaped', () => {
    const xml = renderJunit(broken, diffKernels(broken));
    const root = parseXml(xml);
    expect(root.name).toBe('testsuites');
    const suites = all(root, 'testsuite');
    expect(suites.filter((s) => s.attrs.name !== 'corematrix.run').map((s) => s.attrs.name)).toEqual(KERNELS);
    const s61 = suites.find((s) => s.attrs.name === '6.1')!;
    const failure = all(s61, 'failure')[0]!;
    // the message round-trips except for the control characters, which become visible escapes
    expect(failure.attrs.message).toBe(`verifier rejected core_kernel: ${HOSTILE.replace('\u0001', '\\x01').replace('\u001b', '\\x1b')}`);
    expect(failure.text).toContain('processed 17 insns');
    const out = all(s61, 'system-out')[0]!.text;
    expect(out).toContain('FAIL offsetof(task_struct, pid): observed 0, truth 2416');
    expect(out).toMatch(/byte_off struct task_struct pid: 0 -> 2416/);
    const rt = suites.find((s) => s.attrs.name === '6.1-rt')!;
    expect(all(rt, 'error')[0]!.attrs.message).toBe('guest panic: Kernel panic - not syncing: Attempted to kill init!');
    expect(root.attrs.failures).toBe(String(1 + 1)); // the 6.1 cell and the cross-kernel diff
    expect(Number(root.attrs.tests)).toBe(all(root, 'testcase').length);
  });

  it('the checker itself rejects what a real parser rejects', () => {
    for (const bad of ['<a><b></a></b>', '<a>x & y</a>', '<a x="1" x="2"/>', '<a>\u0001</a>', '<a/><b/>', '<a x="<"/>', '<a>&bogus;</a>', '<a>]]></a>'])
      expect(() => parseXml(bad), bad).toThrow();
    expect(parseXml('<?xml version="1.0" encoding="UTF-8"?>\n<a q="&lt;&#10;">t&amp;<b/></a>\n').attrs.q).toBe('<\n');
  });
});

describe('summary.md', () => {
  it('has the totals, the grid, the cross-kernel table and each failure folded with its log tail', async () => {
    const dir = tmp('md');
    await writeReports(broken, dir);
    const md = readFileSync(join(dir, 'summary.md'), 'utf8');
    expect(md.split('\n')[0]).toBe('# ❌ corematrix offline-core-kernel — 4 kernels, 3 cells: 2 pass, 1 fail');
    expect(md).toContain('| core-kernel | ✅ | ❌ | ⚠ | ✅ |');
    expect(md).toMatch(/\| 6\.1-rt<br>⚠ panic · – \|/);
    expect(md).toContain('| core-kernel/core_kernel | verdict | `pass` | `fail` | — | `pass` |');
    expect(md).toMatch(/\|  \| task_struct\.pid byte_off \(local 0\) \| `2232` \| `2416` \| — \| `2872` \|/);
    expect(md).toContain('<details><summary>❌ <b>6.1</b> core-kernel/core_kernel: fail — verifier rejected core_kernel: R0 invalid mem access');
    expect(md).toContain('<details><summary>❌ <b>6.1-rt</b>: guest panic');
    expect(md).toContain('exitcode=0x00000100');
    expect(md).not.toMatch(/Incomplete run/);
  });

  it('shows guest values exactly as the guest said them, as a GFM renderer (marked) reads the page', async () => {
    const { marked } = await import('marked');
    const dir = tmp('md-values');
    const odd = clone(broken);
    const c = odd.kernels[1]!.cells[0]!;
    const values = ['a<b>&amp;', 'pipe | in it', '`tick` and ``two``', '\\backslash\\|', ' padded '];
    c.checks = values.map((v, i) => ({ name: `check ${i}`, observed: v, truth: `truth ${v}`, ok: false }));
    await writeReports(odd, dir);
    const md = readFileSync(join(dir, 'summary.md'), 'utf8');
    const html = await marked.parse(md, { gfm: true });
    const decode = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
    const spans = [...html.matchAll(/<code>([^<]*)<\/code>/g)].map((m) => decode(m[1]!));
    for (const v of values) {
      expect(spans, v).toContain(v);
      expect(spans, v).toContain(`truth ${v}`);
    }
    // In a table too: the cross-kernel table's values go through the same span, with pipes escaped.
    const table = [...html.matchAll(/<td[^>]*><code>([^<]*)<\/code><\/td>/g)].map((m) => decode(m[1]!));
    expect(table).toContain('2416');
    const { mdCode } = await import('../../harness/report/markdown.js');
    const cellHtml = await marked.parse(`| a | b |\n|---|---|\n| x | ${mdCode('p|q <r> `s`', true)} |\n`, { gfm: true });
    expect(decode(/<td>x<\/td>\s*<td><code>([^<]*)<\/code><\/td>/.exec(cellHtml)![1]!)).toBe('p|q <r> `s`');
  });

  it('marks an incomplete run in every format', async () => {
    const dir = tmp('partial');
    const partial = { ...clone(run), complete: false };
    await writeReports(partial, dir);
    expect(readFileSync(join(dir, 'summary.md'), 'utf8')).toMatch(/^# ⚠ INCOMPLETE corematrix[^\n]*\n\n> \[!WARNING\]\n> \*\*Incomplete run\*\*/);
    expect(readFileSync(join(dir, 'index.html'), 'utf8')).toContain('<div class="banner" id="incomplete">INCOMPLETE RUN');
    const junit = parseXml(readFileSync(join(dir, 'junit.xml'), 'utf8'));
    expect(junit.attrs.name).toBe('corematrix offline-core-kernel (INCOMPLETE)');
    expect(all(junit, 'error')[0]!.attrs.message).toMatch(/^INCOMPLETE RUN/);
    expect(JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')).complete).toBe(false);
  });
});

// ---- index.html in a real browser ------------------------------------------------------------

function chromium(args: string[]): string {
  const profile = tmp('chromium-profile');
  try {
    return execFileSync(
      'chromium',
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, ...args],
      { timeout: 90_000, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 },
    ).toString();
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

function screenshot(url: string, png: string, extra: string[] = []): ReturnType<typeof decodePng> {
  chromium([...extra, `--screenshot=${png}`, '--window-size=1400,900', '--hide-scrollbars', url]);
  return decodePng(new Uint8Array(readFileSync(png)));
}

describe('index.html in headless Chromium', () => {
  let dir: string;
  let url: string;
  beforeAll(async () => {
    expect(existsSync('/usr/bin/chromium'), 'Debian package chromium must be installed (apt-get install -y chromium)').toBe(true);
    dir = tmp('html');
    await writeReports(broken, dir);
    url = pathToFileURL(join(dir, 'index.html')).href;
  });

  it('is one file with no external reference', () => {
    const html = readFileSync(join(dir, 'index.html'), 'utf8');
    expect(html).not.toMatch(/\b(src|href)="(?!#)/);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/@import|url\(/);
  });

  it('renders the grid: a square per kernel × suite with its state, and a panel per square', () => {
    const dom = chromium(['--dump-dom', url]);
    const squares = [...dom.matchAll(/<td class="sq (\w+)"><a href="#(sq-\d+-\d+)"/g)].map((m) => [m[1], m[2]]);
    expect(squares).toEqual([['pass', 'sq-0-0'], ['fail', 'sq-1-0'], ['warn', 'sq-2-0'], ['pass', 'sq-3-0']]);
    for (const [, id] of squares) expect(dom).toContain(`<section class="panel" id="${id}"`);
    expect(dom).toMatch(/<th class="k"[^>]*>6\.1-rt<small><span class="g-fail">panic<\/span>/);
    expect(dom).toContain('task_struct.pid byte_off');
  });

  it('paints a non-blank page, and a square\'s panel opens with JavaScript off', () => {
    const plain = screenshot(url, join(dir, 'grid.png'));
    expect([plain.width, plain.height]).toEqual([1400, 900]);
    expect(statSync(join(dir, 'grid.png')).size).toBeGreaterThan(20_000);
    expect(colours(plain).size).toBeGreaterThan(50);
    const all = colours(plain);
    expect(all.has(0xe6f4ea), 'the pass square background').toBe(true);
    expect(all.has(0xfce8e6), 'the fail square background').toBe(true);
    // JavaScript off: the same page with its only <script> removed (headless screenshots need JS on)
    const html = readFileSync(join(dir, 'index.html'), 'utf8');
    const noJs = html.replace(/<script>[\s\S]*?<\/script>/, '');
    expect(noJs).not.toContain('<script');
    writeFileSync(join(dir, 'nojs.html'), noJs);
    const panel = screenshot(`${pathToFileURL(join(dir, 'nojs.html')).href}#sq-1-0`, join(dir, 'panel.png'));
    // the drawer covers the right side: the panel's white background, with text, where the page
    // background (#fbfbfa) was
    const region = [1150, 150, 1390, 500] as const;
    const white = (p: typeof panel) => share(p, 0xffffff, ...region);
    expect(white(plain)).toBeLessThan(0.05);
    expect(white(panel)).toBeGreaterThan(0.4);
    expect(colours(panel, ...region).size).toBeGreaterThan(20);
  });

  it('saves the README screenshot when asked (COREMATRIX_UPDATE_DOCS=1)', async () => {
    if (process.env.COREMATRIX_UPDATE_DOCS !== '1') return;
    const docs = tmp('docs');
    await writeReports(run, docs);
    const png = join(docs, 'report-grid.png');
    screenshot(pathToFileURL(join(docs, 'index.html')).href, png);
    mkdirSync('docs', { recursive: true });
    copyFileSync(png, 'docs/report-grid.png');
    expect(statSync('docs/report-grid.png').size).toBeLessThan(300_000);
  });
});
