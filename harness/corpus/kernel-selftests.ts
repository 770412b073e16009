// The kernel's BPF selftests programs (tools/testing/selftests/bpf/progs/*.c) of the newest Debian
// linux-source-X.Y, compiled here with clang-19 the way the selftests' Makefile compiles them:
// against that tree's libbpf headers (from the current libbpf built from the same package, which
// generates bpf_helper_defs.h) and a vmlinux.h dumped by bpftool from the matrix kernel of the
// same series (else the newest one). Fetched and compiled at run time, cached by source version,
// never committed. A source that does not compile with clang-19 is listed with its first error.
//
// Per arch (docs/arm64.md, "Corpora on arm64"): the Makefile's flags of that arch (SRCARCH's
// -D__TARGET_ARCH_<x>, the target's endianness, the system headers clang finds for the arch's
// cross target) and a vmlinux.h of that arch's kernel; each arch's objects in their own folder.
//
//   const c = await kernelSelftests({ log, only: (name) => ..., arch: 'arm64' });   // c.objects[i].path

import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, normalize } from 'node:path';
import { execa } from 'execa';
import { CoreMatrixError } from '../core/errors.js';
import { loadObjectSpec } from '../core/object/load.js';
import { AptState } from '../kernels/apt.js';
import { archOf, ARCH_FACTS, DEFAULT_ARCH, type DebianArch } from '../kernels/arch.js';
import { sourceTarStream } from '../kernels/build.js';
import { archVariant, loadMatrix, type KernelEntry } from '../kernels/matrix.js';
import { KernelStore } from '../kernels/store.js';
import { cacheDir, writeFileAtomic } from '../paths.js';
import { currentLibbpf } from '../reference/build.js';
import { CLANG } from '../tools.js';

const SELFTESTS = 'tools/testing/selftests/bpf';
/** What the programs include from the tree, beside libbpf's installed headers. */
const SOURCE_PATHS = [`${SELFTESTS}/*`, 'tools/include/*'];
/** Bumped when the flags or the layout below change: cached objects of another recipe are rebuilt. */
const RECIPE = 2;

export interface SelftestObject {
  /** The source's base name, e.g. `test_core_reloc_kernel` (the object is `<name>.bpf.o`). */
  name: string;
  path: string;
}

export interface KernelSelftests {
  /** e.g. `linux-source-7.3 7.3.4-1~bpo13+1` */
  source: string;
  /** The arch the objects are built for (-D__TARGET_ARCH_<x>, that arch's vmlinux.h). */
  arch: DebianArch;
  /** The kernel whose BTF became vmlinux.h. */
  vmlinux: string;
  objects: SelftestObject[];
  /** Sources clang-19 does not compile, with the first error line. */
  failed: { name: string; error: string }[];
  /** Objects with no program at all (BTF targets of the CO-RE and btf_dump tests): not loadable, left out. */
  btfOnly: string[];
  /** Every .c under progs/ (what `only` chose from). */
  sources: number;
}

/**
 * The clang flags of the selftests' Makefile (BPF_CFLAGS and CLANG_CFLAGS) for `arch`, minus
 * -Werror: clang-19 warns where the tree's own newer clang does not. What differs per arch is what
 * the Makefile derives from SRCARCH and the target compiler: `-D__TARGET_ARCH_$(SRCARCH)`, the
 * endianness (both arches little: -mlittle-endian, bpfel) and the system headers (CLANG_SYS_INCLUDES,
 * `-idirafter` each folder clang searches for the target: for arm64, a cross build's
 * `--target=aarch64-linux-gnu`, whose folder holds arm64's asm/ uapi headers).
 */
export function selftestCflags(tree: string, include: string, name = '', arch: DebianArch = DEFAULT_ARCH): string[] {
  const selftests = join(tree, SELFTESTS);
  return [
    '-g', '-Wall', '-Wno-compare-distinct-pointer-types', '-Wno-microsoft-anon-tag', '-Wno-initializer-overrides', '-fms-extensions',
    `-D__TARGET_ARCH_${ARCH_FACTS[arch].bpfTargetArch}`, '-mlittle-endian', `-I${include}`, `-I${selftests}`, `-I${join(tree, 'tools/include/uapi')}`,
    `-I${join(tree, 'tools/include')}`, `-I${join(selftests, 'libarena/include')}`,
    // amd64's flags are those its objects were always built with (--target=bpf is bpfel on this host).
    '-std=gnu11', '-fno-strict-aliasing', ...(NO_INLINE.has(name) ? ['-fno-inline'] : []), '-O2', arch === DEFAULT_ARCH ? '--target=bpf' : '--target=bpfel', '-mcpu=v3',
    ...systemIncludes(arch).flatMap((d) => ['-idirafter', d]),
  ];
}

