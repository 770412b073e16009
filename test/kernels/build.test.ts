// Custom kernels built from Debian's linux-source-6.12 plus a config fragment: the real build
// (about 8 minutes on 2 cores the first time, then cached by recipe hash), its BTF made from
// DWARF by pahole, the one-line error for a fragment Kconfig cannot honour, and an interrupted
// build that leaves no compiler behind.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { effectiveFragment, parseConfigLines, unmetOptions } from '../../harness/kernels/build.js';
import { loadMatrix, type KernelEntry } from '../../harness/kernels/matrix.js';
import { KernelStore } from '../../harness/kernels/store.js';

describe('config fragments', () => {
  it('reads set, unset and valued options', () => {
    const m = parseConfigLines('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\nCONFIG_D=100\n# a comment\n');
    expect([...m]).toEqual([['CONFIG_A', 'y'], ['CONFIG_B', 'n'], ['CONFIG_C', '"x y"'], ['CONFIG_D', '100']]);
  });

  it('names every option Kconfig did not honour, and treats absent as n', () => {
    const frag = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_HZ=250\n';
    const final = 'CONFIG_A=y\nCONFIG_B=y\nCONFIG_HZ=1000\n';
    expect(unmetOptions(frag, final)).toEqual([
      'CONFIG_B: asked n, got y',
      'CONFIG_C: asked y, got n (no such option, or its dependencies are off)',
      'CONFIG_HZ: asked 250, got 1000',
    ]);
    expect(unmetOptions('# CONFIG_GONE is not set\n', '')).toEqual([]);
  });

  it('the recipe text is the same for btf: pahole and btf: none (one build serves both)', () => {
    const e = loadMatrix().find((k) => k.id === '6.12-nonetns')!;
    const none = effectiveFragment({ ...e.build!, btf: 'none' });
    expect(effectiveFragment(e.build!)).toBe(none);
    expect(effectiveFragment({ ...e.build!, btf: 'kernel' })).toMatch(/^CONFIG_DEBUG_INFO_BTF=y$/m);
    expect(none).toMatch(/^# CONFIG_NET_NS is not set$/m);
  });
});

describe('custom kernel build (linux-source-6.12 + CONFIG_NET_NS=n)', () => {
  const store = new KernelStore({ log: (l) => console.log(l) });

  it('builds (or finds) the kernel: no NET_NS, no in-kernel BTF, BTF from DWARF by pahole', async () => {
    const t0 = Date.now();
    const k = await store.fetch('6.12-nonetns');
    expect(k.flavour).toBe('custom');
    expect(k.btfSource).toBe('pahole');
    expect(k.package).toBe('linux-source-6.12');
    expect(k.version).toMatch(/^6\.12\.\d+-\d+(~\S+)?\+cm\.[0-9a-f]{12}$/);
    expect(k.release).toMatch(/^6\.12\.\d+-corematrix$/);
    const config = parseConfigLines(readFileSync(k.config, 'utf8'));
    expect(config.get('CONFIG_NET_NS')).toBe('n');
    expect(config.get('CONFIG_NAMESPACES')).toBe('y');
    expect(config.get('CONFIG_DEBUG_INFO_BTF')).toBe('n');
    expect(config.get('CONFIG_BPF_SYSCALL')).toBe('y');
    expect(config.get('CONFIG_KPROBE_EVENTS')).toBe('y');
    // The bzImage is the kernel that was configured: its banner names the release, and the
    // manifest says what the image says about itself, as for a Debian kernel.
    const head = readFileSync(k.vmlinuz).subarray(0, 0x4000).toString('latin1');
    expect(head).toContain(k.release);
    expect(k.banner.split(' ')[0]).toBe(k.release);
    expect(['gzip', 'xz', 'zstd', 'lz4', 'bzip2', 'lzma', 'lzo']).toContain(k.compression);
    // pahole's BTF, read by bpftool: possible_net_t is a struct with no member (no `net` without
    // CONFIG_NET_NS: the seed's point), while task_struct is there as usual.
    const dump = execFileSync('bpftool', ['btf', 'dump', 'file', k.btf], { encoding: 'utf8', maxBuffer: 256 << 20 });
    const typedef = /^\[\d+\] TYPEDEF 'possible_net_t' type_id=(\d+)$/m.exec(dump);
    expect(typedef).not.toBeNull();
    expect(dump).toMatch(new RegExp(`^\\[${typedef![1]}\\] STRUCT '\\(anon\\)' size=0 vlen=0$`, 'm'));
    expect(dump).toMatch(/STRUCT 'task_struct' size=\d+/);
    console.log(`custom kernel ${k.release}: ${((Date.now() - t0) / 1000).toFixed(1)} s (${k.build?.seconds ?? '?'} s build), BTF ${k.sizes.btf} bytes`);
  }, 40 * 60_000);

  it('a second entry with the same recipe (btf: none) reuses the build, no compile', async () => {
    const base = loadMatrix().find((k) => k.id === '6.12-nonetns')!;
    const twin: KernelEntry = { ...base, id: 'test-6.12-nonetns-nobtf', build: { ...base.build!, btf: 'none' } };
    const t0 = Date.now();
    const a = await store.fetch(base);
    const b = await store.fetch(twin);
    expect(b.sha256).toEqual(a.sha256);
    expect(b.build?.hash).toBe(a.build?.hash);
    expect(Date.now() - t0).toBeLessThan(60_000);
  }, 40 * 60_000);

  it('a fragment Kconfig cannot honour is a one-line error naming the option (and the build stops there)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-frag-'));
    const frag = join(dir, 'bad.config');
    // CONFIG_NET_NS depends on CONFIG_NAMESPACES: asking for it with namespaces off cannot work.
    writeFileSync(frag, '# CONFIG_NAMESPACES is not set\nCONFIG_NET_NS=y\n');
    const e: KernelEntry = { id: 'test-bad-fragment', series: '6.12', flavour: 'custom', suites: ['trixie-security', 'trixie'], build: { source: 'linux-source-6.12', config: 'bad.config', configPath: frag, btf: 'pahole' } };
    const err = await store.fetch(e).then(() => undefined, (x: Error) => x);
    expect(err?.message).toMatch(/^kernel 'test-bad-fragment' \(linux-source-6\.12 \S+ \+ bad\.config\): bad\.config: Kconfig did not honour 1 option\(s\): CONFIG_NET_NS: asked y, got n/);
    expect(err?.message).not.toContain('\n');
    expect(readdirSync(join(store.dir, 'tmp')).filter((f) => f.startsWith('test-bad-fragment-build-'))).toEqual([]);
  }, 10 * 60_000);

  it('an interrupted build kills make and every compiler, and leaves no work directory (progress names each step)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-frag-'));
    const frag = join(dir, 'abort.config');
    // A recipe nobody caches (a unique LOCALVERSION), so the build really starts compiling.
    writeFileSync(frag, `# CONFIG_NET_NS is not set\nCONFIG_LOCALVERSION="-abort${process.pid}"\n`);
    const lines: string[] = [];
    const ac = new AbortController();
    const s = new KernelStore({ log: (l) => {
      lines.push(l);
      if (/compiling with/.test(l)) setTimeout(() => ac.abort(), 5000);
    } });
    const e: KernelEntry = { id: 'test-abort', series: '6.12', flavour: 'custom', suites: ['trixie-security', 'trixie'], build: { source: 'linux-source-6.12', config: 'abort.config', configPath: frag, btf: 'pahole' } };
    const steps: string[] = [];
    const err = await s.fetch(e, { signal: ac.signal, onStep: (x) => steps.push(x) }).then(() => undefined, (x: Error) => x);
    expect(lines.join('\n')).toMatch(/compiling with/);
    // What a progress line shows meanwhile: the step and the build's age.
    expect(steps).toContainEqual(expect.stringMatching(/^building linux-source-6\.12: compiling with \d+ job\(s\)( through ccache)? \(\d+ s\)$/));
    expect(err?.message).toMatch(/build interrupted/);
    await new Promise((r) => setTimeout(r, 1000));
    const left = (() => {
      try {
        return execFileSync('pgrep', ['-af', 'test-abort-build-'], { encoding: 'utf8' }).trim();
      } catch {
        return '';
      }
    })();
    expect(left).toBe('');
    expect(readdirSync(join(s.dir, 'tmp')).filter((f) => f.startsWith('test-abort-build-'))).toEqual([]);
    expect(existsSync(join(s.dir, 'manifests'))).toBe(true);
  }, 10 * 60_000);
});
