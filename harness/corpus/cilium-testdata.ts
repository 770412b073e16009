// cilium/ebpf's test programs: `testdata/*.c` of Debian's golang-github-cilium-ebpf-dev (the newest
// version in the suites the matrix reads, sid first), compiled here with clang-19 the way that
// project's Makefile compiles them (`-O2 -g -Wall -mcpu=v2 -target bpfel`, its own common.h, no
// kernel headers; -Werror dropped: clang-19 warns where their clang does not). Fetched through the
// private apt state at run time, compiled once per package version into the cache, never
// committed. Programs its Go tests expect to fail (invalid_*, errors.c, a kfunc in a test module)
// are kept: both loaders must refuse them alike.
//
// Per arch (docs/arm64.md, "Corpora on arm64"): bpf2go, the tool cilium/ebpf's users compile with,
// defines `__TARGET_ARCH_<arch>` for each target, so each arch's build gets its own define; the
// target stays bpfel (cilium's Makefile builds per endianness, and both arches are little). The
// source paths recorded in the debug info and BTF are the package's installed ones
// (-fdebug-prefix-map), so two builds differ only where the code does: testdata 0.22 uses no
// `__TARGET_ARCH_*` and no system header, and its amd64 and arm64 builds are byte-identical (the
// matrix then ships one object for both).
//
//   const { objects } = await ciliumTestdata(log, 'arm64');   // objects[i].path: a cached .o

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreMatrixError } from '../core/errors.js';
import { AptState } from '../kernels/apt.js';
import { ARCH_FACTS, DEFAULT_ARCH, type DebianArch } from '../kernels/arch.js';
import { cacheDir } from '../paths.js';
import { CLANG } from '../tools.js';
import { newestOf } from './debian-objects.js';

export const CILIUM_PACKAGE = 'golang-github-cilium-ebpf-dev';
const SUITES = ['sid', 'trixie', 'bookworm'];
/** The Makefile's flags for testdata (CFLAGS plus the little-endian target), without -Werror. */
export const CILIUM_CFLAGS = ['-O2', '-g', '-Wall', '-mcpu=v2', '-target', 'bpfel'];

/** The flags of one arch's build: the Makefile's, bpf2go's arch define, the package's own paths in place of where it was unpacked. */
export function ciliumCflags(arch: DebianArch, unpacked: string): string[] {
  return [...CILIUM_CFLAGS, `-D__TARGET_ARCH_${ARCH_FACTS[arch].bpfTargetArch}`, `-fdebug-prefix-map=${unpacked}=`];
}

export interface CiliumTestdata {
  /** `golang-github-cilium-ebpf-dev 0.22.0+ds1-1 (sid)` */
  source: string;
  arch: DebianArch;
  objects: { name: string; path: string }[];
  /** Sources clang-19 does not compile, with the first error line. */
  failed: { name: string; error: string }[];
}

/** Fetches (once per package version), compiles (once per arch) and lists cilium/ebpf's testdata programs. */
export async function ciliumTestdata(log: (line: string) => void = () => {}, arch: DebianArch = DEFAULT_ARCH): Promise<CiliumTestdata> {
  const apt = new AptState({ log });
  await apt.ensure(SUITES);
  const newest = newestOf(await apt.madison([CILIUM_PACKAGE]), CILIUM_PACKAGE, SUITES);
  const source = `${CILIUM_PACKAGE} ${newest.version} (${newest.suite})`;
  // The package is `Architecture: all`: one download, a build per arch.
  const dir = cacheDir('corpus', 'cilium-testdata', `${newest.version.replace(/:/g, '%3a')}_${CLANG}_${arch}`);
  if (!existsSync(join(dir, '.complete'))) {
    log(`corpus cilium: unpacking ${source} and compiling its testdata with ${CLANG} for ${arch}`);
    const tmp = `${dir}.tmp.${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, 'objects'), { recursive: true });
    try {
      const deb = await apt.download(CILIUM_PACKAGE, newest.version, join(tmp, 'deb'));
      execFileSync('dpkg-deb', ['-x', deb, join(tmp, 'root')], { stdio: ['ignore', 'ignore', 'pipe'] });
      const testdata = join(tmp, 'root', 'usr/share/gocode/src/github.com/cilium/ebpf/testdata');
      if (!existsSync(testdata)) throw new CoreMatrixError(`${source} has no cilium/ebpf/testdata folder`);
      const failed: CiliumTestdata['failed'] = [];
      for (const c of readdirSync(testdata).filter((f) => f.endsWith('.c')).sort()) {
        const name = c.replace(/\.c$/, '');
        try {
          execFileSync(CLANG, [...ciliumCflags(arch, join(tmp, 'root')), '-c', join(testdata, c), '-o', join(tmp, 'objects', `${name}.o`)], { cwd: testdata, stdio: ['ignore', 'ignore', 'pipe'] });
        } catch (e) {
          const err = String((e as { stderr?: Buffer }).stderr ?? e).split('\n').find((l) => /error:/.test(l)) ?? 'clang failed';
          failed.push({ name, error: err.trim() });
        }
      }
      writeFileSync(join(tmp, 'objects', 'failed.json'), JSON.stringify(failed));
      rmSync(dir, { recursive: true, force: true });
      renameSync(join(tmp, 'objects'), dir);
      writeFileSync(join(dir, '.complete'), `${source}\n`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  const failed = JSON.parse(readFileSync(join(dir, 'failed.json'), 'utf8')) as CiliumTestdata['failed'];
  const objects = readdirSync(dir).filter((f) => f.endsWith('.o')).sort().map((f) => ({ name: f, path: join(dir, f) }));
  if (objects.length === 0) throw new CoreMatrixError(`${source}: no testdata program compiled (${failed.map((f) => `${f.name}: ${f.error}`).join('; ')})`);
  return { source, arch, objects, failed };
}
