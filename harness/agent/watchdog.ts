// The agent's heartbeat while its thread is blocked. The verifier checking a large program, or a
// BPF_PROG_TEST_RUN, is one synchronous bpf() call: node's timers cannot fire during it, so under
// TCG a verification of 30 s looked like a hung agent. A second thread (a worker, started on the
// first long step) beats for the main thread while it is inside a step it declared with a budget,
// and stops beating once that step has outlived its budget: a call that never returns still ends
// as a hang, and the host's detail names the step (the last `step` message and the beats' `busy`).
//
// The two threads share three int32 slots and the step's name; the worker writes whole lines to the result port itself
// (one write(2) each, which the tty layer keeps whole), so it needs nothing from the main thread's
// event loop.

import { Worker } from 'node:worker_threads';

const ALIVE = 0; // ms (agent clock) when the main thread last ran its timer
const SINCE = 1; // ms when the current blocking step began, -1 when none
const BUDGET = 2; // ms the current step may take
const LABEL_BYTES = 512;

/** The worker's whole program: every `periodMs`, beat for a main thread that is blocked within budget. */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { writeSync, readFileSync } = require('node:fs');
const { slots, label, fd, periodMs } = workerData;
const i32 = new Int32Array(slots);
const bytes = new Uint8Array(label);
const t0 = Date.now() - workerData.nowMs;
const uptimeMs = () => Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000);
setInterval(() => {
  const now = Date.now() - t0;
  const since = Atomics.load(i32, ${SINCE});
  if (since < 0 || now - Atomics.load(i32, ${ALIVE}) < periodMs) return; // main beats itself
  const forMs = now - since;
  if (forMs > Atomics.load(i32, ${BUDGET})) return; // over budget: let the host call it a hang
  const end = bytes.indexOf(0);
  const step = Buffer.from(bytes.subarray(0, end < 0 ? bytes.length : end)).toString('utf8');
  try {
    const line = JSON.stringify({ t: 'hb', ms: uptimeMs(), busy: { step, forMs } }) + '\\n';
    writeSync(fd, line);
  } catch {
    // A beat that cannot be read or written (a BPF LSM program under test denying file access for
    // a moment) is skipped: the next one, or the host's silence, tells.
  }
}, periodMs);
`;

export class Watchdog {
  private readonly slots = new SharedArrayBuffer(12);
  private readonly i32 = new Int32Array(this.slots);
  private readonly label = new SharedArrayBuffer(LABEL_BYTES);
  private readonly t0 = Date.now();
  private worker?: Worker;

  /** `fd` is the result port (or -1: the worker writes to fd 1, as the agent does on a host). */
  constructor(private readonly fd: number, private readonly periodMs = 2000) {
    Atomics.store(this.i32, SINCE, -1);
    this.alive();
  }

  private now(): number {
    return Date.now() - this.t0;
  }

  /** The main thread ran its timer: it beats itself. Call from the agent's heartbeat interval. */
  alive(): void {
    Atomics.store(this.i32, ALIVE, this.now());
  }

  /**
   * Runs `f` (synchronous, possibly one long syscall) as a step the worker beats for, up to
   * `budgetMs`. The worker is started on the first call; it needs a moment to come up, which the
   * step's first seconds give it (the host waits 30 s for a beat).
   */
  blocking<T>(step: string, budgetMs: number, f: () => T): T {
    // A step inside another (a program's load inside its object's): the outer one is beaten for
    // again when the inner one ends, from its own start and within its own budget.
    const outer = Atomics.load(this.i32, SINCE) < 0 ? undefined : { label: new Uint8Array(this.label).slice(), since: Atomics.load(this.i32, SINCE), budget: Atomics.load(this.i32, BUDGET) };
    this.begin(step, budgetMs);
    try {
      return f();
    } finally {
      if (outer) {
        new Uint8Array(this.label).set(outer.label);
        Atomics.store(this.i32, BUDGET, outer.budget);
        Atomics.store(this.i32, SINCE, outer.since);
        this.alive();
      } else this.end();
    }
  }

  /** Starts (or replaces) the blocking step the worker beats for; `end` closes it. */
  begin(step: string, budgetMs: number): void {
    this.start();
    const b = new TextEncoder().encode(step).subarray(0, LABEL_BYTES - 1);
    const view = new Uint8Array(this.label);
    view.fill(0);
    view.set(b);
    Atomics.store(this.i32, BUDGET, Math.min(budgetMs, 0x7fffffff));
    Atomics.store(this.i32, SINCE, this.now());
  }

  end(): void {
    Atomics.store(this.i32, SINCE, -1);
    this.alive();
  }

  private start(): void {
    if (this.worker) return;
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { slots: this.slots, label: this.label, fd: this.fd < 0 ? 1 : this.fd, periodMs: this.periodMs, nowMs: this.now() },
      stdout: false,
      stderr: false,
    });
    this.worker.unref();
  }

  /** Stops the worker (the agent is done). */
  async stop(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    await w?.terminate();
  }
}
