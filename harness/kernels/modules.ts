// Kernel modules of a Debian kernel package, as the guest needs them: which package holds them,
// how to find one in its data archive, what a module says about itself (.modinfo), and the order
// to load a set in (dependencies first). Pure but for nothing: the store does the I/O.
import { FormatError } from '../core/errors.js';
import { parseElf } from '../core/elf.js';

export interface ModuleInfo {
  /** The module's own name (`name=` in .modinfo, else the file name's). */
  name: string;
  /** Modules it needs loaded first (`depends=`), names as the kernel spells them. */
  depends: string[];
  /** `vermagic=`: the kernel release first, then build flags. */
  vermagic: string;
}

/** Module names compare with `-` and `_` alike (the kernel treats them so). */
export function moduleKey(name: string): string {
  return name.replace(/-/g, '_');
}

/** The module name a module file stands for (`…/nf_conntrack.ko.xz` → nf_conntrack). */
export function moduleNameOfFile(path: string): string {
  return moduleKey(path.split('/').pop()!.replace(/\.ko(\.\w+)?$/, ''));
}

/** The Debian package holding a kernel's modules: the image itself, or linux-modules-<rel> for the split 7.x layout. */
export function modulesPackage(kernelPackage: string, release: string): string {
  return kernelPackage.startsWith('linux-binary-') ? `linux-modules-${release}` : kernelPackage;
}

/** tar --wildcards patterns matching a module's file under /lib/modules/<rel>/ or /usr/lib/modules/<rel>/, any compression. */
export function modulePattern(release: string, name: string): string {
  const glob = moduleKey(name).replace(/_/g, '[-_]');
  return `*/modules/${release}/*/${glob}.ko*`;
}

/** How a module file in a package is compressed, from its name (undefined: not a module file). */
export function moduleCompression(file: string): 'none' | 'xz' | 'zstd' | 'gzip' | undefined {
  if (file.endsWith('.ko')) return 'none';
  if (file.endsWith('.ko.xz')) return 'xz';
  if (file.endsWith('.ko.zst')) return 'zstd';
  if (file.endsWith('.ko.gz')) return 'gzip';
  return undefined;
}

/** Reads a module's .modinfo (NUL-separated key=value strings). */
export function moduleInfo(bytes: Uint8Array, source: string): ModuleInfo {
  const elf = parseElf(bytes, source);
  const sec = elf.section('.modinfo');
  if (!sec) throw new FormatError(`${source}: no .modinfo section (not a kernel module)`);
  const fields = new Map<string, string>();
  for (const entry of Buffer.from(elf.data(sec)).toString('latin1').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0 && !fields.has(entry.slice(0, eq))) fields.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  const vermagic = fields.get('vermagic');
  if (!vermagic) throw new FormatError(`${source}: .modinfo has no vermagic`);
  return {
    name: fields.get('name') ?? moduleNameOfFile(source),
    depends: (fields.get('depends') ?? '').split(',').filter(Boolean),
    vermagic,
  };
}

/**
 * The load order of `wanted` and everything they depend on: each module after its dependencies.
 * `depsOf` answers for every module reached; a cycle (which modpost forbids) is an error.
 */
export function loadOrder(wanted: string[], depsOf: (name: string) => string[]): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]): void => {
    const k = moduleKey(name);
    const s = state.get(k);
    if (s === 'done') return;
    if (s === 'visiting') throw new FormatError(`module dependency cycle: ${[...path, name].join(' → ')}`);
    state.set(k, 'visiting');
    for (const d of depsOf(k)) visit(d, [...path, name]);
    state.set(k, 'done');
    order.push(k);
  };
  for (const w of wanted) visit(w, []);
  return order;
}

/**
 * Modules that attaching users' objects and the standard workload need where a kernel builds them
 * as modules: legacy tc on the loopback (clsact lives in sch_ingress, the filter in cls_bpf) on
 * kernels without tcx links, the veth pair XDP programs attach to in driver mode (veth; Debian
 * builds it as a module on 5.10, 6.1 and 7.3), and null_blk (with configfs) for the workload's
 * block I/O. `config` is the kernel's config text; only options set to `m` count.
 */
export function attachModules(config: string): string[] {
  const wanted: [string, string][] = [
    ['CONFIG_NET_SCH_INGRESS', 'sch_ingress'], ['CONFIG_NET_CLS_BPF', 'cls_bpf'], ['CONFIG_VETH', 'veth'], ['CONFIG_CONFIGFS_FS', 'configfs'], ['CONFIG_BLK_DEV_NULL_BLK', 'null_blk'],
  ];
  return wanted.filter(([option]) => new RegExp(`^${option}=m$`, 'm').test(config)).map(([, name]) => name);
}
