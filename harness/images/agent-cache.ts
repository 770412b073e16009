// The guest agent's start-up: the node flags every guest runs it with, and a V8 code cache for
// the agent bundle, produced on the host by the same node binary the image carries with the same
// flags, so V8 in the guest accepts it:
//   amd64 (the host's own arch): the host's node, which the amd64 base layer copies (process.execPath);
//   arm64: Debian's arm64 node from the arm64 base layer, run on the host under QEMU's user-mode
//     emulator (`qemu-aarch64-static -L <the image's root>`, Debian's qemu-user-static). V8's code
//     cache names its version, the source and the flags, not the CPU: the guest accepts it.
//
// Why (measured under TCG, see images/README.md and docs/arm64-codecache.md): everything node
// executes in a guest is emulated, and code V8 generates at run time must be translated again by
// QEMU each time it is written. `--jitless` (interpreter only: no executable memory allocated at
// run time) and a code cache (V8 deserialises bytecode instead of parsing and compiling the
// 0.9 MB bundle) cut the agent's start.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { CoreMatrixError, UsageError } from '../core/errors.js';
import type { DebianArch } from '../kernels/arch.js';
import { withLock } from '../lock.js';
import { cacheDir, repoRoot, writeFileAtomic } from '../paths.js';
import { checkSealedSync, sealOf, writeSeal } from '../seal.js';
import { emptyManifest } from '../agent/manifest.js';
import { onPath } from '../tools.js';
import { ARCH_MACHINES } from '../vm/arch.js';
import { fileHash } from './base.js';
import { hostArch } from './busybox-arch.js';
import { type CpioEntry, cpioContentKey, normalizeGuestPath } from './cpio.js';

const execFileAsync = promisify(execFile);

/**
 * The node flags of the guest agent (written to the image as /etc/corematrix/node-flags, read by
 * /init; `cm.node=<flag>,<flag>` on the kernel command line overrides them, `cm.node=` drops them).
 * A 16 MB young generation from the start: deserialising the 0.9 MB code cache and the suite's
 * work then need fewer scavenges (6.1: the cache in 84-88 ms instead of 111-131, the guest off
 * 30-100 ms sooner, 4 boots each).
 */
export const GUEST_NODE_FLAGS: readonly string[] = ['--jitless', '--no-expose-wasm', '--min-semi-space-size=16'];

/** The launcher that compiles the agent with its code cache (installed as /agent-start.js). */
export function agentStartScript(): string {
  return join(repoRoot(), 'images', 'agent-start.cjs');
}

/** QEMU's user-mode emulator that runs a foreign arch's node on the host, and its Debian package. */
export const QEMU_USER: Record<DebianArch, { binary: string; package: string }> = {
  amd64: { binary: 'qemu-x86_64-static', package: 'qemu-user-static' },
  arm64: { binary: 'qemu-aarch64-static', package: 'qemu-user-static' },
};

/** The node the cache is made for: the one the guest's image carries. */
export interface CacheNode {
  /** The guest's arch (default: the host's: its node is process.execPath, which the amd64 image carries). */
  arch?: DebianArch;
  /**
   * For an arch other than the host's: the guest's root as its image lays it out (the base
   * layer's entries): bin/node, its loader and libraries, the externalized builtins, koffi.
   */
  root?: readonly CpioEntry[];
  /** Told, in one line, why the image goes without a cache (no emulator on this host, say). */
  log?: (line: string) => void;
}

export interface AgentCodeCache {
  path: string;
  bytes: number;
  /** True when this call produced it (false: cache hit). */
  built: boolean;
  /** Why a cached one was produced again (no checksum, corrupt). */
  rebuilt?: string;
}

/** How to run the node that produces the cache, and what its cache depends on. */
interface Producer {
  command: string;
  /** Arguments before the node flags; `<root>` stands for the guest root's host path. */
  prefix: string[];
  /** What, besides the bundle, the launcher and the flags, the cache's bytes depend on. */
  key: string;
  /** Lays out what the producing node reads (host: nothing) under `work`; returns the guest root's host path, if any. */
  prepare(work: string): string | undefined;
}

/** The host's own node (amd64 images copy it). */
function hostProducer(): Producer {
  return { command: process.execPath, prefix: [], key: `host ${process.version} ${process.arch} ${fileHash(process.execPath)}`, prepare: () => undefined };
}

