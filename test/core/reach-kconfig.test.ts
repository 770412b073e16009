// The reach analysis knows what the verifier knows: the `.kconfig` map is frozen read-only, so a
// load of an extern is a constant and `if (CONFIG_NET_NS)` decides its branch at load time. On
// the CONFIG_NET_NS=n kernel (pahole BTF of the custom build) the suites/netns object's
// `skc_net.net` relocation is poisoned; it must count as unreachable exactly when the extern
// reads 0, and as reachable when it reads 1 (or when the values are not known, offline).
// The kernel's verifier is the witness in test/matrix/custom-kernel.test.ts: it accepts this
// object on the booted NET_NS=n kernel, for our loader and for libbpf.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { fillKconfig } from '../../harness/core/kconfig.js';
import { loadObjectSpec } from '../../harness/core/object/index.js';
import { readTargetBtf, relocateSpec } from '../../harness/core/relocate.js';
import type { Btf } from '../../harness/core/btf/btf.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { buildSuites } from '../../harness/suites/build.js';

let bytes: Uint8Array;
let nonetns: Btf;
let withNs: Btf;

beforeAll(async () => {
  const [netns] = await buildSuites({ names: ['netns'] });
  bytes = new Uint8Array(readFileSync(netns!.object));
  const store = new KernelStore();
  const a = await store.fetch('6.12-nonetns');
  nonetns = readTargetBtf(new Uint8Array(readFileSync(a.btf)), a.btf);
  const b = await store.fetch('6.12');
  withNs = readTargetBtf(new Uint8Array(readFileSync(b.btf)), b.btf);
}, 40 * 60_000);

/** Relocates a fresh copy of the object with CONFIG_NET_NS as given (undefined: values unknown). */
function relocate(target: Btf, netNs: 'y' | undefined | 'unknown') {
  const spec = loadObjectSpec(bytes, 'netns.bpf.o');
  const kcfg = spec.maps.find((m) => m.kind === 'kconfig')!;
  let kconfig: Uint8Array | undefined;
  if (netNs !== 'unknown') {
    kconfig = kcfg.data!;
    fillKconfig(spec.btf, spec.externs, kconfig, { config: new Map(netNs ? [['CONFIG_NET_NS', netNs]] : []), linuxKernelVersion: 0 });
  }
  const r = relocateSpec(spec, '', { vmlinux: target }, 'btf', kconfig ? { kconfig } : {});
  return r.report.relocations.filter((x) => x.spec.includes('skc_net.net'));
}

describe('reach analysis with kconfig values (netns suite)', () => {
  it('CONFIG_NET_NS unset on the nonetns kernel: the poisoned read sits in a branch the verifier never visits', () => {
    const net = relocate(nonetns, undefined);
    expect(net.length).toBeGreaterThan(0);
    for (const r of net) {
      expect(r.status).toBe('poisoned');
      expect(r.reachable).toBe(false);
    }
  });

  it('without the values (offline relocate) the same poison is conservatively reachable', () => {
    const net = relocate(nonetns, 'unknown');
    expect(net.map((r) => r.status)).toEqual(relocate(nonetns, undefined).map(() => 'poisoned'));
    for (const r of net) expect(r.reachable).toBe(true);
  });

  it('CONFIG_NET_NS=y with that BTF would run the poisoned read: reachable', () => {
    const net = relocate(nonetns, 'y');
    expect(net.length).toBeGreaterThan(0);
    for (const r of net) expect(r.reachable).toBe(true);
  });

  it('on a kernel with network namespaces the read relocates and nothing is poisoned', () => {
    const net = relocate(withNs, 'y');
    expect(net.length).toBeGreaterThan(0);
    for (const r of net) expect(r.status).toBe('ok');
  });
});
