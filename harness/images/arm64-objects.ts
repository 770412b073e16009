// A suite's BPF object for a guest arch: the same prog.bpf.c, compiled by clang-19 with
// `-target bpf -D__TARGET_ARCH_<arch>` (bpf_tracing.h's PT_REGS_* then read that arch's pt_regs)
// against a vmlinux.h bpftool writes from one kernel of that arch (its BTF from the kernel store).
// The object goes into the image beside the amd64 objects' place, validated against its spec as
// suites/build.ts validates the amd64 ones. Kept in cacheDir('objects', <arch>) by a key of
// everything its bytes depend on.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FormatError, UsageError } from '../core/errors.js';
import { loadObjectSpec } from '../core/object/load.js';
import { ARCH_FACTS, type DebianArch } from '../kernels/arch.js';
import { cacheDir } from '../paths.js';
import { BPF_CFLAGS, clangId, suitesDir, validateAgainstObject, vmlinuxHeader } from '../suites/build.js';
import { readSpec } from '../suites/spec.js';
import type { SuiteSpec } from '../suites/types.js';
import { CLANG } from '../tools.js';

const run = promisify(execFile);

/** The clang flags for `arch`: the project's BPF_CFLAGS with the arch's __TARGET_ARCH and no x86-64 system include folder. */
export function archBpfCflags(arch: DebianArch): string[] {
  const flags = BPF_CFLAGS.filter((f) => !f.startsWith('-D__TARGET_ARCH_') && f !== '-I/usr/include/x86_64-linux-gnu');
  return [...flags, `-D__TARGET_ARCH_${ARCH_FACTS[arch].bpfTargetArch}`];
}

export interface ArchSuiteObject {
  name: string;
  arch: DebianArch;
  spec: SuiteSpec;
  object: string;
  sha256: string;
  /** The vmlinux.h's sha256 and the BTF it was dumped from. */
  header: { sha256: string; btf: string };
  flags: string[];
}

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/** Compiles suite `name` for `arch` against the vmlinux.h of `btf` (a kernel of that arch), and checks its spec against the object. */
export async function buildSuiteForArch(name: string, arch: DebianArch, btf: string, dir = suitesDir()): Promise<ArchSuiteObject> {
  const source = join(dir, name, 'prog.bpf.c');
  const specFile = join(dir, name, 'spec.yaml');
  if (!existsSync(specFile) || !existsSync(source)) throw new UsageError(`suite ${name}: ${dir}/${name} has no spec.yaml and prog.bpf.c`);
  const spec = readSpec(specFile, `suites/${name}/spec.yaml`, name);
  if (spec.header === 'joined') throw new UsageError(`suite ${name}: a joined header is made from the amd64 matrix kernels; not for ${arch} yet`);
  const header = await vmlinuxHeader(btf);
  const flags = archBpfCflags(arch);
  const local = readdirSync(join(dir, name)).filter((f) => f.endsWith('.h')).sort().map((f) => [f, sha256(readFileSync(join(dir, name, f)))]);
  const key = sha256(JSON.stringify([arch, sha256(readFileSync(source)), local, header.sha256, flags, await clangId()]));
  const out = join(cacheDir('objects', arch), `${name}-${key.slice(0, 16)}.bpf.o`);
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    try {
      await run(CLANG, [...flags, `-I${header.dir}`, '-c', source, '-o', tmp], { maxBuffer: 64 << 20 });
    } catch (e) {
      rmSync(tmp, { force: true });
      const stderr = String((e as { stderr?: string }).stderr ?? '');
      throw new FormatError(`suites/${name}/prog.bpf.c (${arch}): ${CLANG} failed: ${(stderr.split('\n').find((l) => /error:/.test(l)) ?? stderr.split('\n')[0] ?? String(e)).trim()}`);
    }
    renameSync(tmp, out);
  }
  const bytes = new Uint8Array(readFileSync(out));
  validateAgainstObject(spec, loadObjectSpec(bytes, `${name}.bpf.o`), `suites/${name}/spec.yaml`, readFileSync(specFile, 'utf8'));
  return { name, arch, spec, object: out, sha256: sha256(bytes), header: { sha256: header.sha256, btf }, flags };
}