/**
 * The files of a guest root a V8 code cache depends on: node, libnode (V8 is in it: its version and
 * build) and the builtins' JavaScript Debian's node reads from /usr/share/nodejs. Not the rest of
 * the root (busybox, koffi, libraries a run layer adds): they change no byte of the cache.
 */
function nodeFilesOf(root: readonly CpioEntry[]): CpioEntry[] {
  return root.filter((e) => {
    const p = normalizeGuestPath(e.path);
    return p === 'bin/node' || /(^|\/)libnode\.so/.test(p) || p.startsWith('usr/share/nodejs/');
  });
}

/**
 * The guest's node under QEMU's user-mode emulator: `-L <root>` makes the emulated loader find
 * /lib/ld-linux-aarch64.so.1, the libraries and /usr/share/nodejs in the image's root (QEMU
 * looks each absolute path up under the root first, then on the host). The CPU is the guest's
 * TCG model (V8 does not put the CPU in a code cache: accepted the same under max, cortex-a53).
 */
function emulatedProducer(arch: DebianArch, root: readonly CpioEntry[]): Producer | { missing: string } {
  const qemu = QEMU_USER[arch];
  const command = onPath(qemu.binary);
  if (!command) return { missing: `${qemu.binary} not found on PATH (apt-get install ${qemu.package})` };
  const node = nodeFilesOf(root);
  if (!node.some((e) => normalizeGuestPath(e.path) === 'bin/node')) throw new UsageError(`agent code cache for ${arch}: the guest root given has no bin/node`);
  const cpu = ARCH_MACHINES[arch].tcgCpu;
  return {
    command,
    prefix: [...(cpu ? ['-cpu', cpu] : []), '-L', '<root>', '<root>/bin/node'],
    key: `${arch} ${cpioContentKey(node, fileHash)}`,
    prepare: (work) => {
      const dir = join(work, 'root');
      layOutRoot(dir, root);
      return dir;
    },
  };
}

/** The guest root as a folder of links to the entries' sources (files with data are written). */
export function layOutRoot(dir: string, root: readonly CpioEntry[]): void {
  for (const e of root) {
    if (e.kind === 'dir') continue;
    const p = join(dir, normalizeGuestPath(e.path));
    mkdirSync(dirname(p), { recursive: true });
    if (e.kind === 'symlink') symlinkSync(e.target, p);
    else if ('source' in e) symlinkSync(e.source, p);
    else writeFileSync(p, e.data);
  }
}

/** What a call needs: how to make the cache and where it is kept; undefined when it cannot be made here (told to node.log). */
function planFor(bundle: string, flags: readonly string[], node: CacheNode): { producer: Producer; path: string } | undefined {
  if (!existsSync(bundle)) throw new CoreMatrixError(`image: agent bundle ${bundle} not found (run npm run build)`);
  const arch = node.arch ?? hostArch();
  let producer: Producer;
  if (arch === hostArch()) producer = hostProducer();
  else {
    if (!arch || !node.root) throw new UsageError(`agent code cache for ${arch ?? process.arch}: not the host's arch, and no guest root to run its node from`);
    const p = emulatedProducer(arch, node.root);
    if ('missing' in p) {
      node.log?.(`agent code cache for ${arch}: ${p.missing}; the image goes without (the agent compiles from source)`);
      return undefined;
    }
    producer = p;
  }
  const key = createHash('sha256')
    .update(`agent-code-cache v3 ${flags.join(' ')}\n${producer.key}\n`)
    .update(`${fileHash(agentStartScript())} ${fileHash(bundle)}\n`)
    .digest('hex')
    .slice(0, 24);
  return { producer, path: join(cacheDir('images', 'codecache'), `agent-${key}.cache`) };
}

/** The cache kept at `path` when it is sound; else why it must be made (again). */
function kept(path: string): AgentCodeCache | { rebuilt?: string } {
  if (!existsSync(path)) return {};
  const problem = checkSealedSync(path);
  if (!problem) return { path, bytes: statSync(path).size, built: false };
  return { rebuilt: `cached agent code cache ${problem}` };
}

