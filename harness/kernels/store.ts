// The kernel store: matrix entry → newest (or pinned) Debian package → vmlinuz, config and vmlinux
// BTF in a content-addressed cache, with a manifest per resolved kernel. Downloads go through the
// private apt state (apt.ts); .debs and the decompressed vmlinux are never kept.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { type BigIntStats, createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreMatrixError, FormatError, UsageError } from '../core/errors.js';
import { cacheDir, writeFileAtomic } from '../paths.js';
import { AptState, type AptCandidate } from './apt.js';
import { pidAlive, withLock } from '../lock.js';
import { compareDebVersions, upstreamOf } from './debversion.js';
import { decompress, extractVmlinux, elfSection, parseBzImage } from './extract.js';
import { buildKernel, type CcacheStats, compilerCache, compileSteps, effectiveFragment, RECIPE_VERSION, recipeHash, toolVersions, TYPICAL_COMPILE_STEPS_BY_ARCH } from './build.js';
import { findKernel, loadMatrix, selectKernels, type CustomBuild, type Flavour, type KernelEntry } from './matrix.js';
import { loadOrder, moduleCompression, moduleInfo, moduleKey, moduleNameOfFile, modulePattern, modulesPackage } from './modules.js';
// arm64 (issue 19): an entry's arch (`arch` on the entry, amd64 without it) picks the apt state,
// the flavour suffixes and how the image and BTF are taken out of the package.
import { archOf, flavourOfRelease, type DebianArch } from './arch.js';
import { extractArm64Kernel, findImageBtf, kernelBanner, parseArm64ImageHeader } from './extract-arm64.js';

export { loadMatrix, selectKernels, parseMatrix, defaultMatrixFile, FLAVOURS } from './matrix.js';
export type { KernelEntry, Flavour, CustomBuild, BtfMode } from './matrix.js';

export type ArtefactKind = 'vmlinuz' | 'config' | 'btf';
const KINDS: ArtefactKind[] = ['vmlinuz', 'config', 'btf'];

export interface ResolvedKernel {
  package: string;
  version: string;
  release: string;
  suite: string;
}

export interface KernelArtifacts {
  id: string;
  /** The Debian arch the kernel is built for (arm64: `vmlinuz` is the raw arm64 Image). */
  arch: DebianArch;
  package: string;
  version: string;
  release: string;
  suite: string;
  flavour: string;
  vmlinuz: string;
  config: string;
  btf: string;
  sha256: { vmlinuz: string; config: string; btf: string };
  /** Every package the artefacts came from (7.x kernels keep their config in linux-base-*). */
  packages: { name: string; version: string; suite: string; holds: ArtefactKind[] }[];
  /** The bzImage's kernel_version string and payload compression. */
  banner: string;
  compression: string;
  sizes: { vmlinuz: number; config: number; btf: number };
  manifest: string;
  /** Where `btf` came from: the kernel's own .BTF section, or pahole run on its DWARF. */
  btfSource: 'kernel' | 'pahole';
  /** Custom builds: the recipe hash, build time and the full build log. */
  build?: { hash: string; seconds: number; log: string; fragment: string; ccache?: CcacheStats };
}

interface Manifest {
  schema: 1;
  id: string;
  /** arm64 (issue 19): absent for amd64 (every manifest written before arches were known). */
  arch?: DebianArch;
  series: string;
  flavour: Flavour | 'custom';
  suite: string;
  package: string;
  version: string;
  release: string;
  banner: string;
  compression: string;
  packages: KernelArtifacts['packages'];
  artefacts: Record<ArtefactKind, { sha256: string; size: number }>;
  fetchedAt: string;
  fetchSeconds: number;
  btfSource?: 'kernel' | 'pahole';
  build?: { hash: string; seconds: number; log: string; fragment: string; ccache?: CcacheStats };
}

/** What a custom kernel is built from today, and the hash that names the build. */
export interface Recipe {
  src: AptCandidate;
  fragment: string;
  hash: string;
  version: string;
}

/** One kernel module from a kernel's package, decompressed, in the store. */
export interface KernelModule {
  name: string;
  /** The decompressed .ko (a blob of the store). */
  path: string;
  sha256: string;
  size: number;
  depends: string[];
  /** Where it was in the package, e.g. ./lib/modules/6.1.0-50-amd64/kernel/drivers/net/tun.ko */
  member: string;
}

/** modules/<package>@<version>.json: the modules extracted so far from one kernel build. */
interface ModulesManifest {
  schema: 1;
  package: string;
  version: string;
  release: string;
  modules: Record<string, Omit<KernelModule, 'path'>>;
}

export interface FetchOptions {
  /** Aborting stops a custom kernel build (its whole process group). */
  signal?: AbortSignal;
  /**
   * Called with each step of a custom kernel build, and when a cached blob is found corrupt or
   * missing ('cached btf is corrupt: re-extracting it from the vmlinuz'), for a progress line.
   */
  onStep?: (step: string) => void;
  /**
   * The artefacts the caller will read (default all three): only these are hashed before fetch
   * returns; the others are checked for presence and size. `relocate` reads the BTF and config,
   * a guest boots the vmlinuz too.
   */
  use?: readonly ArtefactKind[];
}

export interface KernelStoreOptions {
  /** Kernel cache directory (default cacheDir('kernels')). */
  cache?: string;
  log?: (line: string) => void;
  /** The matrix used to look ids up: a file or the entries (default kernels/matrix.yaml). */
  matrix?: string | KernelEntry[];
  /** The private apt state (default: one under cacheDir('apt')). */
  apt?: AptState;
}

/** The `uname -r` of a kernel package name, or undefined for packages that are not kernel images. */
export function releaseOfPackage(name: string): string | undefined {
  // linux-image-6.1.0-50-amd64-unsigned, linux-image-6.12.117+deb13-cloud-amd64-unsigned (one package, /boot)
  let m = /^linux-image-(\d[^ ]*)-unsigned$/.exec(name);
  if (m) return m[1];
  // linux-binary-7.3.4+deb13-amd64 (kernel under /usr/lib/modules/<rel>/, config in linux-base-<rel>)
  m = /^linux-binary-(\d[^ ]*)$/.exec(name);
  return m ? m[1] : undefined;
}

