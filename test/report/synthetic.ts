// A synthetic RunReport at corpus scale (the kernel selftests across the default matrix, both
// loaders), for measuring the report writers, not for proving anything about kernels. Field sizes
// follow a real selftests run on 5.10/6.1/7.3 (2577 cells): a cell's JSON is ~700 bytes at the
// median and ~1.4 KB at p90; about a fifth fail with a reason and a verifier log tail of ~15
// lines; a sixth are expected skips; a quarter attached (some never ran); a quarter carry
// translated instructions; objects hold 1 to ~150 programs (median 2). Deterministic: the same
// arguments give the same report.
import { RESULT_SCHEMA, type CellResult, type CellVerdict, type KernelInfo, type KernelRun, type RunReport } from '../../harness/results.js';
import type { RelocationRecord } from '../../harness/core/relo/report.js';

/** The default matrix's kernels (kernels/matrix.yaml), plus one more to reach nine. */
export const SCALE_KERNELS = ['5.10', '6.1', '6.1-cloud', '6.1-rt', '6.12', '6.12-nonetns', '7.2', '7.3', '7.x'];

export interface SyntheticOptions {
  /** Cells wanted (rounded to whole objects); default 40 000. */
  cells?: number;
  kernels?: string[];
  loaders?: ('ours' | 'libbpf')[];
  /** Guest fates by kernel id (default: every guest ok). A failed guest keeps the first half of its cells. */
  guests?: Record<string, KernelRun['guest']>;
}

