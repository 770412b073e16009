// The architectures corematrix boots, by their Debian names, and what each name implies for the
// kernel store: the release suffix of each flavour, the kernel package names, the ELF machine,
// `uname -m`. Pure data and string functions (no files, no processes).
import type { Flavour } from './matrix.js';

/** Debian architecture names (dpkg --print-architecture), the arch a matrix entry names. */
export type DebianArch = 'amd64' | 'arm64';
export const DEBIAN_ARCHES: readonly DebianArch[] = ['amd64', 'arm64'];
/** What an entry without `arch` means. */
export const DEFAULT_ARCH: DebianArch = 'amd64';

export function isDebianArch(s: string): s is DebianArch {
  return (DEBIAN_ARCHES as readonly string[]).includes(s);
}

/** The arch of anything that may name one (a matrix entry once it has `arch`); amd64 otherwise. */
export function archOf(x: { arch?: DebianArch | undefined } | object): DebianArch {
  const a = (x as { arch?: unknown }).arch;
  return typeof a === 'string' && isDebianArch(a) ? a : DEFAULT_ARCH;
}

/** Per-arch facts that do not depend on a kernel. */
export interface ArchFacts {
  /** `uname -m` in a guest. */
  machine: string;
  /** ELF e_machine of its binaries and vmlinux (EM_X86_64 62, EM_AARCH64 183). */
  elfMachine: number;
  /** The kernel image format Debian ships in /boot/vmlinuz-* (see extract.ts / extract-arm64.ts). */
  image: 'bzImage' | 'arm64-Image';
  /** bpf_tracing.h's __TARGET_ARCH_<x> (the -D a BPF object is compiled with for this arch). */
  bpfTargetArch: string;
}

export const ARCH_FACTS: Record<DebianArch, ArchFacts> = {
  amd64: { machine: 'x86_64', elfMachine: 62, image: 'bzImage', bpfTargetArch: 'x86' },
  arm64: { machine: 'aarch64', elfMachine: 183, image: 'arm64-Image', bpfTargetArch: 'arm64' },
};

/**
 * The `uname -r` suffix of a Debian kernel flavour on an arch: 6.1.0-50-amd64, 6.1.0-50-cloud-arm64,
 * 6.1.0-50-rt-arm64, 7.3.4+deb13-arm64. (arm64 also has `-arm64-16k` from trixie on: not a flavour here.)
 */
export function flavourSuffix(arch: DebianArch, flavour: Flavour): string {
  return flavour === 'generic' ? `-${arch}` : `-${flavour}-${arch}`;
}

/** The flavour a release names on `arch`, or undefined (another arch, or a flavour we do not boot). */
export function flavourOfRelease(release: string, arch: DebianArch = DEFAULT_ARCH): Flavour | undefined {
  // The longer suffixes first: -cloud-arm64 also ends with -arm64.
  for (const f of ['cloud', 'rt', 'generic'] as const) if (release.endsWith(flavourSuffix(arch, f))) return f;
  return undefined;
}

/** The arch a kernel release is built for, from its suffix (undefined for a custom build's). */
export function archOfRelease(release: string): DebianArch | undefined {
  return DEBIAN_ARCHES.find((a) => flavourOfRelease(release, a) !== undefined);
}

/**
 * The Debian packages a kernel release comes in. Up to 6.x one package holds /boot/vmlinuz-<rel>,
 * /boot/config-<rel> and the modules; the 7.x layout splits them: linux-binary-<rel> (the image under
 * usr/lib/modules/<rel>/vmlinuz), linux-modules-<rel>, linux-base-<rel> (the config). The names are
 * the same on every arch; only <rel>'s suffix says which.
 */
export function kernelPackageNames(release: string): { image: string; binary: string; modules: string } {
  return { image: `linux-image-${release}-unsigned`, binary: `linux-binary-${release}`, modules: `linux-modules-${release}` };
}


/** How a kernel of an arch is built from source (harness/kernels/build.ts). */
export interface ArchKernelBuild {
  /** The kernel's own name of the arch (`make ARCH=`). */
  kernelArch: 'x86' | 'arm64';
  /** The make target of the bootable image, and where kbuild writes it. */
  target: 'bzImage' | 'Image';
  image: string;
  /** The `CROSS_COMPILE=` prefix when the host is another arch ('' when it is this one). */
  crossCompile: string;
  /** Debian's package holding that compiler (what an error tells the user to install). */
  compilerPackage: string;
}

/** The Node `process.arch` of a machine of this Debian arch. */
const NODE_ARCH: Record<DebianArch, string> = { amd64: 'x64', arm64: 'arm64' };

/**
 * The kernel build of `arch` on a host whose Node arch is `hostArch`: native with `gcc`, or with
 * Debian's cross compiler (gcc-aarch64-linux-gnu: `aarch64-linux-gnu-gcc`) for another arch.
 */
export function archKernelBuild(arch: DebianArch, hostArch: string = process.arch): ArchKernelBuild {
  const native = NODE_ARCH[arch] === hostArch;
  if (arch === 'arm64') {
    return { kernelArch: 'arm64', target: 'Image', image: 'arch/arm64/boot/Image', crossCompile: native ? '' : 'aarch64-linux-gnu-', compilerPackage: native ? 'gcc' : 'gcc-aarch64-linux-gnu' };
  }
  return { kernelArch: 'x86', target: 'bzImage', image: 'arch/x86/boot/bzImage', crossCompile: native ? '' : 'x86_64-linux-gnu-', compilerPackage: native ? 'gcc' : 'gcc-x86-64-linux-gnu' };
}
