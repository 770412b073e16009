// The objects the link tests link, each set linked three ways: by our linker, by Debian's
// `bpftool gen object` (libbpf 1.1's linker) and by the current libbpf's linker (1.8, built from
// the newest linux-source; bpf_linker__* through koffi). The sets: cilium/ebpf's testdata
// linked1.c + linked2.c, the kernel selftests' linked_funcs, linked_vars and linked_maps (each
// two .c files), and our own pair_a.bpf.c + pair_b.bpf.c.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { linkObjects } from '../../harness/core/link/index.js';
import { ciliumTestdata } from '../../harness/corpus/cilium-testdata.js';
import { kernelSelftests } from '../../harness/corpus/kernel-selftests.js';
import { currentLibbpf } from '../../harness/reference/build.js';
import { compileBpf } from '../helpers/tools.js';
import { libbpfLink } from './libbpf-native.js';

export interface LinkSet {
  name: string;
  inputs: string[];
  /** Our linker's output. */
  ours: string;
  /** `bpftool gen object`'s output, or what bpftool said when it could not link them. */
  bpftool: { path: string } | { error: string };
  /** The current libbpf's linker's output, or why it failed. */
  libbpf: { path: string } | { error: string };
  /** The reference to compare with: bpftool's output where it links, else the current libbpf's. */
  reference: { path: string; by: string };
  /**
   * The reference linked once more, alone, by the same linker. libbpf's linker leaves a global's
   * DATASEC offset where its first mention was (an extern map declared before its definition
   * keeps offset 0), which libbpf's own loader then reads ("failed to find map"); a second link
   * takes the offsets from the symbols. The selftests' Makefile links three times for this.
   */
  relinked: string;
}

export interface LinkSets {
  sets: LinkSet[];
  /** The current libbpf (its .so), and where it came from. */
  currentLibbpf: { so: string; label: string };
  /** Where the cilium and selftests objects came from. */
  sources: { cilium: string; selftests: string };
}

const fixture = (n: string) => fileURLToPath(new URL(`./fixtures/${n}.bpf.c`, import.meta.url));

function bpftool(out: string, inputs: string[]): { path: string } | { error: string } {
  rmSync(out, { force: true });
  try {
    execFileSync('bpftool', ['gen', 'object', out, ...inputs], { stdio: ['ignore', 'ignore', 'pipe'] });
    return { path: out };
  } catch (e) {
    const err = String((e as { stderr?: Buffer }).stderr ?? e).trim().split('\n');
    return { error: err.join(' | ') };
  }
}

/** Compiles or fetches the inputs and links every set three ways into `dir`. */
export async function linkSets(dir: string, log: (l: string) => void = () => {}): Promise<LinkSets> {
  const cilium = await ciliumTestdata(log);
  const obj = (name: string) => {
    const o = cilium.objects.find((x) => x.name === name);
    if (!o) throw new Error(`${cilium.source}: no ${name}`);
    return o.path;
  };
  const st = await kernelSelftests({ log, only: (n) => /^linked_(funcs|vars|maps)[12]$/.test(n), jobs: 1 });
  const sel = (name: string) => {
    const o = st.objects.find((x) => x.name === name);
    if (!o) throw new Error(`${st.source}: ${name}.c did not compile: ${st.failed.find((f) => f.name === name)?.error}`);
    return o.path;
  };
  const lib = await currentLibbpf(log);
  const inputs: [string, string[]][] = [
    ['cilium-linked', [obj('linked1.o'), obj('linked2.o')]],
    ['linked_funcs', [sel('linked_funcs1'), sel('linked_funcs2')]],
    ['linked_vars', [sel('linked_vars1'), sel('linked_vars2')]],
    ['linked_maps', [sel('linked_maps1'), sel('linked_maps2')]],
    ['pair', [compileBpf(fixture('pair_a')), compileBpf(fixture('pair_b'))]],
  ];
  const sets = inputs.map(([name, files]): LinkSet => {
    const ours = join(dir, `${name}.ours.o`);
    writeFileSync(ours, linkObjects(files.map((f) => ({ name: basename(f), bytes: new Uint8Array(readFileSync(f)) }))).bytes);
    const bt = bpftool(join(dir, `${name}.bpftool.o`), files);
    const current = join(dir, `${name}.libbpf.o`);
    const err = libbpfLink(lib.so, current, files);
    const libbpf: { path: string } | { error: string } = err === undefined && existsSync(current) ? { path: current } : { error: err ?? 'no output' };
    const reference = 'path' in bt ? { path: bt.path, by: 'bpftool gen object (libbpf 1.1)' } : 'path' in libbpf ? { path: libbpf.path, by: `libbpf ${lib.version} bpf_linker` } : undefined;
    if (!reference) throw new Error(`${name}: neither bpftool (${'error' in bt ? bt.error : ''}) nor libbpf ${lib.version} (${'error' in libbpf ? libbpf.error : ''}) links it`);
    const relinked = join(dir, `${name}.relinked.o`);
    const again = 'path' in bt ? bpftool(relinked, [bt.path]) : libbpfLink(lib.so, relinked, [reference.path]);
    const failed = typeof again === 'string' ? again : again && 'error' in again ? again.error : undefined;
    if (failed !== undefined) throw new Error(`${name}: linking ${reference.path} again failed: ${failed}`);
    return { name, inputs: files, ours, bpftool: bt, libbpf, reference, relinked };
  });
  return { sets, currentLibbpf: { so: lib.so, label: `libbpf ${lib.version} (${lib.source})` }, sources: { cilium: cilium.source, selftests: st.source } };
}