/** The GNU triplet clang is asked about for an arch's system headers (the Makefile's CROSS_COMPILE), and Debian's package of that arch's cross C library and uapi headers. */
const CROSS: Partial<Record<DebianArch, { target: string; headers: string }>> = { arm64: { target: 'aarch64-linux-gnu', headers: 'libc6-dev-arm64-cross' } };

const sysIncludes = new Map<DebianArch, string[]>();
/**
 * The Makefile's get_sys_includes: the folders clang searches for `<...>` when compiling for the
 * arch's user space. amd64 keeps the list its objects were built with; another arch's comes from
 * `clang --target=<triplet> -v -E`, and must hold that arch's asm/ headers (Debian's cross C
 * library, libc6-dev-arm64-cross, brings them): without them the sources that include system
 * headers would fail one by one, so this fails once, naming the package.
 */
export function systemIncludes(arch: DebianArch): string[] {
  const known = sysIncludes.get(arch);
  if (known) return known;
  let dirs: string[];
  if (arch === DEFAULT_ARCH) {
    const resource = execFileSync(CLANG, ['-print-resource-dir'], { encoding: 'utf8' }).trim();
    dirs = [join(resource, 'include'), '/usr/local/include', '/usr/include/x86_64-linux-gnu', '/usr/include'];
  } else {
    const cross = CROSS[arch];
    if (!cross) throw new CoreMatrixError(`selftests for ${arch}: no cross target known`);
    const r = spawnSync(CLANG, [`--target=${cross.target}`, '-v', '-E', '-'], { input: '', encoding: 'utf8' });
    const text = `${r.stderr ?? ''}`;
    const list = text.slice(text.indexOf('#include <...> search starts here:'), text.indexOf('End of search list.'));
    dirs = list.split('\n').filter((l) => l.startsWith(' /')).map((l) => normalize(l.trim()));
    // The host's own /usr/include is in the list too: the arch's asm/ must be in a folder of its own.
    if (!dirs.some((d) => d !== '/usr/include' && existsSync(join(d, 'asm', 'types.h')))) {
      throw new CoreMatrixError(`selftests for ${arch}: ${CLANG} --target=${cross.target} finds no ${arch} system headers (asm/types.h) in ${dirs.join(', ') || 'no folder'}: needs ${cross.headers} (Debian); \`npm run setup\` installs it`);
    }
  }
  sysIncludes.set(arch, dirs);
  return dirs;
}

/** Sources the Makefile compiles with -fno-inline. */
const NO_INLINE = new Set(['test_l4lb_noinline', 'test_xdp_noinline']);

/**
 * The n-th of m slices of the sources (1-based), chosen by a hash of the name: stable as the tree
 * grows, and spread over every kind of program (not alphabetical runs of one family).
 */
export function sliceOf(n: number, m: number): (name: string) => boolean {
  return (name) => parseInt(createHash('sha256').update(name).digest('hex').slice(0, 8), 16) % m === n - 1;
}

/** An object with no program (a BTF target); one our reader refuses is kept: its cells say why. */
function hasNoProgram(path: string): boolean {
  try {
    return loadObjectSpec(readFileSync(path), path).programs.length === 0;
  } catch {
    return false;
  }
}

/**
 * The matrix kernel whose series is the source's X.Y, else the newest series in the matrix; on
 * another arch, that kernel's build for the arch (its matrix entry, else `<id>-<arch>`).
 */
export function vmlinuxEntry(series: string, arch: DebianArch = DEFAULT_ARCH, matrix: KernelEntry[] = loadMatrix()): KernelEntry {
  const all = matrix.filter((e) => !e.build);
  const entries = all.filter((e) => archOf(e) === DEFAULT_ARCH);
  const key = (s: string) => s.split('.').map(Number);
  const newest = [...entries].sort((a, b) => key(a.series)[0]! - key(b.series)[0]! || key(a.series)[1]! - key(b.series)[1]!).pop();
  const base = entries.find((e) => e.series === series && e.flavour === 'generic') ?? newest!;
  if (arch === DEFAULT_ARCH) return base;
  const own = all.find((e) => archOf(e) === arch && e.series === base.series && e.flavour === base.flavour);
  const entry = own ?? archVariant(base, arch);
  if (!entry) throw new CoreMatrixError(`selftests for ${arch}: no ${arch} build of ${base.id} for a vmlinux.h`);
  return entry;
}

