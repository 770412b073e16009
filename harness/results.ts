// What a matrix run produces: plain, versioned JSON. The guest agent emits CellResults (one per
// kernel × suite × program) over the result channel; the host wraps them into KernelRuns and a
// RunReport, which the diff engine and the report writers read. Every file carries `schema`;
// readers refuse a schema they do not know instead of guessing.

import { FormatError } from './core/errors.js';
import type { RelocationRecord } from './core/relo/report.js';

export const RESULT_SCHEMA = 1;

/** The program name of a cell about an object as a whole (refused before any program, or with none). */
export const WHOLE_OBJECT = '(object)';

export type CellVerdict =
  /** Loaded, ran, and every check matched its ground truth. */
  | 'pass'
  /** A check did not match, the verifier rejected the program, or a relocation failed. */
  | 'fail'
  /** The spec declares a minimum kernel above this one: not run, and that is expected. */
  | 'expected-skip'
  /** Could not run on a kernel that should support it: counts as a failure. */
  | 'skip'
  /** The harness itself failed for this cell (agent error, timeout inside the guest). */
  | 'error';

export type LoaderName = 'ours' | 'libbpf';

export interface KernelInfo {
  /** Matrix id, e.g. `6.1-rt`. */
  id: string;
  package: string;
  version: string;
  /** `uname -r` */
  release: string;
  flavour: string;
  /** The kernel's Debian arch when it is not amd64 (`arm64`): its cells hold that arch's objects. */
  arch?: string;
  /**
   * Where the BTF this kernel's cells were relocated against came from: the kernel's own
   * /sys/kernel/btf/vmlinux, a file pahole generated from the kernel's DWARF on the host and
   * shipped into the guest (custom builds without CONFIG_DEBUG_INFO_BTF), or none at all.
   */
  btf?: BtfOrigin;
}

export type BtfOrigin = 'kernel' | 'pahole' | 'none';

export interface Check {
  name: string;
  observed: unknown;
  truth: unknown;
  ok: boolean;
  /** Where the truth came from: `agent: gettid()`, `bpftool btf dump`, `/boot/config-…`. */
  source?: string;
}

export interface ExternValue {
  name: string;
  kind: 'kconfig' | 'ksym';
  value: string | number | boolean | null;
}

/** How a program was attached in the guest and what the kernel counted while the workload ran (loader/attach.ts, agent/attach-run.ts). */
export interface AttachResult {
  /** attached; failed (the kernel or the target refused); not-attachable (needs something only its tool supplies). */
  status: 'attached' | 'failed' | 'not-attachable';
  /** How: "BPF_LINK_CREATE", "kprobe PMU", "perf tracepoint", "BPF_PROG_TEST_RUN", ... */
  via?: string;
  /** To what: "kprobe do_sys_openat2", "xdp lo", "cgroup /sys/fs/cgroup connect4". */
  target?: string;
  /** One line: why it failed or cannot be attached here. */
  reason?: string;
  /** Times the program ran while attached (bpf_prog_info run_cnt, run statistics on). */
  runCount?: number;
  /** Total time it ran, ns (run_time_ns). */
  runTimeNs?: number;
  /** What exercising it did: an iterator read, a test run. */
  note?: string;
}

/** Attached, statistics kept, and it never ran: a finding of its own (the hook did not fire). */
export function neverRan(a: AttachResult | undefined): boolean {
  return a?.status === 'attached' && a.runCount === 0;
}

export interface CellResult {
  schema: typeof RESULT_SCHEMA;
  kernel: KernelInfo;
  suite: string;
  program: string;
  loader: LoaderName;
  object: { name: string; sha256: string };
  verdict: CellVerdict;
  /** One line: why it failed or was skipped. */
  reason?: string;
  relocations: RelocationRecord[];
  externs: ExternValue[];
  checks: Check[];
  verifier?: {
    /** Instructions the verifier processed (BPF_OBJ_GET_INFO verified_insns, or parsed from the log). */
    insnsProcessed?: number;
    /** The last lines of the verifier log, on rejection. */
    logTail?: string;
  };
  /** What the object's config (`<object>.yaml`) set before load on this kernel, one line each (and the facts that decided it). */
  config?: string[];
  /** Translated instructions as the kernel returns them, hex, when recorded (differential runs). */
  xlated?: string;
  /** Users' objects: how the program was attached and how often it ran under the workload. */
  attach?: AttachResult;
  /** A command run in the guest (`matrix --exec`): how it ended and the tail of its stdout+stderr. */
  output?: CommandOutput;
  timings: { loadMs: number; runMs: number };
}

/** How a command run in a guest ended (harness/agent/exec.ts); its duration is the cell's timings.runMs. */
export interface CommandOutput {
  /** The exit status, or null when a signal ended it (a timeout's SIGKILL). */
  exitCode: number | null;
  /** The signal that ended it (`SIGKILL`), when one did. */
  signal?: string;
  /** The last lines of its stdout and stderr, interleaved as they arrived. */
  tail: string;
}

/** How a guest ended, from the host's view (harness/vm). */
export type GuestVerdict = 'ok' | 'no-btf' | 'panic' | 'oops' | 'hung-task' | 'agent-oom' | 'agent-hang' | 'no-agent' | 'qemu-died' | 'timeout' | 'agent-failed' | 'no-kernel'
  /** The host could not prepare this kernel's guest (image, host truth): never booted. */
  | 'harness-error'
  /** The run was interrupted (SIGINT, SIGTERM) while this guest ran: the cells it sent are kept, the rest not run. */
  | 'aborted';

export interface KernelRun {
  kernel: KernelInfo;
  guest: GuestVerdict;
  /** One line when the guest did not end cleanly. */
  detail?: string;
  accel: 'kvm' | 'tcg' | 'none';
  /** The guest's vCPUs, when more than one. */
  cpus?: number;
  /**
   * How many guests of this kernel shared its objects, side by side (matrix/parts.ts), when more
   * than one: durationMs is then the longest one's.
   */
  guests?: number;
  /**
   * How many follow-up guests ran after a guest of this kernel died inside an object
   * (matrix/resume.ts): each redid the units the dead one had not finished. durationMs counts them.
   */
  followUps?: number;
  bootMs?: number;
  durationMs: number;
  /** Last lines of the kernel console, kept when something went wrong. */
  consoleTail?: string;
  cells: CellResult[];
}

export interface RunReport {
  schema: typeof RESULT_SCHEMA;
  runId: string;
  startedAt: string;
  finishedAt: string;
  /** False when the run was interrupted or a writer failed: a partial report, marked as such. */
  complete: boolean;
  host: { node: string; qemu?: string; clang?: string; libbpf?: string };
  suites: string[];
  objects: { name: string; sha256: string }[];
  kernels: KernelRun[];
  /** Set when this report is one shard (`corematrix matrix --shard index/count`) of a run. */
  shard?: { index: number; count: number; arch?: string };
}

export function assertSchema(doc: unknown, file: string): asserts doc is { schema: number } {
  const s = (doc as { schema?: unknown } | null)?.schema;
  if (s !== RESULT_SCHEMA) throw new FormatError(`${file}: result schema ${String(s)} is not ${RESULT_SCHEMA} (written by another corematrix version)`);
}
