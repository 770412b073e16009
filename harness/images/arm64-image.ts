// The guest initramfs for an arch other than the host's (arm64 on an x86-64 host): the same layout
// as initramfs.ts's images, from the guest arch's own binaries.
//
//   base layer (cached, sealed): busybox-static of the arch (busybox-arch.ts), Debian's node of the
//     arch with every library its loader opens (arm64-userland.ts), koffi's JavaScript from
//     node_modules and its native module of the arch (arm64-koffi.ts), libbpf.so.1 of the arch.
//   run layer: /init, /agent.js, the node flags, /boot/config-<release>, the caller's files.
//     Shared objects among them (the current libbpf, built for the arch: reference/build.ts) are
//     roots of the userland as node is: whatever library they need that the base layer does not
//     carry yet joins the base layer (none for libbpf: it needs what Debian's libbpf.so.1 needs).
//
// What differs from the amd64 image, and why:
// - The V8 code cache (/agent.js.cache) is made by the image's own node, run on the host under
//   qemu-aarch64-static with the base layer as its root (agent-cache.ts); a host without the
//   emulator builds images without it (one log line) and /init runs the agent directly
//   (cm.codecache=off does the same on purpose).
// - No cm-seed: it is compiled by the host's clang for the host. QEMU's `virt` machine hands the
//   kernel a random seed in the device tree (/chosen/rng-seed), which it credits at boot.
// - koffi's native module sits where koffi's package layout puts it
//   (/node_modules/@koromix/koffi-linux-arm64/linux_arm64/koffi.node), and also where koffi's own
//   search finds it from a bundle at / (/build/koffi/linux_arm64/koffi.node, a link): the agent
//   bundle (scripts/build.mjs) resolves only the x64 package statically; for any other platform
//   koffi searches <dir of the bundle>/../../build/koffi/<platform>_<arch>/koffi.node.
// - /init must take its result port from the command line (cm.result=, docs/arm64.md "Wiring"):
//   arm64 `virt` has no second ISA UART, its result port is a PCI 16550 (/dev/ttyS0).
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, appendFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreMatrixError, UsageError } from '../core/errors.js';
import { withLock } from '../lock.js';
import { cacheDir, pruneCache, repoRoot, touchCached } from '../paths.js';
import { checkSealed, hashFile, pruneSeals, readSeal, writeSeal } from '../seal.js';
import type { DebianArch } from '../kernels/arch.js';
import { AptState } from '../kernels/apt.js';
import { agentCodeCache, agentStartScript, GUEST_NODE_FLAGS } from './agent-cache.js';
import { fileHash, guestKoffiManifest, koffiFiles } from './base.js';
import { archBusybox, busyboxRootEntries, hostArch, type ArchBusybox } from './busybox-arch.js';
import { type CpioEntry, cpioContentKey, writeCpio } from './cpio.js';
import { configAndFiles, initScript, type ImageFile } from './initramfs.js';
import { archKoffi, type ArchKoffi } from './arm64-koffi.js';
import { archUserland, DEFAULT_USERLAND_SUITES, MULTIARCH, type ArchUserland } from './arm64-userland.js';

/** Bump when the recipe changes in a way the content keys cannot see. */
const RECIPE_VERSION = 1;
const KEEP_IMAGES = 8;
const KEEP_BASE_LAYERS = 2;

export interface ArchImageSpec {
  arch: DebianArch;
  files: ImageFile[];
  /** Host path of the kernel's config, installed as /boot/config-<release> (needs `release`). */
  kernelConfig?: string;
  release?: string;
  /** Agent bundle to install as /agent.js (default dist/agent.js); false: none. */
  agent?: string | false;
  /** The text of /init (default: images/init, which must read cm.result=). */
  init?: string;
  /** Node flags for the agent (default: the amd64 guests' GUEST_NODE_FLAGS). */
  nodeFlags?: readonly string[];
  /** Suites node and its libraries come from (default trixie). */
  userlandSuites?: string[];
  /**
   * Guest paths (among `files`, each with a `source`) of shared objects of this arch the guest
   * loads: their libraries are found and carried as node's are (an object of another arch is refused).
   */
  sharedObjects?: string[];
  log?: (line: string) => void;
}

export interface BuiltArchImage {
  path: string;
  baseBytes: number;
  runBytes: number;
  /** True when this call wrote the base layer (false: cached). */
  baseBuilt: boolean;
  /** True when the whole image was cached (its bytes hashed to its seal). */
  reused: boolean;
  busybox: ArchBusybox;
  userland: ArchUserland;
  koffi: ArchKoffi;
  buildMs: number;
}

/** images/init as the image gets it: it must take its result port from cm.result= (see the file's head). */
export function archInitScript(): string {
  const text = readFileSync(initScript(), 'utf8');
  if (!text.includes('cm.result=')) throw new CoreMatrixError(`image: ${initScript()} does not read its result port from cm.result= (needed on arm64: docs/arm64.md, "Wiring")`);
  return text;
}

/** A shared object of the run layer whose libraries the base layer must carry: where it is on the host and in the guest. */
export interface RunLayerRoot {
  host: string;
  /** Without the leading slash. */
  guest: string;
}

