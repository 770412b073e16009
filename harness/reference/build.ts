// The current libbpf: tools/lib/bpf of the newest Debian linux-source-X.Y package, built here
// against this machine's (bookworm's) glibc, libelf and zlib. Debian's own newer libbpf packages
// need a newer glibc than the guests carry; a build from the kernel source does not.
//
// Only what libbpf's Makefile reads is unpacked from the source tarball (about 4.5 MB of a 1.5 GB
// tree), only the shared library is built, and the result is kept under cacheDir('libbpf') keyed
// by the source package version: built once (under a lock, so concurrent runs wait for one
// build), checked by its sha256 on every use, rebuilt when the check fails.
import { createHash } from 'node:crypto';
import { copyFileSync, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CoreMatrixError } from '../core/errors.js';
import { AptState, type AptCandidate } from '../kernels/apt.js';
import { sourceTarStream } from '../kernels/build.js';
import { compareDebVersions } from '../kernels/debversion.js';
import { loadMatrix } from '../kernels/matrix.js';
import { withLock } from '../lock.js';
import { cacheDir, writeFileAtomic } from '../paths.js';

/** Bump when the build steps change what lands in the cache. */
export const LIBBPF_RECIPE = 1;

const SOURCE_PACKAGE = /^linux-source-\d+\.\d+$/;

/**
 * The paths of the kernel tree libbpf's Makefile reads: its sources, the tools headers and build
 * rules, bpf_doc.py (generates bpf_helper_defs.h), and the UAPI headers it diffs its copies against.
 */
const SOURCE_PATHS = [
  'tools/lib/bpf',
  'tools/include',
  'tools/build',
  'tools/scripts',
  'tools/arch/x86/include',
  'scripts/bpf_doc.py',
  'include/uapi/linux/bpf.h',
  'include/uapi/linux/bpf_common.h',
  'include/uapi/linux/if_xdp.h',
];

/** What a build leaves in its cache folder (`libbpf.json`), all paths relative to that folder. */
export interface LibbpfManifest {
  recipe: number;
  /** Debian source package and version, e.g. linux-source-7.3 7.3.4-1~bpo13+1. */
  package: string;
  sourceVersion: string;
  suite: string;
  /** The newest LIBBPF_x.y.z node of libbpf.map: the .so is libbpf.so.<version>. */
  version: string;
  /** What the built library answered through its public API (a C program linked against it). */
  api: { major: number; minor: number; versionString: string };
  so: string;
  sha256: string;
  bytes: number;
  /** Shared libraries it links against (DT_NEEDED): what a guest must carry besides it. */
  needed: string[];
  /** Installed headers (`include/bpf/*.h`) and the version script of the source. */
  include: string;
  map: string;
  gcc: string;
  buildSeconds: number;
  builtAt: string;
}

export interface CurrentLibbpf {
  /** Absolute path of the built libbpf.so.<version> (debug info stripped). */
  so: string;
  /** e.g. 1.8.0 */
  version: string;
  /** e.g. `linux-source-7.3 7.3.4-1~bpo13+1` */
  source: string;
  /** `-I` folder holding bpf/libbpf.h etc. of this build. */
  include: string;
  /** The source's tools/lib/bpf/libbpf.map. */
  map: string;
  manifest: LibbpfManifest;
}

export interface CurrentLibbpfOptions {
  /** Suites to look for linux-source-X.Y in (default: every suite kernels/matrix.yaml uses). */
  suites?: string[];
  apt?: AptState;
  jobs?: number;
}

/** The newest version of any linux-source-X.Y package in `suites` (by Debian version order). */
export async function newestLinuxSource(apt: AptState, suites: string[]): Promise<AptCandidate> {
  await apt.ensure(suites);
  const names = (await apt.search('^linux-source-[0-9]+\\.[0-9]+$')).filter((n) => SOURCE_PACKAGE.test(n));
  const rows = (await apt.madison(names)).filter((r) => suites.includes(r.suite) && SOURCE_PACKAGE.test(r.name));
  if (rows.length === 0) throw new CoreMatrixError(`current libbpf: no linux-source-X.Y package in ${suites.join(', ')} of the private apt state`);
  rows.sort((a, b) => compareDebVersions(a.version, b.version));
  return rows[rows.length - 1]!;
}

function buildDir(pkg: string, version: string): string {
  return join(cacheDir('libbpf'), `${pkg}_${version.replace(/:/g, '%3a')}`);
}

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** The manifest of a cached build when every file it names is there and the .so is intact. */
export function validBuild(dir: string): LibbpfManifest | undefined {
  try {
    const m = JSON.parse(readFileSync(join(dir, 'libbpf.json'), 'utf8')) as LibbpfManifest;
    if (m.recipe !== LIBBPF_RECIPE) return undefined;
    if (!existsSync(join(dir, m.include, 'bpf', 'libbpf.h')) || !existsSync(join(dir, m.map))) return undefined;
    return sha256File(join(dir, m.so)) === m.sha256 ? m : undefined;
  } catch {
    return undefined;
  }
}

