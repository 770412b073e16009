// node and the shared libraries it needs, for a guest of another arch than the host's (arm64 on
// an x86-64 host): Debian's own packages of that arch, fetched through the private apt state of
// that arch (kernels/apt.ts; the machine's apt sources are never touched), unpacked without
// installing (dpkg-deb -x, one folder per package version, kept in cacheDir('userland', <arch>)).
//
// Which files go into the image is decided by the files themselves, as the dynamic loader would:
// from each root (node, koffi's native module, libbpf) its PT_INTERP and DT_NEEDED names, each
// found in the unpacked packages along the loader's search path, and so on for what they need.
// (`ldd` cannot answer for a foreign arch: it runs the target's loader.) The packages come from the
// `Depends` of the roots' packages. A package unpacked but never needed (gcc-14-base,
// openssl-provider-legacy) costs a download, not a byte of the image.
//
// Debian's node is built with some of its builtins "externalized": their JavaScript is not in
// libnode but read from /usr/share/nodejs (acorn, undici, cjs-module-lexer, minimatch), from node-*
// packages, and node reads every one of them when it starts (BuiltinLoader's constructor). Which
// files is node's own build configuration, kept in libnode (process.config's
// NODE_SHARED_BUILTIN_*_PATH defines): those files, and only those, come from the node-* packages
// the roots depend on (the packages' own dependencies, more JavaScript, are not followed).
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { promisify } from 'node:util';
import { CoreMatrixError } from '../core/errors.js';
import { withLock } from '../lock.js';
import { cacheDir, writeFileAtomic } from '../paths.js';
import { AptState } from '../kernels/apt.js';
import { ARCH_FACTS, type DebianArch } from '../kernels/arch.js';
import { compareDebVersions } from '../kernels/debversion.js';
import { dynamicDeps } from './arm64-elf-deps.js';

const run = promisify(execFile);

/** The multiarch triplet of an arch's libraries (usr/lib/<triplet>). */
export const MULTIARCH: Record<DebianArch, string> = { amd64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };

/**
 * The suites node comes from by default: trixie, for node 20.19 (the project's `engines`;
 * bookworm's arm64 nodejs is 18.20). A guest carries its own userland, so trixie's glibc (2.41)
 * is fine under any kernel of the matrix.
 */
export const DEFAULT_USERLAND_SUITES = ['trixie'];

export interface UnpackedPackage {
  name: string;
  version: string;
  suite: string;
  /** The unpacked tree (dpkg-deb -x), read-only from here on. */
  dir: string;
}

export interface GuestFile {
  /** Path in the guest, without the leading slash. */
  guest: string;
  /** The host file with its bytes. */
  source: string;
  mode: number;
  /** `<package> <version>` it came from. */
  from: string;
}

export interface ArchUserland {
  arch: DebianArch;
  /** The packages unpacked (the Depends closure of the roots' packages, node-* left out). */
  packages: UnpackedPackage[];
  /** node's version as its package says (`20.19.2+dfsg-1+deb13u3`). */
  nodeVersion: string;
  /** bin/node, its interpreter, and every library the roots need (by DT_NEEDED), where the guest's loader looks. */
  files: GuestFile[];
  /** soname → the file it was found as, for messages and tests. */
  libraries: Map<string, GuestFile>;
}

export interface ArchUserlandOptions {
  suites?: string[];
  apt?: AptState;
  /** More library packages (e.g. libbpf1) whose shared objects are roots too. */
  extraPackages?: string[];
  /** More ELF files (e.g. koffi's native module, where the image puts it) whose needs are resolved the same way. */
  extraRoots?: { host: string; guest: string }[];
  log?: (line: string) => void;
}

