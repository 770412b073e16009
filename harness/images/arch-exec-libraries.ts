// The shared libraries that a user's ELF programs (`matrix --exec … --files …`) need in a guest of
// another arch than the host's (arm64 on x86-64), from Debian's packages of that arch, as the
// image's node gets its own (arm64-userland.ts): `ldd` would run the target's loader, so the needs
// are read from the files themselves (arm64-elf-deps.ts: PT_INTERP, DT_NEEDED, DT_RUNPATH).
//
// Where a library is found, in order: the shipped files (through the program's RUNPATH, $ORIGIN
// being its guest folder), the image's base layer (glibc, libstdc++, libelf, zlib, libssl, libbpf…:
// what node and libbpf need), then the packages the caller names (`--exec-packages`) and the
// packages a missing library's name gives (Debian names a library package after its soname:
// libcap.so.2 is in libcap2, libfoo.so.1 in libfoo1 or libfoo1t64), each unpacked with its
// `Depends` closure by archUserland. A library found nowhere is one line naming the program, the
// library and the packages tried, before anything boots.
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { UsageError } from '../core/errors.js';
import { AptState } from '../kernels/apt.js';
import type { DebianArch } from '../kernels/arch.js';
import { dynamicDeps } from './arm64-elf-deps.js';
import { archUserland, DEFAULT_USERLAND_SUITES, MULTIARCH, type ArchUserland, type GuestFile } from './arm64-userland.js';
import type { ImageFile } from './initramfs.js';

/** An ELF file of the guest's arch among the shipped files. */
export interface ExecElf {
  host: string;
  /** Absolute guest path (/cm/files/…). */
  guest: string;
}

export interface ArchExecLibraries {
  /** The libraries to add to the image (not in its base layer), at /usr/lib/<triplet>/<soname>. */
  files: ImageFile[];
  /** soname → `<package> <version>` it came from, for the log and tests. */
  from: Map<string, string>;
  /** Packages unpacked beyond the base layer's (named, or found by a library's name). */
  packages: string[];
}

/** The packages the base layer's userland comes from besides node (arm64-image.ts). */
const BASE_PACKAGES = ['libbpf1'];
/** Rounds of "a library is missing: unpack the package its name gives" before giving up. */
const MAX_ROUNDS = 4;

/** Debian's package names for a soname: libcap.so.2 → libcap2, libcap2t64; libfoo1.so.3 → libfoo1-3, libfoo1-3t64. */
export function packagesForSoname(soname: string): string[] {
  const m = /^(lib[A-Za-z0-9_+.-]*?)\.so\.(\d+)/.exec(soname);
  if (!m) return [];
  const stem = m[1]!.toLowerCase().replace(/_/g, '-');
  const base = /\d$/.test(stem) ? `${stem}-${m[2]}` : `${stem}${m[2]}`;
  return [base, `${base}t64`];
}

/** The libraries a userland offers, by soname (archUserland lays every library out at usr/lib/<triplet>/<soname>). */
function librariesOf(u: ArchUserland, triplet: string): Map<string, GuestFile> {
  const prefix = `usr/lib/${triplet}/`;
  return new Map(u.files.filter((f) => f.guest.startsWith(prefix) && !f.guest.slice(prefix.length).includes('/')).map((f) => [f.guest.slice(prefix.length), f]));
}

/**
 * The libraries `elfs` (ELF files of `arch` the user ships) need beyond the image's base layer and
 * the shipped files, from `arch`'s Debian packages. Throws a UsageError naming the file and the
 * library when one cannot be found.
 */
export async function archExecLibraries(arch: DebianArch, elfs: ExecElf[], shipped: ReadonlySet<string>, opts: { packages?: string[]; apt?: AptState; log?: (line: string) => void } = {}): Promise<ArchExecLibraries> {
  const log = opts.log ?? (() => {});
  const apt = opts.apt ?? new AptState({ arch, log });
  const suites = DEFAULT_USERLAND_SUITES;
  const triplet = MULTIARCH[arch];
  const base = await archUserland(arch, { apt, suites, extraPackages: BASE_PACKAGES });
  const inBase = new Set(base.files.map((f) => `/${f.guest}`));
  const packages = [...(opts.packages ?? [])];
  const tried = new Set<string>(packages);
  for (let round = 0; ; round++) {
    const u = packages.length ? await archUserland(arch, { apt, suites, extraPackages: [...BASE_PACKAGES, ...packages] }) : base;
    const offered = librariesOf(u, triplet);
    const needed = new Map<string, GuestFile>();
    const missing: { soname: string; by: string }[] = [];
    const pending: { bytes: Uint8Array; guest: string; what: string }[] = elfs.map((e) => ({ bytes: readFileSync(e.host), guest: e.guest, what: e.host }));
    const seen = new Set<string>();
    while (pending.length) {
      const { bytes, guest, what } = pending.shift()!;
      if (seen.has(guest)) continue;
      seen.add(guest);
      const deps = dynamicDeps(bytes, what);
      if (deps.interpreter && !inBase.has(posix.normalize(deps.interpreter)) && !shipped.has(deps.interpreter))
        throw new UsageError(`--files: ${what} asks for the interpreter ${deps.interpreter}, which ${arch} guests do not have (glibc's is ${[...inBase].find((p) => /\/ld-linux[^/]*\.so/.test(p)) ?? 'missing'})`);
      const origin = posix.dirname(guest);
      const runpath = deps.runpath.map((d) => d.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin));
      for (const soname of deps.needed) {
        if (runpath.some((d) => shipped.has(posix.join(d, soname)))) continue;
        if (inBase.has(`/usr/lib/${triplet}/${soname}`)) continue;
        const lib = offered.get(soname);
        if (!lib) {
          missing.push({ soname, by: what });
          continue;
        }
        if (needed.has(soname)) continue;
        needed.set(soname, lib);
        pending.push({ bytes: readFileSync(lib.source), guest: `/${lib.guest}`, what: `${soname} (${lib.from})` });
      }
    }
    if (missing.length === 0) {
      const files = [...needed].sort(([a], [b]) => a.localeCompare(b)).map(([soname, f]) => ({ path: `/usr/lib/${triplet}/${soname}`, source: f.source }));
      return { files, from: new Map([...needed].map(([soname, f]) => [soname, f.from])), packages };
    }
    // Each missing library's package, by its name; one not found (or already unpacked) ends it.
    const first = missing[0]!;
    let added = false;
    for (const { soname, by } of missing) {
      const candidates = packagesForSoname(soname).filter((p) => !tried.has(p));
      candidates.forEach((p) => tried.add(p));
      const rows = candidates.length ? (await apt.madison(candidates)).filter((r) => suites.includes(r.suite)) : [];
      const pick = candidates.find((p) => rows.some((r) => r.name === p));
      if (pick) {
        log(`exec: ${by} needs ${soname}: taking Debian's ${arch} package ${pick} (${suites.join(', ')})`);
        packages.push(pick);
        added = true;
      }
    }
    if (!added || round + 1 >= MAX_ROUNDS) {
      const names = packagesForSoname(first.soname);
      throw new UsageError(`--files: ${first.by} needs ${first.soname}, which no ${arch} package found in ${suites.join(', ')} has${names.length ? ` (tried ${[...new Set([...names, ...packages])].join(', ')})` : ''}: name its package with --exec-packages <pkg>, or ship it in --files beside the program with a RUNPATH of $ORIGIN`);
    }
  }
}