/**
 * The base layer's entries: busybox, node and its libraries, koffi (JavaScript and native module),
 * libbpf, and the libraries `roots` (shared objects of the run layer) need.
 */
export async function archBaseEntries(arch: DebianArch, opts: { userlandSuites?: string[]; roots?: RunLayerRoot[]; log?: (line: string) => void } = {}): Promise<{ entries: CpioEntry[]; busybox: ArchBusybox; userland: ArchUserland; koffi: ArchKoffi }> {
  if (arch === hostArch()) throw new UsageError(`image for ${arch}: that is the host's own arch; initramfs.ts builds its images`);
  const apt = new AptState({ arch, ...(opts.log ? { log: opts.log } : {}) });
  const busybox = await archBusybox(arch, { apt, ...(opts.log ? { log: opts.log } : {}) });
  const koffi = await archKoffi(arch, opts.log);
  const nativeGuest = `node_modules/${koffi.nativeInPackage}`;
  const userland = await archUserland(arch, {
    apt, suites: opts.userlandSuites ?? DEFAULT_USERLAND_SUITES, extraPackages: ['libbpf1'],
    extraRoots: [{ host: koffi.native, guest: nativeGuest }, ...(opts.roots ?? [])], ...(opts.log ? { log: opts.log } : {}),
  });
  const entries = busyboxRootEntries(busybox);
  for (const f of userland.files) entries.push({ kind: 'file', path: f.guest, source: f.source, mode: f.mode });
  // koffi's JavaScript (the package require('koffi') finds from /), without the host's native package.
  for (const f of koffiFiles()) {
    if (!f.guest.startsWith('node_modules/koffi/')) continue;
    if (f.guest === 'node_modules/koffi/package.json') entries.push({ kind: 'file', path: f.guest, data: guestKoffiManifest(f.source), mode: 0o644 });
    else entries.push({ kind: 'file', path: f.guest, source: f.source, mode: 0o644 });
  }
  const pkgDir = join(koffi.native, '..', '..');
  for (const name of ['package.json', 'index.js']) if (existsSync(join(pkgDir, name))) entries.push({ kind: 'file', path: `node_modules/${koffi.package}/${name}`, source: join(pkgDir, name), mode: 0o644 });
  entries.push({ kind: 'file', path: nativeGuest, source: koffi.native, mode: 0o644 });
  const platformDir = koffi.nativeInPackage.split('/').at(-2)!; // linux_arm64
  entries.push({ kind: 'symlink', path: `build/koffi/${platformDir}/koffi.node`, target: `../../../${nativeGuest}` });
  // libbpf.so.1 (the reference loader's) came in with the userland, as a root of its own.
  if (!userland.files.some((f) => f.guest === `usr/lib/${MULTIARCH[arch]}/libbpf.so.1`)) throw new CoreMatrixError(`image for ${arch}: libbpf1 gave no libbpf.so.1`);
  return { entries, busybox, userland, koffi };
}

/** The cached base layer for `arch` (built when its content key is new). */
async function archBaseLayer(arch: DebianArch, opts: { userlandSuites?: string[]; roots?: RunLayerRoot[]; log?: (line: string) => void }) {
  const parts = await archBaseEntries(arch, opts);
  const key = cpioContentKey([...parts.entries, { kind: 'file', path: '.recipe', data: `arch-base v${RECIPE_VERSION} ${arch}` }], fileHash).slice(0, 24);
  const dir = cacheDir('images', arch);
  const path = join(dir, `base-${key}.cpio`);
  const usable = () => {
    const seal = readSeal(path);
    return seal && existsSync(path) && statSync(path).size === seal.size ? seal : undefined;
  };
  let built = false;
  let seal = usable();
  if (!seal) {
    seal = await withLock(`${path}.lock`, async () => {
      const again = usable();
      if (again) return again;
      const tmp = `${path}.tmp-${process.pid}`;
      try {
        writeCpio(tmp, parts.entries);
        const s = await hashFile(tmp);
        renameSync(tmp, path);
        writeSeal(path, s);
        built = true;
        return s;
      } finally {
        rmSync(tmp, { force: true });
      }
    });
  }
  touchCached(path);
  // Older layers (another node or busybox version): the newest few stay, for runs still using them.
  pruneCache(dir, '.cpio', KEEP_BASE_LAYERS, path);
  pruneSeals(dir);
  return { ...parts, path, key, sha256: seal.sha256, bytes: seal.size, built };
}

/** The run layer: /init, the agent, the node flags, the kernel's config, the caller's files. */
function archRunEntries(spec: ArchImageSpec): CpioEntry[] {
  const run: CpioEntry[] = [{ kind: 'file', path: 'init', data: spec.init ?? archInitScript(), mode: 0o755 }];
  const agent = spec.agent ?? join(repoRoot(), 'dist', 'agent.js');
  if (agent !== false) {
    if (!existsSync(agent)) throw new CoreMatrixError(`image: agent bundle ${agent} not found (run npm run build)`);
    run.push({ kind: 'file', path: 'agent.js', source: agent, mode: 0o644 });
    if (existsSync(`${agent}.map`)) run.push({ kind: 'file', path: 'agent.js.map', source: `${agent}.map`, mode: 0o644 });
  }
  run.push({ kind: 'file', path: 'etc/corematrix/node-flags', data: `${(spec.nodeFlags ?? GUEST_NODE_FLAGS).join(' ')}\n`, mode: 0o644 });
  run.push(...configAndFiles(spec));
  return run;
}

