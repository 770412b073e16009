// The BASE layer of every guest initramfs: busybox (with applet links), the host's node binary
// and the shared libraries it needs, koffi pruned to its linux-x64 glibc module, and libbpf.so.1
// with its dependencies (for the reference loader). It is large (~90 MB) and the same for every
// run, so it is built once per content hash of its inputs and kept in cacheDir('images'), sealed
// (seal.ts): buildImage checks its bytes against the seal as it copies them into an image.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { CoreMatrixError } from '../core/errors.js';
import { cacheDir, repoRoot, writeFileAtomic } from '../paths.js';
import { type CpioEntry, cpioContentKey, writeCpio } from './cpio.js';
import { type Compression, compressFile } from './compress.js';
import { hashFile, hashFileSync, readSeal, writeSeal } from '../seal.js';

/** 'busybox': busybox only (fast boot tests); 'full': + node, koffi, libbpf. */
export type BaseVariant = 'busybox' | 'full';

/** Bump when the recipe changes in a way the input hash cannot see. */
const RECIPE_VERSION = 4;

export interface BaseLayer {
  path: string;
  variant: BaseVariant;
  /** The key of its inputs (names the file). */
  hash: string;
  /** sha256 of the layer's bytes (its seal), checked by buildImage as it copies them. */
  sha256: string;
  bytes: number;
  compression: Compression;
  /** True when this call built it (false: cache hit). */
  built: boolean;
  /** Why a cached layer was built again (no checksum, corrupt). */
  rebuilt?: string;
  buildMs: number;
}

/** Where busybox (static) lives on the host. */
export function findBusybox(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox', '/usr/sbin/busybox']) if (existsSync(p)) return p;
  throw new CoreMatrixError('image: busybox not found (apt-get install busybox-static)');
}

/** The shared libraries (and ELF interpreter) an executable or library needs, from `ldd`. */
export function sharedLibraries(file: string): string[] {
  let out: string;
  try {
    out = execFileSync('ldd', [file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const text = String((err as { stdout?: string }).stdout ?? '') + String((err as { stderr?: string }).stderr ?? '');
    if (/not a dynamic executable|statically linked/.test(text)) return [];
    throw new CoreMatrixError(`image: ldd ${file}: ${text.trim().split('\n')[0] ?? (err as Error).message}`);
  }
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const m = /=>\s*(\S+)\s+\(0x/.exec(line) ?? /^\s*(\/\S+)\s+\(0x/.exec(line);
    if (m) libs.push(m[1]!);
    else if (/=>\s*not found/.test(line)) throw new CoreMatrixError(`image: ldd ${file}: ${line.trim()}`);
  }
  return libs;
}

/** The directory of an installed package in the project's node_modules. */
function nodeModule(name: string): string {
  for (let dir = repoRoot(); ; dir = dirname(dir)) {
    const p = join(dir, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) return p;
    if (dirname(dir) === dir) throw new CoreMatrixError(`image: node_modules/${name} not found (run npm install)`);
  }
}

function walk(root: string, keep: (rel: string) => boolean): string[] {
  const out: string[] = [];
  const rec = (dir: string) => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, d.name);
      if (d.isDirectory()) rec(p);
      else if (d.isFile() && keep(relative(root, p))) out.push(p);
    }
  };
  rec(root);
  return out.sort();
}

/** The version of a package in the project's node_modules. */
function packageVersion(name: string): string {
  return (JSON.parse(readFileSync(join(nodeModule(name), 'package.json'), 'utf8')) as { version: string }).version;
}
/** The versions of koffi and of its native package in node_modules (the image carries the latter's module). */
export function koffiVersions(): { koffi: string; native: string } {
  return { koffi: packageVersion('koffi'), native: packageVersion('@koromix/koffi-linux-x64') };
}

/**
 * koffi 3 loads its native module with require('@koromix/koffi-linux-x64') (src/koffi/src/static.js),
 * whose index.js picks ./linux_x64/koffi.node (glibc) or ./musl_x64 by reading node's ELF
 * interpreter. We keep koffi's JavaScript and package.json files (no C++ sources, docs, vendored
 * headers) and the glibc module only.
 */
