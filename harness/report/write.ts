// Writes the four reports of a run. Every file is written to a temporary name, fsync'ed, and
// renamed only once ALL four are on disk, report.json last: a reader never sees a truncated file
// under a final name, and report.json present means the set is whole. A failed write (ENOSPC, EIO)
// removes the temporaries and throws one line naming the file.

import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { CoreMatrixError } from '../core/errors.js';
import type { RunReport } from '../results.js';
import { diffKernels } from './diff.js';
import { renderHtml } from './html.js';
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

/** Renders the four reports as strings, in write order (report.json last). */
export function renderReports(run: RunReport): { name: string; data: string }[] {
  const diff = diffKernels(run);
  return [
    { name: 'junit.xml', data: renderJunit(run, diff) },
    { name: 'summary.md', data: renderMarkdown(run, diff) },
    { name: 'index.html', data: renderHtml(run, diff) },
    { name: 'report.json', data: JSON.stringify(run, null, 2) + '\n' },
  ];
}

export async function writeReports(run: RunReport, dir: string, io: ReportIO = nodeIO): Promise<{ files: string[] }> {
  const files = renderReports(run);
  try {
    await io.mkdir(dir);
  } catch (err) {
    throw new CoreMatrixError(`write reports to ${dir}: ${oneLine(err)}`);
  }
  const tag = `.${process.pid}.${Date.now().toString(36)}.tmp`;
  const written: string[] = [];
  const cleanup = async () => {
    for (const t of written) await io.unlink(t).catch(() => {});
  };
  for (const f of files) {
    const final = join(dir, f.name);
    const tmp = final + tag;
    written.push(tmp);
    try {
      await io.writeDurable(tmp, f.data);
    } catch (err) {
      await cleanup();
      throw new CoreMatrixError(`write ${final}: ${oneLine(err)}`);
    }
  }
  const done: string[] = [];
  for (const f of files) {
    const final = join(dir, f.name);
    try {
      await io.rename(final + tag, final);
      done.push(final);
    } catch (err) {
      await cleanup();
      throw new CoreMatrixError(`write ${final}: ${oneLine(err)}`);
    }
  }
  await io.syncDir(dir);
  return { files: done };
}
