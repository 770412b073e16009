// Suites: a BPF C program plus a YAML spec each (suites/<name>/prog.bpf.c, suites/<name>/spec.yaml).
// The host compiles every suite once per run (one vmlinux.h, one clang-19) and ships the same
// object bytes to every guest. In the guest, the agent loads the object with our loader, then
// hands a `LoadedObject` to the suite's guest-side code, which triggers the programs and
// compares what they observed with ground truth the guest measures itself.

import type { Check } from '../results.js';

/** Parsed spec.yaml (validated: unknown keys and wrong types are errors with file:line). */
export interface SuiteSpec {
  name: string;
  description: string;
  /**
   * What prog.bpf.c compiles against: `vmlinux` (default), bpftool's vmlinux.h of one kernel
   * (6.1); `joined`, `corematrix btf join` of the Debian kernels of kernels/matrix.yaml, included
   * as "vmlinux_joined.h" (or "vmlinux.h"), with a `___<kernel>` flavour for each older layout.
   */
  header?: 'vmlinux' | 'joined';
  /** Programs to load and report (default: every program in the object). */
  programs?: string[];
  /** Below this kernel (`5.13`), the suite is an expected skip; at or above it, a skip fails. */
  minKernel?: string;
  /**
   * Kernel config options the programs need beyond the kernel version (`CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS`
   * for fentry: Debian's arm64 6.1 lacks it): an expected skip where one is not set (y or m).
   */
  kconfig?: string[];
  /**
   * Kernel modules the programs need, each with the config option that builds it
   * (`{ null_blk: CONFIG_BLK_DEV_NULL_BLK }`), or `{ option, btf: true }` when the programs
   * relocate against the module's own types. Where the option is `m` the host ships the module
   * from the kernel's package and the agent loads it before reading BTF (its types are then in
   * /sys/kernel/btf/<module>). An expected skip where the option is not set, and, for `btf: true`,
   * where modules carry no BTF (CONFIG_DEBUG_INFO_BTF_MODULES unset: 5.10).
   */
  modules?: Record<string, string | { option: string; btf?: boolean }>;
  /** Values written into `.rodata` variables before load (`const volatile` globals). */
  rodata?: Record<string, number | string | boolean>;
  /** How the guest makes the programs run. */
  trigger: TriggerSpec;
  /** What to read back and what it must equal. */
  checks: CheckSpec[];
  /** A command of the suite's own, run in each guest after the agent's work: one more cell of the suite. */
  exec?: SuiteExec;
}

/**
 * A spec's `exec`: a command run as `/bin/sh -c` in each guest after the agent's work (as
 * `matrix --exec` is), in the folder its files were shipped to (/cm/suites/<suite>). Its exit
 * status, duration and output tail are the suite's cell of program `(exec)`.
 */
export interface SuiteExec {
  command: string;
  /** Paths relative to the suite's folder (a file, a folder, or `.`), shipped at the same paths under /cm/suites/<suite>. */
  files?: string[];
  /** Seconds before its process group is killed and its cell fails (default 300, as `--exec-timeout`). */
  timeout?: number;
}

export type TriggerSpec =
  /** Writes `name` to /proc/self/comm from the main thread (the kernel calls __set_task_comm). */
  | { kind: 'prctl-set-name'; name: string }
  /** A TCP connect to a listener of the agent on 127.0.0.1; the client is bound to 127.0.0.1, port 0, first. */
  | { kind: 'loopback-tcp' }
  /** BPF_PROG_TEST_RUN of `program` once per packet length (zero-filled Ethernet frames). */
  | { kind: 'test-run'; program: string; packetLengths: number[] }
  /**
   * Opens a marker file `opens` times (openat → do_sys_openat2). Replaces a getpid count: node
   * caches process.pid, so getpid() is not a syscall the agent can make on demand.
   */
  | { kind: 'syscalls'; opens: number }
  /**
   * Opens /dev/net/tun and creates tun device `name` (TUNSETIFF, IFF_TUN | IFF_NO_PI), reads it
   * back (TUNGETIFF) and closes it: two ioctls on the tun file, the device gone afterwards.
   */
  | { kind: 'tun'; name: string }
  /**
   * On block device /dev/`device`: reads one 4 KiB block the page cache does not hold (64 MiB in),
   * then writes `bytes` (a multiple of 4096) at offset 0 and fsyncs, so they reach the device.
   */
  | { kind: 'block-io'; device: string; bytes: number }
  | { kind: 'none' };

