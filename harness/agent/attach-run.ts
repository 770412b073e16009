// Attach, run, count: after an object's programs are loaded, attach each one as its tool would
// (loader/attach.ts for ours, reference/libbpf-attach.ts for libbpf), run the standard workload
// once for the whole object (and what the object's config adds), let the on-demand programs run
// (iterators read, syscall programs test-run), then read from the kernel how often each program
// ran and how long it took (bpf_prog_info run_cnt / run_time_ns, with run statistics on).
// Both loaders go through `runTogether` (`runAlone` for one object): the same workload, the same hand-over of sockets and
// congestion controls, the same counting.

import type { Attachment, SocketMap } from '../loader/attach.js';
import type { Collection } from '../loader/collection.js';
import { availableCongestionControls, registeredCongestionControls, withDefaultCongestionControl } from '../loader/struct-ops.js';
import type { AttachResult } from '../results.js';
import { enableRunStats } from '../runtime/attach-trace.js';
import type { WorkloadOptions } from './workload.js';

/** What one object's attach-and-run did besides its programs' verdicts (a log line). */
export interface AttachRunSummary {
  attached: number;
  workload?: string;
  statsVia?: string;
  ms: number;
}

/** The workload, told where to hand each TCP connection's sockets. */
export type Workload = (hooks: { onTcpConnection?: WorkloadOptions['onTcpConnection'] }) => Promise<string>;

let stats: { via: string } | { error: string } | undefined;
/** Run statistics, turned on once for the rest of the agent's life. */
function runStats(): string | undefined {
  if (!stats) {
    try {
      stats = { via: enableRunStats().via };
    } catch (e) {
      stats = { error: (e as Error).message.split('\n')[0]! };
    }
  }
  return 'via' in stats ? stats.via : undefined;
}

const firstLine = (e: unknown) => (e as Error).message.split('\n')[0]!;

/** One object's part in a run of the workload: how to attach it and how to read its programs' counts. */
export interface RunMember {
  /** Makes the attachments (run statistics are on before it runs). */
  attach: () => ReadonlyMap<string, Attachment>;
  /** A program's run count and time, from the kernel. */
  runCounts: (program: string) => { runCnt?: bigint; runTimeNs?: bigint } | undefined;
  /**
   * Wraps the synchronous on-demand runs after the workload (a syscall program's test run, an
   * iterator read, netkit frames): the agent's watchdog step, since a test run under TCG can hold
   * the thread for longer than the host waits for a beat.
   */
  aroundRun?: (run: () => void) => void;
}

export interface RunOutcome {
  results: Map<string, AttachResult>;
  summary: AttachRunSummary;
}

/**
 * Runs the workload under one object's attachments (one loader's), then its on-demand programs,
 * and returns each program's result with the kernel's run counts.
 */
export async function runAlone(member: RunMember, workload: Workload): Promise<RunOutcome> {
  const [only] = await runTogether([member], workload);
  if (only instanceof Error) throw only;
  return only!;
}

/**
 * Attaches every member in turn, runs the workload once under all of them, then each member's
 * on-demand programs and run counts: one outcome per member, or the error its attach threw (the
 * others go on). Several members share a run only when each merely observes (agent/observers.ts).
 */
export async function runTogether(members: readonly RunMember[], workload: Workload): Promise<(RunOutcome | Error)[]> {
  const t0 = performance.now();
  const statsVia = runStats();
  // A TCP congestion control the attach registered is what the kernel lists afterwards and did not before.
  const before = availableCongestionControls();
  const attached = members.map((m) => {
    try {
      return m.attach();
    } catch (e) {
      return e as Error;
    }
  });
  const all = attached.flatMap((a) => (a instanceof Error ? [] : [...a.values()]));
  let workloadNote: string | undefined;
  if (all.some((a) => a.verdict.status === 'attached')) {
    try {
      const [cc] = registeredCongestionControls(before);
      // The workload's TCP connections go into the sockmaps programs were attached to (sk_skb, sk_msg).
      const maps = new Map(all.flatMap((a) => (a.sockmap && a.verdict.status === 'attached' ? [[a.sockmap.name, a.sockmap] as const] : [])));
      const feeds = [...maps.values()].map(feedInto);
      const run = () => workload(feeds.length ? { onTcpConnection: (a, b, i) => feeds.forEach((feed) => feed(a, b, i)) } : {});
      workloadNote = await (cc ? withDefaultCongestionControl(cc, run) : run());
      if (members.length > 1) workloadNote += `, shared by ${members.length} objects that only observe`;
    } catch (e) {
      workloadNote = `workload failed: ${firstLine(e)}`;
    }
  }
  return members.map((m, i) => {
    const attachments = attached[i]!;
    if (attachments instanceof Error) return attachments;
    const results = new Map<string, AttachResult>();
    for (const [name, a] of attachments) results.set(name, counted(a, name, statsVia ? m.runCounts : undefined, m.aroundRun));
    const n = [...results.values()].filter((r) => r.status === 'attached').length;
    return { results, summary: { attached: n, ...(workloadNote && n ? { workload: workloadNote } : {}), ...(statsVia ? { statsVia } : {}), ms: Math.round(performance.now() - t0) } };
  });
}

