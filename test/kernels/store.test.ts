// Real fetches through the private apt state (network on first run; the cache is reused after).
// The shared cache is only read and filled here; the corruption test uses a store of its own so
// other parts reading the shared BTF files are never disturbed.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CoreMatrixError } from '../../harness/core/errors.js';
import { AptState } from '../../harness/kernels/apt.js';
import { compareDebVersions } from '../../harness/kernels/debversion.js';
import { extractVmlinux, elfSection, parseBzImage } from '../../harness/kernels/extract.js';
import { KernelStore, inSeries, releaseOfPackage, type KernelArtifacts, type KernelEntry } from '../../harness/kernels/store.js';
import { cacheDir } from '../../harness/paths.js';

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const lines: string[] = [];
const store = new KernelStore({ log: (l) => lines.push(l) });
const entry = (id: string) => store.entry(id);

describe('naming rules', () => {
  it('reads the release and the series from real package names and versions', () => {
    expect(releaseOfPackage('linux-image-5.10.0-46-amd64-unsigned')).toBe('5.10.0-46-amd64');
    expect(releaseOfPackage('linux-image-6.12.117+deb13-rt-amd64-unsigned')).toBe('6.12.117+deb13-rt-amd64');
    expect(releaseOfPackage('linux-binary-7.3.4+deb13-amd64')).toBe('7.3.4+deb13-amd64');
    expect(releaseOfPackage('linux-binary-unsigned-7.3.4+deb13-amd64')).toBeUndefined();
    expect(releaseOfPackage('linux-image-6.1.0-50-amd64')).toBeUndefined(); // the signed one: we take -unsigned
    expect(inSeries('6.1.176', '6.1')).toBe(true);
    expect(inSeries('6.12.117', '6.1')).toBe(false);
    expect(inSeries('7.3~rc7', '7.3')).toBe(true);
    expect(inSeries('7.3~rc7', '7.x')).toBe(true);
    expect(inSeries('17.0', '7.x')).toBe(false);
  });
});

