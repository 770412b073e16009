// From a Debian arm64 kernel package's vmlinuz to what the store keeps: the raw arm64 Image (what
// `qemu-system-aarch64 -kernel` boots on every QEMU version), its banner and its vmlinux BTF.
//
// Debian ships /boot/vmlinuz-* (6.1, 6.12) and usr/lib/modules/<rel>/vmlinuz (7.x) for arm64 as the
// raw Image (Documentation/arch/arm64/booting.rst: "ARMd" magic at 0x38), but the kernel can also
// be built as a gzip'd Image or an EFI zboot image (an EFI app carrying the compressed Image, which
// QEMU learnt to unpack only in 8.1): both are unpacked here so the store always holds the raw one.
//
// The BTF: a raw Image is the kernel's loadable bytes without the ELF around them, so there is no
// .BTF section header to read. The .BTF section's bytes are still in it (it is loaded: the kernel
// serves them from __start_BTF as /sys/kernel/btf/vmlinux), 4-byte aligned, starting with a BTF
// header. We look for every header that is self-consistent and take the one that parses.
import { FormatError, wrap } from '../core/errors.js';
import { parseBtf } from '../core/btf/btf.js';
import { decompress, type PayloadFormat } from './extract.js';

/** How the package's file held the Image. */
export type Arm64ImageFormat = 'Image' | 'gzip' | `zboot-${PayloadFormat}`;

export interface Arm64ImageHeader {
  /** Image load offset from a 2 MB aligned base. */
  textOffset: bigint;
  /** Effective image size (0 on very old kernels). */
  imageSize: bigint;
  /** Bit 0: big-endian kernel; bits 1-2: page size (1 = 4K, 2 = 16K, 3 = 64K). */
  flags: bigint;
  pageSize: 4096 | 16384 | 65536 | undefined;
}

export interface Arm64Kernel {
  /** The raw Image (what QEMU boots). */
  image: Buffer;
  format: Arm64ImageFormat;
  /** The linux_banner without "Linux version " (`uname -r` first, as the bzImage banner on amd64). */
  banner: string;
  header: Arm64ImageHeader;
  /** The vmlinux BTF, as the kernel serves it at /sys/kernel/btf/vmlinux. */
  btf: Buffer;
  /** Where in the Image the BTF starts (for messages and tests). */
  btfOffset: number;
}

const ARM64_MAGIC = 0x644d5241; // "ARMd", le32 at 0x38
const BTF_MAGIC = [0x9f, 0xeb]; // 0xeB9F little-endian
const BTF_HEADER_LEN = 24;

/** True when the bytes are a raw arm64 Image. */
export function isArm64Image(buf: Buffer): boolean {
  return buf.length >= 64 && buf.readUInt32LE(0x38) === ARM64_MAGIC;
}

/** Reads the 64-byte arm64 Image header. */
export function parseArm64ImageHeader(buf: Buffer, name = 'Image'): Arm64ImageHeader {
  if (!isArm64Image(buf)) throw new FormatError(`${name}: not an arm64 Image (no 'ARMd' magic at 0x38)`);
  const flags = buf.readBigUInt64LE(0x18);
  if (flags & 1n) throw new FormatError(`${name}: a big-endian arm64 kernel (not booted here)`);
  const pages = { 1: 4096, 2: 16384, 3: 65536 } as const;
  return { textOffset: buf.readBigUInt64LE(0x08), imageSize: buf.readBigUInt64LE(0x10), flags, pageSize: pages[Number((flags >> 1n) & 3n) as 1 | 2 | 3] };
}

// EFI zboot (drivers/firmware/efi/libstub/zboot-header.S): "MZ", then "zimg" at 4, the payload's
// offset and size (le32) at 8 and 12, the compression's name (NUL-terminated) at 0x18.
const ZBOOT_COMPRESSION: Record<string, PayloadFormat> = { gzip: 'gzip', lzma: 'lzma', lzo: 'lzo', lz4: 'lz4', xzkern: 'xz', zstd22: 'zstd', zstd: 'zstd', bzip2: 'bzip2' };

