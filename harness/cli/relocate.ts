// corematrix relocate <object.o> --btf <file | kernel-id> [--module <file | name>]... [--json]
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError } from '../core/errors.js';
import { fillKconfig } from '../core/kconfig.js';
import { loadObjectSpec } from '../core/object/index.js';
import type { Btf } from '../core/btf/btf.js';
import { readTargetBtf, relocateSpec, type RelocateReport } from '../core/relocate.js';
import type { Command } from './command.js';

const help = `usage: corematrix relocate <object.o>... --btf <file | kernel-id> [--module <file | name>]... [--json]

Applies every CO-RE relocation of a clang-built BPF object against one target BTF, offline,
with the same engine the guest agent uses, and prints what each relocation resolved to.

  --btf <file>       raw BTF (/sys/kernel/btf/vmlinux format) or an ELF file with a .BTF
                     section (a vmlinux, or another BPF object)
  --btf <kernel-id>  the vmlinux BTF of a kernel from kernels/matrix.yaml (fetched if needed);
                     its config also fills the object's kconfig externs, so 'reachable' follows
                     the branches they decide, as that kernel's verifier will
  --module <file>    (repeatable) a kernel module's BTF, split on top of the target's: a .ko
                     (its .BTF section) or a raw split BTF file (/sys/kernel/btf/<module>).
                     Types only the module has are then CO-RE candidates, as in a guest that
                     loaded it (vmlinux is searched first)
  --module <name>    with --btf <kernel-id>: that module, taken from the kernel's package
  --json             print one JSON document instead of a table (for several objects, a JSON
                     array with one document per object)

A relocation that no target type satisfies is 'poisoned' (the instruction becomes a call to
helper 0xbad2310, so the load fails only if that code is reachable; 'reachable' says whether it
is); an ambiguous or malformed one is 'error'.
Exit status: 0 when no relocation is 'error', 1 when some are, 2 for unusable input.`;

/** A `--btf` argument: a file (raw BTF or ELF with .BTF), else a kernel id of kernels/matrix.yaml (fetched). */
export async function loadTarget(spec: string): Promise<{ bytes: Uint8Array; name: string; kernel?: { config: string; release: string; banner: string }; modules?: (names: string[]) => Promise<string[]> }> {
  if (existsSync(spec)) return { bytes: readFileSync(spec), name: spec };
  if (spec.includes('/') || spec.endsWith('.o') || spec.endsWith('.btf')) throw new UsageError(`${spec}: no such file`);
  const { KernelStore } = await import('../kernels/store.js');
  // Only the BTF and config are read here, so only they are hashed; a repair is said on stderr.
  const store = new KernelStore({ log: (l) => process.stderr.write(`corematrix: ${l}\n`) });
  const k = await store.fetch(spec, { use: ['btf', 'config'] });
  // Modules of this kernel by name: the .ko files from its package (the store keeps them), in one go.
  const modules = async (names: string[]) => {
    const { moduleKey } = await import('../kernels/modules.js');
    const got = await store.modules(k, names);
    return names.map((name) => got.find((m) => m.name === moduleKey(name))!.path);
  };
  return { bytes: readFileSync(k.btf), name: `${k.id} (${k.package} ${k.version})`, kernel: { config: k.config, release: k.release, banner: k.banner }, modules };
}

/**
 * The kconfig facts of a stored kernel: its config file, and LINUX_KERNEL_VERSION computed as in
 * the guest from its release and banner (Debian's real sublevel is in the banner).
 */
async function kconfigFacts(kernel: { config: string; release: string; banner: string }, vmlinux: Btf) {
  const { parseKernelConfig, linuxKernelVersion, kconfigSpecialsFromBtf } = await import('../runtime/facts.js');
  // libbpf's LINUX_HAS_* specials, read from the target kernel's BTF (this host is not that kernel).
  return { config: parseKernelConfig(readFileSync(kernel.config, 'utf8'), kernel.config), linuxKernelVersion: linuxKernelVersion({ release: kernel.release, version: kernel.banner }), specials: kconfigSpecialsFromBtf(vmlinux) };
}

