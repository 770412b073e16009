// Custom kernels: a Debian linux-source-* tree plus a config fragment, built with the machine's
// compiler. The recipe (source package version, `make tinyconfig`, kernels/configs/base.config,
// the arch's own base-<arch>.config, the entry's fragment, the BTF mode, the gcc and pahole
// versions) is hashed; the store keeps the result under that hash, so a kernel is rebuilt only
// when one of those changes.
//
// arm64 kernels are cross-built on an x86-64 host (make ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-,
// Debian's gcc-aarch64-linux-gnu) into arch/arm64/boot/Image; the recipe then names the arch and
// the cross compiler's version.
//
// Every build carries DWARF. With `btf: kernel` the kernel is built with CONFIG_DEBUG_INFO_BTF and
// its .BTF section is the kernel's BTF; otherwise the kernel has no BTF of its own and pahole
// turns the DWARF into a detached BTF file (what a user with a hand-built debug kernel would do),
// which the guest receives when the entry says `btf: pahole`.
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CoreMatrixError } from '../core/errors.js';
import { cacheDir, repoRoot } from '../paths.js';
import { onPath } from '../tools.js';
import { elfSection } from './extract.js';
import type { CustomBuild } from './matrix.js';
import { archKernelBuild, DEFAULT_ARCH, type DebianArch } from './arch.js';

/** Bump when the build steps change in a way that changes the output. */
export const RECIPE_VERSION = 2;

export interface BuildRecipe {
  recipe: number;
  /** Absent for amd64 (so amd64 recipes hash as they did before arches). */
  arch?: DebianArch;
  source: string;
  sourceVersion: string;
  /** Config text applied after `make tinyconfig`: base.config (+ base-<arch>.config), the fragment, the BTF switch. */
  fragment: string;
  /** `--version` of the compiler that builds it (the cross compiler for another arch). */
  gcc: string;
  pahole: string;
}

export interface BuildOutput {
  /** The bootable image (bzImage, or arm64's raw Image), .config and the vmlinux BTF (from .BTF or from pahole), in `dir`. */
  vmlinuz: string;
  config: string;
  btf: string;
  btfSource: 'kernel' | 'pahole';
  release: string;
  seconds: number;
  log: string;
  /** With a compiler cache: how many of the build's compilations it answered. */
  ccache?: CcacheStats;
}

/**
 * ccache for kernel builds (issue 18), when the machine has it: its own folder in corematrix's
 * cache (cacheDir('ccache')), capped. The objects it returns are the ones gcc made from the same
 * preprocessed source with the same compiler and flags, so a build through it is the same kernel:
 * it is not part of the recipe.
 */
export interface CompilerCache {
  ccache: string;
  dir: string;
  /** ccache's max_size (it evicts the least recently used results beyond it). */
  maxSize: string;
}

/** One cold 6.12 build fills about 0.4 GB (docs/kernels.md): room for a few recipes of each arch. */
export const CCACHE_MAX_SIZE = '3G';

/** The machine's ccache with corematrix's folder and cap, or undefined when there is no ccache on PATH. */
export function compilerCache(): CompilerCache | undefined {
  const ccache = onPath('ccache');
  return ccache ? { ccache, dir: cacheDir('ccache'), maxSize: CCACHE_MAX_SIZE } : undefined;
}

export interface CcacheStats {
  /** Compilations answered from the cache (direct or preprocessed hit). */
  hits: number;
  /** Compilations gcc ran (and the cache then kept). */
  misses: number;
  /** Compiler calls ccache does not cache (linking, `--version`, assembler-only calls…). */
  other: number;
}

/**
 * Counts one build's ccache results from its stats log (ccache's `stats_log`: per compiler call a
 * `# <input>` line, then the counters that call bumped: `direct_cache_hit`, `cache_miss`,
 * `called_for_link`…).
 */
