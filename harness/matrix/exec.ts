// Host side of `matrix --exec '<command>' [--files <path>]… [--net user]`: what the guests need to
// run the user's own command after the agent's work. The listed host files and folders are
// shipped in the image under /cm/files/<basename> (measured against a read-only 9p share:
// docs/exec.md), with the shared libraries of every ELF executable among them (found with ldd, as
// the base layer finds node's), and the command becomes one cell per kernel: suite
// `exec:<short command>`, program `(command)`.
//
// A suite's spec may carry a command of its own (`exec:`, suites/README.md): planned here the same
// way, its files (paths in the suite's folder) shipped at the same paths under /cm/suites/<suite>,
// its cell the suite's, program `(exec)`.
//
// Per arch (docs/arm64.md): `--files arm64:<path>` ships only to arm64 kernels, in place of the
// plain --files path of the same base name. On each kernel an ELF program or library among the
// files must be of the kernel's arch (one of another arch is refused before anything boots); on a
// guest of another arch than the host's (arm64), the libraries its ELF files need come from that
// arch's Debian packages (images/arch-exec-libraries.ts), not from the host through ldd.

import { createHash } from 'node:crypto';
import { closeSync, existsSync, lstatSync, openSync, readdirSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { UsageError } from '../core/errors.js';
import { baseEntries, fileHash, sharedLibraries } from '../images/base.js';
import type { ImageFile } from '../images/initramfs.js';
import { normalizeGuestPath } from '../images/cpio.js';
import type { KernelArtifacts, KernelStore } from '../kernels/store.js';
import { commandProgram, EXEC_PROGRAMS, type ExecPlan, type NetPlan } from '../agent/manifest.js';
import type { SuiteSpec } from '../suites/types.js';
import { ET_DYN, ET_EXEC } from '../core/binary.js';
import { ARCH_FACTS, DEBIAN_ARCHES, DEFAULT_ARCH, type DebianArch } from '../kernels/arch.js';
import { archExecLibraries } from '../images/arch-exec-libraries.js';
import { hostArch } from '../images/busybox-arch.js';
import { splitArchPrefix } from './arch-objects.js';

/** Where the --files land in the guest. */
export const GUEST_FILES = '/cm/files';
/** Where a suite's own exec files land: /cm/suites/<suite>/<path in the suite's folder>. */
export const GUEST_SUITES = '/cm/suites';
/** busybox's applets, after the command's own files on its PATH. */
const SYSTEM_PATH = '/bin:/sbin:/usr/bin:/usr/sbin';
/** The guest's PATH for the command: the shipped files first, then busybox's applets. */
export const GUEST_PATH = `${GUEST_FILES}:${SYSTEM_PATH}`;
/** The command of an exec that only ships files (`corematrix shell --files` without --exec): never run. */
export const NO_COMMAND = ':';
/** The command's default time limit (`--exec-timeout`). */
export const DEFAULT_EXEC_TIMEOUT_MS = 300_000;
/** What the guest needs around the command (network up, output drained, the kill's grace) on top of its limit. */
export const EXEC_OVERHEAD_MS = 30_000;
/** The file an interactive `corematrix shell` sources (ENV= on the kernel command line). */
export const SHELL_RC = '/cm/shell.rc';
/** QEMU's user-mode network: the guest's address, QEMU's host side, its DNS forwarder. */
export const USER_NET = { address: '10.0.2.15/24', gateway: '10.0.2.2', dns: '10.0.2.3' } as const;
/** A ceiling on what is shipped: it lives in the guest's RAM (tmpfs) beside node and the agent. */
const MAX_SHIPPED_BYTES = 512 << 20;

export interface ExecOptions {
  command: string;
  /** Host files and folders, shipped to /cm/files/<basename>. */
  files: string[];
  /** `--files <arch>:<path>`: shipped to that arch's kernels only, in place of the plain path of the same base name. */
  filesFor?: { arch: DebianArch; path: string }[];
  /** `--exec-packages`: Debian library packages of a guest's arch to take its ELF files' libraries from (arm64). */
  packages?: string[];
  timeoutMs: number;
  /**
   * A suite's own command (spec `exec`): `files` are paths in the suite's folder `dir`, shipped at
   * the same paths under /cm/suites/<name>, the command's folder; its cell is the suite's. `spec`
   * names the spec file in messages.
   */
  suite?: { name: string; dir: string; spec: string };
}

/** The exec as the host prepared it once for every guest. */
export interface PlannedExec {
  plan: ExecPlan;
  /** What the image carries for it: the shipped files and the libraries they need. */
  files: ImageFile[];
  /** Host paths of the libraries added (beyond the base layer's). */
  libraries: string[];
  /** Bytes of the shipped files and libraries. */
  bytes: number;
  /** The unit the guest owes (a 'not run' cell when the guest ends before it). */
  owed: { unit: string; object: string; sha256: string; programs: string[] };
}

/**
 * Checks the --exec options before anything is fetched or a report folder made; throws a
 * UsageError naming the option. `files` must exist and have distinct base names (each becomes
 * /cm/files/<basename>).
 */
export function checkExecOptions(o: { exec?: string; files?: string[]; execTimeout?: string; net?: string; packages?: string }, allowWithoutExec = false): { exec?: ExecOptions; files: string[]; net?: 'user' } {
  const net = o.net ?? 'none';
  if (net !== 'user' && net !== 'none') throw new UsageError(`--net must be user or none, not '${o.net}'`);
  if (o.exec === undefined) {
    if (!allowWithoutExec) {
      if (o.files?.length) throw new UsageError('--files ships folders for --exec: give the command too');
      if (o.execTimeout !== undefined) throw new UsageError('--exec-timeout is the limit of --exec: give the command too');
      if (net === 'user') throw new UsageError('--net user gives the --exec command a network: give the command too');
      if (o.packages !== undefined) throw new UsageError('--exec-packages gives the --exec programs their libraries: give the command too');
    }
  } else if (o.exec.trim() === '') throw new UsageError('--exec needs a command');
  let timeoutMs = DEFAULT_EXEC_TIMEOUT_MS;
  if (o.execTimeout !== undefined) {
    const s = Number(o.execTimeout);
    if (!(s > 0 && s <= 86_400)) throw new UsageError(`--exec-timeout must be seconds from 0 to 86400, not '${o.execTimeout}'`);
    timeoutMs = Math.round(s * 1000);
  }
  const packages = o.packages?.split(',').map((p) => p.trim()).filter(Boolean) ?? [];
  for (const p of packages) if (!/^[a-z0-9][a-z0-9+.-]+$/.test(p)) throw new UsageError(`--exec-packages: '${p}' is not a Debian package name`);
  // Base names are distinct per arch: a plain path and an arch's own path of the same name are that arch's choice between them.
  const names = new Map<string, string>();
  const filesFor: { arch: DebianArch; path: string }[] = [];
  const files: string[] = [];
  for (const given of o.files ?? []) {
    const { arch, path: f } = splitArchPrefix(given, '--files');
    const abs = resolve(f);
    if (!existsSync(abs)) throw new UsageError(`--files ${f}: no such file or folder`);
    const st = statSync(abs);
    if (!st.isDirectory() && !st.isFile()) throw new UsageError(`--files ${f}: not a file or a folder`);
    const name = basename(abs);
    if (name === '' || name === '/') throw new UsageError(`--files ${f}: the root folder cannot be shipped`);
    const key = `${arch ?? ''}/${name}`;
    const other = names.get(key);
    if (other !== undefined) throw new UsageError(`--files ${given} and ${other} would both be ${GUEST_FILES}/${name}${arch ? ` on ${arch}` : ''}: rename one`);
    names.set(key, given);
    if (arch) filesFor.push({ arch, path: abs });
    else files.push(abs);
  }
  const exec: ExecOptions | undefined = o.exec !== undefined ? { command: o.exec, files, ...(filesFor.length ? { filesFor } : {}), ...(packages.length ? { packages } : {}), timeoutMs } : undefined;
  return { ...(exec ? { exec } : {}), files, ...(net === 'user' ? { net: 'user' as const } : {}) };
}

/** How a folder is named in messages: relative to the working directory when inside it, else absolute. */
function displayPath(p: string): string {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : p;
}

/**
 * A suite's spec `exec` as ExecOptions (its files resolved in the suite's folder, the folder of
 * its prog.bpf.c), or undefined when the spec has none. The spec was validated when it was read
 * (harness/suites/spec.ts): the files exist and stay inside the folder.
 */
export function suiteExecOptions(s: { name: string; spec: SuiteSpec; source: string }): ExecOptions | undefined {
  const e = s.spec.exec;
  if (!e) return undefined;
  const dir = dirname(resolve(s.source));
  return { command: e.command, files: (e.files ?? []).map((f) => resolve(dir, f)), timeoutMs: Math.round((e.timeout ?? DEFAULT_EXEC_TIMEOUT_MS / 1000) * 1000), suite: { name: s.name, dir, spec: `${displayPath(dir)}/spec.yaml` } };
}

/**
 * Every command the kernels of `arch` run, in the order the agent runs them: each suite's own
 * (spec `exec`, in suite order), then the user's (--exec). Their files together stay under the
 * cap on what is shipped.
 */
export async function planExecsOn(arch: DebianArch, suites: { name: string; spec: SuiteSpec; source: string }[], exec: ExecOptions | undefined, opts: { log?: (line: string) => void; kernels?: string[] } = {}): Promise<PlannedExec[]> {
  const all = [...suites.flatMap((s) => suiteExecOptions(s) ?? []), ...(exec ? [exec] : [])];
  const plans: PlannedExec[] = [];
  for (const o of all) plans.push(await planExecOn(arch, o, opts));
  const bytes = plans.reduce((n, p) => n + p.bytes, 0);
  if (plans.length > 1 && bytes > MAX_SHIPPED_BYTES) throw new UsageError(`exec: ${(bytes / 2 ** 20).toFixed(0)} MiB to ship for ${plans.length} commands (${plans.map((p) => p.plan.suite).join(', ')}), more than ${MAX_SHIPPED_BYTES >> 20} MiB (every guest holds them in RAM)`);
  return plans;
}

/** The image files of several commands: their own files (distinct: /cm/files, /cm/suites/<suite>) and the libraries they need, each library once. */
export function execImageFiles(plans: PlannedExec[]): ImageFile[] {
  const byPath = new Map<string, ImageFile>();
  for (const p of plans) for (const f of p.files) if (!byPath.has(f.path)) byPath.set(f.path, f);
  return [...byPath.values()];
}

/** `exec:` and the command, whitespace collapsed, cut after a word to at most 48 characters: the cell's suite. */
export function execSuiteName(command: string): string {
  const flat = command.trim().replace(/\s+/g, ' ');
  if (flat.length <= 48) return `exec:${flat}`;
  const cut = flat.slice(0, 47);
  const space = cut.lastIndexOf(' ');
  return `exec:${space >= 24 ? cut.slice(0, space) : cut}…`;
}

/** A regular file's ELF header fields (e_type, e_machine), or undefined when it is not a little-endian ELF file. */
function elfHeader(file: string): { type: number; machine: number } | undefined {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(20);
    if (readSync(fd, b, 0, 20, 0) !== 20 || b.toString('latin1', 0, 4) !== '\x7fELF' || b[5] !== 1) return undefined;
    return { type: b.readUInt16LE(16), machine: b.readUInt16LE(18) };
  } finally {
    closeSync(fd);
  }
}
const isElf = (file: string): boolean => elfHeader(file) !== undefined;

