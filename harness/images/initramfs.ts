// Builds a guest initramfs: the cached BASE layer (busybox, node, koffi, libbpf) followed by a
// small RUN layer (/init, /agent.js with its code cache and launcher, the node flags, the caller's
// files, /boot/config-<release>). The kernel unpacks concatenated newc archives in order, so the
// run layer can add or replace files. A written image is sealed (seal.ts) and reused only while
// its bytes hash to the seal: a corrupt one would boot and pass, or panic and blame the kernel.
import { constants } from 'node:fs';
import { appendFileSync, closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreMatrixError, UsageError } from '../core/errors.js';
import { withLock } from '../lock.js';
import { cacheDir, pruneCache, repoRoot, touchCached } from '../paths.js';
import { agentCodeCache, agentStartScript, GUEST_NODE_FLAGS } from './agent-cache.js';
import { type BaseLayer, type BaseVariant, baseLayer, fileHash, forgetFileHash, koffiVersions, rebuildBaseLayer } from './base.js';
import { checkSealed, describeMismatch, hashFile, pruneSeals, writeSeal } from '../seal.js';
import { freshSeed, GUEST_SEED_PATH, GUEST_SEED_TOOL, seedTool } from './seed.js';
import type { Compression } from './compress.js';
import { type CpioEntry, cpioContentKey, normalizeGuestPath, writeCpio } from './cpio.js';

export interface ImageFile {
  /** Path inside the guest, e.g. "/objects/a.bpf.o". */
  path: string;
  /** Host file to copy (mode taken from it unless `mode` is given). */
  source?: string;
  /** Inline content. */
  data?: Uint8Array | string;
  mode?: number;
}

export interface ImageSpec {
  files: ImageFile[];
  /** Host path of the kernel's config, installed as /boot/config-<release> (needs `release`). */
  kernelConfig?: string;
  release?: string;
  /** 'full' (default): node + koffi + libbpf; 'busybox': busybox only (boot tests, cm.init=hello). */
  base?: BaseVariant;
  /** Compression of the base layer (default: the measured best, see base.ts). */
  compression?: Compression;
  /** Agent bundle to install as /agent.js (default: dist/agent.js when it exists, full base only). */
  agent?: string | false;
  /**
   * How the default agent starts. 'tuned' (default): its V8 code cache (/agent.js.cache, produced
   * on the host by the same node with the guest's flags) and launcher (/agent-start.js), the node
   * flags, and an RNG seed. 'plain': none of them (the bench's "before"; the bundle stays CommonJS).
   */
  start?: 'tuned' | 'plain';
  /**
   * Told each step for a progress line: 'checking cached image', then 'reusing image', or
   * 'building image' / 'rebuilding image: <why the cached one was not used>' (and
   * 'rebuilding base layer: <why>' when the shared layer had to be made again).
   */
  onStep?: (step: string) => void;
}

export interface BuiltImage {
  path: string;
  baseBytes: number;
  /** Bytes after the base layer: the run layer and its seed archive. */
  runBytes: number;
  baseBuilt: boolean;
  /** True when a cached image was used, after its bytes hashed to its seal. */
  reused: boolean;
  /** Why a cached image or base layer was made again (corrupt, no checksum); '; '-joined. */
  rebuilt?: string;
  buildMs: number;
}

/** The /init script shipped in every image. */
export function initScript(): string {
  return join(repoRoot(), 'images', 'init');
}

/**
 * The agent bundle carries koffi's JavaScript (scripts/build.mjs names its version on the first
 * line) and the base layer koffi's native module from node_modules: they must be the same koffi,
 * or every guest fails to load it. A bundle without the line (not ours, or older) is not checked.
 */
function checkBundledKoffi(agent: string): void {
  const head = Buffer.alloc(64);
  const fd = openSync(agent, 'r');
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const bundled = /^\/\/ koffi (\S+)\n/.exec(head.toString('latin1'))?.[1];
  if (bundled === undefined) return;
  // koffi checks its JavaScript against the native module's version when it loads.
  const { koffi, native } = koffiVersions();
  if (bundled !== koffi || bundled !== native)
    throw new CoreMatrixError(`image: ${agent} bundles koffi ${bundled}, node_modules has koffi ${koffi} with native module ${native} (run npm ci && npm run build)`);
}

/** Images kept: the tuned and the plain start-up of a default matrix (9 kernels) and then some. */
const KEEP_IMAGES = 24;
const PRUNE_AGE_MS = 15 * 60_000;

/** Builds (or reuses) the initramfs for `spec`; returns the path of the single initrd file. */
export async function buildInitramfs(spec: ImageSpec): Promise<string> {
  return (await buildImage(spec)).path;
}

