// A deterministic writer for "newc" cpio archives (the format the kernel unpacks as initramfs).
// Same inputs → same bytes: entries sorted by path, parent directories added, inode numbers
// assigned in order, uid/gid 0, a fixed mtime. Regular files stream from disk in chunks.
//
// Layout of one entry: a 110-byte ASCII header ("070701" + 13 eight-digit hex fields: ino, mode,
// uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check),
// the NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes. The archive ends
// with an entry named "TRAILER!!!".
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, statSync, writeSync, type Stats } from 'node:fs';
import { FormatError } from '../core/errors.js';

export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

export type CpioEntry =
  | { kind: 'file'; path: string; mode?: number; source: string }
  | { kind: 'file'; path: string; mode?: number; data: Uint8Array | string }
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'symlink'; path: string; target: string };

/**
 * What writeCpio makes of the same entries, for cpioContentKey: change it whenever writeCpio
 * would write other bytes for them (header fields, inode numbering, padding, the mtime below).
 */
export const CPIO_FORMAT = 'newc, sorted, ino from 1, uid/gid 0, mtime 1577836800';

/** Fixed mtime of every entry (2020-01-01): makes archives reproducible. */
export const CPIO_MTIME = 1577836800;

/** Normalises a guest path: no leading "/", no "." or empty components. Throws on "..". */
export function normalizeGuestPath(p: string): string {
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.some((s) => s === '..')) throw new FormatError(`guest path '${p}': '..' is not allowed`);
  if (parts.length === 0) throw new FormatError(`guest path '${p}': empty`);
  return parts.join('/');
}

function header(ino: number, mode: number, nlink: number, size: number, nameSize: number): string {
  const f = (n: number) => n.toString(16).padStart(8, '0');
  return '070701' + [ino, mode, 0, 0, nlink, CPIO_MTIME, size, 0, 0, 0, 0, nameSize, 0].map(f).join('');
}

const ZERO = new Uint8Array(4);

/** The entries as writeCpio archives them: paths normalised, parent directories added, sorted. */
function sortedEntries(entries: readonly CpioEntry[]): CpioEntry[] {
  const byPath = new Map<string, CpioEntry>();
  for (const e of entries) {
    const path = normalizeGuestPath(e.path);
    byPath.set(path, { ...e, path });
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!byPath.has(dir)) byPath.set(dir, { kind: 'dir', path: dir });
    }
  }
  // Byte-wise sort puts a directory before its children ("a" < "a/b").
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * A key for the archive writeCpio would write from `entries` (equal keys, equal bytes), without
 * writing it: each entry's kind, path, mode, size and content hash. `hashFile` gives a source
 * file's content hash (callers memoise it: an image is looked up by this key on every run).
 */
export function cpioContentKey(entries: readonly CpioEntry[], hashFile: (path: string) => string): string {
  const h = createHash('sha256').update(`${CPIO_FORMAT}\n`);
  const line = (fields: (string | number)[]) => h.update(`${JSON.stringify(fields)}\n`);
  for (const e of sortedEntries(entries)) {
    if (e.kind === 'dir') line(['d', e.path, e.mode ?? 0o755]);
    else if (e.kind === 'symlink') line(['l', e.path, e.target]);
    else if ('data' in e) {
      const data = typeof e.data === 'string' ? Buffer.from(e.data, 'utf8') : e.data;
      line(['f', e.path, e.mode ?? 0o644, data.length, createHash('sha256').update(data).digest('hex')]);
    } else {
      const st = sourceStat(e.source, e.path, 'image');
      line(['f', e.path, e.mode ?? st.mode & 0o7777, st.size, hashFile(e.source)]);
    }
  }
  return h.digest('hex');
}

function sourceStat(source: string, path: string, what: string): Stats {
  let st;
  try {
    st = statSync(source);
  } catch (err) {
    throw new FormatError(`${what}: source of '/${path}' (${source}): ${(err as Error).message}`);
  }
  if (!st.isFile()) throw new FormatError(`${what}: source of '/${path}' (${source}) is not a regular file`);
  return st;
}

/**
 * Writes `entries` as one newc archive to `outPath` (truncating it). Later entries with the same
 * path replace earlier ones; parent directories are created (mode 0755) when not listed.
 * Returns the number of bytes written. `written`, when given, receives the sha256 of the bytes
 * archived from each source file: what the archive holds, to compare with the content key's
 * (memoised) hashes, which a file changed in place without its mtime moving would fool.
 */
