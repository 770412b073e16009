// The parse pass over a kernel's vmlinux BTF, done once on the host: the guest agent receives the
// index with a copy of the BTF it was made from, checks /sys/kernel/btf/vmlinux is byte-for-byte
// that copy, and opens the kernel's BTF without walking its ~100k types (a quarter of a second
// per guest under TCG without a JIT). Kept on disk by the BTF's sha256 and the names answered,
// sealed (images/seal.ts): the guest trusts the index's answers, so a cached one is used only
// while its bytes (~0.5 MB, about a millisecond to hash) still hash to what was written.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CoreMatrixError } from '../core/errors.js';
import { BTF_INDEX_FORMAT, encodeBtfIndex, essentialName, parseBtf } from '../core/btf/btf.js';
import { checkSealedSync, pruneSeals, sealOf, writeSeal } from '../seal.js';
import { cacheDir, pruneCache, touchCached, writeFileAtomic } from '../paths.js';

/** Indexes kept (about 0.5 MB each): a few selections of suites for every matrix kernel. */
const KEEP_INDEXES = 48;

/** Where the index of this BTF (with these essential names answered) is, made if it is not there yet (or not intact). */
export function kernelBtfIndexFile(btf: { path: string; sha256: string }, names: Iterable<string>): string {
  const sorted = [...new Set(names)].sort();
  // The answers depend on the index format and on how names are cut to their essential part.
  const key = createHash('sha256').update(`${BTF_INDEX_FORMAT}\0${essentialName.toString()}\0${btf.sha256}\0${sorted.join('\n')}`).digest('hex').slice(0, 32);
  const file = join(cacheDir('btf-index'), `${key}.idx`);
  if (touchCached(file) && checkSealedSync(file) === undefined) return file;
  // Made from the bytes the key names, or not at all: the index is filed under that sha256.
  const bytes = new Uint8Array(readFileSync(btf.path));
  const actual = sealOf(bytes).sha256;
  if (actual !== btf.sha256) throw new CoreMatrixError(`${btf.path}: sha256 is ${actual.slice(0, 12)}…, not ${btf.sha256.slice(0, 12)}… (the kernel BTF the index is for)`);
  const index = encodeBtfIndex(parseBtf(bytes, { source: btf.path, findNames: sorted }).index(sorted));
  writeFileAtomic(file, index);
  writeSeal(file, sealOf(index));
  pruneCache(dirname(file), '.idx', KEEP_INDEXES, file);
  pruneSeals(dirname(file));
  return file;
}