/** A small deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIELDS = ['pid', 'tgid', 'comm', '__state', 'real_parent', 'mm', 'flags', 'sk_family', 'skc_daddr', 'len', 'ifindex', 'nr_cpus_allowed'];
const TYPES = ['struct task_struct', 'struct sock_common', 'struct sk_buff', 'struct mm_struct', 'struct bpf_iter_meta', 'union bpf_attr'];
const REASONS = [
  'rejected: verifier rejected it: unknown func bpf_setsockopt#49',
  'rejected: verifier rejected it: R2 type=rdwr_buf expected=fp, pkt, pkt_meta, map_value',
  'relocation failed: struct task_struct.__state byte_off: no such field in the target BTF',
  'attach failed: fentry do_unlinkat: BPF_LINK_CREATE: ENOTSUPP',
];

function logTail(r: () => number, prog: string): string {
  const lines: string[] = [];
  const n = 6 + Math.floor(r() * 8);
  for (let i = 0; i < n; i++) lines.push(`${130 + i}: (7b) *(u64 *)(r10 -${8 * (i + 1)}) = r${i % 10} ; ${prog} R${i % 10}_w=inv(id=0,umax_value=4294967295)`);
  lines.push('processed 121 insns (limit 1000000) max_states_per_insn 0 total_states 7 peak_states 7 mark_read 1');
  return lines.join('\n');
}

function relocations(r: () => number, ki: number, seed: number): RelocationRecord[] {
  const local = rng(seed); // the same object has the same relocations on every kernel
  const n = local() < 0.6 ? 0 : 1 + Math.floor(local() * 8);
  const out: RelocationRecord[] = [];
  for (let i = 0; i < n; i++) {
    const type = TYPES[Math.floor(local() * TYPES.length)]!;
    const spec = FIELDS[Math.floor(local() * FIELDS.length)]!;
    const off = 8 * Math.floor(local() * 300);
    const moves = local() < 0.3;
    out.push({
      section: 'tp/syscalls/sys_enter_openat', insn: 4 * i + 1, kind: 'byte_off', type, access: `0:${Math.floor(local() * 90)}`, spec,
      local: off, target: moves ? off + 8 * ki : off, status: 'ok', targetType: type, targetAccess: `0:${Math.floor(local() * 90)}`, targetTypeId: 20000 + ki * 37 + i,
    });
  }
  void r;
  return out;
}

/** A RunReport of about `cells` cells: objects × programs × kernels × loaders. */
export function syntheticRun(opts: SyntheticOptions = {}): RunReport {
  const kernelIds = opts.kernels ?? SCALE_KERNELS;
  const loaders = opts.loaders ?? ['ours', 'libbpf'];
  const want = opts.cells ?? 40_000;
  const r = rng(42);
  // Objects and their programs: mostly 1-4 programs, a few large ones.
  const objects: { name: string; sha256: string; programs: string[] }[] = [];
  let perKernelLoader = 0;
  for (let oi = 0; perKernelLoader * kernelIds.length * loaders.length < want; oi++) {
    const x = r();
    const n = x < 0.02 ? 40 + Math.floor(r() * 110) : 1 + Math.floor(r() * 4);
    const name = `test_object_${String(oi).padStart(4, '0')}_${['sockopt', 'core_reloc', 'iter', 'fentry', 'kprobe'][oi % 5]}.bpf.o`;
    const sha256 = [...Array(64)].map((_, i) => ((oi * 7 + i * 13) % 16).toString(16)).join('');
    const programs = Array.from({ length: n }, (_, pi) => `${['handle', 'on', 'dump', 'test'][pi % 4]}_${name.replace(/\.bpf\.o$/, '').slice(12)}_${pi}`);
    objects.push({ name, sha256, programs });
    perKernelLoader += n;
  }
  const kernels: KernelRun[] = kernelIds.map((id, ki) => {
    const kernel: KernelInfo = { id, package: `linux-image-${id}-amd64-unsigned`, version: `${id}.${100 + ki}-1`, release: `${id}.0-${ki + 1}-amd64`, flavour: id.includes('rt') ? 'rt' : id.includes('cloud') ? 'cloud' : 'generic', btf: 'kernel' };
    const guest = opts.guests?.[id] ?? 'ok';
    const cells: CellResult[] = [];
    objects.forEach((o, oi) => {
      o.programs.forEach((program, pi) => {
        for (const loader of loaders) {
          const x = r();
          const verdict: CellVerdict = x < 0.62 ? 'pass' : x < 0.8 ? 'fail' : x < 0.97 ? 'expected-skip' : x < 0.985 ? 'skip' : 'error';
          const cell: CellResult = {
            schema: RESULT_SCHEMA, kernel, suite: `object:${o.name}`, program, loader, object: { name: o.name, sha256: o.sha256 }, verdict,
            relocations: relocations(r, ki, oi * 1000 + pi),
            externs: pi % 7 === 0 ? [{ name: 'LINUX_KERNEL_VERSION', kind: 'kconfig', value: (5 << 16) + ki }, { name: 'CONFIG_HZ', kind: 'kconfig', value: 250 }] : [],
            checks: pi % 3 === 0 ? [{ name: 'our verdict', observed: 'loaded', truth: 'loaded', ok: true, source: 'prog_tests/core_reloc.c; ours: loaded' }, { name: 'loaders agree', observed: true, truth: true, ok: true, source: 'libbpf btf_custom_path' }] : [],
            timings: { loadMs: Math.floor(r() * 900), runMs: Math.floor(r() * 40) },
          };
          if (verdict !== 'pass') cell.reason = verdict === 'expected-skip' ? `needs kernel >= 6.${ki + 2} (declared)` : REASONS[(oi + pi) % REASONS.length]!;
          if (verdict === 'fail') cell.verifier = { insnsProcessed: 100 + Math.floor(r() * 5000), logTail: logTail(r, program) };
          else if (verdict === 'pass') cell.verifier = { insnsProcessed: 100 + pi * 3 };
          if (r() < 0.25) cell.attach = { status: 'attached', via: 'BPF_LINK_CREATE', target: `fentry do_unlinkat`, runCount: r() < 0.15 ? 0 : 1 + Math.floor(r() * 9), runTimeNs: 900 };
          // Both loaders' translations of one program are the same instructions (the differential holds).
          if (r() < 0.28) cell.xlated = '8500000071000000b700000000000000'.repeat(8 + ((oi + pi) % 24));
          cells.push(cell);
        }
      });
    });
    const kept = guest === 'ok' ? cells : cells.slice(0, cells.length >> 1);
    return {
      kernel, guest, accel: 'tcg', cpus: 2, bootMs: 2000 + ki * 300, durationMs: 600_000,
      ...(guest === 'ok' ? {} : { detail: 'Kernel panic - not syncing: Attempted to kill init!', consoleTail: '[    2.1] Run /init as init process\n[    2.3] Kernel panic - not syncing' }),
      cells: kept,
    };
  });
  return {
    schema: RESULT_SCHEMA, runId: 'synthetic-scale', startedAt: '2025-01-01T00:00:00.000Z', finishedAt: '2025-01-01T03:00:00.000Z', complete: true,
    host: { node: process.version, qemu: 'QEMU emulator version 7.2.15', clang: 'clang-19' },
    suites: objects.map((o) => `object:${o.name}`), objects: objects.map(({ name, sha256 }) => ({ name, sha256 })), kernels,
  };
}
