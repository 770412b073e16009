// Attach, run, count: after an object's programs are loaded, attach each one as its tool would
// (loader/attach.ts for ours, reference/libbpf-attach.ts for libbpf), run the standard workload
// once for the whole object (and what the object's config adds), let the on-demand programs run
// (iterators read, syscall programs test-run), then read from the kernel how often each program
// ran and how long it took (bpf_prog_info run_cnt / run_time_ns, with run statistics on).
// Both loaders go through `runUnder`: the same workload, the same hand-over of sockets and
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

/**
 * Runs the workload under `attachments` (one loader's, for one object), then the on-demand
 * programs, and returns each program's result with the kernel's run counts. `attach` makes the
 * attachments (run statistics are on before it runs); `runCounts` reads a program's counts.
 */
export async function runUnder(
  attach: () => ReadonlyMap<string, Attachment>,
  runCounts: (program: string) => { runCnt?: bigint; runTimeNs?: bigint } | undefined,
  workload: Workload,
): Promise<{ results: Map<string, AttachResult>; summary: AttachRunSummary }> {
  const t0 = performance.now();
  const statsVia = runStats();
  // A TCP congestion control the attach registered is what the kernel lists afterwards and did not before.
  const before = availableCongestionControls();
  const attachments = attach();
  let workloadNote: string | undefined;
  if ([...attachments.values()].some((a) => a.verdict.status === 'attached')) {
    try {
      const [cc] = registeredCongestionControls(before);
      // The workload's TCP connections go into the sockmaps programs were attached to (sk_skb, sk_msg).
      const maps = new Map([...attachments.values()].flatMap((a) => (a.sockmap && a.verdict.status === 'attached' ? [[a.sockmap.name, a.sockmap] as const] : [])));
      const feeds = [...maps.values()].map(feedInto);
      const run = () => workload(feeds.length ? { onTcpConnection: (a, b, i) => feeds.forEach((feed) => feed(a, b, i)) } : {});
      workloadNote = await (cc ? withDefaultCongestionControl(cc, run) : run());
    } catch (e) {
      workloadNote = `workload failed: ${firstLine(e)}`;
    }
  }
  const results = new Map<string, AttachResult>();
  for (const [name, a] of attachments) {
    const r: AttachResult = { ...a.verdict };
    if (a.verdict.status === 'attached') {
      if (a.exercise) {
        try {
          r.note = a.exercise();
        } catch (e) {
          r.note = `running it failed: ${firstLine(e)}`;
        }
      }
      const c = statsVia ? runCounts(name) : undefined;
      if (c?.runCnt !== undefined) r.runCount = Number(c.runCnt);
      if (c?.runTimeNs !== undefined) r.runTimeNs = Number(c.runTimeNs);
      if (a.runsInside && !(r.runCount! > 0)) {
        // A replacement is jumped into from its target, which is where the kernel counts: say how often that ran.
        const host = statsVia ? runCounts(a.runsInside) : undefined;
        delete r.runCount;
        delete r.runTimeNs;
        r.note = `runs inside ${a.runsInside}, which the kernel counts instead (it ran ${host?.runCnt ?? 'an unknown number of'} times)`;
      }
    }
    results.set(name, r);
  }
  const attached = [...results.values()].filter((r) => r.status === 'attached').length;
  return { results, summary: { attached, ...(workloadNote ? { workload: workloadNote } : {}), ...(statsVia ? { statsVia } : {}), ms: Math.round(performance.now() - t0) } };
}

/**
 * Our loader: attaches every loaded program of a collection (its links stay open until the
 * collection closes; `around` wraps the synchronous attach, the agent's watchdog step) and runs
 * the workload under them.
 */
export function attachAndRun(coll: Collection, workload: Workload, around: (attach: () => void) => void = (f) => f()) {
  return runUnder(() => {
    let verdicts = new Map<string, Attachment>();
    around(() => {
      verdicts = coll.attachAll();
    });
    return verdicts;
  }, (name) => coll.programs.get(name)?.info(), workload);
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
