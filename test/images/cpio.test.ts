import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { CPIO_MTIME, cpioContentKey, readCpio, writeCpio, type CpioEntry } from '../../harness/images/cpio.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-cpio-'));
const src = join(tmp, 'src.bin');
const payload = Buffer.from(Array.from({ length: 70_001 }, (_, i) => (i * 7) & 0xff));
writeFileSync(src, payload, { mode: 0o750 });
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const entries: CpioEntry[] = [
  { kind: 'file', path: '/z/last.txt', data: 'zzz\n' },
  { kind: 'file', path: '/a/b/c/deep.bin', source: src },
  { kind: 'symlink', path: '/bin/sh', target: 'busybox' },
  { kind: 'file', path: 'bin/busybox', data: new Uint8Array([1, 2, 3]), mode: 0o755 },
  { kind: 'dir', path: '/tmp', mode: 0o1777 },
];

describe('newc writer', () => {
  it('content key: equal for lists that write the same bytes, different when a byte or a mode would differ', () => {
    const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
    const bytesOf = (list: CpioEntry[]) => {
      const out = join(tmp, `k-${Math.random().toString(36).slice(2)}.cpio`);
      writeCpio(out, list);
      return readFileSync(out);
    };
    const variants: CpioEntry[][] = [
      entries,
      [...entries].reverse(),
      [...entries, { kind: 'dir', path: '/a/b' }], // a parent writeCpio adds anyway
      entries.map((e) => (e.path === 'bin/busybox' ? { ...e, mode: 0o700 } : e)),
      entries.map((e) => (e.path === '/z/last.txt' ? { ...e, data: 'zzy\n' } : e)),
      entries.map((e) => (e.kind === 'file' && 'source' in e ? { ...e, mode: 0o644 } : e)),
      [...entries, { kind: 'file', path: '/z/other', source: src }],
    ];
    // The witness is writeCpio itself: two lists have equal keys exactly when their archives are equal.
    for (const a of variants)
      for (const b of variants) expect(cpioContentKey(a, sha) === cpioContentKey(b, sha)).toBe(bytesOf(a).equals(bytesOf(b)));
    expect(new Set(variants.map((v) => cpioContentKey(v, sha))).size).toBe(5);
  });

  it('is deterministic, sorted, and adds parent directories', () => {
    const a = join(tmp, 'a.cpio');
    const b = join(tmp, 'b.cpio');
    const n = writeCpio(a, entries);
    writeCpio(b, [...entries].reverse());
    expect(n % 4).toBe(0);
    expect(statSync(a).size).toBe(n);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    const list = readCpio(readFileSync(a));
    expect(list.map((e) => e.path)).toEqual(['a', 'a/b', 'a/b/c', 'a/b/c/deep.bin', 'bin', 'bin/busybox', 'bin/sh', 'tmp', 'z', 'z/last.txt']);
    expect(list.every((e) => e.mtime === CPIO_MTIME)).toBe(true);
    const deep = list.find((e) => e.path === 'a/b/c/deep.bin')!;
    expect(deep.mode).toBe(0o100750);
    expect(Buffer.from(deep.data).equals(payload)).toBe(true);
    expect(list.find((e) => e.path === 'tmp')!.mode).toBe(0o041777);
  });

  it('is read back by GNU cpio with the same contents, modes and links', () => {
    const a = join(tmp, 'c.cpio');
    writeCpio(a, entries);
    const out = mkdtempSync(join(tmp, 'x-'));
    execFileSync('cpio', ['-idm', '--quiet', '-D', out], { input: readFileSync(a) });
    expect(readFileSync(join(out, 'a/b/c/deep.bin')).equals(payload)).toBe(true);
    expect(statSync(join(out, 'a/b/c/deep.bin')).mode & 0o7777).toBe(0o750);
    expect(statSync(join(out, 'bin/busybox')).mode & 0o7777).toBe(0o755);
    expect(readlinkSync(join(out, 'bin/sh'))).toBe('busybox');
    expect(readFileSync(join(out, 'z/last.txt'), 'utf8')).toBe('zzz\n');
    expect(statSync(join(out, 'z/last.txt')).mtimeMs).toBe(CPIO_MTIME * 1000);
    const listing = execFileSync('cpio', ['-it', '--quiet'], { input: readFileSync(a), encoding: 'utf8' }).trim().split('\n');
    expect(listing).toEqual(readCpio(readFileSync(a)).map((e) => e.path));
  });

  it('rejects escaping paths and missing sources with one-line errors', () => {
    expect(() => writeCpio(join(tmp, 'bad.cpio'), [{ kind: 'file', path: '/../etc/passwd', data: '' }])).toThrow(/'\.\.' is not allowed/);
    expect(() => writeCpio(join(tmp, 'bad.cpio'), [{ kind: 'file', path: '/x', source: join(tmp, 'nope') }])).toThrow(/source of '\/x' .*nope.*ENOENT/);
  });
});