export async function kernelSelftests(o: { log?: (line: string) => void; only?: (name: string) => boolean; jobs?: number; arch?: DebianArch } = {}): Promise<KernelSelftests> {
  const log = o.log ?? (() => {});
  const arch = o.arch ?? DEFAULT_ARCH;
  // Before minutes of unpacking: the arch's system headers are there (one line naming the package if not).
  systemIncludes(arch);
  const libbpf = await currentLibbpf(log);
  const [pkg, version] = libbpf.source.split(' ') as [string, string];
  const series = /^linux-source-(\d+\.\d+)$/.exec(pkg)?.[1] ?? '';
  const dir = cacheDir('corpus', 'selftests', `${pkg}_${version.replace(/:/g, '%3a')}`);
  const tree = join(dir, 'tree');
  if (!existsSync(join(dir, '.unpacked'))) {
    log(`corpus selftests: unpacking ${SELFTESTS} from ${libbpf.source}`);
    const apt = new AptState({ log });
    const deb = await apt.keptDownload(pkg, version);
    const tmp = `${tree}.tmp.${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const want = SOURCE_PATHS.map((p) => `'*/${p}'`).join(' ');
    execFileSync('sh', ['-c', `${sourceTarStream(deb)} | tar -x --wildcards --strip-components=1 ${want}`], { cwd: tmp, stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 64 << 20 });
    if (!existsSync(join(tmp, SELFTESTS, 'progs'))) throw new CoreMatrixError(`${libbpf.source} has no ${SELFTESTS}/progs`);
    rmSync(tree, { recursive: true, force: true });
    renameSync(tmp, tree);
    writeFileSync(join(dir, '.unpacked'), `${libbpf.source}\n`);
  }

  // vmlinux.h beside libbpf's headers (bpf/*.h, bpf_helper_defs.h included; the same on every
  // arch), one folder per kernel BTF: each arch's own.
  const entry = vmlinuxEntry(series, arch);
  const kernel = await new KernelStore({ log }).fetch(entry);
  const include = join(dir, `include-${kernel.sha256.btf.slice(0, 12)}`);
  if (!existsSync(join(include, 'vmlinux.h'))) {
    mkdirSync(join(include, 'bpf'), { recursive: true });
    for (const f of readdirSync(join(libbpf.include, 'bpf'))) writeFileSync(join(include, 'bpf', f), readFileSync(join(libbpf.include, 'bpf', f)));
    const h = execFileSync('bpftool', ['btf', 'dump', 'file', kernel.btf, 'format', 'c'], { maxBuffer: 1 << 28 });
    writeFileAtomic(join(include, 'vmlinux.h'), h);
  }

  const progs = join(tree, SELFTESTS, 'progs');
  const all = readdirSync(progs).filter((f) => f.endsWith('.c')).map((f) => f.slice(0, -2)).sort();
  const names = o.only ? all.filter(o.only) : all;
  const key = createHash('sha256').update(JSON.stringify({ RECIPE, flags: selftestCflags(tree, include, '', arch), clang: CLANG })).digest('hex').slice(0, 12);
  const out = join(dir, `objects-${key}`);
  mkdirSync(out, { recursive: true });
  const todo = names.filter((n) => !existsSync(join(out, `${n}.bpf.o`)) && !existsSync(join(out, `${n}.failed`)));
  if (todo.length) log(`corpus selftests: compiling ${todo.length} of ${names.length} programs with ${CLANG} for ${arch} against ${entry.id}'s BTF`);
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const n = todo[next++]!;
      const obj = join(out, `${n}.bpf.o`);
      const r = await execa(CLANG, [...selftestCflags(tree, include, n, arch), '-c', join(progs, `${n}.c`), '-o', `${obj}.tmp`], { reject: false, all: true });
      if (r.exitCode === 0) renameSync(`${obj}.tmp`, obj);
      else {
        rmSync(`${obj}.tmp`, { force: true });
        const first = String(r.all ?? '').split('\n').find((l) => /error:/.test(l)) ?? `clang exited ${r.exitCode}`;
        writeFileSync(join(out, `${n}.failed`), first.replace(`${progs}/`, '') + '\n');
      }
    }
  };
  await Promise.all(Array.from({ length: o.jobs ?? availableParallelism() }, worker));
  const objects: SelftestObject[] = [];
  const failed: KernelSelftests['failed'] = [];
  const btfOnly: string[] = [];
  for (const n of names) {
    const path = join(out, `${n}.bpf.o`);
    if (!existsSync(path)) failed.push({ name: n, error: readFileSync(join(out, `${n}.failed`), 'utf8').trim() });
    else if (hasNoProgram(path)) btfOnly.push(n);
    else objects.push({ name: n, path });
  }
  return { source: libbpf.source, arch, vmlinux: `${entry.id} (${kernel.package} ${kernel.version})`, objects, failed, btfOnly, sources: all.length };
}
