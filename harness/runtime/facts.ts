// Facts about the running kernel that externs and maps need (not BPF itself): its config
// (CONFIG_* → 'y' | 'm' | string | number), LINUX_KERNEL_VERSION, /proc/kallsyms, CPU lists.

import { existsSync, readFileSync } from 'node:fs';
import type { Btf } from '../core/btf/btf.js';
import { Kind } from '../core/btf/kinds.js';
import { CoreMatrixError, FormatError } from '../core/errors.js';

/**
 * uname -r and uname -v, read from /proc (node:os would be compiled from source at start-up in a
 * guest: node's code cache for its own modules does not match --jitless).
 */
export function unameRelease(): string {
  return readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
}
export function unameVersion(): string {
  return readFileSync('/proc/sys/kernel/version', 'utf8').trim();
}

export type KconfigValue = 'y' | 'm' | string | number;

/**
 * Parses a kernel .config. `CONFIG_X=y|m` → 'y'|'m'; quoted strings → their unescaped text;
 * decimal/hex numbers → number; `# CONFIG_X is not set` → absent (the caller treats absent as 'n').
 */
export function parseKernelConfig(text: string, source = 'config'): Map<string, KconfigValue> {
  const out = new Map<string, KconfigValue>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [name, value] = parseConfigLine(line, source, i + 1);
    out.set(name, value);
  }
  return out;
}