/** `a (>= 1), b | c, d:any` → [['a'], ['b', 'c'], ['d']]: each dependency's alternatives, by name. */
export function parseDepends(field: string | undefined): string[][] {
  if (!field) return [];
  return field
    .split(',')
    .map((dep) => dep.split('|').map((alt) => alt.trim().split(/[\s(:[]/)[0]!).filter(Boolean))
    .filter((alts) => alts.length > 0);
}

export type PackageRow = { name: string; version: string; suite: string };

/**
 * The packages of `arch` to unpack: `roots` and what they depend on, newest version each in
 * `suites` (of a `a | b` dependency, the first alternative that exists: not a virtual package).
 * Dependencies `apart` names are listed apart, without their own dependencies (node's externalized
 * builtins, the node-* packages); those `skip` names are left out (glibc, for a cross build whose
 * toolchain brings its own).
 */
export async function packageClosure(apt: AptState, roots: string[], suites: string[], opts: { apart?: (name: string) => boolean; skip?: (name: string) => boolean } = {}): Promise<{ binary: PackageRow[]; apart: PackageRow[] }> {
  const apartOf = opts.apart ?? (() => false);
  const skip = opts.skip ?? (() => false);
  const chosen = new Map<string, PackageRow>();
  const apart = new Map<string, PackageRow>();
  const newest = async (name: string) =>
    (await apt.madison([name])).filter((r) => r.name === name && suites.includes(r.suite)).sort((a, b) => compareDebVersions(a.version, b.version)).pop();
  const queue = [...roots];
  while (queue.length) {
    const name = queue.shift()!;
    if (chosen.has(name) || skip(name)) continue;
    const row = await newest(name);
    if (!row) throw new CoreMatrixError(`packages for ${apt.arch}: ${name} is not in ${suites.join(', ')}`);
    chosen.set(name, row);
    const rec = await apt.show(name, row.version);
    for (const alts of [...parseDepends(rec['Pre-Depends']), ...parseDepends(rec.Depends)]) {
      for (const a of alts.filter((x) => apartOf(x) && !apart.has(x))) {
        const r = await newest(a);
        if (r) apart.set(a, r);
      }
      const rest = alts.filter((a) => !apartOf(a));
      if (rest.length === 0 || rest.some((a) => chosen.has(a) || skip(a))) continue;
      let pick: string | undefined;
      for (const a of rest) if ((await newest(a)) !== undefined) { pick = a; break; }
      if (!pick) throw new CoreMatrixError(`packages for ${apt.arch}: ${name} ${row.version} depends on ${alts.join(' | ')}, none of which is in ${suites.join(', ')}`);
      queue.push(pick);
    }
  }
  const byName = (a: PackageRow, b: PackageRow) => a.name.localeCompare(b.name);
  return { binary: [...chosen.values()].sort(byName), apart: [...apart.values()].sort(byName) };
}

/** The files node reads its externalized builtins from (NODE_SHARED_BUILTIN_<NAME>_PATH=<file> in its build configuration). */
export function externalizedBuiltins(libnode: Uint8Array): string[] {
  const text = Buffer.from(libnode.buffer, libnode.byteOffset, libnode.byteLength).toString('latin1');
  return [...new Set([...text.matchAll(/NODE_SHARED_BUILTIN_[A-Z0-9_]+_PATH=(\/[\x21-\x7e]+?)(?=["\s,\\])/g)].map((m) => m[1]!))].sort();
}

/** One package version unpacked into its own folder of cacheDir('userland', <arch>) (downloaded and unpacked once, under a lock). */
export async function unpackPackage(apt: AptState, p: PackageRow): Promise<UnpackedPackage> {
  const root = cacheDir('userland', apt.arch);
  const dir = join(root, `${p.name}_${p.version.replace(/:/g, '%3a')}`);
  if (existsSync(join(dir, '.unpacked'))) return { ...p, dir };
  return withLock(`${dir}.lock`, async () => {
    if (existsSync(join(dir, '.unpacked'))) return { ...p, dir };
    const tmp = mkdtempSync(join(root, 'tmp-'));
    try {
      const deb = await apt.download(p.name, p.version, tmp);
      const tree = join(tmp, 'tree');
      await run('dpkg-deb', ['-x', deb, tree]);
      writeFileAtomic(join(tree, '.unpacked'), `${p.name} ${p.version} (${p.suite})\n`);
      rmSync(dir, { recursive: true, force: true });
      renameSync(tree, dir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    return { ...p, dir };
  });
}

/**
 * A view of the unpacked packages as one root file system, with Debian's merged /usr: /lib, /bin,
 * /sbin and /lib64 are /usr's (what base-files' links give an installed system).
 */
class MergedRoot {
  constructor(private readonly pkgs: UnpackedPackage[]) {}

  private static candidates(rel: string): string[] {
    return /^(lib|lib64|bin|sbin)\//.test(rel) ? [rel, `usr/${rel}`] : [rel];
  }

  /** The regular file `path` (absolute in the guest) names, following symbolic links across packages. */
  resolve(path: string): { host: string; rel: string; pkg: UnpackedPackage } | undefined {
    let rel = posix.normalize(path).replace(/^\/+/, '');
    for (let hops = 0; hops < 32; hops++) {
      let next: string | undefined;
      for (const cand of MergedRoot.candidates(rel)) {
        for (const pkg of this.pkgs) {
          const host = join(pkg.dir, cand);
          let st;
          try {
            st = lstatSync(host);
          } catch {
            continue;
          }
          if (st.isFile()) return { host, rel: cand, pkg };
          if (st.isSymbolicLink()) {
            const target = readlinkSync(host);
            next = target.startsWith('/') ? target.slice(1) : posix.normalize(posix.join(posix.dirname(cand), target));
            break;
          }
        }
        if (next !== undefined) break;
      }
      if (next === undefined) return undefined;
      rel = next;
    }
    throw new CoreMatrixError(`userland: ${path}: too many levels of symbolic links in the unpacked packages`);
  }
}

/**
 * node for `arch` from Debian, with every file the dynamic loader will open to start it (and the
 * extra roots): the result lists guest paths and host sources, ready for a cpio.
 */
export async function archUserland(arch: DebianArch, opts: ArchUserlandOptions = {}): Promise<ArchUserland> {
  const log = opts.log ?? (() => {});
  const suites = opts.suites ?? DEFAULT_USERLAND_SUITES;
  const apt = opts.apt ?? new AptState({ arch, log });
  if (apt.arch !== arch) throw new CoreMatrixError(`userland for ${arch}: the apt state given reads ${apt.arch} lists`);
  await apt.ensure(suites);
  const t0 = performance.now();
  const closure = await packageClosure(apt, ['nodejs', ...(opts.extraPackages ?? [])], suites, { apart: (name) => name.startsWith('node-') });
  const packages: UnpackedPackage[] = [];
  for (const p of closure.binary) packages.push(await unpackPackage(apt, p));
  const root = new MergedRoot(packages);
  const node = packages.find((p) => p.name === 'nodejs')!;

  const triplet = MULTIARCH[arch];
  const machine = ARCH_FACTS[arch].elfMachine;
  const files = new Map<string, GuestFile>();
  const libraries = new Map<string, GuestFile>();
  const add = (guest: string, host: string, pkg: UnpackedPackage | undefined, mode: number): GuestFile => {
    const f: GuestFile = { guest, source: host, mode, from: pkg ? `${pkg.name} ${pkg.version}` : 'host' };
    files.set(guest, f);
    return f;
  };
  // The loader's search path without /etc/ld.so.cache (the image has none): Debian's glibc looks in
  // /lib/<triplet>, /usr/lib/<triplet>, /lib, /usr/lib. Libraries go to /usr/lib/<triplet>/<soname>.
  const systemDirs = [`/lib/${triplet}`, `/usr/lib/${triplet}`, '/lib', '/usr/lib'];
  const pending: { host: string; guest: string; what: string }[] = [];
  const nodeFile = root.resolve('/usr/bin/node');
  if (!nodeFile) throw new CoreMatrixError(`userland for ${arch}: nodejs ${node.version} has no usr/bin/node`);
  pending.push({ host: nodeFile.host, guest: 'bin/node', what: `node (nodejs ${node.version})` });
  add('bin/node', nodeFile.host, nodeFile.pkg, 0o755);
  for (const extra of opts.extraPackages ?? []) {
    const pkg = packages.find((p) => p.name === extra)!;
    for (const lib of sharedObjectsIn(pkg.dir, triplet)) {
      const guest = `usr/lib/${triplet}/${lib.soname}`;
      add(guest, lib.host, pkg, 0o644);
      pending.push({ host: lib.host, guest, what: `${lib.soname} (${pkg.name})` });
    }
  }
  for (const r of opts.extraRoots ?? []) pending.push({ ...r, what: r.guest });

  const seen = new Set<string>();
  while (pending.length) {
    const { host, guest, what } = pending.shift()!;
    if (seen.has(host)) continue;
    seen.add(host);
    const deps = dynamicDeps(readFileSync(host), what);
    if (deps.machine !== machine) throw new CoreMatrixError(`userland for ${arch}: ${what} is ELF machine ${deps.machine}, not ${machine}`);
    if (deps.interpreter) {
      const interp = root.resolve(deps.interpreter);
      if (!interp) throw new CoreMatrixError(`userland for ${arch}: ${what} asks for the interpreter ${deps.interpreter}, which no unpacked package has (${packages.map((p) => p.name).join(', ')})`);
      const g = deps.interpreter.replace(/^\/+/, '');
      if (!files.has(g)) pending.push({ host: interp.host, guest: g, what: deps.interpreter });
      add(g, interp.host, interp.pkg, 0o755);
    }
    const origin = `/${posix.dirname(guest)}`;
    const runpath = deps.runpath.map((d) => d.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin));
    for (const soname of deps.needed) {
      if (libraries.has(soname)) continue;
      let found: { host: string; rel: string; pkg: UnpackedPackage } | undefined;
      for (const d of [...runpath, ...systemDirs]) if ((found = root.resolve(posix.join(d, soname)))) break;
      if (!found) throw new CoreMatrixError(`userland for ${arch}: ${what} needs ${soname}, which no unpacked package has (${packages.map((p) => `${p.name} ${p.version}`).join(', ')})`);
      const f = add(`usr/lib/${triplet}/${soname}`, found.host, found.pkg, 0o644);
      libraries.set(soname, f);
      pending.push({ host: found.host, guest: f.guest, what: `${soname} (${found.pkg.name})` });
    }
  }
  // The externalized builtins' JavaScript, named by libnode's build configuration.
  const libnode = [...libraries].find(([soname]) => soname.startsWith('libnode.so'))?.[1];
  const builtins = libnode ? externalizedBuiltins(readFileSync(libnode.source)) : [];
  if (builtins.length) {
    const js: UnpackedPackage[] = [];
    for (const p of closure.apart) js.push(await unpackPackage(apt, p));
    const jsRoot = new MergedRoot([...js, ...packages]);
    for (const path of builtins) {
      const f = jsRoot.resolve(path);
      if (!f) throw new CoreMatrixError(`userland for ${arch}: node reads ${path} at start-up (its build configuration says), which none of ${closure.apart.map((p) => p.name).join(', ') || 'no node-* package'} has`);
      add(path.replace(/^\/+/, ''), f.host, f.pkg, 0o644);
    }
    packages.push(...js);
  }
  log(`userland ${arch}: nodejs ${node.version}, ${libraries.size} libraries from ${packages.length} packages in ${Math.round(performance.now() - t0)} ms`);
  return { arch, packages, nodeVersion: node.version, files: [...files.values()].sort((a, b) => a.guest.localeCompare(b.guest)), libraries };
}

/** The shared objects a library package installs in its multiarch folder, by soname (the real files; links skipped). */
function sharedObjectsIn(dir: string, triplet: string): { soname: string; host: string }[] {
  const out: { soname: string; host: string }[] = [];
  for (const libDir of [join(dir, 'usr/lib', triplet), join(dir, 'lib', triplet)]) {
    if (!existsSync(libDir)) continue;
    for (const f of readdirSync(libDir)) {
      const host = join(libDir, f);
      if (!/\.so(\.|$)/.test(f) || !lstatSync(host).isFile()) continue;
      const soname = dynamicDeps(readFileSync(host), host).soname ?? f;
      out.push({ soname, host });
    }
  }
  if (out.length === 0) throw new CoreMatrixError(`userland: ${dirname(dir)}: package ${dir.split('/').pop()} installs no shared object in usr/lib/${triplet}`);
  return out;
}