/** True when an upstream version belongs to a series: 6.1 ⊃ 6.1.176 (not 6.12.x); 7.x ⊃ 7.3~rc7. */
export function inSeries(upstream: string, series: string): boolean {
  const [major, minor] = series.split('.');
  if (minor === 'x') return new RegExp(`^${major}(?:[.~]|$)`).test(upstream);
  return new RegExp(`^${major}\\.${minor}(?:[.~]|$)`).test(upstream);
}

/** "a", "a and b", "a, b and c" (or with `or`). */
function spoken(items: string[], and = 'and'): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} ${and} ${items[items.length - 1]}`;
}

/**
 * A pin its suites do not have, and the versions they do have (ascending). It says only that: an
 * archive keeps the current versions, so whether the pin was there once cannot be told from it
 * (and a typo such as 6.1.999-1 never was).
 */
function pinNotInSuites(what: string, pin: string, suites: string[], versions: string[], newest: string): CoreMatrixError {
  const unique = [...new Set(versions)];
  const have = unique.length <= 6 ? spoken(unique) : `${unique.length} versions, ${unique[0]} to ${unique[unique.length - 1]}`;
  return new CoreMatrixError(`${what}: pinned version ${pin} is not in ${spoken(suites, 'or')}, which ${suites.length > 1 ? 'have' : 'has'} ${have} (newest: ${newest})`);
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    // 4 MB reads: a 15 MB vmlinuz in a few reads (64 KB ones took twice as long).
    createReadStream(path, { highWaterMark: 4 << 20 })
      .on('data', (b) => h.update(b))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

function sha256FileSync(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Blob path → identity of the file this process hashed there (or put there) and found right. */
const hashedHere = new Map<string, string>();

/** A blob whose bytes are to be hashed: where, what it should hash to, and its identity now. */
interface BlobToHash {
  path: string;
  sha: string;
  size: number;
  id: string;
}

/** What a change to a file would move: inode, size, mtime, and ctime (which utimes cannot set back). */
function fileIdentity(st: BigIntStats): string {
  return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/** Runs `dpkg-deb --fsys-tarfile deb | tar -x -C dir members...`; members missing from the archive are not an error. */
function extractMembers(deb: string, dir: string, members: string[], early = false, wildcards = false): Promise<void> {
  return new Promise((resolve, reject) => {
    const dpkg = spawn('dpkg-deb', ['--fsys-tarfile', deb], { stdio: ['ignore', 'pipe', 'pipe'] });
    // --occurrence=1: tar stops once it has every member, so dpkg-deb need not decompress the
    // modules that follow /boot (seconds saved per kernel); dpkg-deb then dies of a broken pipe.
    const tar = spawn('tar', ['-x', '-C', dir, '--no-same-owner', ...(early ? ['--occurrence=1'] : []), ...(wildcards ? ['--wildcards'] : []), ...members], { stdio: ['pipe', 'ignore', 'pipe'] });
    let dpkgErr = '';
    let tarErr = '';
    dpkg.stderr.on('data', (b: Buffer) => (dpkgErr += b.toString()));
    tar.stderr.on('data', (b: Buffer) => (tarErr += b.toString()));
    dpkg.stdout.pipe(tar.stdin);
    tar.stdin.on('error', () => {});
    let dpkgCode: number | null = null;
    let pending = 2;
    const done = (): void => {
      if (--pending > 0) return;
      if (dpkgCode !== 0 && dpkgCode !== null && !/Broken pipe/.test(dpkgErr)) return reject(new CoreMatrixError(`dpkg-deb --fsys-tarfile ${deb} failed: ${dpkgErr.trim().split('\n')[0]}`));
      const real = tarErr.split('\n').filter((l) => l && !/Not found in archive|Exiting with failure status/.test(l));
      if (real.length) return reject(new CoreMatrixError(`tar -x of ${deb} failed: ${real[0]}`));
      resolve();
    };
    dpkg.on('close', (code) => {
      dpkgCode = code;
      done();
    });
    tar.on('close', () => {
      // tar may stop early (--occurrence): stop dpkg-deb too, or it blocks writing to us.
      dpkg.stdout.unpipe(tar.stdin);
      dpkg.stdout.destroy();
      if (dpkg.exitCode === null) dpkg.kill('SIGTERM');
      done();
    });
    dpkg.on('error', (e) => reject(new CoreMatrixError(`dpkg-deb: ${e.message}`)));
    tar.on('error', (e) => reject(new CoreMatrixError(`tar: ${e.message}`)));
  });
}

async function listMembers(deb: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const p = spawn('dpkg-deb', ['--fsys-tarfile', deb], { stdio: ['ignore', 'pipe', 'pipe'] });
    const t = spawn('tar', ['-t'], { stdio: ['pipe', 'pipe', 'pipe'] });
    p.stdout.pipe(t.stdin);
    let out = '';
    let err = '';
    t.stdout.on('data', (b: Buffer) => (out += b.toString()));
    t.stderr.on('data', (b: Buffer) => (err += b.toString()));
    t.on('close', (code) => (code === 0 ? resolve(out.split('\n').filter(Boolean)) : reject(new CoreMatrixError(`listing ${deb} failed: ${err.trim()}`))));
  });
}

/** Every regular file under a directory (recursively), as paths. */
function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath ?? (d as unknown as { path: string }).path, d.name));
}

/** A custom build's version is its source package's plus this and the recipe hash's first 12 digits. */
const BUILD_SUFFIX = '+cm.';

/** The Debian version a store version stands for (a custom build's without its recipe suffix). */
function sourceVersionOf(version: string): string {
  const at = version.lastIndexOf(BUILD_SUFFIX);
  return at >= 0 && /^[0-9a-f]+$/.test(version.slice(at + BUILD_SUFFIX.length)) ? version.slice(0, at) : version;
}

function manifestName(id: string, version: string): string {
  return `${id}@${version.replace(/:/g, '%3a')}.json`;
}

/** Resolves, fetches and verifies kernels. One instance per process is enough. */
export class KernelStore {
  readonly dir: string;
  readonly apt: AptState;
  private readonly log: (line: string) => void;
  private readonly matrixSource: string | KernelEntry[] | undefined;
  private matrixCache?: KernelEntry[];
  private readonly resolved = new Map<string, Promise<ResolvedKernel>>();
  private readonly inflight = new Map<string, Promise<KernelArtifacts>>();
  private readonly byMajor = new Map<string, Promise<AptCandidate[]>>();
  private readonly recipes = new Map<string, Promise<Recipe>>();
  /** arm64 (issue 19): one private apt state per arch other than `apt`'s, made when first needed. */
  private readonly aptByArch = new Map<DebianArch, AptState>();

  constructor(opts: KernelStoreOptions = {}) {
    this.dir = opts.cache ?? cacheDir('kernels');
    for (const d of ['blobs', 'manifests', 'modules', 'tmp']) mkdirSync(join(this.dir, d), { recursive: true });
    this.log = opts.log ?? (() => {});
    this.matrixSource = opts.matrix;
    this.apt = opts.apt ?? new AptState({ log: this.log });
    this.sweep();
  }

  /** arm64 (issue 19): the private apt state reading `arch`'s package lists. */
  aptFor(arch: DebianArch): AptState {
    if (arch === this.apt.arch) return this.apt;
    let apt = this.aptByArch.get(arch);
    if (!apt) this.aptByArch.set(arch, (apt = new AptState({ arch, log: this.log })));
    return apt;
  }

  /** Removes work directories left by killed runs (older than an hour). */
  private sweep(): void {
    const tmp = join(this.dir, 'tmp');
    for (const name of readdirSync(tmp)) {
      const path = join(tmp, name);
      try {
        // A kernel build can run past the hour: its folder names its owner, kept while alive.
        if (existsSync(join(path, 'owner.pid')) && pidAlive(Number(readFileSync(join(path, 'owner.pid'), 'utf8')))) continue;
        if (!name.endsWith('.lock') && Date.now() - statSync(path).mtimeMs > 3_600_000) rmSync(path, { recursive: true, force: true });
      } catch {
        /* raced with another sweeper */
      }
    }
  }

  /** The matrix entries this store knows ids from. */
  matrix(): KernelEntry[] {
    this.matrixCache ??= Array.isArray(this.matrixSource) ? this.matrixSource : loadMatrix(this.matrixSource);
    return this.matrixCache;
  }

  /** Entries selected by ids, globs or `all`. */
  select(selectors: string[]): KernelEntry[] {
    return selectKernels(this.matrix(), selectors);
  }

  entry(id: string): KernelEntry {
    // `6.1-arm64` is entry 6.1 built for arm64 when the matrix has no entry of that id (findKernel).
    const e = findKernel(this.matrix(), id);
    if (!e) throw new UsageError(`unknown kernel '${id}' (known: ${this.matrix().map((k) => k.id).join(', ')})`);
    return e;
  }

  private allSuites(e: KernelEntry): string[] {
    let fromMatrix: string[] = [];
    try {
      fromMatrix = this.matrix().filter((k) => archOf(k) === archOf(e)).flatMap((k) => k.suites); // arm64 (issue 19): one arch's state
    } catch {
      /* no matrix file: only this entry's suites */
    }
    return [...new Set([...fromMatrix, ...e.suites])];
  }

  /** Every package version of the entry's series and flavour in its suites, oldest first. */
  async candidates(e: KernelEntry): Promise<(AptCandidate & { release: string })[]> {
    const arch = archOf(e); // arm64 (issue 19)
    const apt = this.aptFor(arch);
    await apt.ensure(this.allSuites(e));
    const major = e.series.split('.')[0]!;
    // One search and one madison per arch and major version, shared by every entry (all flavours, all suites).
    const key = `${arch} ${major}`;
    let all = this.byMajor.get(key);
    if (!all) {
      all = (async () => {
        const names = (await apt.search(`^linux-(image|binary)-${major}\\.`)).filter((n) => releaseOfPackage(n) !== undefined);
        return apt.madison(names);
      })();
      all.catch(() => this.byMajor.delete(key));
      this.byMajor.set(key, all);
    }
    const rows = (await all)
      .map((r) => ({ ...r, release: releaseOfPackage(r.name)! }))
      .filter((r) => flavourOfRelease(r.release, arch) === e.flavour && e.suites.includes(r.suite) && inSeries(upstreamOf(r.version), e.series));
    rows.sort((a, b) => compareDebVersions(a.version, b.version) || e.suites.indexOf(b.suite) - e.suites.indexOf(a.suite));
    return rows;
  }

  /** The package a matrix entry stands for today: newest in its suites, or the pinned version. */
  resolve(e: KernelEntry): Promise<ResolvedKernel> {
    const key = JSON.stringify(e);
    let p = this.resolved.get(key);
    if (!p) {
      p = this.resolveUncached(e);
      p.catch(() => this.resolved.delete(key));
      this.resolved.set(key, p);
    }
    return p;
  }

  private async resolveUncached(e: KernelEntry): Promise<ResolvedKernel> {
    if (e.build) {
      const r = await this.recipe(e, e.build);
      return { package: e.build.source, version: r.version, release: '', suite: r.src.suite };
    }
    const rows = await this.candidates(e);
    const what = `kernel '${e.id}' (${e.series} ${e.flavour})`;
    if (rows.length === 0) throw new CoreMatrixError(`${what}: no package in ${e.suites.join(', ')}`);
    const newest = rows[rows.length - 1]!;
    let pick = newest;
    if (e.version !== undefined) {
      const pin = e.version;
      const hits = rows.filter((r) => r.version === pin || upstreamOf(r.version) === pin || compareDebVersions(r.version, pin) === 0);
      if (hits.length === 0) throw pinNotInSuites(what, pin, e.suites, rows.map((r) => r.version), `${newest.name} ${newest.version}`);
      pick = hits[hits.length - 1]!;
    }
    return { package: pick.name, version: pick.version, release: pick.release, suite: pick.suite };
  }

  // ---- content-addressed blobs -------------------------------------------------------------

  private blobPath(sha: string): string {
    return join(this.dir, 'blobs', sha);
  }

  /**
   * Why a blob may not be used, or undefined: missing, of another size, or (with `hash`) bytes
   * that do not hash to its name. Hashing is what makes it trustworthy (a size and mtime kept
   * while a byte changed say nothing); a blob hashed by this process is not hashed again while
   * its inode, size, mtime and ctime stay (ctime cannot be set back by utimes).
   */
  private async blobProblem(sha: string, size: number, hash: boolean): Promise<string | undefined> {
    const c = this.blobCheck(sha, size, hash);
    return c.hash ? this.judge(c.hash, await sha256File(c.hash.path)) : c.problem;
  }

  private blobProblemSync(sha: string, size: number, hash: boolean): string | undefined {
    const c = this.blobCheck(sha, size, hash);
    return c.hash ? this.judge(c.hash, sha256FileSync(c.hash.path)) : c.problem;
  }

  /** What stat tells of a blob: a problem, nothing wrong, or that its bytes must be hashed to tell. */
  private blobCheck(sha: string, size: number, hash: boolean): { problem?: string; hash?: BlobToHash } {
    const path = this.blobPath(sha);
    let st;
    try {
      st = statSync(path, { bigint: true });
    } catch {
      return { problem: 'missing' };
    }
    if (st.size !== BigInt(size)) return { problem: `size is now ${st.size} bytes (expected ${size} bytes)` };
    const id = fileIdentity(st);
    return hash && hashedHere.get(path) !== id ? { hash: { path, sha, size, id } } : {};
  }

  private judge(b: BlobToHash, actual: string): string | undefined {
    if (actual !== b.sha) return `sha256 is now ${actual.slice(0, 12)}…, ${b.size} bytes (expected ${b.sha.slice(0, 12)}…, ${b.size} bytes)`;
    hashedHere.set(b.path, b.id);
    return undefined;
  }

  /** Moves `file` into the store under its sha256 (replacing a corrupt blob of that name atomically). */
  private async putBlob(file: string): Promise<{ sha256: string; size: number }> {
    const sha = await sha256File(file);
    const dest = this.blobPath(sha);
    renameSync(file, dest);
    const st = statSync(dest, { bigint: true });
    hashedHere.set(dest, fileIdentity(st));
    return { sha256: sha, size: Number(st.size) };
  }

  // ---- manifests ---------------------------------------------------------------------------

  private readManifest(path: string): Manifest | undefined {
    try {
      const m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
      return m.schema === 1 ? m : undefined;
    } catch {
      return undefined;
    }
  }

  private toArtifacts(m: Manifest, path: string): KernelArtifacts {
    const a = m.artefacts;
    return {
      id: m.id,
      arch: m.arch ?? 'amd64',
      package: m.package,
      version: m.version,
      release: m.release,
      suite: m.suite,
      flavour: m.flavour,
      vmlinuz: this.blobPath(a.vmlinuz.sha256),
      config: this.blobPath(a.config.sha256),
      btf: this.blobPath(a.btf.sha256),
      sha256: { vmlinuz: a.vmlinuz.sha256, config: a.config.sha256, btf: a.btf.sha256 },
      packages: m.packages,
      banner: m.banner,
      compression: m.compression,
      sizes: { vmlinuz: a.vmlinuz.size, config: a.config.size, btf: a.btf.size },
      manifest: path,
      btfSource: m.btfSource ?? 'kernel',
      ...(m.build ? { build: m.build } : {}),
    };
  }

  /**
   * Checks the blobs of a manifest: those in `use` by their sha256, the others by presence and
   * size. A kernel's BTF that is corrupt or missing is taken again from its intact vmlinuz (no
   * download). Says each problem once on the log and the progress line (`quiet`: a second look,
   * under the lock, at what was already reported); false when the kernel must be fetched again.
   */
  private async intact(m: Manifest, use: readonly ArtefactKind[], opts: FetchOptions = {}, quiet = false): Promise<boolean> {
    for (const k of KINDS) {
      const a = m.artefacts[k];
      const problem = await this.blobProblem(a.sha256, a.size, use.includes(k));
      if (!problem) continue;
      const state = `cached ${k} ${problem === 'missing' ? 'is missing' : 'is corrupt'}`;
      const line = problem === 'missing' ? state : `${state}: ${problem}`;
      const step = (doing: string) => {
        if (!quiet) opts.onStep?.(`${state}: ${doing}`);
      };
      const log = (done: string) => {
        if (!quiet) this.log(`kernel ${m.id} ${m.version}: ${line}; ${done}`);
      };
      if (k === 'btf' && (m.btfSource ?? 'kernel') === 'kernel') {
        step('re-extracting it from the vmlinuz');
        if (await this.reextractBtf(m)) {
          log('re-extracted it from the vmlinuz');
          continue;
        }
      }
      const again = m.flavour === 'custom' ? 'building it again' : 'fetching it again';
      step(again);
      log(again);
      return false;
    }
    return true;
  }

  /** intact() without hashing in the background: for cached() (no repair, no network). */
  private intactSync(m: Manifest, use: readonly ArtefactKind[]): boolean {
    for (const k of KINDS) {
      const problem = this.blobProblemSync(m.artefacts[k].sha256, m.artefacts[k].size, use.includes(k));
      if (problem) {
        this.log(`kernel ${m.id} ${m.version}: cached ${k} ${problem === 'missing' ? 'is missing' : `is corrupt: ${problem}`}`);
        return false;
      }
    }
    return true;
  }

  /**
   * Takes a kernel's BTF out of its vmlinuz again (the .BTF section it was extracted from at
   * fetch time), when the vmlinuz hashes to its name and the section to the BTF's: no download,
   * and no network needed. False when that cannot be done (the kernel is then fetched again).
   */
  private async reextractBtf(m: Manifest): Promise<boolean> {
    const v = m.artefacts.vmlinuz;
    const b = m.artefacts.btf;
    try {
      const image = readFileSync(this.blobPath(v.sha256));
      if (createHash('sha256').update(image).digest('hex') !== v.sha256) return false;
      // arm64 (issue 19): the stored vmlinuz is the raw Image, the BTF a range of it.
      const btf = m.arch === 'arm64' ? findImageBtf(image, `${m.package}: Image`).btf : elfSection((await extractVmlinux(image, `${m.package}: vmlinuz`)).elf, '.BTF', `${m.package}: vmlinux`);
      if (!btf || createHash('sha256').update(btf).digest('hex') !== b.sha256) return false;
      const tmp = mkdtempSync(join(this.dir, 'tmp', `${m.id}-btf-`));
      try {
        writeFileSync(join(tmp, 'btf'), btf);
        await this.putBlob(join(tmp, 'btf'));
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
      return true;
    } catch {
      return false; // no vmlinuz, or one that does not decompress: fetch it all again
    }
  }

  /** Manifests of an id, newest version last. */
  private manifestsOf(id: string): { path: string; m: Manifest }[] {
    const dir = join(this.dir, 'manifests');
    return readdirSync(dir)
      .filter((f) => f.startsWith(`${id}@`) && f.endsWith('.json'))
      .map((f) => ({ path: join(dir, f), m: this.readManifest(join(dir, f)) }))
      .filter((x): x is { path: string; m: Manifest } => x.m !== undefined && x.m.id === id)
      // Builds of one source version (…+cm.<recipe>) compare equal but for the hash: the most
      // recently made one is the newest.
      .sort((a, b) => compareDebVersions(sourceVersionOf(a.m.version), sourceVersionOf(b.m.version)) || a.m.fetchedAt.localeCompare(b.m.fetchedAt));
  }

  /**
   * The newest intact cached artefacts of an id (honouring a pin in the matrix), without network:
   * the blobs in `use` (default all) hashed, the others checked by size (`use: []` for a listing).
   */
  cached(id: string, opts: { use?: readonly ArtefactKind[] } = {}): KernelArtifacts | undefined {
    let pin: string | undefined;
    try {
      pin = this.matrix().find((k) => k.id === id)?.version;
    } catch {
      pin = undefined;
    }
    const all = this.manifestsOf(id).filter((x) => pin === undefined || x.m.version === pin || upstreamOf(x.m.version) === pin);
    const last = all[all.length - 1];
    if (!last || !this.intactSync(last.m, opts.use ?? KINDS)) return undefined;
    return this.toArtifacts(last.m, last.path);
  }

  /** Resolves and, unless cached and intact, downloads and extracts a kernel. */
  async fetch(idOrEntry: string | KernelEntry, opts: FetchOptions = {}): Promise<KernelArtifacts> {
    const e = typeof idOrEntry === 'string' ? this.entry(idOrEntry) : idOrEntry;
    if (e.build) return this.fetchBuilt(e, e.build, opts);
    let r: ResolvedKernel;
    try {
      r = await this.resolve(e);
    } catch (err) {
      // Offline or a broken mirror: fall back to what is cached (but never hide a missing pin).
      const fallback = !/pinned version|no package in/.test((err as Error).message) ? await this.cachedFor(e, opts) : undefined;
      if (!fallback) throw err;
      this.log(`kernel ${e.id}: cannot resolve (${(err as Error).message.split('\n')[0]}); using cached ${fallback.package} ${fallback.version}`);
      return fallback;
    }
    const path = join(this.dir, 'manifests', manifestName(e.id, r.version));
    const use = opts.use ?? KINDS;
    const ready = async (quiet = false): Promise<KernelArtifacts | undefined> => {
      const m = existsSync(path) ? this.readManifest(path) : undefined;
      return m && m.package === r.package && (await this.intact(m, use, opts, quiet)) ? this.toArtifacts(m, path) : undefined;
    };
    const have = await ready();
    if (have) return have;
    // One download per kernel: in this process (shared promise) and across processes (lock file).
    // Under the lock, a quiet second look: another process may have fetched it meanwhile.
    const key = `${e.id}@${r.version}`;
    let p = this.inflight.get(key);
    if (!p) {
      p = withLock(join(this.dir, 'tmp', `${manifestName(e.id, r.version)}.lock`), async () => (await ready(true)) ?? this.download(e, r, path));
      this.inflight.set(key, p);
      p.finally(() => this.inflight.delete(key)).catch(() => {});
    }
    return p;
  }

  // ---- custom kernels built from a Debian linux-source-* package ---------------------------

  /** The source package version an entry builds today: newest in its suites, or the pin. */
  async resolveSource(e: KernelEntry, b: CustomBuild): Promise<AptCandidate> {
    await this.apt.ensure(this.allSuites(e));
    const rows = (await this.apt.madison([b.source])).filter((r) => e.suites.includes(r.suite));
    rows.sort((x, y) => compareDebVersions(x.version, y.version));
    const what = `kernel '${e.id}' (built from ${b.source})`;
    if (rows.length === 0) throw new CoreMatrixError(`${what}: ${b.source} is not in ${e.suites.join(', ')}`);
    const newest = rows[rows.length - 1]!;
    if (e.version === undefined) return newest;
    const hit = rows.filter((r) => r.version === e.version || upstreamOf(r.version) === e.version).pop();
    if (!hit) throw pinNotInSuites(what, e.version, e.suites, rows.map((r) => r.version), `${b.source} ${newest.version}`);
    return hit;
  }

  /** The recipe of a custom kernel today: source version, config text, tool versions → hash (once per entry and process). */
  recipe(e: KernelEntry, b: CustomBuild): Promise<Recipe> {
    const key = JSON.stringify([e, b]);
    let p = this.recipes.get(key);
    if (!p) {
      p = this.recipeUncached(e, b);
      p.catch(() => this.recipes.delete(key));
      this.recipes.set(key, p);
    }
    return p;
  }

  private async recipeUncached(e: KernelEntry, b: CustomBuild): Promise<Recipe> {
    const arch = archOf(e);
    const fragment = effectiveFragment(b, arch);
    const src = await this.resolveSource(e, b);
    const tools = await toolVersions(arch);
    // arm64 (issue 19): another arch names itself (and `gcc` is its cross compiler); amd64's recipe hashes as before.
    const hash = recipeHash({ recipe: RECIPE_VERSION, ...(arch !== 'amd64' ? { arch } : {}), source: b.source, sourceVersion: src.version, fragment, gcc: tools.gcc, pahole: tools.pahole });
    return { src, fragment, hash, version: `${src.version}${BUILD_SUFFIX}${hash.slice(0, 12)}` };
  }

  /** Builds (once per recipe hash) or finds a custom kernel. */
  private async fetchBuilt(e: KernelEntry, b: CustomBuild, opts: FetchOptions): Promise<KernelArtifacts> {
    let r: Recipe;
    try {
      r = await this.recipe(e, b);
    } catch (err) {
      const fallback = !/pinned version|is not in|needs/.test((err as Error).message) ? await this.cachedFor(e, opts) : undefined;
      if (!fallback) throw err;
      this.log(`kernel ${e.id}: cannot resolve ${b.source} (${(err as Error).message.split('\n')[0]}); using the cached build ${fallback.version}`);
      return fallback;
    }
    const { src, fragment, hash, version } = r;
    const path = join(this.dir, 'manifests', manifestName(e.id, version));
    const use = opts.use ?? KINDS;
    const ready = async (quiet = false): Promise<KernelArtifacts | undefined> => {
      const m = existsSync(path) ? this.readManifest(path) : undefined;
      if (m && m.build?.hash === hash && (await this.intact(m, use, opts, quiet))) return this.toArtifacts(m, path);
      // Another entry with the same recipe (say btf: pahole and btf: none) built it already.
      const twin = await this.sameBuild(hash, use);
      if (!twin) return undefined;
      const mine: Manifest = { ...twin, id: e.id, series: e.series };
      writeFileAtomic(path, JSON.stringify(mine, null, 2) + '\n');
      this.log(`kernel ${e.id}: same build as ${twin.id} (recipe ${hash.slice(0, 12)})`);
      return this.toArtifacts(mine, path);
    };
    const have = await ready();
    if (have) return have;
    // One build per recipe, whichever entries ask for it (in this process: one promise; across
    // processes: one lock); each entry then gets its own manifest naming the shared blobs.
    const key = `build-${hash.slice(0, 24)}`;
    let p = this.inflight.get(key);
    if (!p) {
      p = withLock(join(this.dir, 'tmp', `${key}.lock`), async () => (await ready(true)) ?? this.build(e, b, src, version, hash, fragment, path, opts), 3 * 3_600_000);
      this.inflight.set(key, p);
      p.finally(() => this.inflight.delete(key)).catch(() => {});
    }
    const built = await p;
    return built.id === e.id ? built : ((await ready(true)) ?? built);
  }

  /** An intact manifest of any id built from this recipe hash. */
  private async sameBuild(hash: string, use: readonly ArtefactKind[]): Promise<Manifest | undefined> {
    const dir = join(this.dir, 'manifests');
    for (const f of readdirSync(dir)) {
      if (!f.endsWith('.json')) continue;
      const m = this.readManifest(join(dir, f));
      if (m?.build?.hash === hash && (await this.intact(m, use, {}, true))) return m;
    }
    return undefined;
  }

  private async build(e: KernelEntry, b: CustomBuild, src: AptCandidate, version: string, hash: string, fragment: string, manifestPath: string, opts: FetchOptions): Promise<KernelArtifacts> {
    const t0 = Date.now();
    const tmp = mkdtempSync(join(this.dir, 'tmp', `${e.id}-build-`));
    writeFileSync(join(tmp, 'owner.pid'), String(process.pid));
    const arch = archOf(e); // arm64 (issue 19): cross-built
    const what = `kernel '${e.id}' (${b.source} ${src.version} + ${b.config}${arch !== 'amd64' ? `, ${arch}` : ''})`;
    const logDir = join(this.dir, 'build-logs');
    mkdirSync(logDir, { recursive: true });
    const logFile = join(logDir, `${e.id}@${version}.log`);
    try {
      this.log(`kernel ${e.id}: building ${b.source} ${src.version}${arch !== 'amd64' ? ` for ${arch}` : ''} with ${b.config} (recipe ${hash.slice(0, 12)}; ${BUILD_MINUTES[arch]} min on 2 cores, once)`);
      const deb = await this.apt.keptDownload(b.source, src.version);
      // The progress line names the step and how long the build has run, refreshed every 10 s.
      const t0Build = Date.now();
      let step = 'starting';
      // How far the compile is, against the largest earlier build of this source (else a measured typical one).
      const expected = previousCompileSteps(logDir, b.source, arch) ?? TYPICAL_COMPILE_STEPS_BY_ARCH[arch];
      let compiled = 0;
      let compileStart = 0;
      const left = () => {
        if (!compiled || !compileStart) return '';
        const share = Math.min(0.99, compiled / expected);
        const elapsed = (Date.now() - compileStart) / 1000;
        return `; ~${Math.round(share * 100)} % compiled, about ${Math.max(1, Math.round((elapsed * (1 - share)) / share / 60))} min left`;
      };
      const tell = () => opts.onStep?.(`building ${b.source}: ${step} (${Math.round((Date.now() - t0Build) / 1000)} s${left()})`);
      const ticker = opts.onStep ? setInterval(tell, 10_000) : undefined;
      ticker?.unref();
      let out: Awaited<ReturnType<typeof buildKernel>>;
      try {
        // ccache when the machine has it (issue 18): a rebuild whose preprocessed sources mostly did not change compiles little.
        out = await buildKernel({ deb, build: b, arch, fragment, work: tmp, logFile, what, signal: opts.signal, ccache: compilerCache(), onCompileSteps: (n) => {
          compileStart ||= Date.now();
          compiled = n;
        }, onLog: (l) => {
          this.log(`kernel ${e.id}: ${l}`);
          step = l.replace(/ \(log: .*\)$/, '');
          tell();
        } });
      } finally {
        clearInterval(ticker);
      }
      // What the built image says about itself, read like a Debian kernel's (and checked).
      const image = arch === 'arm64' ? builtArm64Image(readFileSync(out.vmlinuz), out, `${what}: Image`) : parseBzImage(readFileSync(out.vmlinuz), `${what}: bzImage`);
      if (image.banner.split(' ')[0] !== out.release) throw new FormatError(`${what}: the ${arch === 'arm64' ? 'Image' : 'bzImage'} says it is '${image.banner.split(' ')[0]}', make kernelrelease says '${out.release}'`);
      const banner = image.banner;
      const artefacts = {
        vmlinuz: await this.putBlob(out.vmlinuz),
        config: await this.putBlob(out.config),
        btf: await this.putBlob(out.btf),
      };
      const manifest: Manifest = {
        schema: 1,
        id: e.id,
        ...(arch !== 'amd64' ? { arch } : {}), // arm64 (issue 19)
        series: e.series,
        flavour: 'custom',
        suite: src.suite,
        package: b.source,
        version,
        release: out.release,
        banner,
        compression: image.format,
        packages: [{ name: b.source, version: src.version, suite: src.suite, holds: ['vmlinuz', 'config', 'btf'] }],
        artefacts,
        fetchedAt: new Date().toISOString(),
        fetchSeconds: Math.round((Date.now() - t0) / 100) / 10,
        btfSource: out.btfSource,
        build: { hash, seconds: out.seconds, log: logFile, fragment, ...(out.ccache ? { ccache: out.ccache } : {}) },
      };
      writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
      this.log(`kernel ${e.id}: ${out.release} built in ${out.seconds} s; BTF from ${out.btfSource} ${(artefacts.btf.size / 1e6).toFixed(1)} MB`);
      return this.toArtifacts(manifest, manifestPath);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  // ---- kernel modules ----------------------------------------------------------------------

  /**
   * Modules of a fetched Debian kernel and everything they depend on, in load order, decompressed
   * (the guest loads them with finit_module). Taken from the kernel's package (linux-modules-<rel>
   * for the split 7.x layout) the first time a name is asked for, then kept like the kernel.
   */
  async modules(k: KernelArtifacts, names: string[]): Promise<KernelModule[]> {
    const what = `kernel '${k.id}' (${k.package} ${k.version})`;
    if (k.flavour === 'custom') throw new CoreMatrixError(`${what}: a custom build ships no modules (wanted ${names.join(', ')}); build them in (=y) in its config fragment`);
    const file = join(this.dir, 'modules', manifestName(k.package, k.version));
    const read = (): ModulesManifest => {
      try {
        const m = JSON.parse(readFileSync(file, 'utf8')) as ModulesManifest;
        if (m.schema === 1 && m.package === k.package && m.version === k.version) return m;
      } catch {
        /* none yet, or torn: start over */
      }
      return { schema: 1, package: k.package, version: k.version, release: k.release, modules: {} };
    };
    // The load order as far as the manifest knows it, and which modules in it are not in the
    // store intact (never taken, or a blob that no longer verifies); each blob checked once.
    const look = (m: ModulesManifest): { order: string[]; missing: string[] } => {
      const intact = new Map<string, boolean>();
      const usable = (n: string) => {
        let ok = intact.get(n);
        if (ok === undefined) {
          const x = m.modules[n];
          intact.set(n, (ok = x !== undefined && this.blobProblemSync(x.sha256, x.size, true) === undefined));
        }
        return ok;
      };
      const order = loadOrder(names, (n) => (usable(n) ? m.modules[n]!.depends : []));
      return { order, missing: order.filter((n) => !usable(n)) };
    };
    const result = (m: ModulesManifest, order: string[]): KernelModule[] => order.map((n) => ({ ...m.modules[n]!, path: this.blobPath(m.modules[n]!.sha256) }));
    let m = read();
    let now = look(m);
    if (now.missing.length === 0) return result(m, now.order);
    await withLock(join(this.dir, 'tmp', `${manifestName(k.package, k.version)}.modules.lock`), async () => {
      m = read();
      const missing = look(m).missing;
      if (missing.length === 0) return;
      await this.extractModules(k, m, missing, what);
      writeFileAtomic(file, JSON.stringify(m, null, 2) + '\n');
    });
    now = look(m);
    if (now.missing.length) throw new CoreMatrixError(`${what}: modules ${now.missing.join(', ')} were extracted but are not in the store`);
    return result(m, now.order);
  }

  /** Downloads the package holding the modules once and takes `missing` (and what they depend on that is not intact in the store) out of it. */
  private async extractModules(k: KernelArtifacts, m: ModulesManifest, missing: string[], what: string): Promise<void> {
    const pkg = modulesPackage(k.package, k.release);
    const tmp = mkdtempSync(join(this.dir, 'tmp', `${k.id}-modules-`));
    try {
      this.log(`kernel ${k.id}: taking modules ${missing.join(', ')} from ${pkg} ${k.version}`);
      const deb = await this.aptFor(k.arch).download(pkg, k.version, join(tmp, 'debs')); // arm64 (issue 19): the kernel's arch
      const taken = new Set<string>();
      const intact = (n: string) => taken.has(n) || (m.modules[n] !== undefined && this.blobProblemSync(m.modules[n]!.sha256, m.modules[n]!.size, true) === undefined);
      // One pass over the archive per level of dependencies (most modules need none, or one).
      for (let pass = 0; missing.length > 0; pass++) {
        if (pass > 16) throw new CoreMatrixError(`${what}: module dependencies deeper than 16 levels (${missing.join(', ')})`);
        const out = join(tmp, `x${pass}`);
        mkdirSync(out);
        await extractMembers(deb, out, missing.map((n) => modulePattern(k.release, n)), false, true);
        const files = listFiles(out).filter((f) => moduleCompression(f) !== undefined);
        const next = new Set<string>();
        for (const n of missing) {
          const hit = files.find((f) => moduleNameOfFile(f) === n);
          if (!hit) throw new CoreMatrixError(`${what}: module ${n} is not in ${pkg} ${k.version} (is it built in, or not built at all? see CONFIG_* in the kernel's config)`);
          const member = `.${hit.slice(out.length)}`;
          const packed = readFileSync(hit);
          const format = moduleCompression(hit)!;
          const bytes = format === 'none' ? packed : await decompress(format, packed);
          const info = moduleInfo(bytes, `${pkg}: ${member}`);
          const rel = info.vermagic.split(' ')[0];
          if (rel !== k.release) throw new FormatError(`${what}: ${member} is built for ${rel}, the kernel is ${k.release}`);
          const plain = join(tmp, `${n}.ko`);
          writeFileSync(plain, bytes);
          const blob = await this.putBlob(plain);
          m.modules[n] = { name: n, sha256: blob.sha256, size: blob.size, depends: info.depends.map(moduleKey), member };
          taken.add(n);
          for (const d of info.depends.map(moduleKey)) if (!intact(d)) next.add(d);
        }
        missing = [...next].filter((n) => !taken.has(n)); // a dependency taken later in the same pass is done
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  private async cachedFor(e: KernelEntry, opts: FetchOptions): Promise<KernelArtifacts | undefined> {
    const all = this.manifestsOf(e.id).filter((x) => e.version === undefined || x.m.version === e.version || upstreamOf(x.m.version) === e.version);
    const last = all[all.length - 1];
    return last && (await this.intact(last.m, opts.use ?? KINDS, opts)) ? this.toArtifacts(last.m, last.path) : undefined;
  }

  private async download(e: KernelEntry, r: ResolvedKernel, manifestPath: string): Promise<KernelArtifacts> {
    const t0 = Date.now();
    const tmp = mkdtempSync(join(this.dir, 'tmp', `${e.id}-`));
    const what = `kernel '${e.id}' (${r.package} ${r.version})`;
    const arch = archOf(e); // arm64 (issue 19)
    const apt = this.aptFor(arch);
    try {
      this.log(`kernel ${e.id}: downloading ${r.package} ${r.version}${arch !== 'amd64' ? ` (${arch})` : ''} from ${r.suite}`);
      const packages: KernelArtifacts['packages'] = [];
      const deb = await apt.download(r.package, r.version, join(tmp, 'debs'));
      const rel = r.release;
      const out = join(tmp, 'x');
      mkdirSync(out);
      const vmlinuzMembers = [`./boot/vmlinuz-${rel}`, `./usr/lib/modules/${rel}/vmlinuz`];
      const configMembers = [`./boot/config-${rel}`, `./usr/lib/modules/${rel}/config`];
      const found = (members: string[]) => members.map((m) => join(out, m)).find((p) => existsSync(p) && statSync(p).isFile());
      // The layout the package name implies first (cheap, stops early); everything else if that missed.
      const expected = r.package.startsWith('linux-image-') ? [vmlinuzMembers[0]!, configMembers[0]!] : [vmlinuzMembers[1]!];
      await extractMembers(deb, out, expected, true);
      if (!found(vmlinuzMembers)) await extractMembers(deb, out, [...vmlinuzMembers, ...configMembers]);
      rmSync(deb, { force: true });
      const vmlinuz = found(vmlinuzMembers);
      if (!vmlinuz) throw new CoreMatrixError(`${what}: holds neither ${vmlinuzMembers.map((m) => m.slice(1)).join(' nor ')}`);
      let config = found(configMembers);
      packages.push({ name: r.package, version: r.version, suite: r.suite, holds: config ? ['vmlinuz', 'config'] : ['vmlinuz'] });
      if (!config) {
        // Split layout (7.x): the config is in a package this one depends on; find it by file list.
        const show = await apt.show(r.package, r.version);
        const deps = (show['Depends'] ?? '').split(',').map((d) => /^\s*(linux-\S+)\s*(?:\(\s*=\s*([^)\s]+)\s*\))?/.exec(d)).filter((m): m is RegExpExecArray => m !== null);
        for (const d of deps) {
          const name = d[1]!;
          const version = d[2] ?? r.version;
          const depDeb = await apt.download(name, version, join(tmp, 'debs'));
          const list = await listMembers(depDeb);
          const member = list.find((l) => configMembers.includes(l));
          if (member) {
            await extractMembers(depDeb, out, [member]);
            config = found(configMembers);
            packages.push({ name, version, suite: r.suite, holds: ['config'] });
          }
          rmSync(depDeb, { force: true });
          if (config) break;
        }
        if (!config) throw new CoreMatrixError(`${what}: no config-${rel} in it nor in its dependencies (${deps.map((d) => d[1]).join(', ') || 'none'})`);
      }
      const image = readFileSync(vmlinuz);
      // arm64 (issue 19): the raw Image is what is kept and booted (a gzip'd or zboot one unpacked),
      // and its BTF is found in the Image itself (no ELF around it).
      let info: { banner: string; format: string };
      let btf: Buffer | undefined;
      let bootable = vmlinuz;
      if (arch === 'arm64') {
        const k = await extractArm64Kernel(image, `${r.package}: vmlinuz`);
        info = k;
        btf = k.btf;
        if (k.format !== 'Image') writeFileSync((bootable = join(tmp, 'Image')), k.image);
      } else {
        const x = await extractVmlinux(image, `${r.package}: vmlinuz`);
        info = x.info;
        btf = elfSection(x.elf, '.BTF', `${r.package}: vmlinux`);
      }
      const bannerRel = info.banner.split(' ')[0];
      if (bannerRel !== rel) throw new FormatError(`${what}: vmlinuz says it is '${bannerRel}', package name says '${rel}'`);
      if (!btf) throw new FormatError(`${what}: vmlinux has no .BTF section (kernel built without CONFIG_DEBUG_INFO_BTF?)`);
      if (btf.length < 24 || btf.readUInt16LE(0) !== 0xeb9f) throw new FormatError(`${what}: .BTF section does not start with the BTF magic 0xeB9F`);
      const btfFile = join(tmp, 'btf');
      writeFileSync(btfFile, btf);
      const artefacts = {
        vmlinuz: await this.putBlob(bootable),
        config: await this.putBlob(config),
        btf: await this.putBlob(btfFile),
      };
      const manifest: Manifest = {
        schema: 1,
        id: e.id,
        ...(arch !== 'amd64' ? { arch } : {}), // arm64 (issue 19)
        series: e.series,
        flavour: e.flavour,
        suite: r.suite,
        package: r.package,
        version: r.version,
        release: rel,
        banner: info.banner,
        compression: info.format,
        packages,
        artefacts,
        fetchedAt: new Date().toISOString(),
        fetchSeconds: Math.round((Date.now() - t0) / 100) / 10,
      };
      writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
      this.log(`kernel ${e.id}: ${rel} (${info.format}) fetched in ${manifest.fetchSeconds} s; BTF ${(artefacts.btf.size / 1e6).toFixed(1)} MB`);
      return this.toArtifacts(manifest, manifestPath);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
}

