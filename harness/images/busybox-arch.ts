// busybox for a guest of any arch. On the host's own arch it is the host's busybox-static (what
// base.ts puts in every amd64 image); for another arch it is Debian's busybox-static .deb for that
// arch, fetched through the private apt state of that arch (kernels/apt.ts) and kept in
// cacheDir('busybox', <arch>). The applet list is read from the binary itself (busybox's sorted,
// NUL-separated applet name table), since a foreign binary cannot be run here to ask `--list`.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreMatrixError, FormatError } from '../core/errors.js';
import { withLock } from '../lock.js';
import { cacheDir, writeFileAtomic } from '../paths.js';
import { AptState } from '../kernels/apt.js';
import { ARCH_FACTS, type DebianArch } from '../kernels/arch.js';
import { rootSkeleton } from './base.js';
import { compareDebVersions } from '../kernels/debversion.js';
import type { CpioEntry } from './cpio.js';
import { findBusybox } from './base.js';

const run = promisify(execFile);

export interface ArchBusybox {
  arch: DebianArch;
  /** The static busybox binary on the host. */
  path: string;
  sha256: string;
  /** Applet names (without `busybox` itself), as `busybox --list` prints them. */
  applets: string[];
  /** 'host' or the package it came from: `busybox-static 1:1.35.0-4+deb12u1+b1 (bookworm)`. */
  from: string;
}

export interface ArchBusyboxOptions {
  /** Suites to take busybox-static from (default: the host's Debian release, else bookworm). */
  suites?: string[];
  /** The private apt state of `arch` (default: a new one). */
  apt?: AptState;
  log?: (line: string) => void;
}

/** The host's arch by its Debian name (undefined on arches corematrix does not boot). */
export function hostArch(): DebianArch | undefined {
  return process.arch === 'x64' ? 'amd64' : process.arch === 'arm64' ? 'arm64' : undefined;
}

/** The host's Debian release codename (/etc/os-release), if it has one. */
function hostCodename(): string | undefined {
  try {
    return /^VERSION_CODENAME=(\w+)$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Checks that `bytes` is a static executable for `arch`: a 64-bit little-endian ELF of the arch's
 * machine with no PT_INTERP (a dynamic busybox would need a libc the image does not have).
 */
export function checkStaticExecutable(bytes: Buffer, arch: DebianArch, name: string): void {
  if (bytes.length < 64 || bytes.readUInt32BE(0) !== 0x7f454c46) throw new FormatError(`${name}: not an ELF file`);
  if (bytes[4] !== 2 || bytes[5] !== 1) throw new FormatError(`${name}: not a 64-bit little-endian ELF`);
  const machine = bytes.readUInt16LE(18);
  if (machine !== ARCH_FACTS[arch].elfMachine) throw new FormatError(`${name}: ELF machine ${machine}, expected ${ARCH_FACTS[arch].elfMachine} (${arch})`);
  const phoff = Number(bytes.readBigUInt64LE(0x20));
  const phentsize = bytes.readUInt16LE(0x36);
  const phnum = bytes.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > bytes.length) throw new FormatError(`${name}: program header ${i} lies outside the file`);
    if (bytes.readUInt32LE(at) === 3) throw new FormatError(`${name}: dynamically linked (has PT_INTERP); need busybox-static`);
  }
}

/**
 * busybox's applet names, read from its name table: "[", "[[", then the rest in sorted order,
 * each NUL-terminated (busybox keeps them so for its binary search). Ends at the first name
 * that is empty or not printable.
 */
