// The kernel BTF index the guests get is a cache file too: used only while its bytes hash to what
// was written, and made only from BTF bytes that hash to the sha256 it is filed under.
// A private cache root for the indexes; the kernel store's blobs are only read.
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corruptInPlace } from '../helpers/corrupt.js';
import { sealPath } from '../../harness/seal.js';
import { kernelBtfIndexFile } from '../../harness/kernels/btf-index.js';
import { KernelStore, type KernelArtifacts } from '../../harness/kernels/store.js';
import { cacheDir } from '../../harness/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-btf-index-'));
const sharedKernels = cacheDir('kernels');
const before = process.env.COREMATRIX_CACHE;
let k: KernelArtifacts;
beforeAll(async () => {
  k = await new KernelStore({ cache: sharedKernels }).fetch('6.1', { use: ['btf'] });
  process.env.COREMATRIX_CACHE = join(tmp, 'cache');
}, 600_000);
afterAll(() => {
  if (before === undefined) delete process.env.COREMATRIX_CACHE;
  else process.env.COREMATRIX_CACHE = before;
  rmSync(tmp, { recursive: true, force: true });
});


describe('kernel BTF index cache', () => {
  it('a corrupted index is made again, equal to the first', () => {
    const names = ['task_struct', 'sock', 'bpf_map_type'];
    const file = kernelBtfIndexFile({ path: k.btf, sha256: k.sha256.btf }, names);
    const good = readFileSync(file);
    corruptInPlace(file, Math.floor(good.length / 2), 1, 0x10);
    expect(readFileSync(file).equals(good)).toBe(false);
    const again = kernelBtfIndexFile({ path: k.btf, sha256: k.sha256.btf }, names);
    expect(again).toBe(file);
    expect(readFileSync(again).equals(good)).toBe(true);
    // An index without its checksum is not trusted either.
    rmSync(sealPath(file));
    corruptInPlace(file, 100, 1, 0x10);
    expect(readFileSync(kernelBtfIndexFile({ path: k.btf, sha256: k.sha256.btf }, names)).equals(good)).toBe(true);
    expect(existsSync(sealPath(file))).toBe(true);
  });

  it('refuses to index BTF bytes that are not the ones its sha256 names, in one line', () => {
    const copy = join(tmp, 'vmlinux.btf');
    copyFileSync(k.btf, copy);
    corruptInPlace(copy, Math.floor(k.sizes.btf / 2), 1, 0x10);
    expect(() => kernelBtfIndexFile({ path: copy, sha256: k.sha256.btf }, ['task_struct', 'file'])).toThrow(
      new RegExp(`^${copy.replace(/[.]/g, '\\.')}: sha256 is [0-9a-f]{12}…, not ${k.sha256.btf.slice(0, 12)}… \\(the kernel BTF the index is for\\)$`),
    );
  });
});