/** One `CONFIG_X=value` line (trimmed, not a comment) → [name, value]; `lineNo` is for errors. */
function parseConfigLine(line: string, source: string, lineNo: number): [string, KconfigValue] {
  const eq = line.indexOf('=');
  if (eq < 0 || !line.startsWith('CONFIG_')) throw new FormatError(`${source}:${lineNo}: not a CONFIG_X=value line: ${line.slice(0, 60)}`);
  const name = line.slice(0, eq);
  const raw = line.slice(eq + 1);
  let value: KconfigValue;
  if (raw === 'y' || raw === 'm') value = raw;
  else if (raw.startsWith('"')) {
    if (!raw.endsWith('"') || raw.length < 2) throw new FormatError(`${source}:${lineNo}: unterminated string for ${name}`);
    value = raw.slice(1, -1).replace(/\\(["\\])/g, '$1');
  } else if (/^-?\d+$/.test(raw)) value = Number(raw);
  else if (/^0x[0-9a-fA-F]+$/.test(raw)) value = Number.parseInt(raw.slice(2), 16);
  else value = raw;
  return [name, value];
}

/**
 * A kernel config read on demand. `get` finds that one option's line in the text (the last one,
 * as a full parse would keep) and parses only it; `size` and iteration parse everything, with
 * parseKernelConfig's checks. In a guest the agent asks for a handful of options, and parsing all
 * ~10,000 lines cost ~50 ms under TCG without a JIT. Lines are matched at their start, as the
 * kernel writes them (a full parse also accepts indented lines).
 */
export class KernelConfig implements ReadonlyMap<string, KconfigValue> {
  private all: Map<string, KconfigValue> | undefined;
  private readonly seen = new Map<string, KconfigValue | undefined>();
  constructor(readonly text: string, readonly source = 'config') {}

  private full(): Map<string, KconfigValue> {
    this.all ??= parseKernelConfig(this.text, this.source);
    return this.all;
  }
  get(name: string): KconfigValue | undefined {
    if (this.all) return this.all.get(name);
    if (this.seen.has(name)) return this.seen.get(name);
    let value: KconfigValue | undefined;
    const needle = `\n${name}=`;
    let at = this.text.lastIndexOf(needle);
    if (at >= 0) at += 1;
    else if (this.text.startsWith(`${name}=`)) at = 0;
    if (at >= 0) {
      const end = this.text.indexOf('\n', at);
      const line = this.text.slice(at, end < 0 ? undefined : end).trim();
      const lineNo = () => this.text.slice(0, at).split('\n').length;
      try {
        value = parseConfigLine(line, this.source, 0)[1];
      } catch {
        value = parseConfigLine(line, this.source, lineNo())[1]; // again, for the error's line number
      }
    }
    this.seen.set(name, value);
    return value;
  }
  has(name: string): boolean {
    return this.get(name) !== undefined;
  }
  get size(): number {
    return this.full().size;
  }
  forEach(fn: (value: KconfigValue, key: string, map: ReadonlyMap<string, KconfigValue>) => void): void {
    this.full().forEach((v, k) => fn(v, k, this));
  }
  entries(): MapIterator<[string, KconfigValue]> {
    return this.full().entries();
  }
  keys(): MapIterator<string> {
    return this.full().keys();
  }
  values(): MapIterator<KconfigValue> {
    return this.full().values();
  }
  [Symbol.iterator](): MapIterator<[string, KconfigValue]> {
    return this.full()[Symbol.iterator]();
  }
}

/**
 * The architecture part of syscall wrapper names (`__x64_sys_bpf`), as libbpf spells it for each
 * architecture; undefined where libbpf knows none (it then reports no wrapper). `arch` is node's
 * process.arch.
 */
export function syscallPrefix(arch: string = process.arch): string | undefined {
  const byArch: Record<string, string> = { x64: 'x64', ia32: 'ia32', s390x: 's390x', arm: 'arm', arm64: 'arm64', mips: 'mips', mipsel: 'mips', riscv64: 'riscv', ppc: 'powerpc', ppc64: 'powerpc' };
  return byArch[arch];
}

/**
 * libbpf's virtual kconfig externs for a kernel known only by its BTF (offline relocation on the
 * host): the syscall wrapper `__<arch>_sys_bpf` is a function of that BTF exactly when libbpf's
 * kprobe on it would succeed, and bpf_get_attach_cookie exists when the kernel's `enum
 * bpf_func_id` names it. The running kernel is probed instead (probe.ts kconfigSpecial).
 */
export function kconfigSpecialsFromBtf(btf: Btf, arch: string = process.arch): Record<string, number> {
  const prefix = syscallPrefix(arch);
  const wrapper = prefix !== undefined && btf.byName(`__${prefix}_sys_bpf`).some((id) => btf.kind(id) === Kind.FUNC);
  const cookie = btf.byName('bpf_func_id').some((id) => {
    const t = btf.type(id);
    return t.kind === Kind.ENUM && t.values.some((v) => v.name === 'BPF_FUNC_get_attach_cookie');
  });
  return { LINUX_HAS_SYSCALL_WRAPPER: wrapper ? 1 : 0, LINUX_HAS_BPF_COOKIE: cookie ? 1 : 0 };
}

/** Reads the running kernel's config: /boot/config-<release>, else /proc/config.gz. */
export function readKernelConfig(kernelRelease = unameRelease()): { path: string; config: KernelConfig } {
  const boot = `/boot/config-${kernelRelease}`;
  if (existsSync(boot)) return { path: boot, config: new KernelConfig(readFileSync(boot, 'utf8'), boot) };
  const proc = '/proc/config.gz';
  // node:zlib only when needed: loading it compiles node's stream modules (~70 ms in a TCG guest).
  if (existsSync(proc)) return { path: proc, config: new KernelConfig(process.getBuiltinModule('node:zlib').gunzipSync(readFileSync(proc)).toString('utf8'), proc) };
  throw new CoreMatrixError(`kernel config not found: neither ${boot} nor ${proc} exists`);
}

/** KERNEL_VERSION(a, b, c) = a << 16 | b << 8 | min(c, 255). */
export function kernelVersion(a: number, b: number, c: number): number {
  return ((a << 16) | (b << 8) | Math.min(c, 255)) >>> 0;
}

/** LINUX_KERNEL_VERSION from a uname release such as "6.1.0-27-amd64" or "5.10.226-1". */
export function kernelVersionFromRelease(rel = unameRelease()): number {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(rel);
  if (!m) throw new FormatError(`kernel release '${rel}' does not start with a.b[.c]`);
  return kernelVersion(Number(m[1]), Number(m[2]), Number(m[3] ?? 0));
}

/**
 * LINUX_KERNEL_VERSION of the running kernel, as the kernel itself computes LINUX_VERSION_CODE.
 * Debian keeps the ABI name in the release ("5.10.0-46-amd64") and the real sublevel in the
 * version string ("#1 SMP Debian 5.10.262-1 (...)"); Ubuntu puts it in /proc/version_signature.
 * Those win over the release when present.
 */
export function linuxKernelVersion(uname: { release: string; version: string } = { release: unameRelease(), version: unameVersion() }): number {
  const deb = /\bDebian (\d+)\.(\d+)\.(\d+)/.exec(uname.version);
  if (deb) return kernelVersion(Number(deb[1]), Number(deb[2]), Number(deb[3]));
  if (existsSync('/proc/version_signature')) {
    const m = /(\d+)\.(\d+)\.(\d+)\s*$/.exec(readFileSync('/proc/version_signature', 'utf8').trim());
    if (m) return kernelVersion(Number(m[1]), Number(m[2]), Number(m[3]));
  }
  return kernelVersionFromRelease(uname.release);
}

export interface Ksym {
  addr: bigint;
  type: string;
  name: string;
  module?: string;
}

/** Parses /proc/kallsyms text (addresses are 0 without CAP_SYSLOG / kptr_restrict). */
export function parseKallsyms(text: string): Ksym[] {
  const out: Ksym[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const parts = line.split(/\s+/);
    if (parts.length < 3) continue;
    const sym: Ksym = { addr: BigInt(`0x${parts[0]}`), type: parts[1]!, name: parts[2]! };
    if (parts[3]?.startsWith('[')) sym.module = parts[3].slice(1, -1);
    out.push(sym);
  }
  return out;
}

/** Looks names up in /proc/kallsyms in one pass; absent names are absent from the result. */
export function kallsymsLookup(names: Iterable<string>, text = readFileSync('/proc/kallsyms', 'utf8')): Map<string, Ksym> {
  const want = new Set(names);
  const out = new Map<string, Ksym>();
  for (const sym of parseKallsyms(text)) if (want.has(sym.name) && !out.has(sym.name)) out.set(sym.name, sym);
  return out;
}

/**
 * Parses a CPU list as the kernel prints it ("0-3,5,7-8\n"): the CPUs in ascending order, each
 * once. A malformed list (a range running backwards, a stray character) throws, naming `source`.
 */
export function parseCpuList(text: string, source = 'CPU list'): number[] {
  const cpus = new Set<number>();
  for (const part of text.trim().split(',')) {
    if (!part) continue;
    const m = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part);
    const a = Number(m?.[1]);
    const b = Number(m?.[2] ?? m?.[1]);
    if (!m || b < a) throw new FormatError(`${source}: '${part}' is not a CPU number or a range a-b (in '${text.trim()}')`);
    for (let c = a; c <= b; c++) cpus.add(c);
  }
  return [...cpus].sort((x, y) => x - y);
}

const POSSIBLE = '/sys/devices/system/cpu/possible';

/** CPUs the kernel may ever bring up (per-CPU map value arrays are sized by this). */
export function possibleCpus(): number[] {
  return parseCpuList(readFileSync(POSSIBLE, 'utf8'), POSSIBLE);
}

let possibleCount: number | undefined;
/**
 * How many CPUs are possible, counted as libbpf_num_possible_cpus() counts them (the CPUs set in
 * the list, not the highest number + 1); read once, as it cannot change while the kernel runs.
 */
export function possibleCpuCount(): number {
  possibleCount ??= possibleCpus().length;
  if (possibleCount === 0) throw new FormatError(`${POSSIBLE} lists no CPU`);
  return possibleCount;
}
/** CPUs online now. */
export function onlineCpus(): number[] {
  return parseCpuList(readFileSync('/sys/devices/system/cpu/online', 'utf8'), '/sys/devices/system/cpu/online');
}