export function busyboxApplets(bytes: Buffer, name = 'busybox'): string[] {
  const start = bytes.indexOf(Buffer.from('[\0[[\0', 'latin1'));
  if (start < 0) throw new FormatError(`${name}: no busybox applet table ('[', '[[', …) in the binary`);
  const out: string[] = [];
  for (let at = start; ; ) {
    const end = bytes.indexOf(0, at);
    if (end <= at) break;
    const s = bytes.toString('latin1', at, end);
    if (!/^[\x21-\x7e]+$/.test(s)) break;
    out.push(s);
    at = end + 1;
  }
  for (const must of ['sh', 'mount', 'stty', 'uname', 'poweroff']) if (!out.includes(must)) throw new FormatError(`${name}: applet table has no '${must}' (${out.length} names read)`);
  return out.filter((a) => a !== 'busybox');
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A static busybox for `arch`: the host's on its own arch, Debian's busybox-static for it otherwise. */
export async function archBusybox(arch: DebianArch, opts: ArchBusyboxOptions = {}): Promise<ArchBusybox> {
  if (arch === hostArch()) {
    const path = findBusybox();
    const bytes = readFileSync(path);
    checkStaticExecutable(bytes, arch, path);
    return { arch, path, sha256: sha256(bytes), applets: busyboxApplets(bytes, path), from: 'host' };
  }
  const dir = cacheDir('busybox', arch);
  const metaFile = join(dir, 'busybox.json');
  const cached = (): ArchBusybox | undefined => {
    try {
      const m = JSON.parse(readFileSync(metaFile, 'utf8')) as ArchBusybox & { version: string };
      return existsSync(m.path) && sha256(readFileSync(m.path)) === m.sha256 ? m : undefined;
    } catch {
      return undefined;
    }
  };
  const log = opts.log ?? (() => {});
  const suites = opts.suites ?? [hostCodename() ?? 'bookworm'];
  const apt = opts.apt ?? new AptState({ arch, log });
  if (apt.arch !== arch) throw new CoreMatrixError(`busybox for ${arch}: the apt state given reads ${apt.arch} lists`);
  let newest: { version: string; suite: string } | undefined;
  try {
    await apt.ensure(suites);
    newest = (await apt.madison(['busybox-static'])).filter((r) => suites.includes(r.suite)).sort((a, b) => compareDebVersions(a.version, b.version)).pop();
  } catch (err) {
    const have = cached();
    if (have) {
      log(`busybox ${arch}: cannot resolve busybox-static (${(err as Error).message}); using ${have.from}`);
      return have;
    }
    throw err;
  }
  if (!newest) throw new CoreMatrixError(`busybox for ${arch}: busybox-static is not in ${suites.join(', ')}`);
  const from = `busybox-static ${newest.version} (${newest.suite})`;
  const have = cached();
  if (have?.from === from) return have;
  return withLock(join(dir, 'lock'), async () => {
    const again = cached();
    if (again?.from === from) return again;
    const tmp = mkdtempSync(join(dir, 'tmp-'));
    try {
      const deb = await apt.download('busybox-static', newest.version, tmp);
      await run('dpkg-deb', ['-x', deb, join(tmp, 'x')]);
      const bin = join(tmp, 'x', 'bin', 'busybox');
      if (!existsSync(bin)) throw new CoreMatrixError(`busybox for ${arch}: ${from} holds no bin/busybox`);
      const bytes = readFileSync(bin);
      checkStaticExecutable(bytes, arch, `${from}: bin/busybox`);
      const applets = busyboxApplets(bytes, `${from}: bin/busybox`);
      const path = join(dir, `busybox-${sha256(bytes).slice(0, 16)}`);
      writeFileAtomic(path, bytes);
      const meta: ArchBusybox & { version: string } = { arch, path, sha256: sha256(bytes), applets, from, version: newest.version };
      writeFileAtomic(metaFile, JSON.stringify(meta, null, 2) + '\n');
      for (const f of readdirSync(dir)) if (f.startsWith('busybox-') && join(dir, f) !== path) rmSync(join(dir, f), { force: true });
      log(`busybox ${arch}: ${from}, ${applets.length} applets`);
      return meta;
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

/**
 * A busybox root for a guest: the directories /init mounts on, the sbin and usr links, a minimal
 * /etc (base.ts's rootSkeleton, as under the amd64 images), /bin/busybox and a link per applet.
 */
export function busyboxRootEntries(bb: ArchBusybox): CpioEntry[] {
  const entries = rootSkeleton(['bin', 'dev', 'proc', 'sys', 'run', 'root', 'etc', 'usr', 'lib', 'boot']);
  entries.push({ kind: 'file', path: 'bin/busybox', source: bb.path, mode: 0o755 });
  for (const a of bb.applets) entries.push({ kind: 'symlink', path: `bin/${a}`, target: 'busybox' });
  return entries;
}
