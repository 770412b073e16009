// Real seeds for the fuzzer: every `test/fixtures/*.bpf.c` and `suites/*/prog.bpf.c` compiled by
// clang-19 (cached by content), their `.BTF` sections, and bounded slices of a real kernel's BTF
// (a 4 MB vmlinux BTF is too slow to mutate whole: a slice keeps the types around a few roots,
// re-encoded with references outside the slice turned into void).

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, renameSync } from 'node:fs';
import { basename, join } from 'node:path';
import { cacheDir, repoRoot } from '../paths.js';
import { parseBtf, essentialName, type Btf, type BtfType } from '../core/btf/btf.js';
import { encodeBtf, remapType } from '../core/btf/writer.js';
import { parseElf } from '../core/elf.js';
import { loadObjectSpec } from '../core/object/index.js';
import { KernelStore } from '../kernels/store.js';
import { vmlinuxHeader, BPF_CFLAGS } from '../suites/build.js';
import { CLANG } from '../tools.js';
import { seed, type Seed, type SeedSet } from './targets.js';

function compile(src: string, extra: string[]): Uint8Array {
  const args = [...BPF_CFLAGS, ...extra];
  const h = createHash('sha256').update(readFileSync(src)).update(JSON.stringify(args)).update(CLANG).digest('hex').slice(0, 16);
  const out = join(cacheDir('fuzz-objects'), `${basename(src, '.c')}-${h}.o`);
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    execFileSync(CLANG, [...args, '-c', src, '-o', tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(tmp, out);
  }
  return new Uint8Array(readFileSync(out));
}

/** The type ids `t` refers to (remapType walks every reference field). */
function refsOf(t: BtfType): number[] {
  const out: number[] = [];
  remapType(t, (id) => (out.push(id), id));
  return out;
}

/** Re-encodes at most `max` types reachable (breadth first) from `roots`. */
export function sliceBtf(btf: Btf, roots: readonly number[], max: number): Uint8Array {
  const order: number[] = [];
  const newId = new Map<number, number>();
  const queue = [...roots];
  while (queue.length && order.length < max) {
    const id = queue.shift()!;
    if (id === 0 || newId.has(id)) continue;
    newId.set(id, order.length + 1);
    order.push(id);
    for (const r of refsOf(btf.type(id))) if (!newId.has(r)) queue.push(r);
  }
  // References outside the slice become void.
  return encodeBtf(order.map((id) => remapType(btf.type(id), (r) => newId.get(r) ?? 0)));
}

export interface SeedOptions {
  /** Kernel whose BTF is sliced for BTF and target seeds (a matrix id); default 6.1. */
  kernel?: string;
  log?: (line: string) => void;
}

export async function loadSeeds(opts: SeedOptions = {}): Promise<SeedSet> {
  const log = opts.log ?? (() => {});
  const root = repoRoot();
  const k = await new KernelStore().fetch(opts.kernel ?? '6.1');
  const kernel = parseBtf(new Uint8Array(readFileSync(k.btf)), { source: `vmlinux ${k.id}` });
  const header = await vmlinuxHeader(k.btf);

  const objects: Seed[] = [];
  const fx = join(root, 'test', 'fixtures');
  const sources: [string, string[]][] = readdirSync(fx).filter((f) => f.endsWith('.bpf.c')).map((f) => [join(fx, f), []]);
  const suites = join(root, 'suites');
  for (const d of readdirSync(suites)) {
    const p = join(suites, d, 'prog.bpf.c');
    if (existsSync(p)) sources.push([p, [`-I${header.dir}`]]);
  }
  for (const [src, extra] of sources) {
    const name = src.includes('/suites/') ? `suites/${basename(join(src, '..'))}` : `fixtures/${basename(src, '.bpf.c')}`;
    try {
      objects.push(seed(name, compile(src, extra)));
    } catch (e) {
      log(`fuzz: seed ${name} does not compile, skipped: ${String((e as { stderr?: Buffer }).stderr ?? e).split('\n')[0]}`);
    }
  }

  const btfs: Seed[] = [];
  for (const o of objects) {
    const elf = parseElf(o.bytes, o.name);
    const s = elf.section('.BTF');
    if (s) btfs.push(seed(`${o.name} .BTF`, new Uint8Array(elf.data(s))));
  }
  const named = (n: string) => kernel.byName(n).slice(0, 1);
  btfs.push(seed(`vmlinux ${k.id} types 1..1500`, sliceBtf(kernel, Array.from({ length: 1500 }, (_, i) => i + 1), 1500)));
  btfs.push(seed(`vmlinux ${k.id} around task_struct`, sliceBtf(kernel, named('task_struct'), 1500)));
  btfs.push(seed(`vmlinux ${k.id} around sk_buff`, sliceBtf(kernel, named('sk_buff'), 1500)));

  // Target slices: the types the objects' CO-RE relocations start from, and what they reach.
  const rootNames = new Set<string>();
  for (const o of objects) {
    try {
      const spec = loadObjectSpec(o.bytes, o.name);
      for (const l of spec.btfExt?.coreRelos.values() ?? []) for (const r of l) {
        const id = spec.btf.skipModsAndTypedefs(r.typeId);
        const n = spec.btf.name(id);
        if (n) rootNames.add(essentialName(n));
      }
    } catch {
      // seeds that our loader rejects (deliberately odd fixtures) still seed the other targets
    }
  }
  const roots = [...rootNames].flatMap((n) => kernel.byEssentialName(n));
  const targets = [seed(`vmlinux ${k.id} relocation roots (${rootNames.size} names)`, sliceBtf(kernel, roots, 6000)),
    seed(`vmlinux ${k.id} relocation roots, small`, sliceBtf(kernel, roots, 800))];
  log(`fuzz: ${objects.length} objects, ${btfs.length} BTF seeds, ${targets.length} targets (${targets.map((t) => `${t.bytes.length} bytes`).join(', ')}) from kernel ${k.id}`);
  return { objects, btfs, targets };
}
