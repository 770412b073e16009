// Builds real images from the host's busybox, node, koffi and libbpf into a private cache.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseEntries, fileHash, guestKoffiManifest, koffiFiles, koffiVersions, sharedLibraries } from '../../harness/images/base.js';
import { readCpio } from '../../harness/images/cpio.js';
import { buildImage, buildInitramfs } from '../../harness/images/initramfs.js';
import { repoRoot } from '../../harness/paths.js';
import { ensureBuilt } from '../helpers/tools.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-img-'));
beforeAll(() => {
  // A private cache: the first build below is a cold one.
  process.env.COREMATRIX_CACHE = join(tmp, 'cache');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('image inputs', () => {
  it('remembers one content hash per file, and none for a file changed in the last seconds', () => {
    const f = join(tmp, 'hashed.bin');
    const sha = (x: string) => createHash('sha256').update(x).digest('hex');
    const remembered = () => {
      const file = join(process.env.COREMATRIX_CACHE!, 'images', 'file-hashes.json');
      const memo = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>) : {};
      return Object.entries(memo).filter(([k]) => k.startsWith(`${realpathSync(f)}:`)).map(([, v]) => v);
    };
    writeFileSync(f, 'aaaa');
    expect(fileHash(f)).toBe(sha('aaaa'));
    expect(remembered()).toEqual([]); // just written: its mtime may not move at the next write
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(f, hourAgo, hourAgo);
    expect(fileHash(f)).toBe(sha('aaaa'));
    expect(remembered()).toEqual([sha('aaaa')]);
    writeFileSync(f, 'bbbb'); // rewritten in place, same size
    const twoHoursAgo = new Date(Date.now() - 7_200_000);
    utimesSync(f, twoHoursAgo, twoHoursAgo);
    expect(fileHash(f)).toBe(sha('bbbb'));
    expect(remembered()).toEqual([sha('bbbb')]);
  });

  it('ldd finds node\'s libraries and the ELF interpreter', () => {
    const libs = sharedLibraries(process.execPath);
    expect(libs.some((l) => /\/libc\.so\.6$/.test(l))).toBe(true);
    expect(libs.some((l) => /\/ld-linux-x86-64\.so\.2$/.test(l))).toBe(true);
    expect(sharedLibraries('/bin/busybox')).toEqual([]);
  });

  it('koffi is pruned to JavaScript plus the glibc linux-x64 module', () => {
    const files = koffiFiles().map((f) => f.guest);
    expect(files).toContain('node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node');
    expect(files).toContain('node_modules/@koromix/koffi-linux-x64/package.json');
    expect(files).toContain('node_modules/koffi/package.json');
    expect(files.some((f) => f.includes('musl'))).toBe(false);
    expect(files.some((f) => /\.(cc|hh|h|md)$/.test(f))).toBe(false);
  });

  it("koffi's guest package.json resolves require('koffi') to the same file without an exports map", () => {
    const manifest = koffiFiles().find((f) => f.guest === 'node_modules/koffi/package.json')!;
    const guest = JSON.parse(guestKoffiManifest(manifest.source)) as { main: string; exports?: unknown; name: string; version: string };
    const host = JSON.parse(readFileSync(manifest.source, 'utf8')) as { version: string };
    expect(guest.exports).toBeUndefined();
    expect(guest.name).toBe('koffi');
    expect(guest.version).toBe(host.version);
    // What node resolves for require('koffi') on the host, through the exports map.
    const viaExports = createRequire(import.meta.url).resolve('koffi');
    expect(join(dirname(manifest.source), guest.main)).toBe(viaExports);
    // A manifest whose exports would resolve elsewhere than main is refused, not guessed.
    const odd = join(tmp, 'odd-package.json');
    writeFileSync(odd, JSON.stringify({ name: 'koffi', main: './a.cjs', exports: { '.': { require: './b.cjs' } } }));
    expect(() => guestKoffiManifest(odd)).toThrow(/"main" \(\.\/a\.cjs\) and "exports" \(\.\/b\.cjs\) disagree/);
  });
});

describe('buildInitramfs', () => {
  it('builds the base layer once, then only the run layer', async () => {
    const cfg = join(tmp, 'config');
    writeFileSync(cfg, 'CONFIG_BPF=y\n');
    const agent = join(tmp, 'agent.js');
    writeFileSync(agent, 'console.log(1)\n');
    const spec = { base: 'busybox' as const, agent, kernelConfig: cfg, release: '6.1.0-99-amd64', files: [{ path: '/suites/a.yaml', data: 'x: 1\n' }] };
    const cold = await buildImage(spec);
    expect(cold.baseBuilt).toBe(true);
    const warm = await buildImage({ ...spec, files: [{ path: '/suites/a.yaml', data: 'x: 2\n' }] });
    expect(warm.baseBuilt).toBe(false);
    expect(warm.path).not.toBe(cold.path);
    const again = await buildInitramfs({ ...spec, files: [{ path: '/suites/a.yaml', data: 'x: 2\n' }] });
    expect(again).toBe(warm.path);

    const list = readCpio(readFileSync(warm.path));
    const get = (p: string) => list.filter((e) => e.path === p).at(-1);
    expect(get('init')!.mode).toBe(0o100755);
    expect(Buffer.from(get('init')!.data).toString()).toMatch(/^#!\/bin\/busybox sh/);
    expect(Buffer.from(get('boot/config-6.1.0-99-amd64')!.data).toString()).toBe('CONFIG_BPF=y\n');
    expect(Buffer.from(get('suites/a.yaml')!.data).toString()).toBe('x: 2\n');
    expect(Buffer.from(get('agent.js')!.data).toString()).toBe('console.log(1)\n');
    expect(get('bin/sh')!.mode & 0o170000).toBe(0o120000);
    expect(get('bin/node')).toBeUndefined();
  });

  it("refuses an agent bundle whose koffi is not node_modules' (the image's native module would not load)", async () => {
    const agent = join(tmp, 'other-koffi.js');
    writeFileSync(agent, '// koffi 0.0.1\nconsole.log(1)\n');
    const installed = koffiVersions();
    await expect(buildImage({ files: [], agent })).rejects.toThrow(`image: ${agent} bundles koffi 0.0.1, node_modules has koffi ${installed.koffi} with native module ${installed.native} (run npm ci && npm run build)`);
    ensureBuilt();
    expect(readFileSync(join(repoRoot(), 'dist', 'agent.js'), 'utf8').split('\n')[0]).toBe(`// koffi ${installed.koffi}`);
  });

  it('full base holds node, its libraries, koffi and libbpf', async () => {
    const img = await buildImage({ files: [], agent: false });
    const paths = new Set(readCpio(readFileSync(img.path)).map((e) => e.path));
    for (const p of ['bin/node', 'bin/busybox', 'lib64/ld-linux-x86-64.so.2', 'usr/lib/x86_64-linux-gnu/libbpf.so.1', 'node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node'])
      expect(paths.has(p), p).toBe(true);
    for (const lib of [...sharedLibraries('/usr/lib/x86_64-linux-gnu/libbpf.so.1'), ...sharedLibraries(process.execPath)])
      expect(paths.has(lib.slice(1)), lib).toBe(true);
    const { entries } = baseEntries('full');
    expect(entries.length).toBeGreaterThan(200);
  }, 120_000);

  it('refuses a config without a release, and missing files, in one line', async () => {
    await expect(buildInitramfs({ files: [], base: 'busybox', kernelConfig: '/etc/hostname' })).rejects.toThrow(/^image: kernelConfig \/etc\/hostname given without release$/);
    await expect(buildInitramfs({ files: [{ path: '/x', source: join(tmp, 'missing') }], base: 'busybox' })).rejects.toThrow(/^image: file for guest '\/x': .*missing not found$/);
  });
});
