// The run manifest the host puts into each guest image at /cm/run.json: which kernel this is
// (as the matrix names it), the suites with their specs and object paths, the host-computed
// truth for this kernel, and the per-suite time budget.
import { FormatError } from '../core/errors.js';
import type { KernelInfo } from '../results.js';
import type { ObjectConfig } from '../loader/object-config.js';
import type { SuiteSpec } from '../suites/types.js';

export const MANIFEST_SCHEMA = 1;

export interface RunManifest {
  schema: typeof MANIFEST_SCHEMA;
  kernel: KernelInfo;
  suites: { spec: SuiteSpec; object: string; sha256: string }[];
  /** Users' own objects (--object): every program loaded and reported as-is, no checks. */
  objects: { name: string; path: string; sha256: string; config?: ObjectConfig }[];
  hostTruth: Record<string, number | string | boolean>;
  suiteTimeoutMs: number;
  /**
   * The vmlinux BTF to relocate against when the kernel has none of its own (a custom build
   * without CONFIG_DEBUG_INFO_BTF): a file the host generated from the kernel's DWARF.
   */
  btf?: { path: string; source: 'pahole' };
  /**
   * The vmlinux BTF the host indexed (harness/kernels/btf-index.ts) and the index: when the BTF the
   * agent relocates against is byte-for-byte this file, it opens it from the index.
   */
  btfIndex?: { btf: string; index: string };
  /**
   * Kernel modules the suites need (spec `modules` whose option is `m` in this kernel's config),
   * decompressed from the kernel's package, in load order (dependencies first).
   */
  modules?: { name: string; path: string }[];
  /** The kernel's CO-RE selftest corpus (objects under /cm/corpus): run with both loaders. */
  corpus?: { name: string; target: string; programs: string[]; expectFail: boolean }[];
  /** Which loaders load the objects: ours (suites run their checks), libbpf, or both (compared). */
  loader?: 'ours' | 'libbpf' | 'both';
  /** The libbpf the reference loads with (the current one the host built); absent: Debian's libbpf.so.1. */
  libbpf?: { so: string; version: string; source: string };
  /**
   * TEST-ONLY fault injection (test/faults): never set by `corematrix matrix`. Lets the fault
   * tests make a real guest fail in a known way, so the host's verdicts can be checked.
   */
  faults?: ManifestFaults;
  /**
   * How long one blocking step may run while the agent's watchdog beats for it (harness/agent/
   * watchdog.ts): a program's load (relocation and the verifier), a test run. Past it the beats
   * stop and the host calls the guest hung, naming the step. Defaults: STEP_BUDGETS.
   */
  stepBudgets?: { loadMs?: number; runMs?: number };
  /**
   * Commands run after everything else, in this order: each suite's own (spec `exec`, in suite
   * order), then the user's (`matrix --exec`). One cell each (harness/agent/exec.ts).
   */
  execs?: ExecPlan[];
  /** A network for the commands (`--net user`): QEMU's user-mode net, brought up before the first one runs. */
  net?: NetPlan;
}

/** The program of a command's cell: `(command)` for `matrix --exec`, `(exec)` for a suite's spec `exec`. */
export const EXEC_PROGRAMS = { command: '(command)', suite: '(exec)' } as const;

/** A command run in the guest after the agent's work, and how its one cell is named. */
export interface ExecPlan {
  /** Run as `/bin/sh -c <command>` (absolute host paths inside --files already rewritten to the guest's). */
  command: string;
  /** The cell's suite: `exec:<short command>` for --exec, the suite's name for a suite's own. */
  suite: string;
  /** The cell's program (EXEC_PROGRAMS). */
  program: string;
  /** A suite's own command: where that suite is an expected skip on this kernel, so is this cell. */
  ofSuite?: boolean;
  /** The program the command names: its shipped file's sha256, else the command text's. */
  object: { name: string; sha256: string };
  /** Working directory: /cm/files/<first folder> (else /cm/files or /tmp) for --exec; /cm/suites/<suite> for a suite's. */
  cwd: string;
  /** Where its shipped files are (CM_FILES): /cm/files, or /cm/suites/<suite>. */
  files: string;
  /** After this the command's process group is killed (SIGKILL) and its cell fails, saying so. */
  timeoutMs: number;
  /** PATH for the command (its files' folder first, then busybox's). */
  path: string;
}

