// Kernel modules from real Debian kernel packages: found in the package (the image itself, or
// linux-modules-<rel> for 7.x), decompressed (.ko.xz on 6.12 and later), their dependencies
// taken too and ordered first, checked against the kernel's release, kept in the store.
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KernelStore } from '../../harness/kernels/store.js';
import { loadOrder, moduleInfo } from '../../harness/kernels/modules.js';
import { compileFixture } from '../fixtures/compile.js';

const lines: string[] = [];
const store = new KernelStore({ log: (l) => lines.push(l) });

describe('module helpers', () => {
  it('orders dependencies first, each once, and names a cycle', () => {
    const deps: Record<string, string[]> = { vxlan: ['udp_tunnel', 'ip6_udp_tunnel'], ip6_udp_tunnel: ['udp_tunnel'], udp_tunnel: [], tun: [] };
    expect(loadOrder(['tun', 'vxlan'], (n) => deps[n] ?? [])).toEqual(['tun', 'udp_tunnel', 'ip6_udp_tunnel', 'vxlan']);
    expect(loadOrder(['nf-conntrack'], () => [])).toEqual(['nf_conntrack']);
    expect(() => loadOrder(['a'], (n) => (n === 'a' ? ['b'] : ['a']))).toThrow('module dependency cycle: a → b → a');
  });

  it('an ELF that is not a module is a one-line error naming it', () => {
    const obj = compileFixture('vars').bytes;
    expect(() => moduleInfo(obj, 'vars.bpf.o')).toThrow(/^vars\.bpf\.o: no \.modinfo section \(not a kernel module\)$/);
  });
});

describe('store.modules on real packages', () => {
  for (const id of ['6.1', '7.3']) {
    it(`${id}: vxlan comes with its dependencies, first, decompressed, built for this release`, async () => {
      const k = await store.fetch(id);
      const mods = await store.modules(k, ['vxlan']);
      expect(mods.map((m) => m.name)).toEqual(['udp_tunnel', 'ip6_udp_tunnel', 'vxlan']);
      expect(mods[2]!.depends.sort()).toEqual(['ip6_udp_tunnel', 'udp_tunnel']);
      for (const m of mods) {
        const bytes = readFileSync(m.path);
        expect(bytes.readUInt32BE(0), m.name).toBe(0x7f454c46); // an ELF, not xz
        expect(bytes.length).toBe(m.size);
        expect(m.member).toMatch(new RegExp(`/modules/${k.release.replace(/[.+]/g, '\\$&')}/kernel/.*/${m.name}\\.ko${id === '7.3' ? '\\.xz' : ''}$`));
      }
      // Asked again (and asked for a dependency alone): from the store, no download.
      lines.length = 0;
      expect((await store.modules(k, ['vxlan'])).map((m) => m.sha256)).toEqual(mods.map((m) => m.sha256));
      expect((await store.modules(k, ['udp-tunnel'])).map((m) => m.name)).toEqual(['udp_tunnel']);
      expect(lines.filter((l) => l.includes('taking modules'))).toEqual([]);
    }, 300_000);
  }

  it('a damaged module blob, asked for or only depended on, is taken from the package again', async () => {
    const k = await store.fetch('6.1');
    const [tun] = await store.modules(k, ['tun']);
    writeFileSync(tun!.path, 'garbage');
    lines.length = 0;
    const [again] = await store.modules(k, ['tun']);
    expect(lines.filter((l) => l.includes('taking modules tun'))).toHaveLength(1);
    expect(again!.sha256).toBe(tun!.sha256);
    expect(readFileSync(again!.path).readUInt32BE(0)).toBe(0x7f454c46);
    // vxlan intact, its dependency udp_tunnel damaged: only udp_tunnel is taken again.
    const before = await store.modules(k, ['vxlan']);
    writeFileSync(before[0]!.path, 'garbage');
    lines.length = 0;
    const after = await store.modules(k, ['vxlan']);
    expect(lines.filter((l) => l.includes('taking modules'))).toEqual([expect.stringMatching(/taking modules udp_tunnel from /)]);
    expect(after.map((x) => x.sha256)).toEqual(before.map((x) => x.sha256));
  }, 300_000);

  it('a module the package does not have, and a custom build, are one-line errors', async () => {
    const k = await store.fetch('6.1');
    await expect(store.modules(k, ['no_such_module_cm'])).rejects.toThrow(/^kernel '6\.1' \(linux-image-\S+ \S+\): module no_such_module_cm is not in linux-image-\S+ [^ ]+ \(is it built in, or not built at all\? see CONFIG_\* in the kernel's config\)$/);
    const custom = { ...k, id: 'custom-x', flavour: 'custom' };
    await expect(store.modules(custom, ['tun'])).rejects.toThrow(/^kernel 'custom-x' .*: a custom build ships no modules \(wanted tun\); build them in \(=y\) in its config fragment$/);
  }, 300_000);
});
