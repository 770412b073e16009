// A cached image or base layer is used only when its bytes still hash to what was written: a
// block flipped in place (size and mtime kept) makes the next build rebuild it, and say so.
// Private caches only (COREMATRIX_CACHE per build): the shared images are never touched.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { corruptInPlace } from '../helpers/corrupt.js';
import { buildImage, type ImageSpec } from '../../harness/images/initramfs.js';
import { sealPath } from '../../harness/seal.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-img-integrity-'));
const before = process.env.COREMATRIX_CACHE;
afterAll(() => {
  if (before === undefined) delete process.env.COREMATRIX_CACHE;
  else process.env.COREMATRIX_CACHE = before;
  rmSync(tmp, { recursive: true, force: true });
});


/** Builds in the cache root `root` (a fresh root: a cold build, the witness), recording the progress steps. */
async function build(root: string, spec: ImageSpec, steps: string[] = []) {
  process.env.COREMATRIX_CACHE = join(tmp, root);
  return buildImage({ ...spec, onStep: (s) => steps.push(s) });
}

const config = join(tmp, 'config');
writeFileSync(config, 'CONFIG_BPF=y\nCONFIG_DEBUG_INFO_BTF=y\n');
// The busybox base and no agent: no random seed, so two builds of one spec are byte for byte equal.
const spec = (data: string): ImageSpec => ({ base: 'busybox', agent: false, kernelConfig: config, release: '6.1.0-99-amd64', files: [{ path: '/cm/run.json', data }, { path: '/cm/blob', data: Buffer.alloc(300_000, data) }] });

describe('cached images are checked before use', () => {
  it('a block flipped inside a cached image: the next build rebuilds it (equal to a fresh build) and says so', async () => {
    const steps: string[][] = [[], [], []];
    const first = await build('a', spec('one'), steps[0]);
    const good = readFileSync(first.path);
    const again = await build('a', spec('one'), steps[1]);
    expect(again.path).toBe(first.path);
    corruptInPlace(first.path, Math.floor(good.length / 2), 4096, 0xa5);
    const third = await build('a', spec('one'), steps[2]);
    expect(readFileSync(third.path).equals(good)).toBe(true);
    const fresh = await build('fresh', spec('one'));
    expect(readFileSync(fresh.path).equals(good)).toBe(true);
    // What each build said: built, reused after checking, rebuilt after checking (and why).
    expect([first.reused, again.reused, third.reused]).toEqual([false, true, false]);
    expect(third.rebuilt).toMatch(/^cached image is corrupt: sha256 is now [0-9a-f]{12}…, \d+ bytes \(expected [0-9a-f]{12}…, \d+ bytes\)$/);
    expect(steps).toEqual([['building image'], ['checking cached image', 'reusing image'], ['checking cached image', `rebuilding image: ${third.rebuilt}`]]);
    const steps2: string[] = [];
    // Mended: reused again, silently.
    expect((await build('a', spec('one'), steps2)).reused).toBe(true);
    expect(steps2).toEqual(['checking cached image', 'reusing image']);
    // An image without its checksum beside it (one an older corematrix wrote) is not trusted either.
    rmSync(sealPath(first.path));
    const unsealed = await build('a', spec('one'));
    expect(unsealed.rebuilt).toBe('cached image has no checksum');
    expect(readFileSync(unsealed.path).equals(good)).toBe(true);
  }, 120_000);

  it('a block flipped inside the cached base layer: the next new image rebuilds the layer first', async () => {
    const first = await build('b', spec('two'));
    expect(first.baseBuilt).toBe(true);
    const base = readFileSync(first.path).subarray(0, first.baseBytes);
    const layer = join(tmp, 'b', 'images', readdirSync(join(tmp, 'b', 'images')).find((f) => f.startsWith('base-busybox-') && f.endsWith('.cpio'))!);
    expect(readFileSync(layer).equals(base)).toBe(true);
    corruptInPlace(layer, Math.floor(first.baseBytes / 2), 4096, 0xa5);
    // Another run layer: a new image, made from the base layer.
    const steps: string[] = [];
    const next = await build('b', spec('three'), steps);
    const witness = await build('fresh', spec('three'));
    expect(readFileSync(next.path).equals(readFileSync(witness.path))).toBe(true);
    expect(readFileSync(layer).equals(base)).toBe(true);
    expect(next.baseBuilt).toBe(true);
    expect(next.rebuilt).toMatch(/^cached base layer is corrupt: sha256 is now [0-9a-f]{12}…/);
    expect(steps).toContain(`rebuilding base layer: ${next.rebuilt}`);
    // The image made from it before the corruption is still whole, and is reused.
    expect((await build('b', spec('two'))).reused).toBe(true);
  }, 120_000);
});
