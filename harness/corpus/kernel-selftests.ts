// The kernel's BPF selftests programs (tools/testing/selftests/bpf/progs/*.c) of the newest Debian
// linux-source-X.Y, compiled here with clang-19 the way the selftests' Makefile compiles them:
// against that tree's libbpf headers (from the current libbpf built from the same package, which
// generates bpf_helper_defs.h) and a vmlinux.h dumped by bpftool from the matrix kernel of the
// same series (else the newest one). Fetched and compiled at run time, cached by source version,
// never committed. A source that does not compile with clang-19 is listed with its first error.
//
//   const c = await kernelSelftests({ log, only: (name) => ... });   // c.objects[i].path

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CoreMatrixError } from '../core/errors.js';
import { loadObjectSpec } from '../core/object/load.js';
import { AptState } from '../kernels/apt.js';
import { sourceTarStream } from '../kernels/build.js';
import { loadMatrix } from '../kernels/matrix.js';
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
 * The clang flags of the selftests' Makefile (BPF_CFLAGS and CLANG_CFLAGS, for x86) minus -Werror:
 * clang-19 warns where the tree's own newer clang does not.
 */
export function selftestCflags(tree: string, include: string, name = ''): string[] {
  const sys = execFileSync(CLANG, ['-print-resource-dir'], { encoding: 'utf8' }).trim();
  const selftests = join(tree, SELFTESTS);
  return [
    '-g', '-Wall', '-Wno-compare-distinct-pointer-types', '-Wno-microsoft-anon-tag', '-Wno-initializer-overrides', '-fms-extensions',
    '-D__TARGET_ARCH_x86', '-mlittle-endian', `-I${include}`, `-I${selftests}`, `-I${join(tree, 'tools/include/uapi')}`,
    `-I${join(tree, 'tools/include')}`, `-I${join(selftests, 'libarena/include')}`,
    '-std=gnu11', '-fno-strict-aliasing', ...(NO_INLINE.has(name) ? ['-fno-inline'] : []), '-O2', '--target=bpf', '-mcpu=v3',
    '-idirafter', join(sys, 'include'), '-idirafter', '/usr/local/include', '-idirafter', '/usr/include/x86_64-linux-gnu', '-idirafter', '/usr/include',
  ];
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

/** The matrix kernel whose series is the source's X.Y, else the newest series in the matrix. */
function vmlinuxEntry(series: string) {
  const entries = loadMatrix().filter((e) => !e.build);
  const key = (s: string) => s.split('.').map(Number);
  const newest = [...entries].sort((a, b) => key(a.series)[0]! - key(b.series)[0]! || key(a.series)[1]! - key(b.series)[1]!).pop();
  return entries.find((e) => e.series === series && e.flavour === 'generic') ?? newest!;
}

export async function kernelSelftests(o: { log?: (line: string) => void; only?: (name: string) => boolean; jobs?: number } = {}): Promise<KernelSelftests> {
  const log = o.log ?? (() => {});
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

  // vmlinux.h beside libbpf's headers (bpf/*.h, bpf_helper_defs.h included).
  const entry = vmlinuxEntry(series);
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
  const key = createHash('sha256').update(JSON.stringify({ RECIPE, flags: selftestCflags(tree, include), clang: CLANG })).digest('hex').slice(0, 12);
  const out = join(dir, `objects-${key}`);
  mkdirSync(out, { recursive: true });
  const todo = names.filter((n) => !existsSync(join(out, `${n}.bpf.o`)) && !existsSync(join(out, `${n}.failed`)));
  if (todo.length) log(`corpus selftests: compiling ${todo.length} of ${names.length} programs with ${CLANG} against ${entry.id}'s BTF`);
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const n = todo[next++]!;
      const obj = join(out, `${n}.bpf.o`);
      const r = await execa(CLANG, [...selftestCflags(tree, include, n), '-c', join(progs, `${n}.c`), '-o', `${obj}.tmp`], { reject: false, all: true });
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
  return { source: libbpf.source, vmlinux: `${entry.id} (${kernel.package} ${kernel.version})`, objects, failed, btfOnly, sources: all.length };
}