/** The Debian arch whose programs are ELF machine `machine`, if it is one corematrix boots. */
const archOfMachine = (machine: number): DebianArch | undefined => DEBIAN_ARCHES.find((a) => ARCH_FACTS[a].elfMachine === machine);

/** The --files a kernel of `arch` gets: its arch's own paths, and the plain ones without an own path of the same base name. */
export function filesOn(o: ExecOptions, arch: DebianArch): string[] {
  const own = (o.filesFor ?? []).filter((f) => f.arch === arch).map((f) => f.path);
  const names = new Set(own.map((f) => basename(f)));
  return [...o.files.filter((f) => !names.has(basename(f))), ...own];
}

/**
 * Every regular file under `root` (symbolic links followed, each real folder once), with its
 * guest path. Sockets, pipes and devices are left out; an empty folder is not made.
 */
function walkShipped(root: string, guestRoot: string, label = '--files'): ShippedFile[] {
  const out: ShippedFile[] = [];
  const seen = new Set<string>();
  const rec = (host: string, guest: string) => {
    const st = statSync(host);
    if (st.isFile()) {
      out.push({ host, guest });
      return;
    }
    if (!st.isDirectory()) return;
    const real = realpathSync(host);
    if (seen.has(real)) return;
    seen.add(real);
    for (const name of readdirSync(host).sort()) {
      const p = join(host, name);
      try {
        rec(p, `${guest}/${name}`);
      } catch (err) {
        // A dangling link is not shipped; anything else (no permission) is the user's to fix.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && lstatSync(p).isSymbolicLink()) continue;
        throw new UsageError(`${label}: ${p}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
  };
  rec(root, guestRoot);
  return out;
}

export { commandProgram };

/**
 * Plans the exec for the kernels of `arch`: walks that arch's --files, checks that every ELF
 * program and library among them is of that arch, finds the libraries they need that the image does
 * not carry (the host's through ldd on the host's arch, the arch's Debian packages on another),
 * rewrites an absolute host path to a shipped program into its guest path, and names the cell.
 * `log` is told what was shipped.
 */
export async function planExecOn(arch: DebianArch, o: ExecOptions, opts: { log?: (line: string) => void; kernels?: string[] } = {}): Promise<PlannedExec> {
  const log = opts.log ?? (() => {});
  const s = shippedFor(o, arch, opts.kernels ?? [], log);
  if (arch === hostArch()) return finishPlan(o, s, hostLibraries(s, log), log);
  const shipped = new Set(s.shipped.map((x) => x.guest));
  const elfs = s.shipped.filter((x) => x.elf === 'program' || x.elf === 'library').map((x) => ({ host: x.host, guest: x.guest }));
  const libs = elfs.length ? await archExecLibraries(arch, elfs, shipped, { ...(o.packages ? { packages: o.packages } : {}), log }) : { files: [], from: new Map<string, string>(), packages: [] };
  if (libs.files.length) log(`exec: ${arch} libraries from Debian's ${arch} packages: ${[...libs.from].map(([so, from]) => `${so} (${from})`).join(', ')}`);
  return finishPlan(o, s, libs.files.map((f) => ({ path: f.path, source: f.source! })), log, arch);
}

/**
 * Before anything is fetched: every ELF program and library of each arch's --files is of that
 * arch (throws the UsageError planExecOn would, naming the file and the arch's kernels).
 */
export function checkExecArches(o: ExecOptions, kernels: { id: string; arch: DebianArch }[]): void {
  for (const arch of new Set(kernels.map((k) => k.arch))) shippedFor(o, arch, kernels.filter((k) => k.arch === arch).map((k) => k.id), () => {});
}

/** One shipped regular file, and what its ELF header says it is (for the kernel's arch). */
interface ShippedFile {
  host: string;
  guest: string;
  elf?: 'program' | 'library' | 'other';
}

interface Shipped {
  files: string[];
  shipped: ShippedFile[];
  guestOf: (host: string) => string | undefined;
  cwd: string;
  command: string;
  program?: { name: string; host?: string };
}

/**
 * An arch's --files walked, each ELF program or library checked against the arch (one of another
 * arch corematrix boots is refused: one line naming the file and the arch's kernels), the command's
 * program found.
 */
/** Where a command's files land in the guest: /cm/files, or /cm/suites/<suite> for a suite's own. */
const guestRootOf = (o: ExecOptions): string => (o.suite ? `${GUEST_SUITES}/${o.suite.name}` : GUEST_FILES);

function shippedFor(o: ExecOptions, arch: DebianArch, kernels: string[], log: (line: string) => void): Shipped {
  const files = filesOn(o, arch);
  const root = guestRootOf(o);
  const label = o.suite ? `${o.suite.spec}: exec.files` : '--files';
  // --files are /cm/files/<basename>; a suite's files keep their paths in its folder.
  const guestPathOf = (f: string): string => {
    const rel = o.suite ? relative(o.suite.dir, f).split(sep).join('/') : basename(f);
    return rel ? `${root}/${rel}` : root;
  };
  const shipped: ShippedFile[] = [];
  for (const f of files) shipped.push(...walkShipped(f, guestPathOf(f), label));
  const guestOf = (host: string): string | undefined => {
    for (const f of files) {
      if (host === f) return guestPathOf(f);
      const rel = relative(f, host);
      if (rel && !rel.startsWith('..') && !isAbsolute(rel)) return `${guestPathOf(f)}/${rel.split(sep).join('/')}`;
    }
    return undefined;
  };
  const firstFolder = files.find((f) => statSync(f).isDirectory());
  // A suite's command runs in its folder (made by its files; /tmp when it ships none).
  const cwd = o.suite ? (files.length ? root : '/tmp') : firstFolder ? `${GUEST_FILES}/${basename(firstFolder)}` : files.length ? GUEST_FILES : '/tmp';

  // An ELF program or shared library decides by its machine: another arch's cannot run here.
  for (const s of shipped) {
    const h = elfHeader(s.host);
    if (!h) continue;
    s.elf = h.type === ET_EXEC ? 'program' : h.type === ET_DYN ? 'library' : 'other';
    const of = archOfMachine(h.machine);
    if (s.elf === 'other' || of === undefined || of === arch) continue;
    // An ET_DYN is a PIE program or a library; which one does not change the answer.
    const hint = o.suite ? `a suite's files go to every kernel: ship a script that runs the build of \`uname -m\`` : `give its ${arch} build with --files ${arch}:<path>`;
    throw new UsageError(`${label}: ${s.host} is an ${ARCH_FACTS[of].machine} ELF file; ${arch} kernels${kernels.length ? ` (${kernels.join(', ')})` : ''} cannot run it: ${hint}`);
  }

  // The program: an absolute host path inside the --files runs from where it was shipped.
  let command = o.command;
  let program: { name: string; host?: string } | undefined;
  const first = commandProgram(o.command);
  if (first) {
    const w = first.word;
    let host: string | undefined;
    if (isAbsolute(w)) host = guestOf(resolve(w)) ? resolve(w) : undefined;
    // A suite's command runs in its folder, which is first on its PATH too.
    else if (o.suite) host = guestOf(resolve(o.suite.dir, w)) && existsSync(resolve(o.suite.dir, w)) ? resolve(o.suite.dir, w) : undefined;
    else if (w.includes('/')) host = firstFolder && existsSync(join(firstFolder, w)) ? join(firstFolder, w) : undefined;
    else host = files.find((f) => basename(f) === w && statSync(f).isFile());
    // On an arch with its own build of the program (same base name), a host path to the plain one runs that build.
    if (!host && isAbsolute(w) && o.files.some((f) => resolve(w) === f || !relative(f, resolve(w)).startsWith('..'))) {
      const plain = o.files.find((f) => resolve(w) === f || !relative(f, resolve(w)).startsWith('..'))!;
      const own = files.find((f) => basename(f) === basename(plain));
      const candidate = own && (resolve(w) === plain ? own : join(own, relative(plain, resolve(w))));
      if (candidate && existsSync(candidate)) host = candidate;
    }
    if (host && isAbsolute(w)) {
      const guest = guestOf(host)!;
      command = `${o.command.slice(0, first.start)}${guest}${o.command.slice(first.start + w.length)}`;
      log(`exec: ${w} is shipped as ${guest}${arch !== DEFAULT_ARCH ? ` (${arch})` : ''}`);
    }
    program = { name: basename(w), ...(host && existsSync(host) && statSync(host).isFile() ? { host } : {}) };
  }
  return { files, shipped, guestOf, cwd, command, ...(program ? { program } : {}) };
}

/**
 * The host's libraries the shipped ELF executables need (and the named program), found with ldd:
 * those not already in the base layer nor inside the shipped folders themselves (found there
 * through their RPATH).
 */
function hostLibraries(s: Shipped, log: (line: string) => void): { path: string; source: string }[] {
  const inBase = new Set(baseEntries('full').entries.filter((e) => e.kind === 'file').map((e) => normalizeGuestPath(e.path)));
  const libraries = new Set<string>();
  for (const f of s.shipped) {
    const st = statSync(f.host);
    if (!((st.mode & 0o111) || f.host === s.program?.host) || !isElf(f.host)) continue;
    let libs: string[];
    try {
      libs = sharedLibraries(f.host);
    } catch (err) {
      // A library ldd cannot find is not shipped: the guest's loader then says which one.
      log(`exec: ${(err as Error).message.split('\n')[0]}: its libraries are not shipped`);
      continue;
    }
    for (const lib of libs) if (!inBase.has(normalizeGuestPath(lib)) && !s.guestOf(resolve(lib))) libraries.add(lib);
  }
  return [...libraries].sort().map((lib) => ({ path: lib, source: lib }));
}

/** The plan from the walked files and the libraries to add. */
function finishPlan(o: ExecOptions, s: Shipped, libraries: { path: string; source: string }[], log: (line: string) => void, arch: DebianArch = DEFAULT_ARCH): PlannedExec {
  const files: ImageFile[] = [...s.shipped.map((x) => ({ path: x.guest, source: x.host })), ...libraries];
  const bytes = files.reduce((n, f) => n + statSync(f.source!).size, 0);
  const label = o.suite ? `${o.suite.spec}: exec.files` : '--files';
  if (bytes > MAX_SHIPPED_BYTES) throw new UsageError(`${label}: ${(bytes / 2 ** 20).toFixed(0)} MiB to ship, more than ${MAX_SHIPPED_BYTES >> 20} MiB (every guest holds them in RAM)`);
  const from = o.suite ? `suite ${o.suite.name}'s folder (${s.files.length} exec.files path(s))` : `${s.files.length} --files path(s)`;
  if (s.files.length || libraries.length)
    log(`exec: shipping ${s.shipped.length} file(s) from ${from}${arch !== DEFAULT_ARCH ? ` to ${arch} kernels` : ''}${libraries.length ? ` and ${libraries.length} librar${libraries.length === 1 ? 'y' : 'ies'} (${libraries.map((l) => basename(l.path)).join(', ')})` : ''}: ${(bytes / 2 ** 20).toFixed(1)} MiB`);
  const sha256 = s.program?.host ? fileHash(s.program.host) : createHash('sha256').update(o.command).digest('hex');
  // A suite's command is a cell of that suite; its program is named with the suite (two suites may both ship a check.sh).
  const suite = o.suite ? o.suite.name : execSuiteName(o.command);
  const program = o.suite ? EXEC_PROGRAMS.suite : EXEC_PROGRAMS.command;
  const name = s.program?.name ?? EXEC_PROGRAMS.command;
  const object = { name: o.suite ? `${o.suite.name}/${name}` : name, sha256 };
  const root = guestRootOf(o);
  return {
    plan: {
      command: s.command, suite, program, ...(o.suite ? { ofSuite: true } : {}), object, cwd: s.cwd, files: root, timeoutMs: o.timeoutMs,
      path: o.suite ? `${root}:${SYSTEM_PATH}` : GUEST_PATH,
    },
    files,
    libraries: libraries.map((l) => l.path).sort(),
    bytes,
    owed: { unit: suite, object: object.name, sha256, programs: [program] },
  };
}

/**
 * The NIC driver a kernel needs for QEMU's e1000 (`-device e1000`), with the image files it takes:
 * nothing when the driver is built in, the module (from the kernel's package) when it is one. A
 * kernel without it, or whose modules cannot be had (a custom build), gets a plan without modules
 * and a warning: its guest has no network, and a command that needs one fails saying so.
 */
export async function netPlan(store: KernelStore, k: KernelArtifacts, log: (line: string) => void): Promise<{ plan: NetPlan; files: ImageFile[] }> {
  const none = { plan: { modules: [], ...USER_NET }, files: [] };
  const option = /^CONFIG_E1000=([ym])$/m.exec(readFileSync(k.config, 'utf8'))?.[1];
  if (option === 'y') return none;
  if (option !== 'm') {
    log(`[${k.id}] --net user: CONFIG_E1000 is not set in this kernel: its guest has no network`);
    return none;
  }
  try {
    const mods = await store.modules(k, ['e1000']);
    const guest = (name: string) => `/cm/modules/${name}.ko`;
    return { plan: { ...none.plan, modules: mods.map((m) => ({ name: m.name, path: guest(m.name) })) }, files: mods.map((m) => ({ path: guest(m.name), source: m.path })) };
  } catch (err) {
    log(`[${k.id}] --net user: e1000 module not available (${(err as Error).message.split('\n')[0]}): its guest has no network`);
    return none;
  }
}

/** Single-quotes a string for sh. */
const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The profile an interactive `corematrix shell` reads (busybox sh reads $ENV, set on the kernel
 * command line): the command's PATH and folder, the network brought up as the agent would, and
 * a banner saying how to leave. Guarded so a nested sh does not redo it.
 */
export function shellRc(o: { kernelId: string; exec?: ExecPlan; net?: NetPlan }): string {
  const lines = [
    '# corematrix shell: read by the interactive sh ($ENV from the kernel command line)',
    'if [ -z "$CM_SHELL" ]; then',
    '  export CM_SHELL=1',
    `  export PATH=${GUEST_PATH} CM_FILES=${GUEST_FILES} CM_KERNEL=${shQuote(o.kernelId)}`,
  ];
  if (o.net) {
    for (const m of o.net.modules) lines.push(`  insmod ${m.path} 2>/dev/null`);
    lines.push(
      '  for d in /sys/class/net/*; do n=${d##*/}; [ "$n" != lo ] && { cm_if=$n; break; }; done',
      `  if [ -n "$cm_if" ] && ip link set "$cm_if" up && ip addr add ${o.net.address} dev "$cm_if" && ip route add default via ${o.net.gateway}; then`,
      // The link comes up a moment later (e1000 under TCG: ~2 s); a packet sent before is lost.
      '    i=0; while [ "$(cat /sys/class/net/$cm_if/carrier 2>/dev/null)" != 1 ] && [ $i -lt 200 ]; do usleep 50000; i=$((i+1)); done',
      `    echo "nameserver ${o.net.dns}" > /etc/resolv.conf; echo "corematrix shell: $cm_if ${o.net.address}, gateway ${o.net.gateway} (QEMU user net)"`,
      '  else echo "corematrix shell: no network interface came up"; fi',
    );
  }
  if (o.exec) lines.push(`  cd ${shQuote(o.exec.cwd)} 2>/dev/null`);
  if (o.exec && o.exec.command !== NO_COMMAND) lines.push(`  echo "corematrix shell: the --exec command: "${shQuote(o.exec.command)}`);
  lines.push(
    '  echo "corematrix shell: the agent: CM_RESULT_PORT=/dev/stdout node /agent.js (results as JSON lines)"',
    '  echo "corematrix shell: Ctrl-D or poweroff -f powers the guest off"',
    'fi',
    '',
  );
  return lines.join('\n');
}