function resultOf(dir: string, m: LibbpfManifest): CurrentLibbpf {
  return { so: join(dir, m.so), version: m.version, source: `${m.package} ${m.sourceVersion}`, include: join(dir, m.include), map: join(dir, m.map), manifest: m };
}

/** The newest intact cached build (for when the apt lists cannot be read). */
function newestCachedBuild(): CurrentLibbpf | undefined {
  const root = cacheDir('libbpf');
  const builds = readdirSync(root)
    .filter((f) => f.startsWith('linux-source-'))
    .map((f) => ({ dir: join(root, f), m: validBuild(join(root, f)) }))
    .filter((b): b is { dir: string; m: LibbpfManifest } => b.m !== undefined)
    .sort((a, b) => compareDebVersions(a.m.sourceVersion, b.m.sourceVersion));
  const last = builds.at(-1);
  return last && resultOf(last.dir, last.m);
}

/** The highest `LIBBPF_x.y.z {` node of a libbpf.map version script, e.g. "1.8.0". */
function mapVersion(text: string): string | undefined {
  const versions = [...text.matchAll(/^LIBBPF_(\d+)\.(\d+)\.(\d+)\s*\{/gm)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3])] as const);
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  return versions.at(-1)?.join('.');
}

/**
 * The current libbpf: built from the newest linux-source-X.Y in the matrix's suites (once per
 * source version), or the cached build. When the apt lists cannot be read, the newest intact
 * cached build is used and `log` says so.
 */
export async function currentLibbpf(log: (line: string) => void = () => {}, opts: CurrentLibbpfOptions = {}): Promise<CurrentLibbpf> {
  const apt = opts.apt ?? new AptState({ log });
  const suites = opts.suites ?? [...new Set(loadMatrix().flatMap((k) => k.suites))];
  let src: AptCandidate;
  try {
    src = await newestLinuxSource(apt, suites);
  } catch (err) {
    const cached = newestCachedBuild();
    if (!cached) throw err;
    log(`libbpf: cannot find the newest linux-source (${(err as Error).message.split('\n')[0]}); using the cached build from ${cached.source}`);
    return cached;
  }
  const dir = buildDir(src.name, src.version);
  return withLock(`${dir}.lock`, async () => {
    const cached = validBuild(dir);
    if (cached) return resultOf(dir, cached);
    if (existsSync(dir)) log(`libbpf: the cached build in ${dir} is incomplete or damaged; rebuilding`);
    const deb = await apt.keptDownload(src.name, src.version);
    const m = await buildLibbpf({ deb, src, dir, log, jobs: opts.jobs });
    return resultOf(dir, m);
  });
}