function table(r: RelocateReport): string {
  const rows = r.relocations.map((x) => [
    x.section, String(x.insn), x.kind, x.type, x.spec || '-', x.access,
    x.status === 'ok' ? `${x.local} → ${x.target}` : String(x.local),
    x.status === 'poisoned' ? `poisoned${x.reachable ? ' (reachable)' : ' (dead code)'}` : x.status,
  ]);
  const head = ['section', 'insn', 'kind', 'type', 'spec', 'access', 'value', 'status'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd();
  const out = [`${r.object} (sha256 ${r.sha256.slice(0, 16)}…) against ${r.btf}`, '', line(head), ...rows.map(line)];
  for (const x of r.relocations) if (x.error && x.status === 'error') out.push(`  ${x.section}#${x.insn}: ${x.error}`);
  const counts = ['ok', 'poisoned', 'error'].map((s) => `${r.relocations.filter((x) => x.status === s).length} ${s}`);
  out.push('', `${r.relocations.length} relocations: ${counts.join(', ')}; programs: ${r.programs.map((p) => `${p.name} (${p.section}, ${p.insns} insns)`).join(', ') || 'none'}`);
  return out.join('\n');
}

export const relocateCommand: Command = {
  name: 'relocate',
  help,
  async run(args) {
    const { values, positionals } = parseArgs({ args, options: { btf: { type: 'string' }, module: { type: 'string', multiple: true }, json: { type: 'boolean' } }, allowPositionals: true });
    if (positionals.length === 0) throw new UsageError('relocate needs an object file (see --help)');
    if (!values.btf) throw new UsageError('relocate needs --btf <file | kernel-id>');
    for (const p of positionals) if (!existsSync(p)) throw new UsageError(`${p}: no such file`);
    const t = await loadTarget(values.btf);
    const vmlinux = readTargetBtf(t.bytes, t.name);
    const asked = values.module ?? [];
    const byName = asked.filter((m) => !existsSync(m));
    for (const m of byName)
      if (!t.modules || m.includes('/') || m.endsWith('.ko')) throw new UsageError(`${m}: no such file${t.modules ? '' : ' (a module name needs --btf <kernel-id>)'}`);
    const fromPackage = byName.length ? await t.modules!(byName) : [];
    const modules = asked.map((m) => {
      const i = byName.indexOf(m);
      return i < 0 ? readTargetBtf(readFileSync(m), m, vmlinux) : readTargetBtf(readFileSync(fromPackage[i]!), `${m}.ko of ${t.name}`, vmlinux);
    });
    const target = { vmlinux, modules };
    const targetName = modules.length ? `${t.name} + ${(values.module ?? []).join(', ')}` : t.name;
    const facts = t.kernel ? await kconfigFacts(t.kernel, vmlinux) : undefined;
    const reports = positionals.map((objPath) => {
      const obj = readFileSync(objPath);
      const sha256 = createHash('sha256').update(obj).digest('hex');
      const spec = loadObjectSpec(obj, objPath);
      const kconfig = spec.maps.find((m) => m.kind === 'kconfig')?.data;
      let known = false;
      if (facts && kconfig) {
        try {
          fillKconfig(spec.btf, spec.externs, kconfig, facts);
          known = true;
        } catch (err) {
          // The loaders would refuse the object on that kernel; relocate it anyway, values unknown.
          process.stderr.write(`corematrix: note: ${(err as Error).message.split('\n')[0]} (libbpf and our loader refuse this object on ${t.name})\n`);
        }
      }
      return relocateSpec(spec, sha256, target, targetName, known ? { kconfig } : {}).report;
    });
    const out = values.json ? JSON.stringify(reports.length === 1 ? reports[0] : reports, null, 2) : reports.map(table).join('\n\n');
    process.stdout.write(out + '\n');
    return reports.some((r) => r.relocations.some((x) => x.status === 'error')) ? 1 : 0;
  },
};