export function ccacheStatsFromLog(text: string): CcacheStats {
  const st: CcacheStats = { hits: 0, misses: 0, other: 0 };
  for (const call of text.split(/^# .*$/m).slice(1)) {
    const counters = new Set(call.split('\n').map((l) => l.trim()).filter(Boolean));
    if (counters.has('direct_cache_hit') || counters.has('preprocessed_cache_hit')) st.hits++;
    else if (counters.has('cache_miss')) st.misses++;
    else st.other++;
  }
  return st;
}

export function baseConfigFile(): string {
  return join(repoRoot(), 'kernels', 'configs', 'base.config');
}

/** The config lines an arch needs on top of base.config (none for amd64: base.config is amd64's). */
export function archConfigFile(arch: DebianArch): string | undefined {
  return arch === DEFAULT_ARCH ? undefined : join(repoRoot(), 'kernels', 'configs', `base-${arch}.config`);
}

/** The config lines a build applies on top of tinyconfig, in order (later lines win). */
export function effectiveFragment(b: CustomBuild, arch: DebianArch = DEFAULT_ARCH): string {
  const base = readFileSync(baseConfigFile(), 'utf8');
  const archFile = archConfigFile(arch);
  const archLines = archFile ? `# kernels/configs/base-${arch}.config\n${readFileSync(archFile, 'utf8').trimEnd()}\n` : '';
  const own = readFileSync(b.configPath, 'utf8');
  const btf = b.btf === 'kernel' ? 'CONFIG_DEBUG_INFO_BTF=y\n' : '# CONFIG_DEBUG_INFO_BTF is not set\n';
  // Entries differing only in pahole/none share one build (the hash is over this text).
  return `# kernels/configs/base.config\n${base.trimEnd()}\n${archLines}# ${b.config}\n${own.trimEnd()}\n${btf}CONFIG_LOCALVERSION="-corematrix"\n# CONFIG_LOCALVERSION_AUTO is not set\n`;
}

export function recipeHash(r: BuildRecipe): string {
  return createHash('sha256').update(JSON.stringify(r)).digest('hex');
}

async function firstLine(cmd: string, args: string[], pkg: string, why: string): Promise<string> {
  try {
    const { stdout } = await execa(cmd, args);
    return stdout.split('\n')[0]!.trim();
  } catch {
    throw new CoreMatrixError(`building ${why} needs ${cmd} (install it: apt-get install ${pkg})`);
  }
}

const tools = new Map<DebianArch, Promise<{ gcc: string; pahole: string }>>();
/** The compiler (of `arch`: the cross compiler for another arch) and pahole versions (part of the recipe hash), asked once per process. */
export function toolVersions(arch: DebianArch = DEFAULT_ARCH): Promise<{ gcc: string; pahole: string }> {
  let p = tools.get(arch);
  if (!p) {
    const kb = archKernelBuild(arch);
    const why = arch === DEFAULT_ARCH ? 'a custom kernel' : `a custom ${arch} kernel`;
    p = (async () => ({ gcc: await firstLine(`${kb.crossCompile}gcc`, ['--version'], kb.compilerPackage, why), pahole: await firstLine('pahole', ['--version'], 'dwarves', why) }))();
    p.catch(() => tools.delete(arch));
    tools.set(arch, p);
  }
  return p;
}

/** Parses config lines into name → value ('n' for `# CONFIG_X is not set`). */
export function parseConfigLines(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    let m = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) {
      out.set(m[1]!, m[2]!);
      continue;
    }
    m = /^#\s*(CONFIG_[A-Za-z0-9_]+) is not set/.exec(line.trim());
    if (m) out.set(m[1]!, 'n');
  }
  return out;
}

/**
 * What the fragment asked for but Kconfig did not give (an unmet `depends on`, a typo): one entry
 * per option, `CONFIG_X: asked y, got n`.
 */
export function unmetOptions(fragment: string, finalConfig: string): string[] {
  const want = parseConfigLines(fragment);
  const have = parseConfigLines(finalConfig);
  const bad: string[] = [];
  for (const [k, v] of want) {
    const got = have.get(k) ?? 'n';
    if (got !== v) bad.push(`${k}: asked ${v}, got ${got === 'n' && !have.has(k) ? 'n (no such option, or its dependencies are off)' : got}`);
  }
  return bad;
}

/**
 * A shell pipeline that writes the kernel source tarball inside a linux-source-* .deb to stdout,
 * decompressed (one pass over the package); append `| tar -x …` to unpack what is wanted.
 */
export function sourceTarStream(deb: string): string {
  return `dpkg-deb --fsys-tarfile '${deb}' | tar -xO --wildcards './usr/src/linux-source-*.tar.xz' | xz -T0 -dc`;
}

