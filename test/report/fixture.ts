// RunReports built from real data: test/fixtures/core_kernel.bpf.c compiled by clang-19 and
// relocated offline by our engine against the vmlinux BTF of real Debian kernels from the store.
// Each cell's checks compare a relocated value with pahole's reading of the same kernel BTF
// (dwarves, an independent BTF reader), and the externs are what the agent resolves for
// `__kconfig` externs from that kernel's own config and version banner.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { readTargetBtf, relocateObject } from '../../harness/core/relocate.js';
import { KernelStore, type KernelArtifacts } from '../../harness/kernels/store.js';
import { RESULT_SCHEMA, type CellResult, type Check, type KernelRun, type RunReport } from '../../harness/results.js';
import { linuxKernelVersion, parseKernelConfig } from '../../harness/runtime/facts.js';
import { compileBpf } from '../helpers/tools.js';

export const KERNELS = ['5.10', '6.1', '6.1-rt', '7.3'];
export const SUITE = 'core-kernel';

export interface KernelFacts {
  art: KernelArtifacts;
  cell: CellResult;
  /** pahole's task_struct: member → byte offset, plus the size. */
  pahole: { offsets: Map<string, number>; size: number };
}

/** `pahole -F btf -C task_struct <btf>`: member offsets and size, parsed from its comments. */
export function paholeTaskStruct(btf: string): { offsets: Map<string, number>; size: number } {
  const out = execFileSync('pahole', ['-F', 'btf', '-C', 'task_struct', btf], { maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const offsets = new Map<string, number>();
  let depth = 0;
  for (const line of out.split('\n')) {
    // only top-level members (depth 1): nested anonymous struct/union members are skipped
    if (depth === 1) {
      const m = /^\s+[^/]*?\b(\w+)(\[\d+\])?(:\s*\d+)?;\s+\/\*\s+(\d+)\s+\d+\s+\*\//.exec(line);
      if (m && !offsets.has(m[1]!)) offsets.set(m[1]!, Number(m[4]));
    }
    depth += (line.match(/\{/g) ?? []).length - (line.match(/\}/g) ?? []).length;
  }
  const size = /\/\* size: (\d+),/.exec(out);
  if (!size) throw new Error(`pahole printed no size for task_struct in ${btf}`);
  return { offsets, size: Number(size[1]) };
}

const store = new KernelStore();

export interface RealRun {
  run: RunReport;
  facts: Map<string, KernelFacts>;
  objectPath: string;
  sha256: string;
}

let cached: Promise<RealRun> | undefined;

/** Builds (once per test file) a RunReport with one cell per kernel from real relocations. */
export function realRun(): Promise<RealRun> {
  cached ??= build();
  return cached;
}

async function build(): Promise<RealRun> {
  const objectPath = compileBpf('test/fixtures/core_kernel.bpf.c');
  const bytes = new Uint8Array(readFileSync(objectPath));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const object = { name: 'core_kernel.bpf.o', sha256 };
  const facts = new Map<string, KernelFacts>();
  const kernels: KernelRun[] = [];
  const started = new Date();
  for (const id of KERNELS) {
    const art = await store.fetch(id);
    const t0 = performance.now();
    const rel = relocateObject(bytes, object.name, sha256, { vmlinux: readTargetBtf(new Uint8Array(readFileSync(art.btf)), basename(art.btf)) }, id);
    const loadMs = Math.round(performance.now() - t0);
    const pahole = paholeTaskStruct(art.btf);
    const find = (kind: string, type: string, spec: string) => rel.report.relocations.find((r) => r.kind === kind && r.type === type && r.spec === spec);
    const checks: Check[] = [];
    const src = 'pahole -F btf -C task_struct';
    for (const f of ['pid', 'tgid', 'comm']) {
      const observed = find('byte_off', 'struct task_struct', f)?.target ?? null;
      const truth = pahole.offsets.get(f) ?? null;
      checks.push({ name: `offsetof(task_struct, ${f})`, observed, truth, ok: observed === truth, source: src });
    }
    const size = find('type_size', 'struct task_struct', '')?.target ?? null;
    checks.push({ name: 'sizeof(task_struct)', observed: size, truth: pahole.size, ok: size === pahole.size, source: src });
    const exists = find('field_exists', 'struct task_struct', '__state')?.target ?? null;
    const truthExists = pahole.offsets.has('__state') ? 1 : 0;
    checks.push({ name: 'task_struct has __state', observed: exists, truth: truthExists, ok: exists === truthExists, source: src });
    const config = parseKernelConfig(readFileSync(art.config, 'utf8'), art.config);
    const kv = (name: string) => {
      const v = config.get(name);
      return v === undefined ? null : v === 'y' ? true : typeof v === 'string' ? v : Number(v);
    };
    const kernel = { id, package: art.package, version: art.version, release: art.release, flavour: art.flavour };
    const cell: CellResult = {
      schema: RESULT_SCHEMA,
      kernel,
      suite: SUITE,
      program: rel.report.programs[0]!.name,
      loader: 'ours',
      object: { ...object },
      verdict: checks.every((c) => c.ok) ? 'pass' : 'fail',
      relocations: rel.report.relocations,
      externs: [
        { name: 'LINUX_KERNEL_VERSION', kind: 'kconfig', value: linuxKernelVersion({ release: art.release, version: art.banner }) },
        { name: 'CONFIG_PREEMPT_RT', kind: 'kconfig', value: kv('CONFIG_PREEMPT_RT') ?? false },
        { name: 'CONFIG_HZ', kind: 'kconfig', value: kv('CONFIG_HZ') },
      ],
      checks,
      timings: { loadMs, runMs: 0 },
    };
    facts.set(id, { art, cell, pahole });
    kernels.push({ kernel, guest: 'ok', accel: 'none', durationMs: loadMs, cells: [cell] });
  }
  const run: RunReport = {
    schema: RESULT_SCHEMA,
    runId: 'offline-core-kernel',
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    complete: true,
    host: { node: process.version, clang: 'clang-19' },
    suites: [SUITE],
    objects: [object],
    kernels,
  };
  return { run, facts, objectPath, sha256 };
}

/** A deep copy to inject differences into without touching the shared run. */
export function clone<T>(x: T): T {
  return structuredClone(x);
}
