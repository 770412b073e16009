// The current libbpf: tools/lib/bpf of the newest Debian linux-source-X.Y package, built here
// against this machine's (bookworm's) glibc, libelf and zlib. Debian's own newer libbpf packages
// need a newer glibc than the guests carry; a build from the kernel source does not.
//
// Only what libbpf's Makefile reads is unpacked from the source tarball (about 4.5 MB of a 1.5 GB
// tree), only the shared library is built, and the result is kept under cacheDir('libbpf') keyed
// by the source package version: built once (under a lock, so concurrent runs wait for one
// build), checked by its sha256 on every use, rebuilt when the check fails.
//
// For a guest arch other than the host's (arm64, issue 19) the same source is cross-built with
// Debian's cross compiler (gcc-aarch64-linux-gnu, bookworm's glibc 2.36 for arm64) against the
// arch's own libelf and zlib: Debian's packages of that arch from the suite the guest's userland
// comes from (trixie), fetched through the arch's private apt state and unpacked as that userland's
// packages are (arm64-userland.ts), so the libelf.so.1 and libz.so.1 it names are the ones the guest carries. Its cache
// folder is keyed by source version and arch (`<pkg>_<version>_arm64`); the amd64 folder's name is
// unchanged. A binary of another arch cannot run on the host, so its checks read the ELF file.
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CoreMatrixError } from '../core/errors.js';
import { AptState, type AptCandidate } from '../kernels/apt.js';
import { DEFAULT_ARCH, type DebianArch } from '../kernels/arch.js';
import { hostArch } from '../images/busybox-arch.js';
import { DEFAULT_USERLAND_SUITES, MULTIARCH, packageClosure, unpackPackage } from '../images/arm64-userland.js';
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

/**
 * What else of the tree libbpf reads when built for an arch: tools/arch/<arch>/include, and on
 * arm64 the kernel's own UAPI bpf_perf_event.h (tools/include/uapi/asm/bpf_perf_event.h includes it
 * for __aarch64__; x86-64 takes the asm-generic one under tools/include).
 */
const ARCH_SOURCE_PATHS: Record<DebianArch, string[]> = {
  amd64: [],
  arm64: ['tools/arch/arm64/include', 'arch/arm64/include/uapi/asm/bpf_perf_event.h'],
};

/** How a guest arch other than the host's is built: the cross toolchain's prefix, its Debian packages (named in errors), the kernel's name of the arch (make ARCH=). */
const CROSS: Partial<Record<DebianArch, { prefix: string; packages: string; srcArch: string }>> = {
  arm64: { prefix: 'aarch64-linux-gnu-', packages: 'gcc-aarch64-linux-gnu and libc6-dev-arm64-cross', srcArch: 'arm64' },
};

/** The -dev packages of the arch a cross build compiles and links against (-lelf -lz); their Depends come along, glibc's excepted (the cross toolchain brings its own). */
const CROSS_DEV_PACKAGES = ['libelf-dev', 'zlib1g-dev'];
const GLIBC_PACKAGE = /^(libc6|libc6-dev|libc-dev|libcrypt1|libcrypt-dev|linux-libc-dev|rpcsvc-proto|libnsl-dev|libtirpc-dev)$/;

