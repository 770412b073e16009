// Seeding the guest's RNG from the host (see images/cm-seed.c for why): the helper is compiled
// once per content hash of its source, and every new full image gets 64 fresh random bytes.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { CoreMatrixError } from '../core/errors.js';
import { cacheDir, repoRoot } from '../paths.js';
import { CLANG } from '../tools.js';
import { checkSealedSync, hashFileSync, writeSeal } from '../seal.js';

/** Where /init finds the seed, and the helper that credits it. */
export const GUEST_SEED_PATH = 'etc/corematrix/seed';
export const GUEST_SEED_TOOL = 'bin/cm-seed';

/** The compiled images/cm-seed.c (dynamically linked against the host's glibc, which the image carries), sealed. */
export function seedTool(): string {
  const src = join(repoRoot(), 'images', 'cm-seed.c');
  const hash = createHash('sha256').update(readFileSync(src)).digest('hex').slice(0, 16);
  const out = join(cacheDir('images', 'tools'), `cm-seed-${hash}`);
  if (existsSync(out) && checkSealedSync(out) === undefined) return out;
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    execFileSync(CLANG, ['-O2', '-Wall', '-o', tmp, src], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new CoreMatrixError(`image: cannot compile ${src} with ${CLANG}: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim().split('\n')[0]}`);
  }
  const seal = hashFileSync(tmp);
  renameSync(tmp, out);
  writeSeal(out, seal);
  return out;
}

/** 64 bytes of the host's randomness for one image. */
export function freshSeed(): Uint8Array {
  return randomBytes(64);
}