/** `spec.sharedObjects`, each found among the caller's files. */
function runLayerRoots(spec: ArchImageSpec): RunLayerRoot[] {
  return (spec.sharedObjects ?? []).map((path) => {
    const f = spec.files.find((x) => x.path === path);
    if (!f?.source) throw new CoreMatrixError(`image for ${spec.arch}: shared object ${path} is not one of the image's files with a host source`);
    return { host: f.source, guest: path.replace(/^\/+/, '') };
  });
}

/**
 * /agent.js.cache and /agent-start.js for the project's own agent: its V8 code cache, made by the
 * image's own node under qemu-<arch>-static (agent-cache.ts). None for a caller's agent (never run
 * on the host) or on a host without the emulator (spec.log says so): /init then runs the agent directly.
 */
async function agentStartEntries(spec: ArchImageSpec, root: readonly CpioEntry[]): Promise<CpioEntry[]> {
  if (spec.agent !== undefined) return [];
  const cache = await agentCodeCache(join(repoRoot(), 'dist', 'agent.js'), spec.nodeFlags ?? GUEST_NODE_FLAGS, { arch: spec.arch, root, ...(spec.log ? { log: spec.log } : {}) });
  if (!cache) return [];
  if (cache.rebuilt) spec.log?.(`rebuilt agent code cache: ${cache.rebuilt}`);
  return [
    { kind: 'file', path: 'agent.js.cache', source: cache.path, mode: 0o644 },
    { kind: 'file', path: 'agent-start.js', source: agentStartScript(), mode: 0o644 },
  ];
}

/** The agent bundle names the koffi whose JavaScript it carries (scripts/build.mjs): koffi refuses a native module of another version. */
function checkBundledKoffi(run: CpioEntry[], koffi: ArchKoffi): void {
  const agent = run.find((e) => e.path === 'agent.js');
  if (!agent || agent.kind !== 'file' || !('source' in agent)) return;
  const bundled = /^\/\/ koffi (\S+)\n/.exec(readFileSync(agent.source, 'latin1').slice(0, 64))?.[1];
  if (bundled !== undefined && bundled !== koffi.version) throw new CoreMatrixError(`image: ${agent.source} bundles koffi ${bundled}, the image's ${koffi.package} is ${koffi.version} (run npm ci && npm run build)`);
}

/** Builds (or reuses) the initramfs of `spec.arch`: base layer + run layer, sealed. */
export async function buildArchImage(spec: ArchImageSpec): Promise<BuiltArchImage> {
  const t0 = performance.now();
  const roots = runLayerRoots(spec);
  const base = await archBaseLayer(spec.arch, { ...(spec.userlandSuites ? { userlandSuites: spec.userlandSuites } : {}), ...(roots.length ? { roots } : {}), ...(spec.log ? { log: spec.log } : {}) });
  const run = [...archRunEntries(spec), ...(await agentStartEntries(spec, base.entries))];
  checkBundledKoffi(run, base.koffi);
  const runKey = cpioContentKey(run, fileHash).slice(0, 16);
  const dir = cacheDir('images', spec.arch, 'initrd');
  const out = join(dir, `${base.key.slice(0, 16)}-${runKey}.img`);
  const result = (reused: boolean): BuiltArchImage => ({
    path: out, baseBytes: base.bytes, runBytes: statSync(out).size - base.bytes, baseBuilt: base.built, reused,
    busybox: base.busybox, userland: base.userland, koffi: base.koffi, buildMs: Math.round(performance.now() - t0),
  });
  if (touchCached(out) && !(await checkSealed(out))) return result(true);
  return withLock(`${out}.lock`, async () => {
    if (touchCached(out) && !(await checkSealed(out))) return result(true);
    const work = mkdtempSync(join(tmpdir(), 'corematrix-arch-run-'));
    const tmp = `${out}.tmp-${process.pid}`;
    try {
      const runCpio = join(work, 'run.cpio');
      writeCpio(runCpio, run);
      copyFileSync(base.path, tmp);
      appendFileSync(tmp, readFileSync(runCpio));
      // The base layer's bytes as copied must be the ones sealed.
      const seal = await hashFile(tmp, base.bytes);
      if (seal.prefix !== base.sha256) throw new CoreMatrixError(`image: the cached base layer ${base.path} no longer hashes to its seal (delete it to rebuild)`);
      renameSync(tmp, out);
      writeSeal(out, { sha256: seal.sha256, size: seal.size });
      pruneCache(dir, '.img', KEEP_IMAGES, out);
      pruneSeals(dir);
      return result(false);
    } finally {
      rmSync(tmp, { force: true });
      rmSync(work, { recursive: true, force: true });
    }
  });
}