/** An attachment's result after the workload: its on-demand run (iterators, syscall programs) and the kernel's counts. */
function counted(a: Attachment, name: string, runCounts: RunMember['runCounts'] | undefined, aroundRun: RunMember['aroundRun'] = (f) => f()): AttachResult {
  const r: AttachResult = { ...a.verdict };
  if (a.verdict.status !== 'attached') return r;
  if (a.exercise) {
    const exercise = a.exercise;
    aroundRun(() => {
      try {
        r.note = exercise();
      } catch (e) {
        r.note = `running it failed: ${firstLine(e)}`;
      }
    });
  }
  const c = runCounts?.(name);
  if (c?.runCnt !== undefined) r.runCount = Number(c.runCnt);
  if (c?.runTimeNs !== undefined) r.runTimeNs = Number(c.runTimeNs);
  if (a.runsInside && !(r.runCount! > 0)) {
    // A replacement is jumped into from its target, which is where the kernel counts: say how often that ran.
    const host = runCounts?.(a.runsInside);
    delete r.runCount;
    delete r.runTimeNs;
    r.note = `runs inside ${a.runsInside}, which the kernel counts instead (it ran ${host?.runCnt ?? 'an unknown number of'} times)`;
  }
  return r;
}

/**
 * Objects that only observe, queued to share one run of the workload: `join` takes an object's
 * attach-and-run and answers when `flush` has run the workload under every queued object. The
 * objects stay loaded (not attached) while they wait: a program that is not attached never runs.
 */
export class SharedRun<Step> {
  private queue: { member: RunMember; done: (o: RunOutcome | Error) => void }[] = [];
  /** The objects' remaining work (cells), waiting on their batch. */
  private waiting: Promise<void>[] = [];
  /** The step of the last object queued: the shared run is reported as its. */
  private last?: Step;

  /** `workloadAt(step)`: the workload, reported as that object's run step. */
  constructor(readonly limit: number, private readonly workloadAt: (step: Step) => Workload) {}

  /** Queues an object's attach-and-run (`step`: the object) for the batch's shared workload. */
  join(member: RunMember, step: Step): Promise<RunOutcome> {
    this.last = step;
    return new Promise((resolve, reject) => this.queue.push({ member, done: (o) => (o instanceof Error ? reject(o) : resolve(o)) }));
  }

  /**
   * Runs one object's finishing work (attach, run, cells). It is synchronous up to its attach, so
   * by the time `finish()` returns an observer has joined the batch: its work then completes when
   * the batch runs; anything else ran alone and is awaited here. A full batch runs at once.
   */
  async add(finish: () => Promise<void>): Promise<void> {
    const before = this.queue.length;
    const done = finish();
    if (this.queue.length > before) this.waiting.push(done);
    else await done;
    if (this.queue.length >= this.limit) await this.flush();
  }

  /** Runs the workload once under every queued object, answers each, and waits for their work. */
  async flush(): Promise<void> {
    const queued = this.queue.splice(0);
    if (queued.length && this.last !== undefined) {
      let outcomes: (RunOutcome | Error)[];
      try {
        outcomes = await runTogether(queued.map((q) => q.member), this.workloadAt(this.last));
      } catch (e) {
        outcomes = queued.map(() => e as Error); // nobody waits for ever
      }
      queued.forEach((q, i) => q.done(outcomes[i]!));
    }
    await Promise.all(this.waiting.splice(0));
  }
}

/**
 * Our loader's part in a run: attaches every loaded program of a collection (its links stay open
 * until the collection closes; `around` wraps the synchronous attach, the agent's watchdog step).
 */
export function collectionMember(coll: Collection, around: (attach: () => void) => void = (f) => f(), aroundRun?: RunMember['aroundRun']): RunMember {
  return {
    ...(aroundRun ? { aroundRun } : {}),
    attach: () => {
      let verdicts = new Map<string, Attachment>();
      around(() => {
        verdicts = coll.attachAll();
      });
      return verdicts;
    },
    runCounts: (name) => coll.programs.get(name)?.info(),
  };
}

/** Our loader, alone: attaches a collection and runs the workload under it. */
export function attachAndRun(coll: Collection, workload: Workload, around?: (attach: () => void) => void, aroundRun?: RunMember['aroundRun']): Promise<RunOutcome> {
  return runAlone(collectionMember(coll, around, aroundRun), workload);
}

/** Puts a connection's two sockets into a socket map (keys 2i and 2i+1), as an object's tool puts its own sockets there. */
export function feedInto(m: SocketMap): (clientFd: number, serverFd: number, index: number) => void {
  const bytes = (n: number, size: number) => {
    const b = new Uint8Array(size);
    new DataView(b.buffer).setUint32(0, n, true);
    return b;
  };
  return (clientFd, serverFd, index) => {
    m.update(bytes(2 * index, m.keySize), bytes(clientFd, m.valueSize));
    m.update(bytes(2 * index + 1, m.keySize), bytes(serverFd, m.valueSize));
  };
}
