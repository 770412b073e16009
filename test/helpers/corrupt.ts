// Damages a cached file the way a bad disk block would: bytes flipped in place, the size, inode and
// times kept to the nanosecond (`touch -r`), so only the content can tell. For the cache-integrity
// tests: whatever trusts size and mtime is fooled by it.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** XORs `length` bytes of `file` at `pos` with `mask`; throws if the size, inode or mtime moved. */
export function corruptInPlace(file: string, pos: number, length = 1, mask = 0xa5): void {
  const was = statSync(file, { bigint: true });
  const dir = mkdtempSync(join(tmpdir(), 'cm-corrupt-'));
  const times = join(dir, 'times');
  try {
    writeFileSync(times, '');
    execFileSync('touch', ['-r', file, times]);
    const fd = openSync(file, 'r+');
    try {
      const b = Buffer.alloc(length);
      readSync(fd, b, 0, length, pos);
      for (let i = 0; i < length; i++) b[i]! ^= mask;
      writeSync(fd, b, 0, length, pos);
    } finally {
      closeSync(fd);
    }
    execFileSync('touch', ['-r', times, file]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const now = statSync(file, { bigint: true });
  if (now.size !== was.size || now.mtimeNs !== was.mtimeNs || now.ino !== was.ino) throw new Error(`${file}: corrupting it changed its size, inode or mtime`);
}
