// The parse pass over a kernel's vmlinux BTF, done once on the host: the guest agent receives the
// index with a copy of the BTF it was made from, checks /sys/kernel/btf/vmlinux is byte-for-byte
// that copy, and opens the kernel's BTF without walking its ~100k types (a quarter of a second
// per guest under TCG without a JIT). Kept on disk by the BTF's sha256 and the names answered.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeBtfIndex, parseBtf } from '../core/btf/btf.js';
import { cacheDir, writeFileAtomic } from '../paths.js';

/** Where the index of this BTF (with these essential names answered) is, made if it is not there yet. */
export function kernelBtfIndexFile(btf: { path: string; sha256: string }, names: Iterable<string>): string {
  const sorted = [...new Set(names)].sort();
  const key = createHash('sha256').update(`btf-index v1\0${btf.sha256}\0${sorted.join('\n')}`).digest('hex').slice(0, 32);
  const file = join(cacheDir('btf-index'), `${key}.idx`);
  if (!existsSync(file)) writeFileAtomic(file, encodeBtfIndex(parseBtf(new Uint8Array(readFileSync(btf.path)), { source: btf.path }).index(sorted)));
  return file;
}