/** The producing command for `work`: the launcher's --produce, the bundle and launcher where the node finds them. */
function producingCommand(producer: Producer, work: string, bundle: string, flags: readonly string[]): { command: string; args: string[]; out: string; options: { cwd: string; env: NodeJS.ProcessEnv; timeout: number } } {
  const root = producer.prepare(work);
  // In a guest root the bundle sits at its guest place (/agent.js), so that node's module lookup
  // from it finds the root's /node_modules (koffi's native module of the guest's arch).
  const base = root ?? work;
  const agent = join(base, 'agent.js');
  const launcher = join(base, 'agent-start.js');
  copyFileSync(bundle, agent);
  copyFileSync(agentStartScript(), launcher);
  const manifest = join(work, 'run.json');
  // A valid manifest with nothing to run: the agent says hello, reads this kernel's facts and
  // finishes, all into /dev/null.
  writeFileSync(manifest, JSON.stringify(emptyManifest({ id: 'code-cache', package: '', version: '', release: '', flavour: '' }, 10_000)));
  // The guest's environment as far as V8 can tell: no NODE_OPTIONS (its flags are in the cache's
  // flag hash), and never CM_POWER_OFF (the agent would reboot the machine it runs on).
  const { NODE_OPTIONS: _o, CM_POWER_OFF: _p, ...env } = process.env;
  const out = join(work, 'agent.cache');
  const args = [...producer.prefix.map((a) => a.replace('<root>', root ?? '')), ...flags, launcher, '--produce', agent, out];
  return { command: producer.command, args, out, options: { cwd: work, env: { ...env, CM_RESULT_PORT: '/dev/null', CM_MANIFEST: manifest }, timeout: PRODUCE_TIMEOUT_MS } };
}

/** Under emulation on a loaded 2-core host the start-up run took up to ~20 s. */
const PRODUCE_TIMEOUT_MS = 180_000;

/** Keeps the cache `out` (when the run wrote one) at `path`, sealed. */
function keep(path: string, out: string, rebuilt: string | undefined): AgentCodeCache | undefined {
  // The agent may end non-zero here (this host lacks something the guest has: bpf() under
  // qemu-user is ENOSYS): the cache is written on exit all the same. Only a missing one counts.
  if (!existsSync(out)) return undefined;
  const bytes = readFileSync(out);
  writeFileAtomic(path, bytes);
  writeSeal(path, sealOf(bytes));
  return { path, bytes: bytes.length, built: true, ...(rebuilt ? { rebuilt } : {}) };
}

/**
 * The V8 code cache of `bundle` (a CommonJS agent bundle), for the guest's node run with `flags`.
 * Produced by running the bundle with that node (the host's, or the guest arch's under QEMU's
 * user-mode emulator, see CacheNode) through images/agent-start.cjs in an environment where the
 * agent returns early without effect (results to /dev/null, a manifest with no suites): the
 * cache then holds the start-up's functions, not only the top level.
 * Kept in cacheDir('images', 'codecache') by the hash of the bundle, the launcher, the node and
 * the flags, sealed: a cached one whose bytes (~1 MB, hashed in about a millisecond) left its seal
 * is made again.
 * Undefined when the bundle cannot be run that way (not CommonJS, say) or, for a foreign arch,
 * this host has no emulator (node.log hears why): the image then goes without.
 * The event loop stays free while node runs (~1 s on the host; 5-20 s emulated: an image is built
 * during a matrix run, while other guests' result ports are read), and one producer at a time
 * makes each cache (two arm64 images built at once wait for one emulated run).
 */
export async function agentCodeCache(bundle: string, flags: readonly string[] = GUEST_NODE_FLAGS, node: CacheNode = {}): Promise<AgentCodeCache | undefined> {
  const plan = planFor(bundle, flags, node);
  if (!plan) return undefined;
  const first = kept(plan.path);
  if ('path' in first) return first;
  return withLock(`${plan.path}.lock`, async () => {
    const have = kept(plan.path);
    if ('path' in have) return have;
    const work = mkdtempSync(join(tmpdir(), 'corematrix-codecache-'));
    try {
      const c = producingCommand(plan.producer, work, bundle, flags);
      try {
        await execFileAsync(c.command, c.args, c.options);
      } catch {
        /* judged by the cache it left: keep() */
      }
      return keep(plan.path, c.out, have.rebuilt);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
}
