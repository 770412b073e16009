// Custom kernels: a Debian linux-source-* tree plus a config fragment, built with the machine's
// compiler. The recipe (source package version, `make tinyconfig`, kernels/configs/base.config,
// the entry's fragment, the BTF mode, the gcc and pahole versions) is hashed; the store keeps the
// result under that hash, so a kernel is rebuilt only when one of those changes.
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
import { repoRoot } from '../paths.js';
import { elfSection } from './extract.js';
import type { CustomBuild } from './matrix.js';

/** Bump when the build steps change in a way that changes the output. */
export const RECIPE_VERSION = 2;

export interface BuildRecipe {
  recipe: number;
  source: string;
  sourceVersion: string;
  /** Config text applied after `make tinyconfig`: base.config, the fragment, the BTF switch. */
  fragment: string;
  gcc: string;
  pahole: string;
}

export interface BuildOutput {
  /** bzImage, .config and the vmlinux BTF (from .BTF or from pahole), in `dir`. */
  vmlinuz: string;
  config: string;
  btf: string;
  btfSource: 'kernel' | 'pahole';
  release: string;
  seconds: number;
  log: string;
}

export function baseConfigFile(): string {
  return join(repoRoot(), 'kernels', 'configs', 'base.config');
}

/** The config lines a build applies on top of tinyconfig, in order (later lines win). */
export function effectiveFragment(b: CustomBuild): string {
  const base = readFileSync(baseConfigFile(), 'utf8');
  const own = readFileSync(b.configPath, 'utf8');
  const btf = b.btf === 'kernel' ? 'CONFIG_DEBUG_INFO_BTF=y\n' : '# CONFIG_DEBUG_INFO_BTF is not set\n';
  // Entries differing only in pahole/none share one build (the hash is over this text).
  return `# kernels/configs/base.config\n${base.trimEnd()}\n# ${b.config}\n${own.trimEnd()}\n${btf}CONFIG_LOCALVERSION="-corematrix"\n# CONFIG_LOCALVERSION_AUTO is not set\n`;
}

export function recipeHash(r: BuildRecipe): string {
  return createHash('sha256').update(JSON.stringify(r)).digest('hex');
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execa(cmd, args);
    return stdout.split('\n')[0]!.trim();
  } catch {
    throw new CoreMatrixError(`building a custom kernel needs ${cmd} (install it: apt-get install ${cmd === 'gcc' ? 'gcc' : 'dwarves'})`);
  }
}

let tools: Promise<{ gcc: string; pahole: string }> | undefined;
/** The compiler and pahole versions (part of the recipe hash), asked once per process. */
export function toolVersions(): Promise<{ gcc: string; pahole: string }> {
  tools ??= (async () => ({ gcc: await firstLine('gcc', ['--version']), pahole: await firstLine('pahole', ['--version']) }))();
  tools.catch(() => (tools = undefined));
  return tools;
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

/**
 * Builds one kernel in `work` (deleted by the caller) from the source package `deb`. `onLog` gets
 * a line per step; the full compiler output goes to `logFile`.
 */
/** Compile and link steps in a piece of kbuild's output ("  CC      kernel/fork.o"): the unit of a build's progress. */
export function compileSteps(text: string): number {
  return text.match(/^\s+(CC|AS|AR|LD)\s/gm)?.length ?? 0;
}

/** Compile steps of a tinyconfig + base.config build of 6.12 (the 6.12-nonetns recipe, measured): the estimate before any build was logged. */
export const TYPICAL_COMPILE_STEPS = 1810;

export async function buildKernel(opts: {
  deb: string;
  build: CustomBuild;
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
}): Promise<BuildOutput> {
  const t0 = Date.now();
  const src = join(opts.work, 'src');
  const out = join(opts.work, 'out');
  mkdirSync(src, { recursive: true });
  mkdirSync(out, { recursive: true });
  const log = createWriteStream(opts.logFile);
  const step = async (title: string, cmd: string, args: string[], cwd: string): Promise<string> => {
    log.write(`\n### ${title}: ${cmd} ${args.join(' ')}\n`);
    if (opts.signal?.aborted) throw new CoreMatrixError(`${opts.what}: build interrupted`);
    // Its own process group, so an interrupted run takes make and every compiler with it.
    const child = execa(cmd, args, { cwd, all: true, reject: false, detached: true, env: { LC_ALL: 'C' } });
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
      if (title === 'make bzImage' && opts.onCompileSteps) {
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
    await step('tinyconfig', 'make', [`O=${out}`, 'tinyconfig'], src);
    await step('merge fragments', 'scripts/kconfig/merge_config.sh', ['-m', '-O', out, join(out, '.config'), fragFile], src);
    await step('olddefconfig', 'make', [`O=${out}`, 'olddefconfig'], src);
    const finalConfig = readFileSync(join(out, '.config'), 'utf8');
    const unmet = unmetOptions(opts.fragment, finalConfig);
    if (unmet.length) throw new CoreMatrixError(`${opts.what}: ${opts.build.config}: Kconfig did not honour ${unmet.length} option(s): ${unmet.slice(0, 3).join('; ')}${unmet.length > 3 ? '; …' : ''}`);
    const jobs = opts.jobs ?? availableParallelism();
    opts.onLog(`compiling with ${jobs} job(s) (log: ${opts.logFile})`);
    await step('make bzImage', 'make', [`O=${out}`, `-j${jobs}`, 'bzImage'], src);
    const release = (await step('kernelrelease', 'make', ['-s', `O=${out}`, 'kernelrelease'], src)).trim().split('\n').pop()!;
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
    return { vmlinuz: join(out, 'arch/x86/boot/bzImage'), config: join(out, '.config'), btf, btfSource, release, seconds: Math.round((Date.now() - t0) / 1000), log: opts.logFile };
  } finally {
    await new Promise<void>((r) => log.end(() => r()));
  }
}