export function koffiFiles(): { guest: string; source: string }[] {
  const koffi = nodeModule('koffi');
  const native = nodeModule('@koromix/koffi-linux-x64');
  const js = (rel: string) => /\.(c?js|mjs|json)$/.test(rel) && !/^(doc|vendor|lib)\//.test(rel);
  const files = [
    ...walk(koffi, js).map((p) => ({ guest: `node_modules/koffi/${relative(koffi, p)}`, source: p })),
    ...walk(native, (rel) => js(rel) || rel === 'linux_x64/koffi.node').map((p) => ({
      guest: `node_modules/@koromix/koffi-linux-x64/${relative(native, p)}`,
      source: p,
    })),
  ];
  if (!files.some((f) => f.guest.endsWith('linux_x64/koffi.node')))
    throw new CoreMatrixError(`image: ${native}/linux_x64/koffi.node is missing`);
  return files;
}

/**
 * koffi's package.json for the guest: the same package with its "exports" map replaced by the
 * "main" that map gives `require` (checked here). Node resolves an "exports" map through its ESM
 * resolver, whose modules it then compiles, and builds URLs on the way: ~70 ms of the agent's
 * start in a TCG guest with --jitless (measured with --cpu-prof in the guest). The agent only
 * ever does require('koffi').
 */