/** What a build leaves in its cache folder (`libbpf.json`), all paths relative to that folder. */
export interface LibbpfManifest {
  recipe: number;
  /** The arch it is built for; absent: amd64 (manifests from before arm64 builds). */
  arch?: DebianArch;
  /** Debian source package and version, e.g. linux-source-7.3 7.3.4-1~bpo13+1. */
  package: string;
  sourceVersion: string;
  suite: string;
  /** The newest LIBBPF_x.y.z node of libbpf.map: the .so is libbpf.so.<version>. */
  version: string;
  /**
   * What the library's public API answers (libbpf_major/minor_version, libbpf_version_string): a C
   * program linked against it ran on the host (`apiFrom` probe), or, for another arch, what its
   * source's libbpf_version.h defines, checked against the library's bytes (`apiFrom` elf: its
   * version nodes, its version string); the guest's reference loader asks the library itself.
   */
  api: { major: number; minor: number; versionString: string };
  /** Absent in manifests from before arm64 builds: probe. */
  apiFrom?: 'probe' | 'elf';
  /** What binutils' readelf says of the built .so (absent in manifests from before arm64 builds). */
  elf?: { machine: string; soname: string; versionNodes: string[] };
  /** A cross build: the arch's packages its libelf and zlib headers and libraries came from (`name version (suite)`). */
  buildDeps?: string[];
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
  /** The arch the library is built for. */
  arch: DebianArch;
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
  /** The private apt state of the host's arch (the source package is found and kept there). */
  apt?: AptState;
  jobs?: number;
  /** The guest arch to build for (default amd64); another arch than the host's is cross-built. */
  arch?: DebianArch;
  /** Suites the cross build's libelf and zlib come from (default: the arch userland's, trixie). */
  librarySuites?: string[];
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

/** The cache folder of one build: `<pkg>_<version>` for amd64 (as before arm64 builds), `<pkg>_<version>_<arch>` else. */
function buildDir(pkg: string, version: string, arch: DebianArch): string {
  return join(cacheDir('libbpf'), `${pkg}_${version.replace(/:/g, '%3a')}${arch === DEFAULT_ARCH ? '' : `_${arch}`}`);
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
  return { arch: m.arch ?? DEFAULT_ARCH, so: join(dir, m.so), version: m.version, source: `${m.package} ${m.sourceVersion}`, include: join(dir, m.include), map: join(dir, m.map), manifest: m };
}

/** The newest intact cached build for `arch` (for when the apt lists cannot be read). */
function newestCachedBuild(arch: DebianArch): CurrentLibbpf | undefined {
  const root = cacheDir('libbpf');
  const builds = readdirSync(root)
    .filter((f) => f.startsWith('linux-source-') && !f.endsWith('.log') && !f.endsWith('.lock'))
    .map((f) => ({ dir: join(root, f), m: validBuild(join(root, f)) }))
    .filter((b): b is { dir: string; m: LibbpfManifest } => b.m !== undefined && (b.m.arch ?? DEFAULT_ARCH) === arch)
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
  const arch = opts.arch ?? DEFAULT_ARCH;
  const apt = opts.apt ?? new AptState({ log });
  const suites = opts.suites ?? [...new Set(loadMatrix().flatMap((k) => k.suites))];
  let src: AptCandidate;
  try {
    src = await newestLinuxSource(apt, suites);
  } catch (err) {
    const cached = newestCachedBuild(arch);
    if (!cached) throw err;
    log(`libbpf: cannot find the newest linux-source (${(err as Error).message.split('\n')[0]}); using the cached ${arch} build from ${cached.source}`);
    return cached;
  }
  const dir = buildDir(src.name, src.version, arch);
  return withLock(`${dir}.lock`, async () => {
    const cached = validBuild(dir);
    if (cached) return resultOf(dir, cached);
    if (existsSync(dir)) log(`libbpf: the cached build in ${dir} is incomplete or damaged; rebuilding`);
    const cross = arch === hostArch() ? undefined : CROSS[arch];
    if (arch !== hostArch() && !cross) throw new CoreMatrixError(`libbpf build: no cross toolchain known for ${arch}`);
    if (cross) await checkCrossToolchain(arch, cross);
    const deb = await apt.keptDownload(src.name, src.version);
    const m = await buildLibbpf({ deb, src, dir, log, jobs: opts.jobs, arch, ...(cross ? { cross: { ...cross, librarySuites: opts.librarySuites ?? DEFAULT_USERLAND_SUITES } } : {}) });
    return resultOf(dir, m);
  });
}

/** The cross compiler and its C library are there (before minutes of unpacking): one line naming the packages when not. */
async function checkCrossToolchain(arch: DebianArch, cross: { prefix: string; packages: string }): Promise<void> {
  const gcc = `${cross.prefix}gcc`;
  const missing = `libbpf build for ${arch}: needs ${cross.packages} (Debian); \`npm run setup\` installs them`;
  // -print-file-name answers a bare name when the file is not in the toolchain's search path.
  const crti = await execa(gcc, ['-print-file-name=crti.o'], { reject: false });
  if (crti.exitCode !== 0) throw new CoreMatrixError(`${missing} (${gcc}: ${crti.failed && crti.exitCode === undefined ? 'not found' : String(crti.stderr || crti.shortMessage).split('\n')[0]})`);
  if (!crti.stdout.trim().startsWith('/')) throw new CoreMatrixError(`${missing} (${gcc} finds no C library: crti.o)`);
}

/**
 * The arch's -dev packages for libelf and zlib and what they depend on (not glibc's), newest in
 * `suites`, unpacked as the arch's userland packages are (arm64-userland.ts: once per version, in
 * the cache) and copied together into `sysroot`: a -dev package's libelf.so link names the
 * library another package installs, and the linker must find both in one folder (else it takes
 * the static libelf.a). Returns `name version (suite)` of each.
 */
async function crossLibraries(arch: DebianArch, suites: string[], sysroot: string, log: (line: string) => void): Promise<string[]> {
  const apt = new AptState({ arch, log });
  await apt.ensure(suites);
  const { binary } = await packageClosure(apt, CROSS_DEV_PACKAGES, suites, { skip: (name) => GLIBC_PACKAGE.test(name) });
  for (const p of binary) cpSync((await unpackPackage(apt, p)).dir, sysroot, { recursive: true, verbatimSymlinks: true });
  return binary.map((p) => `${p.name} ${p.version} (${p.suite})`);
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

/** The `#define LIBBPF_<NAME>_VERSION n` of the source's libbpf_version.h. */
function headerVersion(text: string, name: 'MAJOR' | 'MINOR'): number | undefined {
  const m = new RegExp(`^#define LIBBPF_${name}_VERSION (\\d+)\\s*$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/**
 * What readelf says of a built .so: its machine (`-h`), SONAME and DT_NEEDED (`-d`), version
 * definitions (`-V`: the LIBBPF_x.y.z nodes) and which symbols it exports at which node (`--dyn-syms`).
 */
async function readElf(so: string, run: (title: string, cmd: string, args: string[]) => Promise<string>) {
  const header = await run('readelf -h', 'readelf', ['-h', '--wide', so]);
  const dynamic = await run('readelf -d', 'readelf', ['-d', '--wide', so]);
  const versions = await run('readelf -V', 'readelf', ['-V', '--wide', so]);
  const symbols = await run('readelf --dyn-syms', 'readelf', ['--dyn-syms', '--wide', so]);
  const definitions = versions.split(/^Version needs section/m)[0]!;
  return {
    machine: /^\s*Machine:\s+(.+?)\s*$/m.exec(header)?.[1] ?? '',
    soname: /\(SONAME\)\s+Library soname: \[([^\]]+)\]/.exec(dynamic)?.[1] ?? '',
    needed: [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!),
    versionNodes: [...definitions.matchAll(/Name: (LIBBPF_\d+\.\d+\.\d+)\b/g)].map((m) => m[1]!),
    /** `name@@NODE` of every defined (not UND) dynamic symbol. */
    exported: new Set([...symbols.matchAll(/^\s*\d+:\s+[0-9a-f]+\s+\S+\s+\w+\s+GLOBAL\s+\w+\s+(?!UND)\S+\s+(\S+@@\S+)/gm)].map((m) => m[1]!)),
  };
}

/** readelf's `Machine:` of each arch's shared objects. */
const ELF_MACHINE_NAME: Record<DebianArch, string> = { amd64: 'Advanced Micro Devices X86-64', arm64: 'AArch64' };

async function buildLibbpf(o: {
  deb: string; src: AptCandidate; dir: string; log: (line: string) => void; jobs?: number; arch: DebianArch;
  cross?: { prefix: string; srcArch: string; librarySuites: string[] };
}): Promise<LibbpfManifest> {
  const t0 = Date.now();
  const what = `${o.src.name} ${o.src.version}${o.cross ? ` for ${o.arch}` : ''}`;
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
    const want = [...SOURCE_PATHS, ...ARCH_SOURCE_PATHS[o.arch]].map((p) => `'*/${p}'`).join(' ');
    await step('unpack', 'sh', ['-c', `${sourceTarStream(o.deb)} | tar -x --wildcards --strip-components=1 ${want}`], tree, logFile, logStream);
    const lib = join(tree, 'tools/lib/bpf');
    for (const f of ['Makefile', 'libbpf.map', 'libbpf_version.h']) {
      if (!existsSync(join(lib, f))) throw new CoreMatrixError(`libbpf build: ${what} has no tools/lib/bpf/${f}`);
    }
    const version = mapVersion(readFileSync(join(lib, 'libbpf.map'), 'utf8'));
    if (!version) throw new CoreMatrixError(`libbpf build: ${what}: tools/lib/bpf/libbpf.map has no LIBBPF_x.y.z node`);
    const soName = `libbpf.so.${version}`;
    const jobs = o.jobs ?? availableParallelism();
    // A cross build: the arch's libelf and zlib in a folder of their own, named to the compiler
    // (-I before the cross gcc's own search path, which ends in the host's /usr/include) and to the
    // linker (-L, and -rpath-link for what libelf.so.1 itself needs: libzstd).
    let crossArgs: string[] = [];
    let buildDeps: string[] | undefined;
    if (o.cross) {
      const sysroot = join(work, 'libs');
      o.log(`libbpf: ${o.arch} libelf and zlib from ${o.cross.librarySuites.join(', ')}`);
      buildDeps = await crossLibraries(o.arch, o.cross.librarySuites, sysroot, o.log);
      logStream.write(`\n### ${o.arch} libraries: ${buildDeps.join(', ')}\n`);
      const libDir = join(sysroot, 'usr/lib', MULTIARCH[o.arch]);
      crossArgs = [
        `ARCH=${o.cross.srcArch}`, `CROSS_COMPILE=${o.cross.prefix}`,
        // EXTRA_CFLAGS replaces the Makefile's default -g -O2: say them again.
        `EXTRA_CFLAGS=-g -O2 -I${join(sysroot, 'usr/include')}`,
        `LDFLAGS=-L${libDir} -Wl,-rpath-link=${libDir}`,
      ];
    }
    o.log(`libbpf: building ${soName}${o.cross ? ` for ${o.arch} with ${o.cross.prefix}gcc` : ''} with ${jobs} job(s) (log: ${logFile})`);
    const make = (title: string, ...args: string[]) => step(title, 'make', ['-C', lib, `OUTPUT=${out}/`, ...crossArgs, ...args], work, logFile, logStream);
    // The shared library only (the default target also builds libbpf.a), then libbpf's own ABI
    // and version checks (every LIBBPF_API symbol versioned; libbpf.map agrees with libbpf_version.h).
    await make('make libbpf.so', `-j${jobs}`, join(out, 'libbpf.so'));
    await make('make check', 'check');
    await make('make install_headers', `DESTDIR=${stage}`, 'prefix=', 'install_headers');
    const built = join(out, soName);
    if (!existsSync(built)) throw new CoreMatrixError(`libbpf build: ${what}: make wrote no ${soName}`);
    // Debug info is most of the file; a guest image does not need it (the arch's own objcopy for a cross build).
    await step('strip', `${o.cross?.prefix ?? ''}objcopy`, ['--strip-debug', built, join(stage, soName)], work, logFile, logStream);
    copyFileSync(join(lib, 'libbpf.map'), join(stage, 'libbpf.map'));

    const elf = await readElf(join(stage, soName), (title, cmd, args) => step(title, cmd, args, work, logFile, logStream));
    const major = version.split('.')[0]!;
    if (elf.machine !== ELF_MACHINE_NAME[o.arch]) throw new CoreMatrixError(`libbpf build: ${what}: ${soName} is ELF machine '${elf.machine}', not ${ELF_MACHINE_NAME[o.arch]}`);
    if (elf.soname !== `libbpf.so.${major}`) throw new CoreMatrixError(`libbpf build: ${what}: ${soName} has SONAME '${elf.soname}', not libbpf.so.${major}`);
    const mapNodes = [...readFileSync(join(lib, 'libbpf.map'), 'utf8').matchAll(/^(LIBBPF_\d+\.\d+\.\d+)\s*\{/gm)].map((m) => m[1]!);
    const lost = mapNodes.filter((n) => !elf.versionNodes.includes(n));
    if (lost.length) throw new CoreMatrixError(`libbpf build: ${what}: ${soName} defines no version node ${lost.join(', ')} of libbpf.map`);
    const versionApi = ['libbpf_major_version', 'libbpf_minor_version', 'libbpf_version_string'];
    const unexported = versionApi.filter((f) => ![...elf.exported].some((s) => s.startsWith(`${f}@@LIBBPF_`)));
    if (unexported.length) throw new CoreMatrixError(`libbpf build: ${what}: ${soName} does not export ${unexported.join(', ')} at a LIBBPF_ version node`);

    const api = o.cross ? await apiFromSource(join(lib, 'libbpf_version.h'), join(stage, soName), what) : await apiFromProbe(stage, soName, version, work, logFile, logStream, what);
    if (`${api.major}.${api.minor}` !== version.split('.').slice(0, 2).join('.')) {
      throw new CoreMatrixError(`libbpf build: ${what}: the library says ${api.major}.${api.minor}, libbpf.map says ${version}`);
    }
    const gcc = (await execa(o.cross ? `${o.cross.prefix}gcc` : 'cc', ['--version'])).stdout.split('\n')[0]!.trim();

    const manifest: LibbpfManifest = {
      recipe: LIBBPF_RECIPE,
      ...(o.arch !== DEFAULT_ARCH ? { arch: o.arch } : {}),
      package: o.src.name,
      sourceVersion: o.src.version,
      suite: o.src.suite,
      version,
      api,
      apiFrom: o.cross ? 'elf' : 'probe',
      elf: { machine: elf.machine, soname: elf.soname, versionNodes: elf.versionNodes },
      ...(buildDeps ? { buildDeps } : {}),
      so: soName,
      sha256: sha256File(join(stage, soName)),
      bytes: readFileSync(join(stage, soName)).length,
      needed: elf.needed,
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

/**
 * A library of another arch cannot be run here: its API's answers are what the source defines
 * (libbpf_version.h; libbpf_version_string is "v<major>.<minor>"), and that string must be in the
 * library's bytes. The guest's reference loader asks the library itself (reference/libbpf.ts
 * refuses one whose answer differs from the version it is shipped as).
 */
async function apiFromSource(header: string, so: string, what: string): Promise<LibbpfManifest['api']> {
  const text = readFileSync(header, 'utf8');
  const major = headerVersion(text, 'MAJOR');
  const minor = headerVersion(text, 'MINOR');
  if (major === undefined || minor === undefined) throw new CoreMatrixError(`libbpf build: ${what}: libbpf_version.h defines no LIBBPF_MAJOR_VERSION / LIBBPF_MINOR_VERSION`);
  const versionString = `v${major}.${minor}`;
  if (!readFileSync(so).includes(Buffer.from(`${versionString}\0`, 'latin1'))) throw new CoreMatrixError(`libbpf build: ${what}: the library holds no string "${versionString}" (libbpf_version.h says ${major}.${minor})`);
  return { major, minor, versionString };
}

/** The built library must load and answer its API as the source says: a C program linked against it, run here. */
async function apiFromProbe(stage: string, soName: string, version: string, work: string, logFile: string, logStream: NodeJS.WritableStream, what: string): Promise<LibbpfManifest['api']> {
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
  return { major: Number(am[1]), minor: Number(am[2]), versionString: am[3]! };
}
