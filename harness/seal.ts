// Seals for cache files: the sha256 and size of a file's bytes when it was written. A cached file
// is used only while its bytes still hash to its seal: a size and mtime say nothing about a block
// flipped in place (a disk, a bad copy, a hostile test). The seal of `<dir>/<name>` is
// `<dir>.seals/<name>.sha256`: a folder beside the cache folder, whose own listing stays the
// files it holds (runs and tests list images/initrd and take every entry for an image).
import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { writeFileAtomic } from './paths.js';

export interface Seal {
  sha256: string;
  size: number;
}

const SUFFIX = '.sha256';
const sealDir = (dir: string) => `${dir}.seals`;

export function sealPath(file: string): string {
  return join(sealDir(dirname(file)), `${basename(file)}${SUFFIX}`);
}

/** Writes the seal of `file` (atomically: readers see the old seal or the new one). */
export function writeSeal(file: string, seal: Seal): void {
  mkdirSync(sealDir(dirname(file)), { recursive: true });
  writeFileAtomic(sealPath(file), `${seal.sha256} ${seal.size}\n`);
}

export function readSeal(file: string): Seal | undefined {
  try {
    const m = /^([0-9a-f]{64}) (\d+)\n$/.exec(readFileSync(sealPath(file), 'utf8'));
    return m ? { sha256: m[1]!, size: Number(m[2]) } : undefined;
  } catch {
    return undefined;
  }
}

/** The file and its seal gone (a corrupt cache entry). */
export function removeSealed(file: string): void {
  rmSync(file, { force: true });
  rmSync(sealPath(file), { force: true });
}

/** Seals of files in `dir` that are gone (pruned), removed. */
export function pruneSeals(dir: string): void {
  let seals: string[];
  try {
    seals = readdirSync(sealDir(dir));
  } catch {
    return;
  }
  for (const f of seals) {
    if (!f.endsWith(SUFFIX)) continue;
    try {
      statSync(join(dir, f.slice(0, -SUFFIX.length)));
    } catch {
      rmSync(join(sealDir(dir), f), { force: true });
    }
  }
}

/** One line on how `actual` differs from `expected` (for 'cached … is corrupt: …'). */
export function describeMismatch(actual: Seal, expected: Seal): string {
  return `sha256 is now ${actual.sha256.slice(0, 12)}…, ${actual.size} bytes (expected ${expected.sha256.slice(0, 12)}…, ${expected.size} bytes)`;
}

/**
 * sha256 of a file, read in 4 MB chunks without blocking the event loop for long (a run hashes a
 * ~96 MB image while its guests' serial ports are being read). With `prefix`, also the sha256
 * of the first `prefix` bytes (an image's base layer) from the same pass.
 */
export async function hashFile(path: string, prefix?: number): Promise<Seal & { prefix?: string }> {
  const fh = await open(path, 'r');
  try {
    const h = createHash('sha256');
    let head: Hash | undefined = prefix !== undefined ? createHash('sha256') : undefined;
    const buf = Buffer.allocUnsafe(4 << 20);
    let pos = 0;
    let headDigest: string | undefined;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      h.update(chunk);
      if (head) {
        const take = Math.min(bytesRead, prefix! - pos);
        if (take > 0) head.update(chunk.subarray(0, take));
        if (pos + bytesRead >= prefix!) {
          headDigest = head.digest('hex');
          head = undefined;
        }
      }
      pos += bytesRead;
    }
    if (head) headDigest = head.digest('hex'); // the file is shorter than the prefix
    return { sha256: h.digest('hex'), size: pos, ...(headDigest !== undefined ? { prefix: headDigest } : {}) };
  } finally {
    await fh.close();
  }
}

/** The seal of bytes in memory. */
export function sealOf(bytes: Uint8Array): Seal {
  return { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
}

/** sha256 of a small file, at once. */
export function hashFileSync(path: string): Seal {
  return sealOf(readFileSync(path));
}

/**
 * Why `file` may not be used, or undefined when its bytes hash to its seal: 'is missing', 'has no
 * checksum' (written by an older corematrix, or torn), or 'is corrupt: …'.
 */
export async function checkSealed(file: string): Promise<string | undefined> {
  const p = precheck(file);
  return 'problem' in p ? p.problem : judge(await hashFile(file), p.seal);
}

/** checkSealed for small files (a code cache, a helper binary, a BTF index). */
export function checkSealedSync(file: string): string | undefined {
  const p = precheck(file);
  return 'problem' in p ? p.problem : judge(hashFileSync(file), p.seal);
}

/** What can be told without reading the file: there, sealed, of the sealed size. */
function precheck(file: string): { problem: string } | { seal: Seal } {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return { problem: 'is missing' };
  }
  const seal = readSeal(file);
  if (!seal) return { problem: 'has no checksum' };
  if (seal.size !== size) return { problem: `is corrupt: ${size} bytes (expected ${seal.size} bytes)` };
  return { seal };
}

function judge(actual: Seal, seal: Seal): string | undefined {
  return actual.sha256 === seal.sha256 && actual.size === seal.size ? undefined : `is corrupt: ${describeMismatch(actual, seal)}`;
}