/** Compile and link steps in a piece of kbuild's output ("  CC      kernel/fork.o"): the unit of a build's progress. */
export function compileSteps(text: string): number {
  return text.match(/^\s+(CC|AS|AR|LD)\s/gm)?.length ?? 0;
}

/** Compile steps of a tinyconfig + base.config build of 6.12 (the 6.12-nonetns recipe, measured): the estimate before any build was logged. */
export const TYPICAL_COMPILE_STEPS = 1810;
/** The same per arch (arm64: 6.12 with base-arm64.config too, measured). */
export const TYPICAL_COMPILE_STEPS_BY_ARCH: Record<DebianArch, number> = { amd64: TYPICAL_COMPILE_STEPS, arm64: 1389 };

/**
 * Builds one kernel in `work` (deleted by the caller) from the source package `deb`. `onLog` gets
 * a line per step; the full compiler output goes to `logFile`.
 */
export async function buildKernel(opts: {
  deb: string;
  build: CustomBuild;
  /** The arch to build for (default amd64); another arch than the host's is cross-compiled. */
  arch?: DebianArch;
  fragment: string;
  work: string;
  logFile: string;
  what: string;
  onLog: (line: string) => void;
  /** The compile's progress: how many compile and link steps make has started so far. */
  onCompileSteps?: (done: number) => void;
  jobs?: number;
  /** Aborting kills the running step's whole process group. */
  signal?: AbortSignal;
  /** Compile through ccache (compilerCache()); undefined: gcc alone. */
  ccache?: CompilerCache;
}): Promise<BuildOutput> {
  const t0 = Date.now();
  const arch = opts.arch ?? DEFAULT_ARCH;
  const kb = archKernelBuild(arch);
  // A cross build says which arch and which compiler on every make (and in the environment, for
  // merge_config.sh); a native one needs neither (kbuild takes the host's).
  const archVars = kb.crossCompile ? [`ARCH=${kb.kernelArch}`, `CROSS_COMPILE=${kb.crossCompile}`] : [];
  const archEnv = Object.fromEntries(archVars.map((v) => v.split('=') as [string, string]));
  // Through ccache: the kernel's compiler and the host programs' (on every make, so Kconfig sees
  // the same CC as the compile). Each build runs in a new work folder, so paths under it are
  // hashed relative to it (base_dir) and the folder itself is not hashed (hash_dir off; the
  // DWARF of an object from the cache then names the folder of the build that made it). Headers
  // kbuild generates just before compiling are newer than ccache trusts by default (sloppiness).
  const statsLog = join(opts.work, 'ccache-stats.log');
  const ccVars = opts.ccache ? [`CC=ccache ${kb.crossCompile}gcc`, 'HOSTCC=ccache gcc'] : [];
  const ccEnv: Record<string, string> = opts.ccache
    ? { CCACHE_DIR: opts.ccache.dir, CCACHE_MAXSIZE: opts.ccache.maxSize, CCACHE_BASEDIR: opts.work, CCACHE_NOHASHDIR: '1', CCACHE_SLOPPINESS: 'include_file_mtime,include_file_ctime', CCACHE_STATSLOG: statsLog }
    : {};
  const makeVars = [...archVars, ...ccVars];
  const src = join(opts.work, 'src');
  const out = join(opts.work, 'out');
  mkdirSync(src, { recursive: true });
  mkdirSync(out, { recursive: true });
  const log = createWriteStream(opts.logFile);
  const step = async (title: string, cmd: string, args: string[], cwd: string): Promise<string> => {
    log.write(`\n### ${title}: ${cmd} ${args.join(' ')}\n`);
    if (opts.signal?.aborted) throw new CoreMatrixError(`${opts.what}: build interrupted`);
    // Its own process group, so an interrupted run takes make and every compiler with it.
    const child = execa(cmd, args, { cwd, all: true, reject: false, detached: true, env: { LC_ALL: 'C', ...archEnv, ...ccEnv } });
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    opts.signal?.addEventListener('abort', killGroup, { once: true });
    process.once('exit', killGroup);
    let tail = '';
    let steps = 0;
    child.all?.on('data', (b: Buffer) => {
      log.write(b);
      tail = (tail + b.toString()).slice(-4000);
      if (title === `make ${kb.target}` && opts.onCompileSteps) {
        steps += compileSteps(b.toString());
        opts.onCompileSteps(steps);
      }
    });
    const r = await child;
    opts.signal?.removeEventListener('abort', killGroup);
    process.removeListener('exit', killGroup);
    if (opts.signal?.aborted) throw new CoreMatrixError(`${opts.what}: build interrupted`);
    if (r.exitCode !== 0) {
      const lines = tail.split('\n').map((l) => l.trim()).filter(Boolean);
      const why = lines.reverse().find((l) => /error|Error|fatal|No such|not found/.test(l)) ?? lines[0] ?? `exit ${r.exitCode}`;
      throw new CoreMatrixError(`${opts.what}: ${title} failed: ${why} (full log: ${opts.logFile})`);
    }
    return String(r.stdout ?? '');
  };
  try {
    opts.onLog('unpacking the source');
    // set -o pipefail is not in dash: a package without the tarball shows as an empty unpack.
    await step('unpack', 'sh', ['-c', `${sourceTarStream(opts.deb)} | tar -x --strip-components=1`], src);
    if (!existsSync(join(src, 'Makefile'))) throw new CoreMatrixError(`${opts.what}: ${opts.deb} holds no usr/src/linux-source-*.tar.xz`);
    const fragFile = join(opts.work, 'fragment.config');
    writeFileSync(fragFile, opts.fragment);
    opts.onLog('configuring (tinyconfig + fragments)');
    await step('tinyconfig', 'make', [`O=${out}`, ...makeVars, 'tinyconfig'], src);
    await step('merge fragments', 'scripts/kconfig/merge_config.sh', ['-m', '-O', out, join(out, '.config'), fragFile], src);
    await step('olddefconfig', 'make', [`O=${out}`, ...makeVars, 'olddefconfig'], src);
    const finalConfig = readFileSync(join(out, '.config'), 'utf8');
    const unmet = unmetOptions(opts.fragment, finalConfig);
    if (unmet.length) throw new CoreMatrixError(`${opts.what}: ${opts.build.config}: Kconfig did not honour ${unmet.length} option(s): ${unmet.slice(0, 3).join('; ')}${unmet.length > 3 ? '; …' : ''}`);
    const jobs = opts.jobs ?? availableParallelism();
    opts.onLog(`compiling with ${jobs} job(s)${kb.crossCompile ? ` for ${arch} (${kb.crossCompile}gcc)` : ''}${opts.ccache ? ' through ccache' : ''} (log: ${opts.logFile})`);
    await step(`make ${kb.target}`, 'make', [`O=${out}`, ...makeVars, `-j${jobs}`, kb.target], src);
    const ccache = opts.ccache ? ccacheStatsFromLog(existsSync(statsLog) ? readFileSync(statsLog, 'utf8') : '') : undefined;
    if (ccache) opts.onLog(`ccache: ${ccache.hits} of ${ccache.hits + ccache.misses} compilations from the cache (${opts.ccache!.dir}, max ${opts.ccache!.maxSize})`);
    const release = (await step('kernelrelease', 'make', ['-s', `O=${out}`, ...makeVars, 'kernelrelease'], src)).trim().split('\n').pop()!;
    const vmlinux = join(out, 'vmlinux');
    const btf = join(opts.work, 'vmlinux.btf');
    let btfSource: 'kernel' | 'pahole';
    if (opts.build.btf === 'kernel') {
      const sec = elfSection(readFileSync(vmlinux), '.BTF', `${opts.what}: vmlinux`);
      if (!sec) throw new CoreMatrixError(`${opts.what}: built with CONFIG_DEBUG_INFO_BTF but vmlinux has no .BTF section (pahole too old?)`);
      writeFileSync(btf, sec);
      btfSource = 'kernel';
    } else {
      opts.onLog('generating BTF from DWARF with pahole');
      await step('pahole', 'pahole', ['-J', `--btf_encode_detached=${btf}`, vmlinux], out);
      if (!existsSync(btf)) throw new CoreMatrixError(`${opts.what}: pahole wrote no BTF`);
      btfSource = 'pahole';
    }
    return { vmlinuz: join(out, kb.image), config: join(out, '.config'), btf, btfSource, release, seconds: Math.round((Date.now() - t0) / 1000), log: opts.logFile, ...(ccache ? { ccache } : {}) };
  } finally {
    await new Promise<void>((r) => log.end(() => r()));
  }
}
