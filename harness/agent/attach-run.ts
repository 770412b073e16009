// Attach, run, count: after an object's programs are loaded, attach each one as its tool would
// (loader/attach.ts), run the standard workload once for the whole object (and what the
// object's config adds), let the on-demand programs run (iterators read, syscall programs
// test-run), then read from the kernel how often each program ran and how long it took
// (bpf_prog_info run_cnt / run_time_ns, with run statistics on). The links close with the
// collection.

import type { AttachResult } from '../results.js';
import type { Attachment } from '../loader/attach.js';
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
  coll: Collection, workload: () => Promise<string>, around: (attach: () => void) => void = (f) => f(),
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
      workloadNote = await (cc ? withDefaultCongestionControl(cc, workload) : workload());
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
