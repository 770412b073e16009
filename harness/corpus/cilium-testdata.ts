// cilium/ebpf's test programs: `testdata/*.c` of Debian's golang-github-cilium-ebpf-dev (the newest
// version in the suites the matrix reads, sid first), compiled here with clang-19 the way that
// project's Makefile compiles them (`-O2 -g -Wall -mcpu=v2 -target bpfel`, its own common.h, no
// kernel headers; -Werror dropped: clang-19 warns where their clang does not). Fetched through the
// private apt state at run time, compiled once per package version into the cache, never
// committed. Programs its Go tests expect to fail (invalid_*, errors.c, a kfunc in a test module)
// are kept: both loaders must refuse them alike.
//
//   const { objects } = await ciliumTestdata(log);   // objects[i].path: a cached .o

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreMatrixError } from '../core/errors.js';
import { AptState } from '../kernels/apt.js';
import { cacheDir } from '../paths.js';
import { CLANG } from '../tools.js';
import { newestOf } from './debian-objects.js';

export const CILIUM_PACKAGE = 'golang-github-cilium-ebpf-dev';
const SUITES = ['sid', 'trixie', 'bookworm'];
/** The Makefile's flags for testdata (CFLAGS plus the little-endian target), without -Werror. */
export const CILIUM_CFLAGS = ['-O2', '-g', '-Wall', '-mcpu=v2', '-target', 'bpfel'];

export interface CiliumTestdata {
  /** `golang-github-cilium-ebpf-dev 0.22.0+ds1-1 (sid)` */
  source: string;
  objects: { name: string; path: string }[];
  /** Sources clang-19 does not compile, with the first error line. */
  failed: { name: string; error: string }[];
}

/** Fetches (once per package version), compiles and lists cilium/ebpf's testdata programs. */
export async function ciliumTestdata(log: (line: string) => void = () => {}): Promise<CiliumTestdata> {
  const apt = new AptState({ log });
  await apt.ensure(SUITES);
  const newest = newestOf(await apt.madison([CILIUM_PACKAGE]), CILIUM_PACKAGE, SUITES);
  const source = `${CILIUM_PACKAGE} ${newest.version} (${newest.suite})`;
  const dir = cacheDir('corpus', 'cilium-testdata', `${newest.version.replace(/:/g, '%3a')}_${CLANG}`);
  if (!existsSync(join(dir, '.complete'))) {
    log(`corpus cilium: unpacking ${source} and compiling its testdata with ${CLANG}`);
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
          execFileSync(CLANG, [...CILIUM_CFLAGS, '-c', join(testdata, c), '-o', join(tmp, 'objects', `${name}.o`)], { cwd: testdata, stdio: ['ignore', 'ignore', 'pipe'] });
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
  return { source, objects, failed };
}