export function guestKoffiManifest(file: string): string {
  const pkg = JSON.parse(readFileSync(file, 'utf8')) as { main?: string; exports?: Record<string, unknown> };
  const dot = pkg.exports?.['.'] as { require?: string } | string | undefined;
  const viaExports = typeof dot === 'string' ? dot : dot?.require;
  if (!viaExports) throw new CoreMatrixError(`image: ${file}: no "exports" entry for require('koffi') (koffi changed its layout)`);
  if (pkg.main !== undefined && pkg.main.replace(/^\.\//, '') !== viaExports.replace(/^\.\//, ''))
    throw new CoreMatrixError(`image: ${file}: "main" (${pkg.main}) and "exports" (${viaExports}) disagree`);
  const { exports: _dropped, ...rest } = pkg;
  return JSON.stringify({ ...rest, main: viaExports }, null, 2) + '\n';
}

function libbpfPath(): string {
  for (const p of ['/usr/lib/x86_64-linux-gnu/libbpf.so.1', '/lib/x86_64-linux-gnu/libbpf.so.1', '/usr/lib64/libbpf.so.1'])
    if (existsSync(p)) return p;
  throw new CoreMatrixError('image: libbpf.so.1 not found (apt-get install libbpf1)');
}

function hasStrip(): boolean {
  try {
    execFileSync('strip', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// ---- content hashing, memoised by (path, size, mtime, inode) so a cache hit costs a few stats ----

interface HashMemo {
  [key: string]: string;
}
let memo: HashMemo | undefined;
const MEMO_PRUNE_AT = 2000;
function memoFile(): string {
  return join(cacheDir('images'), 'file-hashes.json');
}
function loadMemo(): HashMemo {
  if (!memo) {
    try {
      memo = JSON.parse(readFileSync(memoFile(), 'utf8')) as HashMemo;
    } catch {
      memo = {};
    }
  }
  return memo;
}
/** The real path a memo key names (keys are `<realpath>:<size>:<mtimeMs>:<ino>`). */
const memoPath = (key: string) => key.split(':').slice(0, -3).join(':');

/** sha256 of a file's bytes, memoised by (path, size, mtime, inode). */
export function fileHash(path: string): string {
  const st = statSync(path);
  const key = `${realpathSync(path)}:${st.size}:${st.mtimeMs}:${st.ino}`;
  const memo = loadMemo();
  const hit = memo[key];
  if (hit) return hit;
  const h = createHash('sha256').update(readFileSync(path)).digest('hex');
  // A file changed within the last seconds may change again without its mtime moving (timestamps
  // advance by a clock tick): its hash is not remembered until it has been still for a while.
  if (Date.now() - st.mtimeMs < 2000) return h;
  // One entry per file: a file rewritten in place (dist/agent.js at each build) replaces its own.
  const real = memoPath(key);
  for (const k of Object.keys(memo)) if (k.startsWith(`${real}:`) && memoPath(k) === real) delete memo[k];
  memo[key] = h;
  // Old entries of files that are gone (run layers name test and temporary files too).
  if (Object.keys(memo).length > MEMO_PRUNE_AT)
    for (const k of Object.keys(memo)) if (!existsSync(memoPath(k))) delete memo[k];
  // Atomic replace: concurrent builders may read this file at any time.
  writeFileAtomic(memoFile(), JSON.stringify(memo));
  return h;
}

/**
 * Drops the remembered hash of a file whose bytes were found to differ from it (changed in place
 * with its size, mtime and inode kept): the next fileHash reads it again.
 */
export function forgetFileHash(path: string): void {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return; // gone: its entry goes at the next prune
  }
  const memo = loadMemo();
  const stale = Object.keys(memo).filter((k) => memoPath(k) === real);
  for (const k of stale) delete memo[k];
  if (stale.length) writeFileAtomic(memoFile(), JSON.stringify(memo));
}

/**
 * The skeleton every guest root starts from: `dirs`, /tmp sticky, sbin and usr/{bin,sbin} as links
 * to bin (busybox's applets live there), a root user and the hostname.
 */
export function rootSkeleton(dirs: readonly string[]): CpioEntry[] {
  const entries: CpioEntry[] = dirs.map((d): CpioEntry => ({ kind: 'dir', path: d }));
  entries.push({ kind: 'dir', path: 'tmp', mode: 0o1777 });
  entries.push({ kind: 'symlink', path: 'sbin', target: 'bin' });
  entries.push({ kind: 'symlink', path: 'usr/bin', target: '../bin' });
  entries.push({ kind: 'symlink', path: 'usr/sbin', target: '../bin' });
  entries.push({ kind: 'file', path: 'etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\n' });
  entries.push({ kind: 'file', path: 'etc/group', data: 'root:x:0:\n' });
  entries.push({ kind: 'file', path: 'etc/hostname', data: 'corematrix\n' });
  return entries;
}

/** The entries of the base layer, with host sources not yet stripped. */
export function baseEntries(variant: BaseVariant): { entries: CpioEntry[]; node?: string } {
  const entries = rootSkeleton(['bin', 'dev', 'proc', 'sys', 'tmp', 'run', 'root', 'etc', 'usr', 'lib', 'lib64', 'boot']);

  const busybox = findBusybox();
  entries.push({ kind: 'file', path: 'bin/busybox', source: busybox, mode: 0o755 });
  const applets = execFileSync(busybox, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => /^[\w.[-]+$/.test(a));
  for (const a of applets) if (a !== 'busybox') entries.push({ kind: 'symlink', path: `bin/${a}`, target: 'busybox' });
  if (variant === 'busybox') return { entries };

  const node = process.execPath;
  entries.push({ kind: 'file', path: 'bin/node', source: node, mode: 0o755 });
  const koffi = koffiFiles();
  for (const f of koffi) {
    if (f.guest === 'node_modules/koffi/package.json') entries.push({ kind: 'file', path: f.guest, data: guestKoffiManifest(f.source), mode: 0o644 });
    else entries.push({ kind: 'file', path: f.guest, source: f.source, mode: 0o644 });
  }
  const libbpf = libbpfPath();
  entries.push({ kind: 'file', path: 'usr/lib/x86_64-linux-gnu/libbpf.so.1', source: libbpf, mode: 0o644 });
  const native = koffi.find((f) => f.guest.endsWith('koffi.node'))!.source;
  const libs = new Set([...sharedLibraries(node), ...sharedLibraries(native), ...sharedLibraries(libbpf)]);
  for (const lib of [...libs].sort()) entries.push({ kind: 'file', path: lib, source: lib, mode: 0o755 });
  return { entries, node };
}

/** The base layer's key: its recipe and what writeCpio would archive from `entries` (node before strip). */
function inputHash(variant: BaseVariant, compression: Compression, entries: CpioEntry[], strip: boolean, hashFile: (path: string) => string): string {
  return createHash('sha256')
    .update(`corematrix-base v${RECIPE_VERSION} ${variant} ${compression} strip=${strip}\n`)
    .update(cpioContentKey(entries, hashFile))
    .digest('hex')
    .slice(0, 24);
}

/**
 * Returns the cached base layer for `variant`, building it when its inputs changed.
 * node is stripped of its symbol table (`strip --strip-unneeded`, dynamic symbols stay for
 * native addons) when `strip` is available: 99 MB → 86 MB.
 * A cached layer is taken when its seal is there and of its size; its bytes are hashed where
 * they are used, as buildImage copies them (an image that is reused does not read them at all).
 */
export async function baseLayer(variant: BaseVariant = 'full', compression: Compression = DEFAULT_BASE_COMPRESSION): Promise<BaseLayer> {
  // One look-up per process: the image builds of a run (one per kernel) share it. Working out
  // the inputs runs ldd three times, busybox and strip once each: ~30 ms of processes per image.
  const key = knownKey(variant, compression);
  let p = known.get(key);
  if (!p) {
    p = buildBase(variant, compression);
    known.set(key, p);
    p.catch(() => known.delete(key));
    return p;
  }
  const layer = await p;
  if (existsSync(layer.path)) return { ...layer, built: false, rebuilt: undefined, buildMs: 0 };
  known.delete(key); // removed since (pruned, or a test emptied its cache): look again
  return baseLayer(variant, compression);
}
const known = new Map<string, Promise<BaseLayer>>();
const knownKey = (variant: BaseVariant, compression: Compression) => `${cacheDir('images')}\n${variant}\n${compression}`;

/**
 * Builds `layer` again because its bytes did not hash to its seal (`reason`), replacing the file
 * (a rename: an image being copied from the old one keeps reading it). Callers in this process that
 * find it corrupt at the same time share one build.
 */
export function rebuildBaseLayer(layer: BaseLayer, reason: string): Promise<BaseLayer> {
  const key = knownKey(layer.variant, layer.compression);
  const pending = rebuilding.get(key);
  if (pending) return pending;
  const p = buildBase(layer.variant, layer.compression, reason).finally(() => rebuilding.delete(key));
  rebuilding.set(key, p);
  known.set(key, p);
  p.catch(() => known.delete(key));
  return p;
}
const rebuilding = new Map<string, Promise<BaseLayer>>();

async function buildBase(variant: BaseVariant, compression: Compression, rebuild?: string, attempt = 1): Promise<BaseLayer> {
  const t0 = performance.now();
  const { entries, node } = baseEntries(variant);
  const strip = node !== undefined && hasStrip();
  // The hashes the key is made of, to compare with the bytes archived (below).
  const used = new Map<string, string>();
  const hash = inputHash(variant, compression, entries, strip, (p) => {
    const h = fileHash(p);
    used.set(p, h);
    return h;
  });
  const dir = cacheDir('images');
  const path = join(dir, `base-${variant}-${hash}.cpio${compression === 'none' ? '' : '.' + compression}`);
  let why = rebuild;
  if (!why && existsSync(path)) {
    const seal = readSeal(path);
    const bytes = statSync(path).size;
    if (seal && seal.size === bytes) return { path, variant, hash, sha256: seal.sha256, bytes, compression, built: false, buildMs: performance.now() - t0 };
    why = seal ? `cached base layer is corrupt: ${bytes} bytes (expected ${seal.size} bytes)` : 'cached base layer has no checksum';
  }
  const work = mkdtempSync(join(tmpdir(), 'corematrix-base-'));
  let seal;
  try {
    if (strip && node) {
      const stripped = join(work, 'node');
      execFileSync('strip', ['--strip-unneeded', '-o', stripped, node], { stdio: ['ignore', 'ignore', 'pipe'] });
      for (const e of entries) if (e.kind === 'file' && 'source' in e && e.path === 'bin/node') e.source = stripped;
    }
    const raw = join(work, 'base.cpio');
    const written = new Map<string, string>();
    writeCpio(raw, entries, written);
    // The layer must hold what its key says: a source whose bytes are not the hash the key used
    // (a memo fooled by a change in place, or a file rewritten meanwhile) is read again, and the
    // key made again. node was archived stripped: its own bytes are compared.
    if (strip && node) written.set(node, hashFileSync(node).sha256);
    const stale = [...used].filter(([p, h]) => written.has(p) && written.get(p) !== h).map(([p]) => p);
    if (stale.length) {
      for (const p of stale) forgetFileHash(p);
      if (attempt === 3) throw new CoreMatrixError(`image: ${stale[0]} changed while the base layer was written, three times in a row`);
      return buildBase(variant, compression, rebuild, attempt + 1);
    }
    const out = compression === 'none' ? raw : await compressFile(raw, compression);
    // The kernel only looks for the next archive's cpio magic at a 4-byte aligned offset
    // (zero bytes between archives are skipped): pad a compressed layer to a multiple of 4.
    const rem = statSync(out).size % 4;
    if (rem) appendFileSync(out, new Uint8Array(4 - rem));
    seal = await hashFile(out);
    const tmp = `${path}.tmp-${process.pid}`;
    execFileSync('cp', [out, tmp]);
    renameSync(tmp, path);
    writeSeal(path, seal);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { path, variant, hash, sha256: seal.sha256, bytes: seal.size, compression, built: true, buildMs: performance.now() - t0, ...(why ? { rebuilt: why } : {}) };
}

/** Chosen by measurement (see images/README.md). */
export const DEFAULT_BASE_COMPRESSION: Compression = 'none';
