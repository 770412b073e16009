// Cells from the reference loader: each object loaded by Debian's libbpf in this guest. With
// `both`, every program is compared with our loader's load in the same kernel (verdict and the
// kernel's translated instructions); any difference fails the cell and names the first
// differing instruction and both loaders' relocation decisions.
import { readFileSync } from 'node:fs';
import { differential, type DifferentialOptions } from '../reference/differential.js';
import { loadWithLibbpf, type ReferenceLoad } from '../reference/libbpf.js';
import { loadObjectSpec } from '../core/object/load.js';
import type { ObjectSpec } from '../core/object/types.js';
import { runAlone, type RunMember, type RunOutcome, type Workload } from './attach-run.js';
import { attachWithLibbpf, libbpfProgramInfo } from '../reference/libbpf-attach.js';
import { RESULT_SCHEMA, WHOLE_OBJECT, type AttachResult, type CellResult, type KernelInfo } from '../results.js';
import { DEFAULTS, type Attachment } from '../loader/attach.js';
import { interfaceIndex } from '../runtime/netlink.js';

export interface ReferenceObject {
  suite: string;
  path: string;
  name: string;
  sha256: string;
  programs?: string[];
}

/**
 * The libbpf cells of one object. With `keepReference`, libbpf's load stays open and is returned
 * as `live` (the caller attaches, runs and closes it); otherwise everything is closed.
 */
export function referenceCells(o: ReferenceObject, kernel: KernelInfo, mode: 'libbpf' | 'both', opts: Omit<DifferentialOptions, 'programs'>): { cells: CellResult[]; live?: ReferenceLoad; spec?: ObjectSpec } {
  const base = (program: string): CellResult => ({
    schema: RESULT_SCHEMA, kernel, suite: o.suite, program, loader: 'libbpf', object: { name: o.name, sha256: o.sha256 },
    verdict: 'pass', relocations: [], externs: [], checks: [], timings: { loadMs: 0, runMs: 0 },
  });
  try {
    const bytes = readFileSync(o.path);
    if (mode === 'libbpf') {
      const ref = loadWithLibbpf(bytes, o.name, { programs: o.programs, btfCustomPath: opts.btfCustomPath, ...(opts.library ? { library: opts.library } : {}), ...(opts.configured ? { configure: opts.configured.settings } : {}) });
      if (!opts.keepReference) ref.close();
      const cells = ref.outcomes.map((r) => {
        const cell = base(r.name);
        cell.timings.loadMs = r.loadMs;
        if (r.xlated) cell.xlated = r.xlated;
        if (r.insnsProcessed !== undefined || r.verifierLog) cell.verifier = { insnsProcessed: r.insnsProcessed, logTail: r.verifierLog?.trimEnd().split('\n').slice(-30).join('\n') };
        if (r.status === 'not-loaded') {
          cell.verdict = 'expected-skip';
          cell.reason = `${r.libbpf}: ${r.reason ?? 'not loaded'}`;
        } else if (r.status !== 'loaded') {
          cell.verdict = 'fail';
          cell.reason = `${r.libbpf}: ${r.status}: ${r.reason ?? ''}`;
        }
        return cell;
      });
      return { cells, ...(opts.keepReference ? { live: ref } : {}) };
    }
    // Parsed once here: the differential loads it, and the caller attaches libbpf's load by its programs.
    let parsed: ObjectSpec | undefined;
    try {
      parsed = opts.configured?.spec ?? loadObjectSpec(bytes, o.name);
    } catch {
      // unreadable by ours: the differential says so, program by program
    }
    const d = differential(bytes, o.name, { ...opts, programs: o.programs, ...(parsed ? { parsed } : {}) });
    const cells = d.comparisons.map((c) => {
      const ours = d.ours.find((x) => x.name === c.program);
      const theirs = d.reference.find((x) => x.name === c.program);
      const cell = base(c.program);
      cell.relocations = ours?.relocations ?? [];
      cell.timings.loadMs = theirs?.loadMs ?? 0;
      if (theirs?.xlated) cell.xlated = theirs.xlated;
      if (theirs?.insnsProcessed !== undefined) cell.verifier = { insnsProcessed: theirs.insnsProcessed };
      cell.checks = [{ name: 'same verdict and translated instructions as our loader', observed: c.theirs, truth: c.ours, ok: c.verdict === 'same', source: `${theirs?.libbpf ?? 'libbpf'} in this guest vs our loader, BPF_OBJ_GET_INFO_BY_FD xlated` }];
      if (c.verdict !== 'same') {
        cell.verdict = 'fail';
        cell.reason = c.line;
      } else if (theirs && theirs.status !== 'loaded' && theirs.status !== 'not-loaded') {
        // Both refuse it: the cell still says libbpf's words, as a libbpf-only run would.
        cell.reason = `both refuse it; ${theirs.libbpf}: ${theirs.status}: ${theirs.reason ?? ''}`;
      }
      if (theirs?.verifierLog && theirs.status !== 'loaded') cell.verifier = { ...cell.verifier, logTail: theirs.verifierLog.trimEnd().split('\n').slice(-30).join('\n') };
      return cell;
    });
    return { cells, ...(d.live ? { live: d.live } : {}), ...(parsed ? { spec: parsed } : {}) };
  } catch (e) {
    const cell = base(WHOLE_OBJECT);
    cell.verdict = 'error';
    cell.reason = `reference loader: ${(e as Error).message.split('\n')[0]}`;
    return { cells: [cell] };
  }
}