/** The raw Image inside a Debian arm64 vmlinuz, whichever of the three forms it has. */
export async function arm64Image(vmlinuz: Buffer, name = 'vmlinuz'): Promise<{ image: Buffer; format: Arm64ImageFormat }> {
  if (isArm64Image(vmlinuz)) return { image: vmlinuz, format: 'Image' };
  let format: Arm64ImageFormat;
  let payload: Buffer;
  let packed: PayloadFormat;
  if (vmlinuz[0] === 0x1f && vmlinuz[1] === 0x8b) {
    [format, payload, packed] = ['gzip', vmlinuz, 'gzip'];
  } else if (vmlinuz.length > 0x40 && vmlinuz.toString('latin1', 0, 2) === 'MZ' && vmlinuz.toString('latin1', 4, 8) === 'zimg') {
    const off = vmlinuz.readUInt32LE(8);
    const len = vmlinuz.readUInt32LE(12);
    const end = vmlinuz.indexOf(0, 0x18);
    const comp = vmlinuz.toString('latin1', 0x18, end > 0x18 && end < 0x38 ? end : 0x18);
    const fmt = ZBOOT_COMPRESSION[comp];
    if (!fmt) throw new FormatError(`${name}: EFI zboot image with unknown compression '${comp}'`);
    if (off + len > vmlinuz.length || len < 16) throw new FormatError(`${name}: EFI zboot payload [${off}, +${len}) lies outside the ${vmlinuz.length}-byte image`);
    // Every compressor but gzip is followed by the le32 uncompressed size (the kernel's *_with_size rules).
    const raw = vmlinuz.subarray(off, off + len);
    payload = fmt === 'gzip' ? raw : raw.subarray(0, raw.length - 4);
    [format, packed] = [`zboot-${fmt}`, fmt];
  } else {
    throw new FormatError(`${name}: neither an arm64 Image, a gzip'd one, nor an EFI zboot image (first bytes ${vmlinuz.subarray(0, 8).toString('hex')})`);
  }
  let image: Buffer;
  try {
    image = await decompress(packed, payload);
  } catch (err) {
    throw wrap(`${name}: ${format} payload`, err);
  }
  if (!isArm64Image(image)) throw new FormatError(`${name}: the ${format} payload did not decompress to an arm64 Image`);
  return { image, format };
}

/**
 * The kernel's linux_banner ("Linux version 6.1.0-50-arm64 (…) #1 SMP Debian …"), without its
 * prefix. Since 6.1 an image holds two: init/version.c's weak one, built before the build number
 * is known ("… # SMP …"), and init/version-timestamp.c's, linked last, which the kernel uses.
 */
export function kernelBanner(image: Buffer, name = 'Image'): string {
  const prefix = Buffer.from('Linux version ', 'latin1');
  let banner: string | undefined;
  for (let at = image.indexOf(prefix); at >= 0; at = image.indexOf(prefix, at + 1)) {
    const start = at + prefix.length;
    const c = image[start]!;
    if (c < 0x30 || c > 0x39) continue; // a format string ("Linux version %s"), not the banner
    const end = image.indexOf(0, start);
    if (end < 0 || end - start > 512) continue;
    banner = image.toString('latin1', start, end).replace(/\n+$/, '');
  }
  if (banner === undefined) throw new FormatError(`${name}: no 'Linux version <release>' banner in the image`);
  return banner;
}

/**
 * Offsets of BTF headers in `image` that are self-consistent: version 1, flags 0, a 24-byte header,
 * type section at 0, strings right after the types, everything inside the image, strings starting
 * with the empty string and ending with a NUL. The .BTF section is 4-byte aligned.
 */
export function btfCandidates(image: Buffer): { offset: number; length: number }[] {
  const out: { offset: number; length: number }[] = [];
  const magic = Buffer.from([...BTF_MAGIC, 1, 0]);
  for (let at = image.indexOf(magic); at >= 0; at = image.indexOf(magic, at + 1)) {
    if (at % 4 !== 0 || at + BTF_HEADER_LEN > image.length) continue;
    if (image.readUInt32LE(at + 4) !== BTF_HEADER_LEN) continue;
    const typeOff = image.readUInt32LE(at + 8);
    const typeLen = image.readUInt32LE(at + 12);
    const strOff = image.readUInt32LE(at + 16);
    const strLen = image.readUInt32LE(at + 20);
    if (typeOff !== 0 || typeLen % 4 !== 0 || strOff !== typeLen || strLen === 0) continue;
    const length = BTF_HEADER_LEN + strOff + strLen;
    if (at + length > image.length) continue;
    const strStart = at + BTF_HEADER_LEN + strOff;
    if (image[strStart] !== 0 || image[strStart + strLen - 1] !== 0) continue;
    out.push({ offset: at, length });
  }
  return out;
}

/** The vmlinux BTF in a raw Image: the largest self-consistent candidate that parses as BTF. */
export function findImageBtf(image: Buffer, name = 'Image'): { btf: Buffer; offset: number; types: number } {
  const candidates = btfCandidates(image).sort((a, b) => b.length - a.length);
  const why: string[] = [];
  for (const c of candidates) {
    const bytes = Buffer.from(image.subarray(c.offset, c.offset + c.length));
    try {
      const types = parseBtf(bytes, { source: `${name}: BTF at 0x${c.offset.toString(16)}` }).count;
      return { btf: bytes, offset: c.offset, types };
    } catch (err) {
      why.push((err as Error).message);
    }
  }
  throw new FormatError(`${name}: no vmlinux BTF in the image (kernel built without CONFIG_DEBUG_INFO_BTF?)${why.length ? `: ${candidates.length} candidate(s) did not parse: ${why[0]}` : ''}`);
}

/** Everything the store takes from a Debian arm64 vmlinuz. */
export async function extractArm64Kernel(vmlinuz: Buffer, name = 'vmlinuz'): Promise<Arm64Kernel> {
  const { image, format } = await arm64Image(vmlinuz, name);
  const header = parseArm64ImageHeader(image, name);
  const banner = kernelBanner(image, name);
  const { btf, offset } = findImageBtf(image, name);
  return { image, format, banner, header, btf, btfOffset: offset };
}
