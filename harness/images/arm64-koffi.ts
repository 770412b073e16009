// koffi's native module for a guest of another arch. koffi 3 ships one npm package per platform
// (`@koromix/koffi-linux-arm64`, …) as optional dependencies, and npm installs only the host's; the
// guest's is fetched with `npm pack` from the npm registry at exactly the version of the koffi in
// node_modules (koffi refuses a native module of another version when it loads), unpacked once
// into cacheDir('koffi', <platform>-<version>), and checked: the version, and an ELF shared object
// of the guest's machine.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreMatrixError } from '../core/errors.js';
import { withLock } from '../lock.js';
import { cacheDir } from '../paths.js';
import { ARCH_FACTS, type DebianArch } from '../kernels/arch.js';
import { koffiVersions } from './base.js';
import { dynamicDeps } from './arm64-elf-deps.js';

const run = promisify(execFile);

/** node's process.arch for a Debian arch (koffi names its packages and folders by it). */
const NODE_ARCH: Record<DebianArch, string> = { amd64: 'x64', arm64: 'arm64' };

export interface ArchKoffi {
  arch: DebianArch;
  /** `@koromix/koffi-linux-arm64` */
  package: string;
  version: string;
  /** The glibc build: <package>/linux_<arch>/koffi.node, on the host. */
  native: string;
  /** Where koffi's own package layout puts it, relative to node_modules. */
  nativeInPackage: string;
  sha256: string;
}

/** koffi's glibc native module for `arch`, at the version of node_modules' koffi. */
export async function archKoffi(arch: DebianArch, log: (line: string) => void = () => {}): Promise<ArchKoffi> {
  const { koffi: version } = koffiVersions();
  const nodeArch = NODE_ARCH[arch];
  const pkg = `@koromix/koffi-linux-${nodeArch}`;
  const dir = cacheDir('koffi', `linux-${nodeArch}-${version}`);
  const rel = `linux_${nodeArch}/koffi.node`;
  const native = join(dir, 'package', rel);
  const done = () => check(arch, pkg, version, native, `${pkg}/${rel}`);
  if (existsSync(join(dir, 'package', '.complete'))) return done();
  return withLock(join(dir, 'lock'), async () => {
    if (existsSync(join(dir, 'package', '.complete'))) return done();
    const tmp = mkdtempSync(join(dir, 'tmp-'));
    try {
      let tgz: string;
      try {
        const { stdout } = await run('npm', ['pack', `${pkg}@${version}`, '--pack-destination', tmp, '--silent'], { cwd: tmp, maxBuffer: 16 << 20 });
        tgz = join(tmp, stdout.trim().split('\n').pop()!);
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new CoreMatrixError(`koffi for ${arch}: npm pack ${pkg}@${version} failed: ${(e.stderr || e.message).trim().split('\n').find((l) => /ERR|error/i.test(l)) ?? (e.stderr || e.message).trim().split('\n')[0]}`);
      }
      await run('tar', ['-xzf', tgz, '-C', tmp]);
      rmSync(join(dir, 'package'), { recursive: true, force: true });
      renameSync(join(tmp, 'package'), join(dir, 'package'));
      const k = check(arch, pkg, version, native, `${pkg}/${rel}`);
      writeFileSync(join(dir, 'package', '.complete'), `${pkg}@${version}\n`);
      log(`koffi ${arch}: ${pkg}@${version} (${k.sha256.slice(0, 12)})`);
      return k;
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

function check(arch: DebianArch, pkg: string, version: string, native: string, nativeInPackage: string): ArchKoffi {
  const manifest = JSON.parse(readFileSync(join(native, '..', '..', 'package.json'), 'utf8')) as { name?: string; version?: string };
  if (manifest.name !== pkg || manifest.version !== version) throw new CoreMatrixError(`koffi for ${arch}: the package unpacked is ${manifest.name}@${manifest.version}, not ${pkg}@${version}`);
  if (!existsSync(native)) throw new CoreMatrixError(`koffi for ${arch}: ${pkg}@${version} has no ${nativeInPackage.slice(pkg.length + 1)}`);
  const bytes = readFileSync(native);
  const deps = dynamicDeps(bytes, nativeInPackage);
  if (deps.machine !== ARCH_FACTS[arch].elfMachine) throw new CoreMatrixError(`koffi for ${arch}: ${nativeInPackage} is ELF machine ${deps.machine}, not ${ARCH_FACTS[arch].elfMachine}`);
  return { arch, package: pkg, version, native, nativeInPackage, sha256: createHash('sha256').update(bytes).digest('hex') };
}