export type TriggerKind = TriggerSpec['kind'];

/** One module a suite needs (spec `modules`, either form). */
export interface ModuleNeed {
  name: string;
  option: string;
  /** The programs relocate against the module's own BTF. */
  btf: boolean;
}

/** A spec's `modules`, each in the long form. */
export function moduleNeeds(spec: Pick<SuiteSpec, 'modules'>): ModuleNeed[] {
  return Object.entries(spec.modules ?? {}).map(([name, v]) => (typeof v === 'string' ? { name, option: v, btf: false } : { name, option: v.option, btf: v.btf === true }));
}

/**
 * What one module a suite needs comes to on a kernel, from that kernel's config (the same rule on
 * the host, which ships modules, and in the guest, which loads them and skips suites):
 * built in (nothing to do), `load` (shipped and loaded), or an expected skip with its reason.
 * `kernelBtf`: the kernel has BTF of its own (module BTF sits on top of it).
 */
export function moduleNeedOn(need: ModuleNeed, config: (option: string) => string | undefined, kernelBtf: boolean): 'built-in' | 'load' | { skip: string } {
  const v = config(need.option);
  if (v === undefined || v === 'n') return { skip: `needs module ${need.name}: ${need.option} is not set in this kernel` };
  if (v !== 'm') return 'built-in'; // its types are in vmlinux's BTF
  if (need.btf && !kernelBtf) return { skip: `module ${need.name} has no BTF: the kernel has no BTF of its own` };
  if (need.btf && config('CONFIG_DEBUG_INFO_BTF_MODULES') !== 'y') return { skip: `module ${need.name} has no BTF: CONFIG_DEBUG_INFO_BTF_MODULES is not set in this kernel` };
  return 'load';
}

export interface CheckSpec {
  name: string;
  /** A global variable of the object (`.bss`/`.data` name, e.g. `pid_core`), or `ringbuf:<map>` etc. */
  observe: string;
  /** A ground-truth expression the guest evaluates (see harness/suites/guest.ts). */
  truth: string;
}

/** What the agent gives the suite code after loading the object (all fds owned by the agent). */
export interface LoadedObject {
  /** Reads a global variable by name from its data map: numbers for ints, strings for char arrays. */
  readVar(name: string): number | bigint | string | boolean;
  /** BPF_PROG_TEST_RUN of a loaded program; returns the program's return value. */
  testRun(program: string, data: Uint8Array, repeat?: number): number;
  /** Drains a ring buffer map; each record's raw bytes. */
  drainRingbuf(map: string): Uint8Array[];
  /** Attached programs are already attached; this lists them. */
  programs: string[];
}

/** Guest facts the truth expressions may use (measured by the agent, not by BPF). */
export interface GuestContext {
  release: string;
  /** The kernel's config: CONFIG_X → 'y' | 'm' | its text (absent when not set); size 0 = no config. */
  config: Pick<ReadonlyMap<string, string>, 'get' | 'size'>;
  /** Values the host computed with independent tools for this kernel (e.g. bpftool's BTF dump). */
  hostTruth: Record<string, number | string | boolean>;
  /** ioctl(fd, request, &buf) (the agent's syscall module; triggers that drive devices need it). */
  ioctl?: (fd: number, request: number, buf: Uint8Array, what: string) => number;
}

export interface SuiteRunner {
  /** Makes the programs run (the trigger), then evaluates every check. */
  run(spec: SuiteSpec, obj: LoadedObject, ctx: GuestContext): Promise<Check[]>;
}