describe('resolution against the archive', () => {
  it('picks the newest package of the series and flavour, by dpkg order, in the listed suites', async () => {
    for (const id of ['5.10', '6.1-rt', '7.x']) {
      const e = entry(id);
      const rows = await store.candidates(e);
      expect(rows.length).toBeGreaterThan(0);
      for (const r of rows) {
        expect(e.suites).toContain(r.suite);
        expect(r.release.endsWith(e.flavour === 'generic' ? '-amd64' : `-${e.flavour}-amd64`)).toBe(true);
        if (e.flavour === 'generic') expect(r.release).not.toMatch(/-(cloud|rt)-amd64$/);
      }
      // Ascending order as dpkg sees it.
      for (let i = 0; i + 1 < rows.length; i++) {
        const ok = (() => {
          try {
            execFileSync('dpkg', ['--compare-versions', rows[i]!.version, 'le', rows[i + 1]!.version]);
            return true;
          } catch {
            return false;
          }
        })();
        expect(ok, `${rows[i]!.version} <= ${rows[i + 1]!.version}`).toBe(true);
      }
      const r = await store.resolve(e);
      expect(r.version).toBe(rows[rows.length - 1]!.version);
      expect(r.package).toBe(rows[rows.length - 1]!.name);
    }
  }, 300_000);

  it('7.x resolves to the newest 7.x across its suites', async () => {
    const e = entry('7.x');
    const r = await store.resolve(e);
    expect(r.version.startsWith('7.')).toBe(true);
    for (const id of ['7.2', '7.3']) {
      const other = await store.resolve(entry(id)).catch(() => undefined);
      if (other && entry(id).suites.every((s) => e.suites.includes(s))) expect(compareDebVersions(r.version, other.version)).toBeGreaterThanOrEqual(0);
    }
  }, 300_000);

  it('a pinned version the suite does not have is a one-line error naming what it has and the newest', async () => {
    const newest = await store.resolve(entry('6.1'));
    const pinned: KernelEntry = { ...entry('6.1'), id: 'pinned-6.1', version: '6.1.1-1' };
    const err = await store.fetch(pinned).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(CoreMatrixError);
    const versions = [...new Set((await store.candidates(entry('6.1'))).map((r) => r.version))];
    expect((err as Error).message).toBe(`kernel 'pinned-6.1' (6.1 generic): pinned version 6.1.1-1 is not in bookworm, which has ${versions.length > 1 ? `${versions.slice(0, -1).join(', ')} and ` : ''}${versions[versions.length - 1]} (newest: ${newest.package} ${newest.version})`);
    // A pin to the upstream version of what exists resolves to it.
    const upstream = newest.version.replace(/-[^-]+$/, '');
    expect(await store.resolve({ ...pinned, version: upstream })).toEqual(newest);
  }, 300_000);

  it('a series with no package, and a package that cannot be downloaded, are one-line errors', async () => {
    const none: KernelEntry = { id: 'none', series: '4.19', flavour: 'generic', suites: ['bookworm'] };
    await expect(store.resolve(none)).rejects.toThrow(/^kernel 'none' \(4\.19 generic\): no package in bookworm$/);
    const dir = mkdtempSync(join(cacheDir('kernels', 'tmp'), 'dl-'));
    try {
      const err = await store.apt.download('linux-image-6.1.0-50-amd64-unsigned', '0.0.0-0', dir).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(CoreMatrixError);
      expect((err as Error).message).toMatch(/^cannot download linux-image-6\.1\.0-50-amd64-unsigned=0\.0\.0-0: E: /);
      expect((err as Error).message).not.toContain('\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});

describe.each(['5.10', '6.1'])('fetched kernel %s', (id) => {
  let a: KernelArtifacts;
  beforeAll(async () => {
    a = await store.fetch(id);
  }, 600_000);

  it('has a bzImage whose banner is the release, a config with BTF, and BTF with its magic', () => {
    const img = readFileSync(a.vmlinuz);
    expect(img.toString('latin1', 0x202, 0x206)).toBe('HdrS');
    const info = parseBzImage(img);
    expect(info.banner.split(' ')[0]).toBe(a.release);
    expect(info.format).toBe(a.compression);
    const config = readFileSync(a.config, 'utf8');
    expect(config).toMatch(/^CONFIG_DEBUG_INFO_BTF=y$/m);
    expect(config).toMatch(new RegExp(`^# Linux/x86 ${a.release.split('-')[0]!.replace(/\.0$/, '').replace(/\./g, '\\.')}`, 'm'));
    const btf = readFileSync(a.btf);
    expect(btf.readUInt16LE(0)).toBe(0xeb9f);
    expect(btf.length).toBeGreaterThan(2_000_000);
  });

  it('records sha256 and sizes that match the blobs, and the packages they came from', () => {
    for (const k of ['vmlinuz', 'config', 'btf'] as const) {
      expect(sha(a[k])).toBe(a.sha256[k]);
      expect(statSync(a[k]).size).toBe(a.sizes[k]);
    }
    const m = JSON.parse(readFileSync(a.manifest, 'utf8')) as { package: string; version: string; release: string; artefacts: Record<string, { sha256: string }> };
    expect(m).toMatchObject({ package: a.package, version: a.version, release: a.release });
    expect(m.artefacts['btf']!.sha256).toBe(a.sha256.btf);
    expect(a.packages[0]).toMatchObject({ name: a.package, version: a.version, holds: ['vmlinuz', 'config'] });
    expect(store.cached(id)?.sha256).toEqual(a.sha256);
  });

  it('the BTF equals what llvm-objcopy dumps from the decompressed vmlinux, and bpftool reads it', async () => {
    const { elf } = await extractVmlinux(readFileSync(a.vmlinuz));
    const tmp = mkdtempSync(join(cacheDir('kernels', 'tmp'), 'objcopy-'));
    try {
      writeFileSync(join(tmp, 'vmlinux'), elf);
      execFileSync('llvm-objcopy-19', ['--dump-section', `.BTF=${join(tmp, 'btf')}`, join(tmp, 'vmlinux'), join(tmp, 'out')]);
      expect(sha(join(tmp, 'btf'))).toBe(a.sha256.btf);
      expect(elfSection(elf, '.BTF')!.equals(readFileSync(a.btf))).toBe(true);
      expect(elfSection(elf, '.no-such-section')).toBeUndefined();
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    const dump = execFileSync('bpftool', ['btf', 'dump', 'file', a.btf], { encoding: 'utf8', maxBuffer: 1 << 30 });
    expect(dump).toMatch(/STRUCT 'task_struct' size=\d+ vlen=\d+/);
  }, 120_000);
});

describe('without a usable apt', () => {
  it('fetch falls back to the cached kernel, saying so in one line', async () => {
    await store.fetch('6.1'); // make sure it is cached
    const etc = mkdtempSync(join(cacheDir('kernels', 'tmp'), 'etc-apt-'));
    const aptDir = mkdtempSync(join(cacheDir('kernels', 'tmp'), 'apt-'));
    try {
      const said: string[] = [];
      const offline = new KernelStore({ log: (l) => said.push(l), apt: new AptState({ dir: aptDir, etcApt: etc }) });
      const a = await offline.fetch('6.1');
      expect(a.sha256).toEqual(store.cached('6.1')!.sha256);
      expect(said).toHaveLength(1);
      expect(said[0]).toMatch(/^kernel 6\.1: cannot resolve \(no Debian archive found in the machine's apt sources .*\); using cached linux-image-6\.1\.0-\d+-amd64-unsigned /);
      // Nothing cached for an unknown entry: the apt error itself.
      await expect(offline.fetch({ id: 'never-fetched', series: '6.1', flavour: 'generic', suites: ['bookworm'] })).rejects.toThrow(/^no Debian archive found/);
    } finally {
      rmSync(etc, { recursive: true, force: true });
      rmSync(aptDir, { recursive: true, force: true });
    }
  }, 300_000);
});

describe('cache integrity', () => {
  it('detects a corrupted blob, says so in one line, and re-extracts it (split 7.x layout)', async () => {
    const own: string[] = [];
    const dir = cacheDir('test-kernel-store');
    const s = new KernelStore({ cache: dir, log: (l) => own.push(l) });
    const a = await s.fetch('7.2');
    expect(a.packages.map((p) => p.holds)).toEqual([['vmlinuz'], ['config']]);
    expect(a.packages[1]!.name).toBe(a.package.replace('linux-binary-', 'linux-base-'));
    expect(readFileSync(a.config, 'utf8')).toMatch(/^CONFIG_DEBUG_INFO_BTF=y$/m);
    expect(readFileSync(a.btf).readUInt16LE(0)).toBe(0xeb9f);
    // Flip one byte in the middle of the BTF blob, keeping its size.
    const fd = openSync(a.btf, 'r+');
    const pos = Math.floor(a.sizes.btf / 2);
    const old = readFileSync(a.btf)[pos]!;
    writeSync(fd, Buffer.from([old ^ 0xff]), 0, 1, pos);
    closeSync(fd);
    expect(sha(a.btf)).not.toBe(a.sha256.btf);
    own.length = 0;
    const b = await s.fetch('7.2');
    const complaint = own.filter((l) => l.includes('corrupt'));
    expect(complaint).toHaveLength(1);
    expect(complaint[0]).toMatch(/^kernel 7\.2 .*: cached btf is corrupt: sha256 is now [0-9a-f]{12}/);
    expect(own.some((l) => l.endsWith('; re-extracted it from the vmlinuz'))).toBe(true);
    expect(b.sha256).toEqual(a.sha256);
    expect(sha(b.btf)).toBe(a.sha256.btf);
    // A second use is served from the cache without downloading.
    own.length = 0;
    const c = await s.fetch('7.2');
    expect(c.sha256).toEqual(a.sha256);
    expect(own.filter((l) => l.includes('downloading'))).toEqual([]);
    // cached() notices corruption too, without network.
    writeFileSync(a.config, 'garbage\n');
    expect(s.cached('7.2')).toBeUndefined();
    expect(own.some((l) => /cached config is corrupt/.test(l))).toBe(true);
  }, 600_000);
});
