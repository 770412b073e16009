// BPF objects Debian ships, built by other people with their own toolchains: libxdp's dispatcher
// and AF_XDP programs (`libxdp1`: usr/lib/<triplet>/bpf/*.o) and xdp-tools' test programs
// (`xdp-tests`). Fetched at run time through the private apt state (the newest version in the
// suites the matrix already uses), never committed; every file that is a BPF ELF object is kept.
//
// Per arch (docs/arm64.md, "Corpora on arm64"): each arch's objects come from that arch's packages
// (`libxdp1:arm64` through the arm64 private apt state), cached apart. Debian builds them on each
// arch's own buildd; 1.6.3-1's arm64 objects are byte-identical to its amd64 ones (the matrix then
// ships one object for both).
//
//   const { objects } = await debianObjects(log, 'arm64');   // objects[i].path: a cached .o

import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { CoreMatrixError } from '../core/errors.js';
import { AptState } from '../kernels/apt.js';
import { DEFAULT_ARCH, type DebianArch } from '../kernels/arch.js';
import { compareDebVersions } from '../kernels/debversion.js';
import { cacheDir } from '../paths.js';

/** The packages whose BPF objects make this corpus. */
export const DEBIAN_OBJECT_PACKAGES = ['libxdp1', 'xdp-tests'] as const;
/** Where to look for their newest version (the suites the default matrix already reads). */
const SUITES = ['bookworm', 'trixie', 'sid'];
/** ELF e_machine of BPF objects (EM_BPF). */
const EM_BPF = 247;

export interface DebianObject {
  /** e.g. `libxdp1/xdp-dispatcher.o` */
  name: string;
  package: string;
  version: string;
  /** The cached object file. */
  path: string;
}

export interface DebianObjects {
  /** Whose packages they are. */
  arch: DebianArch;
  objects: DebianObject[];
  /** `libxdp1 1.5.5-1, xdp-tests 1.5.5-1` */
  packages: { name: string; version: string; suite: string }[];
}

/** True for a little-endian ELF64 relocatable object for BPF (what clang -target bpf writes). */
export function isBpfObject(file: string): boolean {
  const h = Buffer.alloc(20);
  const fd = openSync(file, 'r');
  try {
    if (readSync(fd, h, 0, 20, 0) < 20) return false;
  } finally {
    closeSync(fd);
  }
  return h.readUInt32BE(0) === 0x7f454c46 && h[4] === 2 && h[5] === 1 && h.readUInt16LE(16) === 1 && h.readUInt16LE(18) === EM_BPF;
}

/** The newest version of package `name` among apt's rows (madison), or an error naming the suites looked in. */
export function newestOf<R extends { name: string; version: string }>(rows: readonly R[], name: string, suites: readonly string[]): R {
  const newest = rows.filter((r) => r.name === name).sort((a, b) => compareDebVersions(a.version, b.version)).pop();
  if (!newest) throw new CoreMatrixError(`${name} is not in ${suites.join(', ')} of the private apt state`);
  return newest;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? walk(p) : e.isFile() ? [p] : [];
  });
}

/** Fetches (once per package version and arch) and lists the BPF objects Debian ships in DEBIAN_OBJECT_PACKAGES for `arch`. */
export async function debianObjects(log: (line: string) => void = () => {}, arch: DebianArch = DEFAULT_ARCH): Promise<DebianObjects> {
  const apt = new AptState({ arch, log });
  await apt.ensure(SUITES);
  const rows = await apt.madison([...DEBIAN_OBJECT_PACKAGES]);
  const objects: DebianObject[] = [];
  const packages: DebianObjects['packages'] = [];
  for (const name of DEBIAN_OBJECT_PACKAGES) {
    const newest = newestOf(rows, name, SUITES);
    packages.push({ name, version: newest.version, suite: newest.suite });
    // amd64's folder keeps the name it always had; another arch's says which.
    const dir = cacheDir('corpus', 'debian-objects', `${name}_${newest.version.replace(/:/g, '%3a')}${arch === DEFAULT_ARCH ? '' : `_${arch}`}`);
    if (!existsSync(join(dir, '.complete'))) {
      log(`corpus: unpacking ${name}:${arch} ${newest.version} (${newest.suite})`);
      const tmp = `${dir}.tmp.${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp, { recursive: true });
      try {
        const deb = await apt.download(name, newest.version, join(tmp, 'deb'));
        execFileSync('dpkg-deb', ['-x', deb, join(tmp, 'root')], { stdio: ['ignore', 'ignore', 'pipe'] });
        const kept = join(tmp, 'objects');
        mkdirSync(kept);
        const found = walk(join(tmp, 'root')).filter((f) => statSync(f).size >= 64 && isBpfObject(f));
        // Named by their path below the folder all of them share, flattened (xdp-tests ships
        // objects in several folders, two of them named xdp_pass.o): the same names on every
        // arch (libxdp1's usr/lib/<triplet>/bpf is below that folder).
        const common = found.map((f) => dirname(f)).reduce((a, b) => { while (!(b + '/').startsWith(a + '/')) a = dirname(a); return a; }, found.length ? dirname(found[0]!) : '');
        for (const f of found) renameSync(f, join(kept, relative(common, f).replace(/\//g, '__')));
        rmSync(dir, { recursive: true, force: true });
        renameSync(kept, dir);
        writeFileSync(join(dir, '.complete'), `${newest.version}\n`);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    }
    for (const f of readdirSync(dir).filter((x) => x !== '.complete').sort()) {
      objects.push({ name: `${name}/${f.replace(/__/g, '/')}`, package: name, version: newest.version, path: join(dir, f) });
    }
  }
  if (objects.length === 0) throw new CoreMatrixError(`${DEBIAN_OBJECT_PACKAGES.join(', ')} (${arch}) ship no BPF object (${packages.map((p) => `${p.name} ${p.version}`).join(', ')})`);
  return { arch, objects, packages };
}