/** buildInitramfs with sizes and timings (for reports and benchmarks). */
export async function buildImage(spec: ImageSpec): Promise<BuiltImage> {
  const t0 = performance.now();
  const rebuilt: string[] = [];
  let baseBuilt = false;
  let again = '';
  for (let attempt = 1; attempt <= 3; attempt++) {
    const r = await buildImageOnce(spec, rebuilt);
    baseBuilt ||= r.baseBuilt;
    if ('again' in r) {
      again = r.again;
      continue;
    }
    return { ...r, baseBuilt, buildMs: performance.now() - t0, ...(rebuilt.length ? { rebuilt: [...new Set(rebuilt)].join('; ') } : {}) };
  }
  throw new CoreMatrixError(`image: ${again}, three times in a row${again.startsWith('files') ? ' (a build running at the same time?)' : ''}`);
}

/**
 * The run layer's entries for `spec`: /init, the agent and its start-up, the caller's files, the
 * config. A cached code cache made again is told to `step` and added to `rebuilt`.
 */
async function runEntries(spec: ImageSpec, variant: BaseVariant, step: (s: string) => void, rebuilt: string[]): Promise<CpioEntry[]> {
  const plain = spec.start === 'plain';
  const run: CpioEntry[] = [{ kind: 'file', path: 'init', source: initScript(), mode: 0o755 }];
  const agent = spec.agent ?? (variant === 'full' ? join(repoRoot(), 'dist', 'agent.js') : false);
  if (agent !== false) {
    if (!existsSync(agent)) throw new CoreMatrixError(`image: agent bundle ${agent} not found (run npm run build)`);
    if (variant === 'full') checkBundledKoffi(agent);
    run.push({ kind: 'file', path: 'agent.js', source: agent, mode: 0o644 });
    if (existsSync(`${agent}.map`)) run.push({ kind: 'file', path: 'agent.js.map', source: `${agent}.map`, mode: 0o644 });
    // The project's own agent starts from a V8 code cache (a caller's agent is never run on the host).
    if (variant === 'full' && spec.agent === undefined && !plain) {
      // No cache (a bundle that cannot run on this host, e.g. an ES module from an older build):
      // /init then runs the agent directly, as it always could.
      const cache = await agentCodeCache(agent, GUEST_NODE_FLAGS);
      if (cache?.rebuilt) {
        rebuilt.push(cache.rebuilt);
        step(`rebuilt agent code cache: ${cache.rebuilt}`);
      }
      if (cache) {
        run.push({ kind: 'file', path: 'agent.js.cache', source: cache.path, mode: 0o644 });
        run.push({ kind: 'file', path: 'agent-start.js', source: agentStartScript(), mode: 0o644 });
      }
    }
  }
  if (variant === 'full') {
    run.push({ kind: 'file', path: 'etc/corematrix/node-flags', data: plain ? '\n' : `${GUEST_NODE_FLAGS.join(' ')}\n`, mode: 0o644 });
    run.push({ kind: 'file', path: GUEST_SEED_TOOL, source: seedTool(), mode: 0o755 });
  }
  run.push(...configAndFiles(spec));
  return run;
}

/** The run layer's last entries, for every arch: the kernel's config (/boot/config-<release>) and the caller's files. */
export function configAndFiles(spec: { kernelConfig?: string; release?: string; files: readonly ImageFile[] }): CpioEntry[] {
  const run: CpioEntry[] = [];
  if (spec.kernelConfig !== undefined) {
    if (!spec.release) throw new UsageError(`image: kernelConfig ${spec.kernelConfig} given without release`);
    if (!existsSync(spec.kernelConfig)) throw new CoreMatrixError(`image: kernel config ${spec.kernelConfig} not found`);
    run.push({ kind: 'file', path: `boot/config-${spec.release}`, source: spec.kernelConfig, mode: 0o644 });
  }
  for (const f of spec.files) {
    const path = normalizeGuestPath(f.path);
    if (f.data !== undefined) run.push({ kind: 'file', path, data: f.data, mode: f.mode ?? 0o644 });
    else if (f.source !== undefined) {
      if (!existsSync(f.source)) throw new CoreMatrixError(`image: file for guest '/${path}': ${f.source} not found`);
      run.push(f.mode === undefined ? { kind: 'file', path, source: f.source } : { kind: 'file', path, source: f.source, mode: f.mode });
    } else throw new UsageError(`image: file for guest '/${path}' has neither source nor data`);
  }
  return run;
}

type Attempt = (Omit<BuiltImage, 'buildMs' | 'rebuilt'> | { again: string }) & { baseBuilt: boolean };

/**
 * One attempt: the image, or what to try again after (a file of the run layer changed while it
 * was written; the base layer was corrupt and has been made again). `rebuilt` collects why a
 * cached image or layer was not used.
 */
