// Attach, run, count: after an object's programs are loaded, attach each one as its tool would
// (loader/attach.ts), run the standard workload once for the whole object (and what the
// object's config adds), let the on-demand programs run (iterators read, syscall programs
// test-run), then read from the kernel how often each program ran and how long it took
// (bpf_prog_info run_cnt / run_time_ns, with run statistics on). The links close with the
// collection.

import type { AttachResult } from '../results.js';
import type { Attachment } from '../loader/attach.js';
import { MapType } from '../core/object/maps.js';
import type { WorkloadOptions } from './workload.js';
import type { Collection } from '../loader/collection.js';
import { tcpCongestionControls, withDefaultCongestionControl } from '../loader/struct-ops.js';
import { enableRunStats } from '../runtime/attach-trace.js';

/** A program's attach verdict with what the kernel counted while the workload ran. */
export type AttachReport = AttachResult;

/** What one object's attach-and-run did besides its programs' verdicts (a log line). */
export interface AttachRunSummary {
  attached: number;
  workload?: string;
  statsVia?: string;
  ms: number;
}

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

/**
 * Attaches every loaded program of a collection (its links stay open until the collection
 * closes), runs `workload` when anything attached, lets the on-demand programs run, and returns
 * each program's report with the kernel's run counts.
 */
export async function attachAndRun(
  coll: Collection, workload: (o: { onTcpConnection?: WorkloadOptions['onTcpConnection'] }) => Promise<string>, around: (attach: () => void) => void = (f) => f(),
): Promise<{ reports: Map<string, AttachReport>; summary: AttachRunSummary }> {
  const t0 = performance.now();
  const statsVia = runStats();
  let verdicts = new Map<string, Attachment>();
  around(() => {
    verdicts = coll.attachAll().verdicts;
  });
  let workloadNote: string | undefined;
  if ([...verdicts.values()].some((a) => a.verdict.status === 'attached')) {
    try {
      // A TCP congestion control the object registered carries the workload's connections.
      const [cc] = tcpCongestionControls(coll.structOpsPlans);
      // The workload's TCP connections go into the sockmaps programs were attached to (sk_skb, sk_msg).
      const feeds = sockmapFeeds(coll, verdicts);
      const run = () => workload(feeds.length ? { onTcpConnection: (a, b, i) => feeds.forEach((feed) => feed(a, b, i)) } : {});
      workloadNote = await (cc ? withDefaultCongestionControl(cc, run) : run());
    } catch (e) {
      workloadNote = `workload failed: ${(e as Error).message.split('\n')[0]}`;
    }
  }
  const reports = new Map<string, AttachReport>();
  for (const [name, a] of verdicts) {
    const r: AttachReport = { ...a.verdict };
    if (a.exercise && a.verdict.status === 'attached') {
      try {
        r.note = a.exercise();
      } catch (e) {
        r.note = `running it failed: ${(e as Error).message.split('\n')[0]}`;
      }
    }
    if (statsVia && a.verdict.status === 'attached') {
      const info = coll.programs.get(name)!.info();
      if (info.runCnt !== undefined) r.runCount = Number(info.runCnt);
      if (info.runTimeNs !== undefined) r.runTimeNs = Number(info.runTimeNs);
    }
    reports.set(name, r);
  }
  const attached = [...reports.values()].filter((r) => r.status === 'attached').length;
  return { reports, summary: { attached, ...(workloadNote ? { workload: workloadNote } : {}), ...(statsVia ? { statsVia } : {}), ms: Math.round(performance.now() - t0) } };
}

/**
 * For each sockmap or sockhash a program was attached to: a function putting a connection's two
 * sockets into it (keys 2i and 2i+1), as the object's tool puts its own sockets there.
 */
export function sockmapFeeds(coll: Collection, verdicts: ReadonlyMap<string, Attachment>): ((clientFd: number, serverFd: number, index: number) => void)[] {
  const used = new Set([...verdicts.values()].flatMap((a) => (a.verdict.status === 'attached' && a.verdict.target?.startsWith('sockmap ') ? [a.verdict.target.split(' ')[1]!] : [])));
  return [...coll.maps.values()].filter((m) => used.has(m.name) && (m.type === MapType.SOCKMAP || m.type === MapType.SOCKHASH)).map((m) => feedInto(m));
}

/** A feed for one map: socket fds as values (4 or 8 bytes), consecutive integers as keys. */
export function feedInto(m: { keySize: number; valueSize: number; update: (k: Uint8Array, v: Uint8Array) => void }): (clientFd: number, serverFd: number, index: number) => void {
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
