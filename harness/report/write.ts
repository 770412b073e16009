// Writes the reports of a run: report.json, junit.xml, summary.md, index.html and, for a run too
// large for one page, the suites' pages under cells/ (html.ts). Every file is written to a
// temporary name, fsync'ed, and renamed only once ALL are on disk, report.json last: a reader
// never sees a truncated file under a final name, and report.json present means the set is whole.
// The cells/ pages are written into a temporary folder that replaces cells/ as a whole (so no page
// of an earlier render stays behind) before index.html, which links to them, is renamed. A failed
// write (ENOSPC, EIO) removes the temporaries and throws one line naming the file.

import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { CoreMatrixError } from '../core/errors.js';
import type { RunReport } from '../results.js';
import { diffKernels } from './diff.js';
import { PAGES_DIR, renderHtml, type HtmlOptions } from './html.js';
import { renderJunit } from './junit.js';
import { renderMarkdown } from './markdown.js';

/** The file operations the writer needs; tests inject failing ones (a full disk). */
export interface ReportIO {
  /** Writes `data` to a new file and makes it durable (fsync) before resolving. */
  writeDurable(path: string, data: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  /** fsync of the directory after the renames (best effort). */
  syncDir(path: string): Promise<void>;
  /** Removes a folder and what it holds; nothing when it does not exist. */
  removeTree(path: string): Promise<void>;
}

export const nodeIO: ReportIO = {
  async writeDurable(path, data) {
    const fh = await fsp.open(path, 'w', 0o644);
    try {
      await fh.writeFile(data, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  rename: (a, b) => fsp.rename(a, b),
  removeTree: (p) => fsp.rm(p, { recursive: true, force: true }),
  unlink: (p) => fsp.unlink(p),
  mkdir: async (p) => {
    await fsp.mkdir(p, { recursive: true });
  },
  async syncDir(p) {
    try {
      const fh = await fsp.open(p, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch {
      /* some filesystems refuse fsync on a directory: the renames are still atomic */
    }
  },
};

function oneLine(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const msg = (e?.message ?? String(err)).split('\n')[0]!;
  return e?.code && !msg.startsWith(e.code) ? `${e.code}: ${msg}` : msg;
}

/** One file of the reports: its name relative to the report folder (`cells/3.html`) and its text. */
export interface ReportFile {
  name: string;
  data: string;
}

/** Renders the reports as strings, in write order: junit.xml, summary.md, the cells/ pages (if any), index.html, report.json last. */
export function renderReports(run: RunReport, opts: HtmlOptions = {}): ReportFile[] {
  const diff = diffKernels(run);
  const page = renderHtml(run, diff, opts);
  return [
    { name: 'junit.xml', data: renderJunit(run, diff) },
    { name: 'summary.md', data: renderMarkdown(run, diff) },
    ...page.pages,
    { name: 'index.html', data: page.index },
    { name: 'report.json', data: JSON.stringify(run, null, 2) + '\n' },
  ];
}

/** Files written at once: the cells/ pages are many and small, and fsync waits on the disk. */
const PARALLEL_WRITES = 8;

async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < items.length && failed === undefined) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

/**
 * Writes the reports into `dir`. Returns the paths written: the four files and, when the run's
 * detail went to pages, the cells/ folder (before index.html).
 */
export async function writeReports(run: RunReport, dir: string, io: ReportIO = nodeIO, opts: HtmlOptions = {}): Promise<{ files: string[] }> {
  const files = renderReports(run, opts);
  const pages = files.filter((f) => f.name.startsWith(`${PAGES_DIR}/`));
  const top = files.filter((f) => !f.name.startsWith(`${PAGES_DIR}/`));
  try {
    await io.mkdir(dir);
  } catch (err) {
    throw new CoreMatrixError(`write reports to ${dir}: ${oneLine(err)}`);
  }
  const tag = `.${process.pid}.${Date.now().toString(36)}.tmp`;
  const cells = join(dir, PAGES_DIR);
  const newCells = cells + tag;
  const oldCells = `${cells}.old${tag}`;
  const written: string[] = [];
  const cleanup = async () => {
    for (const t of written) await io.unlink(t).catch(() => {});
    await io.removeTree(newCells).catch(() => {});
  };
  const write = async (path: string, data: string, shown = path) => {
    try {
      await io.writeDurable(path, data);
    } catch (err) {
      throw new CoreMatrixError(`write ${shown}: ${oneLine(err)}`);
    }
  };
  try {
    if (pages.length) {
      try {
        await io.mkdir(newCells);
      } catch (err) {
        throw new CoreMatrixError(`write ${cells}: ${oneLine(err)}`);
      }
      await eachLimited(pages, PARALLEL_WRITES, (f) => write(join(newCells, f.name.slice(PAGES_DIR.length + 1)), f.data, join(dir, f.name)));
    }
    for (const f of top) {
      const tmp = join(dir, f.name) + tag;
      written.push(tmp);
      await write(tmp, f.data, join(dir, f.name));
    }
  } catch (err) {
    await cleanup();
    throw err;
  }
  const done: string[] = [];
  try {
    // cells/ first, whole: the old folder (an earlier render into the same place) is set aside,
    // the new one renamed in, then index.html that links to it. A run whose detail is inline
    // leaves no cells/ behind either.
    await io.rename(cells, oldCells).catch((err: NodeJS.ErrnoException) => {
      if (err?.code !== 'ENOENT') throw err;
    });
    if (pages.length) await io.rename(newCells, cells);
  } catch (err) {
    await io.rename(oldCells, cells).catch(() => {}); // the earlier render's pages, as they were
    await cleanup();
    throw new CoreMatrixError(`write ${cells}: ${oneLine(err)}`);
  }
  for (const f of top) {
    const final = join(dir, f.name);
    try {
      await io.rename(final + tag, final);
      if (f.name === 'index.html' && pages.length) done.push(cells);
      done.push(final);
    } catch (err) {
      await cleanup();
      throw new CoreMatrixError(`write ${final}: ${oneLine(err)}`);
    }
  }
  await io.removeTree(oldCells).catch(() => {});
  await io.syncDir(dir);
  return { files: done };
}