async function buildImageOnce(spec: ImageSpec, rebuilt: string[]): Promise<Attempt> {
  const step = spec.onStep ?? (() => {});
  const variant = spec.base ?? 'full';
  const run = await runEntries(spec, variant, step, rebuilt);
  const base = await baseLayer(variant, spec.compression);
  if (base.rebuilt) {
    rebuilt.push(base.rebuilt);
    step(`rebuilding base layer: ${base.rebuilt}`);
  }
  const dir = cacheDir('images', 'initrd');
  // The image is found by what its run layer holds (content hashes memoised by file stat), so an
  // identical run writes nothing: before, every run wrote and hashed each kernel's ~6 MB layer.
  // The hashes the key used are kept, to compare with the bytes the layer is written from.
  const used = new Map<string, string>();
  const runHash = cpioContentKey(run, (p) => {
    const h = fileHash(p);
    used.set(p, h);
    return h;
  }).slice(0, 16);
  const out = join(dir, `${variant}-${base.hash.slice(0, 16)}-${runHash}.img`);
  const sizes = () => ({ baseBytes: base.bytes, runBytes: statSync(out).size - base.bytes, baseBuilt: base.built });
  // A cached image is used after its bytes are hashed: the run boots it (96 MB: 0.15 to 0.7 s
  // measured on two busy cores, in 4 MB reads that leave the event loop free in between).
  const check = async (): Promise<string | undefined> => {
    const problem = await checkSealed(out);
    return problem && `cached image ${problem}`;
  };
  let seen: string | undefined;
  let why: string | undefined;
  if (touchCached(out)) {
    step('checking cached image');
    seen = identity(out);
    why = await check();
    if (!why) {
      step('reusing image');
      return { path: out, ...sizes(), reused: true };
    }
  }
  // Writers of one image take turns: the random seed makes two builds' bytes differ, and each
  // image must stay with its own seal.
  return withLock(`${out}.lock`, async (): Promise<Attempt> => {
    // Made or mended by another process while we waited: checked like any cached image.
    if (identity(out) !== seen && touchCached(out)) {
      const problem = await check();
      if (!problem) {
        step('reusing image');
        return { path: out, ...sizes(), reused: true };
      }
      why = problem;
    }
    if (why) rebuilt.push(why);
    step(why ? `rebuilding image: ${why}` : 'building image');
    return writeImage(spec, variant, base, run, used, out, step, rebuilt);
  });
}

/** Inode, size and change time: tells a file replaced (renamed over) from the one looked at. */
function identity(file: string): string | undefined {
  try {
    const st = statSync(file, { bigint: true });
    return `${st.ino}:${st.size}:${st.ctimeNs}`;
  } catch {
    return undefined;
  }
}

/** Writes the image: the base layer's bytes (checked against its seal on the way), the run layer, a seed; then seals it. */
async function writeImage(spec: ImageSpec, variant: BaseVariant, base: BaseLayer, run: CpioEntry[], used: Map<string, string>, out: string, step: (s: string) => void, rebuilt: string[]): Promise<Attempt> {
  const plain = spec.start === 'plain';
  const dir = cacheDir('images', 'initrd');
  const work = mkdtempSync(join(tmpdir(), 'corematrix-run-'));
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    const runCpio = join(work, 'run.cpio');
    const written = new Map<string, string>();
    writeCpio(runCpio, run, written);
    // The layer must hold what the key says: a file rewritten between the two (a build during a
    // run), or changed in place without its stat moving (the memo would not see it), would
    // otherwise be stored under the old content's name for good.
    const stale = [...used].filter(([p, h]) => written.get(p) !== h).map(([p]) => p);
    if (stale.length) {
      for (const p of stale) forgetFileHash(p);
      return { again: 'files of the run layer changed while it was being written', baseBuilt: base.built };
    }
    // A reflink where the filesystem can (btrfs, xfs): no 96 MB copy per image.
    copyFileSync(base.path, tmp, constants.COPYFILE_FICLONE);
    appendFileSync(tmp, readFileSync(runCpio));
    // A fresh RNG seed per image, in its own archive after the hashed run layer, so an
    // identical run still finds this image (and reuses its seal and seed: these guests hold no secrets).
    if (variant === 'full' && !plain) {
      const seedCpio = join(work, 'seed.cpio');
      writeCpio(seedCpio, [{ kind: 'file', path: GUEST_SEED_PATH, data: freshSeed(), mode: 0o600 }]);
      appendFileSync(tmp, readFileSync(seedCpio));
    }
    // One pass over the new image: its seal, and the base layer's bytes as copied.
    const seal = await hashFile(tmp, base.bytes);
    if (seal.prefix !== base.sha256) {
      const why = `cached base layer is corrupt: ${describeMismatch({ sha256: seal.prefix!, size: Math.min(seal.size, base.bytes) }, { sha256: base.sha256, size: base.bytes })}`;
      rebuilt.push(why);
      step(`rebuilding base layer: ${why}`);
      await rebuildBaseLayer(base, why);
      return { again: 'the base layer was corrupt and has been rebuilt', baseBuilt: true };
    }
    renameSync(tmp, out);
    writeSeal(out, { sha256: seal.sha256, size: seal.size });
    pruneCache(dir, '.img', KEEP_IMAGES, out, PRUNE_AGE_MS);
    pruneSeals(dir);
    return { path: out, baseBytes: base.bytes, runBytes: seal.size - base.bytes, baseBuilt: base.built, reused: false };
  } finally {
    rmSync(tmp, { force: true });
    rmSync(work, { recursive: true, force: true });
  }
}