/**
 * What a built arm64 Image says about itself (its banner; kbuild's Image is the raw one), and,
 * for a kernel with its own BTF, that the BTF the store finds in the Image is the vmlinux's .BTF
 * (what a repair re-extracts from the stored Image).
 */
function builtArm64Image(image: Buffer, out: { btf: string; btfSource: 'kernel' | 'pahole' }, name: string): { banner: string; format: string } {
  parseArm64ImageHeader(image, name);
  if (out.btfSource === 'kernel' && !findImageBtf(image, name).btf.equals(readFileSync(out.btf))) throw new FormatError(`${name}: the BTF found in the Image is not the vmlinux's .BTF section`);
  return { banner: kernelBanner(image, name), format: 'Image' };
}

/** Minutes a build takes on 2 cores (measured, docs/kernels.md), for the log line before it starts. */
const BUILD_MINUTES: Record<DebianArch, string> = { amd64: '6 to 8', arm64: '10 to 12' };

/**
 * The compile steps of the largest logged earlier build of `source` for `arch` (its logs name the
 * source in their header; a cross build's make lines say ARCH=), if any.
 */
function previousCompileSteps(logDir: string, source: string, arch: DebianArch): number | undefined {
  let best: number | undefined;
  for (const f of existsSync(logDir) ? readdirSync(logDir) : []) {
    if (!f.endsWith('.log')) continue;
    try {
      const text = readFileSync(join(logDir, f), 'utf8');
      if (!text.includes(source)) continue;
      if (text.includes(' ARCH=') !== (arch !== 'amd64') || (arch !== 'amd64' && !text.includes(` ARCH=${arch} `))) continue;
      const n = compileSteps(text);
      if (n > (best ?? 0)) best = n;
    } catch {
      /* a log being written or removed: skip it */
    }
  }
  return best;
}
