// From a Debian kernel package's vmlinuz (an x86 bzImage) to its vmlinux BTF: find the compressed
// payload through the boot protocol header, decompress it with the system's own tools, and cut
// the `.BTF` section out of the resulting ELF by reading its section headers. Nothing is kept on
// disk but the BTF: the ELF lives in memory only (60 to 110 MB).
import { spawn } from 'node:child_process';
import { CoreMatrixError, FormatError, wrap } from '../core/errors.js';
import { parseElf } from '../core/elf.js';

export type PayloadFormat = 'gzip' | 'xz' | 'zstd' | 'lz4' | 'bzip2' | 'lzma' | 'lzo';

export interface BzImageInfo {
  /** Boot protocol version, e.g. 0x20f. */
  protocol: number;
  /** The kernel_version string (`uname -r` first, then the build banner). */
  banner: string;
  format: PayloadFormat;
  payload: Buffer;
  /** Uncompressed size recorded by the kernel build (le32 after the stream), when there is one. */
  size?: number;
}

const MAGICS: [PayloadFormat, number[]][] = [
  ['gzip', [0x1f, 0x8b]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['lz4', [0x02, 0x21, 0x4c, 0x18]], // legacy lz4 frame (lz4 -l)
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['lzo', [0x89, 0x4c, 0x5a, 0x4f]],
  ['lzma', [0x5d, 0x00, 0x00]],
];

/** Reads the bzImage boot header (Documentation/arch/x86/boot.rst) and returns the compressed kernel. */
export function parseBzImage(buf: Buffer, name = 'vmlinuz'): BzImageInfo {
  if (buf.length < 0x260 || buf.toString('latin1', 0x202, 0x206) !== 'HdrS') throw new FormatError(`${name}: not an x86 bzImage (no 'HdrS' boot header at 0x202)`);
  const protocol = buf.readUInt16LE(0x206);
  if (protocol < 0x208) throw new FormatError(`${name}: boot protocol ${protocol.toString(16)} is older than 2.08 (no payload fields)`);
  const setupSects = buf[0x1f1] || 4;
  const pm = (setupSects + 1) * 512;
  const off = pm + buf.readUInt32LE(0x248);
  const len = buf.readUInt32LE(0x24c);
  if (off + len > buf.length || len < 16) throw new FormatError(`${name}: payload [${off}, +${len}) lies outside the ${buf.length}-byte image`);
  let banner = '';
  const kv = buf.readUInt16LE(0x20e);
  if (kv) {
    const start = kv + 0x200;
    const end = buf.indexOf(0, start);
    if (end > start) banner = buf.toString('latin1', start, end);
  }
  const raw = buf.subarray(off, off + len);
  const hit = MAGICS.find(([, m]) => m.every((b, i) => raw[i] === b));
  if (!hit) throw new FormatError(`${name}: unknown payload compression (first bytes ${raw.subarray(0, 6).toString('hex')})`);
  const format = hit[0];
  // gzip carries its own size; every other kernel compressor is followed by a le32 size.
  if (format === 'gzip') return { protocol, banner, format, payload: raw, size: raw.readUInt32LE(raw.length - 4) };
  return { protocol, banner, format, payload: raw.subarray(0, raw.length - 4), size: raw.readUInt32LE(raw.length - 4) };
}

const TOOLS: Record<PayloadFormat, [string, string[]]> = {
  gzip: ['gzip', ['-dc']],
  xz: ['xz', ['-dc', '--single-stream']],
  zstd: ['zstd', ['-dcq']],
  lz4: ['lz4', ['-dcq']],
  bzip2: ['bzip2', ['-dc']],
  lzma: ['xz', ['--format=lzma', '-dc']],
  lzo: ['lzop', ['-dc']],
};

/** Pipes bytes through a decompressor and returns its output. */
export function decompress(format: PayloadFormat, data: Buffer): Promise<Buffer> {
  const [cmd, args] = TOOLS[format];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new CoreMatrixError(`${cmd}: cannot run (${(e as NodeJS.ErrnoException).code ?? e.message}); install it to read ${format} kernels`)));
    child.stdin.on('error', () => {}); // EPIPE when the tool fails early; reported by 'close'
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new CoreMatrixError(`${cmd} ${args.join(' ')} failed (exit ${code}): ${Buffer.concat(err).toString().trim().split('\n')[0] ?? ''}`));
    });
    child.stdin.end(data);
  });
}

/** Decompresses a bzImage's payload to the vmlinux ELF (checked against the recorded size). */
export async function extractVmlinux(vmlinuz: Buffer, name = 'vmlinuz'): Promise<{ info: BzImageInfo; elf: Buffer }> {
  const info = parseBzImage(vmlinuz, name);
  let elf: Buffer;
  try {
    elf = await decompress(info.format, info.payload);
  } catch (err) {
    throw wrap(`${name}: ${info.format} payload`, err);
  }
  if (elf.readUInt32BE(0) !== 0x7f454c46) throw new FormatError(`${name}: the ${info.format} payload did not decompress to an ELF`);
  if (info.size !== undefined && info.size !== elf.length) throw new FormatError(`${name}: ${info.format} payload decompressed to ${elf.length} bytes, header says ${info.size}`);
  return { info, elf };
}

/** The bytes of a named section of a 64-bit little-endian ELF (copied), or undefined. */
export function elfSection(elf: Buffer, section: string, name = 'vmlinux'): Buffer | undefined {
  const file = parseElf(elf, name);
  const sec = file.section(section);
  return sec ? Buffer.from(file.data(sec)) : undefined;
}