/**
 * The program a command names (its first word after any `NAME=value`), for libraries and the
 * cell's identity. Quotes are not interpreted: a program path with spaces is not found here (it
 * still runs; only its libraries are not looked up).
 */
export function commandProgram(command: string): { word: string; start: number } | undefined {
  const re = /\S+/g;
  for (let m = re.exec(command); m; m = re.exec(command)) {
    if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(m[0])) continue;
    return { word: m[0], start: m.index };
  }
  return undefined;
}

/** QEMU's user-mode network as the guest sees it: an e1000 NIC, a static address. */
export interface NetPlan {
  /** The NIC driver's modules, in load order (none when it is built in). */
  modules: { name: string; path: string }[];
  /** `10.0.2.15/24`, gateway 10.0.2.2 (QEMU's host side), DNS 10.0.2.3. */
  address: string;
  gateway: string;
  dns: string;
}

/** Default step budgets: the verifier on a large program under TCG, a BPF_PROG_TEST_RUN. */
export const STEP_BUDGETS = { loadMs: 300_000, runMs: 60_000 } as const;

/** TEST-ONLY faults the agent injects on purpose (see RunManifest.faults). */
export interface ManifestFaults {
  /** Crash the kernel (sysrq c) right after this suite's cells were sent to the host. */
  panicAfterSuite?: string;
  /** Crash the kernel (sysrq c) as this user object's load begins (its guest dies inside it). */
  panicInObject?: string;
  /** Allocate and touch memory (before any suite runs) until the kernel's OOM killer kills the agent. */
  oom?: boolean;
  /**
   * Block the agent's thread for `ms` (forever when absent) inside the load step of this program,
   * as a long verification or a call that never returns would (Atomics.wait: no timer runs).
   */
  blockInLoad?: { program: string; ms?: number };
  /** The same inside the on-demand runs after the workload (test runs, iterator reads) of this user object. */
  blockInRun?: { object: string; ms?: number };
}

/**
 * A manifest with nothing to run: the agent says hello, reads the kernel's facts and finishes
 * (agent start-up benchmarks and tests, producing the code cache on the host).
 */
export function emptyManifest(kernel: KernelInfo, suiteTimeoutMs = 60_000): RunManifest {
  return { schema: MANIFEST_SCHEMA, kernel, suites: [], objects: [], hostTruth: {}, suiteTimeoutMs, loader: 'ours' };
}

export const ManifestSchema = {
  parse(doc: unknown, file: string): RunManifest {
    const m = doc as Partial<RunManifest> | null;
    const bad = (why: string) => new FormatError(`${file}: ${why}`);
    if (!m || typeof m !== 'object') throw bad('not a JSON object');
    if (m.schema !== MANIFEST_SCHEMA) throw bad(`manifest schema ${String(m.schema)} is not ${MANIFEST_SCHEMA}`);
    if (!m.kernel || typeof m.kernel.id !== 'string') throw bad('kernel.id missing');
    if (!Array.isArray(m.suites)) throw bad('suites must be a list');
    for (const s of m.suites) if (!s || typeof s.object !== 'string' || !s.spec || typeof s.spec.name !== 'string') throw bad('each suite needs spec.name and object');
    if (typeof m.suiteTimeoutMs !== 'number') throw bad('suiteTimeoutMs missing');
    if (m.execs !== undefined && !(Array.isArray(m.execs) && m.execs.every((x) => x && typeof x.command === 'string' && typeof x.suite === 'string' && typeof x.timeoutMs === 'number'))) throw bad('execs must be a list of {command, suite, timeoutMs, ...}');
    return { ...m, objects: m.objects ?? [], hostTruth: m.hostTruth ?? {} } as RunManifest;
  },
};
