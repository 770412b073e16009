// The guest → host result channel: one JSON object per line on the guest's second serial port
// (/dev/ttyS1). Plain, versioned data; it crosses the guest/host boundary unchanged.
// The host treats a missing heartbeat for too long as a hung agent.

export const PROTOCOL_VERSION = 1;

export type GuestMessage =
  /** First line the agent sends once node is up. */
  | { t: 'hello'; v: typeof PROTOCOL_VERSION; release: string; machine: string; bootMs: number }
  /**
   * Sent at least every 2 s while the agent is alive. While the agent's thread is blocked in one
   * long call (the verifier, a test run), a watchdog thread sends them instead, with `busy` naming
   * the step and how long it has run; it stops once the step outlives its budget, so a call that
   * never returns still ends as a hang that names where it was.
   */
  | { t: 'hb'; ms: number; busy?: { step: string; forMs: number } }
  /**
   * What the agent starts now: a suite, an object, a program's load, a trigger, the reference
   * loader. The host keeps the last one, so a hang, a panic or a timeout names where it happened.
   */
  | { t: 'step'; step: AgentStep }
  /** Progress: suite k of n started. */
  | { t: 'suite'; name: string; index: number; total: number }
  /** One result record (suite/program cell, task tree update, probe…): payload is owned by the producer. */
  | { t: 'result'; kind: string; data: unknown }
  /** A log line worth showing on the host (not the kernel console). */
  | { t: 'log'; level: 'info' | 'warn' | 'error'; msg: string }
  /**
   * Last line: the agent finished (the guest powers off next). `verdict` is the agent's own
   * account when nothing could run at all: 'no-btf' (no kernel BTF and none supplied).
   */
  | { t: 'done'; ok: boolean; ms: number; verdict?: 'no-btf' };

/** Where in its work the agent is. `unit` is a suite name or `object:<file>`, as in CellResult.suite. */
export interface AgentStep {
  unit: string;
  /** The object file this unit loads. */
  object: string;
  program?: string;
  /** load (relocate + verifier), attach, run (trigger and checks, or the workload), reference (libbpf), corpus, exec (the user's --exec command). */
  phase: 'load' | 'attach' | 'run' | 'reference' | 'corpus' | 'exec';
  /** Position of the unit among the guest's units (1-based), for progress lines. */
  index: number;
  total: number;
}

/** One line naming a step: `suite task-fields, object task-fields.bpf.o, program on_comm (load)`. */
export function describeStep(s: AgentStep): string {
  const unit = s.unit.startsWith('object:') ? `object ${s.object}` : `suite ${s.unit}, object ${s.object}`;
  return `${unit}${s.program ? `, program ${s.program}` : ''} (${s.phase})`;
}

export function encodeMessage(m: GuestMessage): string {
  return JSON.stringify(m) + '\n';
}

/** Parses one line; returns undefined for noise (the port may carry partial lines at boot). */
export function decodeMessage(line: string): GuestMessage | undefined {
  const s = line.trim();
  if (!s.startsWith('{')) return undefined;
  try {
    const m = JSON.parse(s) as { t?: unknown };
    return typeof m.t === 'string' ? (m as GuestMessage) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `result` payloads with the agent's load timings (read by `npm run bench`, harness/bench/corpus.ts).
 * Kind 'load-timing', one per user object our loader loaded: open (parse), config and the load of
 * every program, not the attach or the workload; and the part of it spent inside
 * bpf(BPF_PROG_LOAD) (the verifier). Kind 'prog-load-total', once before `done`: every
 * BPF_PROG_LOAD our runtime made in this guest (loads, log retries, probes; libbpf's own calls
 * are not seen).
 */
export const LOAD_TIMING = 'load-timing';
export const PROG_LOAD_TOTAL = 'prog-load-total';
export interface LoadTiming {
  /** As in CellResult.suite: `object:<file>`. */
  unit: string;
  loadMs: number;
  progLoadMs: number;
  progLoads: number;
}
export interface ProgLoadTotal {
  ms: number;
  calls: number;
}
