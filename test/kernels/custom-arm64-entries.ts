// The custom arm64 kernels the arm64 build tests boot: Debian's linux-source-6.12 with the seed's
// CONFIG_NET_NS=n fragment, cross-built for arm64 (docs/arm64.md, "Custom arm64 kernels"). Not in
// kernels/matrix.yaml: an arm64 cross build takes 15 to 25 minutes on these shared 2 cores, and the
// default `npm run matrix` boots every matrix entry. Built once per recipe, then cached.
import { join } from 'node:path';
import type { KernelEntry } from '../../harness/kernels/matrix.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { repoRoot } from '../../harness/paths.js';

function customArm64(id: string, btf: 'kernel' | 'pahole' | 'none'): KernelEntry {
  return {
    id,
    series: '6.12',
    flavour: 'custom',
    suites: ['trixie-security', 'trixie'],
    arch: 'arm64',
    build: { source: 'linux-source-6.12', config: 'configs/net-ns-off.config', configPath: join(repoRoot(), 'kernels', 'configs', 'net-ns-off.config'), btf },
  };
}

/** Its own BTF (CONFIG_DEBUG_INFO_BTF): /sys/kernel/btf/vmlinux in the guest, fentry through arm64's ftrace direct calls. */
export const ARM64_KERNEL_BTF = customArm64('test-6.12-nonetns-arm64-btf', 'kernel');
/** No BTF of its own: pahole makes it from the arm64 vmlinux's DWARF on the host, shipped into the guest. */
export const ARM64_PAHOLE_BTF = customArm64('test-6.12-nonetns-arm64-pahole', 'pahole');

/**
 * Whether the tests take the `btf: pahole` build too: a second cross build (about 13 minutes with
 * the first one's ccache, docs/arm64.md) that `npm test` on a cold cache should not pay for. It
 * runs when the store already holds it for today's recipe, or when CM_ARM64_PAHOLE=1 asks for the
 * build; otherwise the test says it was skipped and why.
 */
export async function arm64PaholeWanted(): Promise<boolean> {
  if (process.env.CM_ARM64_PAHOLE === '1') return true;
  const store = new KernelStore();
  const recipe = await store.recipe(ARM64_PAHOLE_BTF, ARM64_PAHOLE_BTF.build!);
  return store.cached(ARM64_PAHOLE_BTF.id)?.version === recipe.version;
}
