// Compression of an initramfs layer. The kernel accepts concatenated archives, each raw or
// compressed on its own; the choice is a trade between the bytes QEMU copies into the guest and
// the time the (emulated) guest CPU spends decompressing them.
import { execFileSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { CoreMatrixError } from '../core/errors.js';

/** lz4 is left out: the kernel rejected `lz4 -l` archives in our tests. */
export type Compression = 'none' | 'gzip' | 'zstd';

/** Compresses `file` next to itself and returns the new path (`file.<ext>`). */
export async function compressFile(file: string, compression: Exclude<Compression, 'none'> | Compression): Promise<string> {
  const out = `${file}.${compression}`;
  const argv: Record<Exclude<Compression, 'none'>, string[]> = {
    gzip: ['gzip', '-6', '-n', '-c', file],
    zstd: ['zstd', '-q', '-f', '-9', '-T0', '-o', out, file],
  };
  if (compression === 'none') return file;
  const [cmd, ...args] = argv[compression];
  try {
    if (compression === 'gzip') {
      const fd = openSync(out, 'w');
      try {
        execFileSync(cmd!, args, { stdio: ['ignore', fd, 'pipe'] });
      } finally {
        closeSync(fd);
      }
    } else {
      execFileSync(cmd!, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    }
  } catch (err) {
    throw new CoreMatrixError(`image: ${cmd} ${file}: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}`);
  }
  return out;
}