/** Runs one build step; a failure is one line naming the step and the compiler's error, the full output in `logFile`. */
async function step(title: string, cmd: string, args: string[], cwd: string, logFile: string, log: NodeJS.WritableStream): Promise<string> {
  log.write(`\n### ${title}: ${cmd} ${args.join(' ')}\n`);
  const r = await execa(cmd, args, { cwd, all: true, reject: false, env: { LC_ALL: 'C' } });
  log.write(`${r.all ?? ''}\n`);
  if (r.exitCode !== 0) {
    const lines = String(r.all ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
    const why = [...lines].reverse().find((l) => /error|Error|fatal|No such|not found|missing/.test(l)) ?? lines.at(-1) ?? `exit ${r.exitCode ?? r.signal}`;
    // A missing header or tool is usually a build dependency scripts/setup.mjs installs.
    const hint = /No such file|not found/.test(why) ? '; `npm run setup` installs the build dependencies' : '';
    throw new CoreMatrixError(`libbpf build: ${title} failed: ${why} (full log: ${logFile})${hint}`);
  }
  return String(r.stdout ?? '');
}

/** A C program linked against the built library that prints what its public API answers. */
const API_PROBE = `#include <stdio.h>
#include <bpf/libbpf.h>
int main(void) {
  printf("%u %u %s\\n", libbpf_major_version(), libbpf_minor_version(), libbpf_version_string());
  return 0;
}
`;

async function buildLibbpf(o: { deb: string; src: AptCandidate; dir: string; log: (line: string) => void; jobs?: number }): Promise<LibbpfManifest> {
  const t0 = Date.now();
  const what = `${o.src.name} ${o.src.version}`;
  const work = `${o.dir}.tmp.${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  const tree = join(work, 'src');
  const out = join(work, 'out');
  const stage = join(work, 'result');
  for (const d of [tree, out, stage]) mkdirSync(d, { recursive: true });
  // Beside the build's folder, kept after a failure (the work folder is removed either way).
  const logFile = `${o.dir}.log`;
  const logStream = createWriteStream(logFile);
  try {
    o.log(`libbpf: unpacking tools/lib/bpf from ${what}`);
    const want = SOURCE_PATHS.map((p) => `'*/${p}'`).join(' ');
    await step('unpack', 'sh', ['-c', `${sourceTarStream(o.deb)} | tar -x --wildcards --strip-components=1 ${want}`], tree, logFile, logStream);
    const lib = join(tree, 'tools/lib/bpf');
    for (const f of ['Makefile', 'libbpf.map', 'libbpf_version.h']) {
      if (!existsSync(join(lib, f))) throw new CoreMatrixError(`libbpf build: ${what} has no tools/lib/bpf/${f}`);
    }
    const version = mapVersion(readFileSync(join(lib, 'libbpf.map'), 'utf8'));
    if (!version) throw new CoreMatrixError(`libbpf build: ${what}: tools/lib/bpf/libbpf.map has no LIBBPF_x.y.z node`);
    const soName = `libbpf.so.${version}`;
    const jobs = o.jobs ?? availableParallelism();
    o.log(`libbpf: building ${soName} with ${jobs} job(s) (log: ${logFile})`);
    const make = (title: string, ...args: string[]) => step(title, 'make', ['-C', lib, `OUTPUT=${out}/`, ...args], work, logFile, logStream);
    // The shared library only (the default target also builds libbpf.a), then libbpf's own ABI
    // and version checks (every LIBBPF_API symbol versioned; libbpf.map agrees with libbpf_version.h).
    await make('make libbpf.so', `-j${jobs}`, join(out, 'libbpf.so'));
    await make('make check', 'check');
    await make('make install_headers', `DESTDIR=${stage}`, 'prefix=', 'install_headers');
    const built = join(out, soName);
    if (!existsSync(built)) throw new CoreMatrixError(`libbpf build: ${what}: make wrote no ${soName}`);
    // Debug info is most of the file; a guest image does not need it.
    await step('strip', 'objcopy', ['--strip-debug', built, join(stage, soName)], work, logFile, logStream);
    copyFileSync(join(lib, 'libbpf.map'), join(stage, 'libbpf.map'));

    // The built library must load and answer its API as the source says.
    // The probe is linked by the soname (libbpf.so.1), so a folder holding only that name makes
    // the dynamic loader pick this build and not the system's libbpf.so.1.
    const probeDir = join(work, 'probe');
    mkdirSync(probeDir);
    symlinkSync(join(stage, soName), join(probeDir, `libbpf.so.${version.split('.')[0]}`));
    const probe = join(probeDir, 'api-probe');
    writeFileSync(`${probe}.c`, API_PROBE);
    await step('API probe', 'cc', ['-I', join(stage, 'include'), '-o', probe, `${probe}.c`, join(stage, soName)], work, logFile, logStream);
    const answer = (await execa(probe, [], { env: { LD_LIBRARY_PATH: probeDir } })).stdout.trim();
    const am = /^(\d+) (\d+) (\S+)$/.exec(answer);
    if (!am) throw new CoreMatrixError(`libbpf build: ${what}: the API probe printed '${answer}'`);
    const api = { major: Number(am[1]), minor: Number(am[2]), versionString: am[3]! };
    if (`${api.major}.${api.minor}` !== version.split('.').slice(0, 2).join('.')) {
      throw new CoreMatrixError(`libbpf build: ${what}: the library says ${api.major}.${api.minor}, libbpf.map says ${version}`);
    }
    const needed = [...(await step('readelf', 'readelf', ['-d', '--wide', join(stage, soName)], work, logFile, logStream)).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
    const gcc = (await execa('cc', ['--version'])).stdout.split('\n')[0]!.trim();

    const manifest: LibbpfManifest = {
      recipe: LIBBPF_RECIPE,
      package: o.src.name,
      sourceVersion: o.src.version,
      suite: o.src.suite,
      version,
      api,
      so: soName,
      sha256: sha256File(join(stage, soName)),
      bytes: readFileSync(join(stage, soName)).length,
      needed,
      include: 'include',
      map: 'libbpf.map',
      gcc,
      buildSeconds: Math.round((Date.now() - t0) / 100) / 10,
      builtAt: new Date().toISOString(),
    };
    // The manifest goes in last: a folder without one (or with a stale sha256) is rebuilt.
    writeFileAtomic(join(stage, 'libbpf.json'), JSON.stringify(manifest, null, 1) + '\n');
    rmSync(o.dir, { recursive: true, force: true });
    renameSync(stage, o.dir);
    o.log(`libbpf: built ${soName} from ${what} in ${manifest.buildSeconds} s (${manifest.bytes} bytes)`);
    return manifest;
  } finally {
    await new Promise<void>((r) => logStream.end(() => r()));
    rmSync(work, { recursive: true, force: true });
  }
}