export function writeCpio(outPath: string, entries: readonly CpioEntry[], written?: Map<string, string>): number {
  const sorted = sortedEntries(entries);
  const fd = openSync(outPath, 'w');
  let offset = 0;
  const write = (buf: Uint8Array) => {
    let done = 0;
    while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done);
    offset += buf.length;
  };
  const pad = () => {
    const n = (4 - (offset % 4)) % 4;
    if (n) write(ZERO.subarray(0, n));
  };
  const entry = (ino: number, mode: number, nlink: number, name: string, size: number) => {
    const nameBytes = Buffer.from(name + '\0', 'utf8');
    write(Buffer.from(header(ino, mode, nlink, size, nameBytes.length), 'ascii'));
    write(nameBytes);
    pad();
  };
  try {
    let ino = 1;
    for (const e of sorted) {
      if (e.kind === 'dir') {
        entry(ino++, S_IFDIR | (e.mode ?? 0o755), 2, e.path, 0);
      } else if (e.kind === 'symlink') {
        const target = Buffer.from(e.target, 'utf8');
        entry(ino++, S_IFLNK | 0o777, 1, e.path, target.length);
        write(target);
        pad();
      } else if ('data' in e) {
        const data = typeof e.data === 'string' ? Buffer.from(e.data, 'utf8') : e.data;
        entry(ino++, S_IFREG | (e.mode ?? 0o644), 1, e.path, data.length);
        write(data);
        pad();
      } else {
        const st = sourceStat(e.source, e.path, `cpio ${outPath}`);
        entry(ino++, S_IFREG | (e.mode ?? st.mode & 0o7777), 1, e.path, st.size);
        const h = written ? createHash('sha256') : undefined;
        copyFile(e.source, st.size, (b) => {
          h?.update(b);
          write(b);
        });
        if (h) written!.set(e.source, h.digest('hex'));
        pad();
      }
    }
    entry(0, 0, 1, 'TRAILER!!!', 0);
    pad();
  } finally {
    closeSync(fd);
  }
  return offset;
}

function copyFile(source: string, size: number, write: (b: Uint8Array) => void): void {
  const fd = openSync(source, 'r');
  try {
    const buf = Buffer.allocUnsafe(Math.min(Math.max(size, 1), 4 << 20));
    let pos = 0;
    while (pos < size) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
      if (n === 0) throw new FormatError(`cpio: ${source} shrank while being archived (${pos} of ${size} bytes)`);
      write(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** One parsed newc entry (for tests and `images ls`). */
export interface CpioListing {
  path: string;
  mode: number;
  size: number;
  ino: number;
  mtime: number;
  data: Uint8Array;
}

/** Parses an uncompressed newc archive (possibly several concatenated) back into entries. */
export function readCpio(buf: Uint8Array): CpioListing[] {
  const out: CpioListing[] = [];
  const text = (a: number, b: number) => Buffer.from(buf.subarray(a, b)).toString('latin1');
  let off = 0;
  const align = (n: number) => (n + 3) & ~3;
  while (off + 110 <= buf.length) {
    // Zero padding between concatenated archives.
    if (buf[off] === 0) {
      off += 4;
      continue;
    }
    const magic = text(off, off + 6);
    if (magic !== '070701') throw new FormatError(`cpio: bad magic '${magic}'`, off);
    const field = (i: number) => parseInt(text(off + 6 + i * 8, off + 14 + i * 8), 16);
    const [ino, mode, , , , mtime, size] = [0, 1, 2, 3, 4, 5, 6].map(field) as number[];
    const nameSize = field(11);
    const nameStart = off + 110;
    const name = Buffer.from(buf.subarray(nameStart, nameStart + nameSize - 1)).toString('utf8');
    const dataStart = align(nameStart + nameSize);
    if (dataStart + size! > buf.length) throw new FormatError(`cpio: entry '${name}' runs past the end`, off);
    off = align(dataStart + size!);
    if (name === 'TRAILER!!!') continue;
    out.push({ path: name, mode: mode!, size: size!, ino: ino!, mtime: mtime!, data: buf.subarray(dataStart, dataStart + size!) });
  }
  return out;
}