/** What libbpfAttachRun is told besides the object: how to attach and run it, and what to do with its attachments after. */
export interface LibbpfRunOptions {
  around: (attach: () => void) => void;
  aroundRun?: RunMember['aroundRun'];
  workload: Workload;
  join?: (m: RunMember) => Promise<RunOutcome>;
  /** Wraps the object's part in the run (a freplace into another object's program counts and runs through that program). */
  wrap?: (m: RunMember) => RunMember;
  /**
   * Keeps the attachments after the run instead of detaching them: an object whose programs later
   * objects replace functions of stays attached until they are done. Called once the run is over;
   * `detach` is then the caller's to call.
   */
  keepAttached?: (attachments: ReadonlyMap<string, Attachment>, detach: () => void) => void;
}

/**
 * libbpf attaches what it loaded (reference/libbpf-attach.ts) and the workload runs under it, as
 * under ours (attach-run.ts); each libbpf cell gets libbpf's attach result, and a verdict that
 * differs from ours for the same program fails the cell, naming both. `live` stays open (the
 * caller closes it).
 */
export async function libbpfAttachRun(
  live: ReferenceLoad, spec: ObjectSpec, cells: CellResult[], ours: ReadonlyMap<string, AttachResult> | undefined, o: LibbpfRunOptions,
): Promise<void> {
  let att: ReturnType<typeof attachWithLibbpf> | undefined;
  let kept = false;
  try {
    const plain: RunMember = {
      attach: () => {
        o.around(() => {
          // The same defaults our attacher uses (loader/attach.ts), through libbpf's own API.
          att = attachWithLibbpf(live, spec.programs, { structOps: spec.structOps, ifindexLo: () => interfaceIndex(DEFAULTS.interface), cgroupDir: DEFAULTS.cgroup, netfilter: DEFAULTS.netfilter });
        });
        return att!.attachments;
      },
      runCounts: (name) => libbpfProgramInfo(live, name),
      ...(o.aroundRun ? { aroundRun: o.aroundRun } : {}),
    };
    const member = o.wrap ? o.wrap(plain) : plain;
    // Alone, or queued to share a run of the workload with other observing objects.
    const { results } = await (o.join ? o.join(member) : runAlone(member, o.workload));
    for (const cell of cells) {
      const a = results.get(cell.program);
      if (!a) continue;
      const notCompared = att!.attachments.get(cell.program)?.notCompared;
      if (notCompared) a.note ??= notCompared;
      cell.attach = a;
      const mine = ours?.get(cell.program);
      if (mine && !notCompared && mine.status !== a.status && cell.verdict === 'pass') {
        cell.verdict = 'fail';
        cell.reason = `attach differs: libbpf ${a.status}${a.reason ? ` (${a.reason})` : ''}, ours ${mine.status}${mine.reason ? ` (${mine.reason})` : ''}`;
      }
    }
    if (o.keepAttached && att) {
      o.keepAttached(att.attachments, att.detach);
      kept = true;
    }
  } finally {
    if (!kept) att?.detach();
  }
}
