// The bzImage payload path for every compressor the kernel build uses, with the system's own
// compressors invoked the way the kernel's Makefile does (size appended after all but gzip).
// The container is a minimal boot header around a real ELF (/usr/bin/true); real Debian images
// are covered by store.test.ts (xz) and the fetched matrix (zstd, lz4).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../harness/core/errors.js';
import { elfSection, extractVmlinux, parseBzImage, type PayloadFormat } from '../../harness/kernels/extract.js';

const elf = readFileSync('/usr/bin/true');

const COMPRESS: [PayloadFormat, string, string[]][] = [
  ['gzip', 'gzip', ['-n', '-9', '-c']],
  ['xz', 'xz', ['--check=crc32', '--x86', '--lzma2=dict=32MiB', '-c']],
  ['zstd', 'zstd', ['-19', '-c', '-q']],
  ['lz4', 'lz4', ['-l', '-9', '-c', '-q']],
  ['bzip2', 'bzip2', ['-9', '-c']],
  ['lzma', 'xz', ['--format=lzma', '-9', '-c']],
];

function bzImage(compressed: Buffer, withSize: boolean, banner = '9.9.9-test-amd64 (test@builder) #1'): Buffer {
  const setupSects = 1;
  const head = Buffer.alloc((setupSects + 1) * 512);
  head[0x1f1] = setupSects;
  head.write('HdrS', 0x202, 'latin1');
  head.writeUInt16LE(0x20f, 0x206);
  const kv = 0x300; // kernel_version string, pointed to from 0x20e (minus 0x200)
  head.write(`${banner}\0`, kv, 'latin1');
  head.writeUInt16LE(kv - 0x200, 0x20e);
  const size = Buffer.alloc(4);
  size.writeUInt32LE(elf.length);
  const payload = withSize ? Buffer.concat([compressed, size]) : compressed;
  const pad = Buffer.alloc(64); // decompressor code would sit before the payload in a real image
  head.writeUInt32LE(pad.length, 0x248);
  head.writeUInt32LE(payload.length, 0x24c);
  return Buffer.concat([head, pad, payload, Buffer.alloc(100)]);
}

describe('bzImage payloads', () => {
  it.each(COMPRESS)('%s payload decompresses back to the ELF', async (format, cmd, args) => {
    const compressed = execFileSync(cmd, args, { input: elf, maxBuffer: 1 << 26 });
    const img = bzImage(compressed, format !== 'gzip');
    const info = parseBzImage(img);
    expect(info.format).toBe(format);
    expect(info.banner).toBe('9.9.9-test-amd64 (test@builder) #1');
    expect(info.size).toBe(elf.length);
    const out = await extractVmlinux(img);
    expect(out.elf.equals(elf)).toBe(true);
    expect(elfSection(out.elf, '.text')!.length).toBeGreaterThan(0);
  });

  it('rejects what is not a bzImage, a payload outside the image, and an unknown compressor', async () => {
    expect(() => parseBzImage(elf, 'true')).toThrow(new FormatError("true: not an x86 bzImage (no 'HdrS' boot header at 0x202)"));
    const img = bzImage(Buffer.alloc(64, 0x41), true);
    expect(() => parseBzImage(img, 'k')).toThrow(/^k: unknown payload compression \(first bytes 414141414141\)$/);
    img.writeUInt32LE(1 << 30, 0x24c);
    expect(() => parseBzImage(img, 'k')).toThrow(/^k: payload \[\d+, \+1073741824\) lies outside/);
    const truncated = execFileSync('zstd', ['-19', '-c', '-q'], { input: elf }).subarray(0, 100);
    await expect(extractVmlinux(bzImage(truncated, true), 'k')).rejects.toThrow(/^k: zstd payload: zstd -dcq failed \(exit \d+\): /);
  });
});
