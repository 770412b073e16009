// Cells from the reference loader: each object loaded by Debian's libbpf in this guest. With
// `both`, every program is compared with our loader's load in the same kernel (verdict and the
// kernel's translated instructions); any difference fails the cell and names the first
// differing instruction and both loaders' relocation decisions.
import { readFileSync } from 'node:fs';
import { differential, type DifferentialOptions } from '../reference/differential.js';
import { loadWithLibbpf, type ReferenceLoad } from '../reference/libbpf.js';
import type { ObjectSpec } from '../core/object/types.js';
import { withDefaultCongestionControl } from '../loader/struct-ops.js';
import { BpfMap, MapType } from '../runtime/index.js';
import { feedInto } from './attach-run.js';
import type { WorkloadOptions } from './workload.js';
import { attachCheck, attachWithLibbpf, libbpfRunCounts } from '../reference/libbpf-attach.js';
import { RESULT_SCHEMA, type AttachResult, type CellResult, type KernelInfo } from '../results.js';
import { DEFAULTS } from '../loader/attach.js';
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
export function referenceCells(o: ReferenceObject, kernel: KernelInfo, mode: 'libbpf' | 'both', opts: Omit<DifferentialOptions, 'programs'>): { cells: CellResult[]; live?: ReferenceLoad } {
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
    const d = differential(bytes, o.name, { ...opts, programs: o.programs });
    const cells = d.comparisons.map((c) => {
      const ours = d.ours.find((x) => x.name === c.program);
      const theirs = d.reference.find((x) => x.name === c.program);
      const cell = base(c.program);
      cell.relocations = ours?.relocations ?? [];
      cell.timings.loadMs = theirs?.loadMs ?? 0;
      if (theirs?.xlated) cell.xlated = theirs.xlated;
      if (theirs?.insnsProcessed !== undefined) cell.verifier = { insnsProcessed: theirs.insnsProcessed };
      cell.checks = [{ name: 'same verdict and translated instructions as our loader', observed: theirs?.status ?? 'missing', truth: ours?.status ?? 'missing', ok: c.verdict === 'same', source: `${theirs?.libbpf ?? 'libbpf'} in this guest vs our loader, BPF_OBJ_GET_INFO_BY_FD xlated` }];
      if (c.verdict !== 'same') {
        cell.verdict = 'fail';
        cell.reason = c.line;
      }
      return cell;
    });
    return { cells, ...(d.live ? { live: d.live } : {}) };
  } catch (e) {
    const cell = base('(object)');
    cell.verdict = 'error';
    cell.reason = `reference loader: ${(e as Error).message.split('\n')[0]}`;
    return { cells: [cell] };
  }
}

/**
 * libbpf attaches what it loaded (reference/libbpf-attach.ts), the workload runs once under it,
 * and each libbpf cell gets its attach result with libbpf's run counts and a check against our
 * attach verdict for the same program; a disagreement fails the cell. `live` stays open (the caller closes it).
 */
export async function libbpfAttachRun(
  live: ReferenceLoad, spec: ObjectSpec, cells: CellResult[], ours: ReadonlyMap<string, AttachResult> | undefined,
  o: { around: (attach: () => void) => void; workload: (hooks: { onTcpConnection?: WorkloadOptions['onTcpConnection'] }) => Promise<void> },
): Promise<void> {
  let att: ReturnType<typeof attachWithLibbpf> | undefined;
  const before = availableCongestionControls();
  o.around(() => {
    // The same defaults our attacher uses (loader/attach.ts), through libbpf's own API.
    att = attachWithLibbpf(live, spec.programs, { structOps: spec.structOps, ifindexLo: () => interfaceIndex(DEFAULTS.interface), cgroupDir: DEFAULTS.cgroup, netfilter: DEFAULTS.netfilter });
  });
  try {
    const { attachments } = att!;
    if ([...attachments.values()].some((x) => x.verdict.status === 'attached')) {
      // A TCP congestion control libbpf registered (new in the kernel's list) carries the workload's connections.
      const [cc] = registeredCongestionControls(before);
      // The workload's TCP connections go into the sockmaps libbpf attached programs to, as ours did.
      const feeds = [...attachments].flatMap(([program, x]) => {
        const name = x.verdict.status === 'attached' && x.verdict.target?.startsWith('sockmap ') ? x.verdict.target.split(' ')[1]! : undefined;
        const fd = name ? live.mapFd(program, name) : undefined;
        if (fd === undefined || fd < 0) return [];
        // A view of libbpf's map for its sizes and updates; libbpf owns the fd (never closed here).
        const i = new BpfMap(fd, MapType.UNSPEC, 0, 0, 0, 0, name!).info();
        return [feedInto(new BpfMap(fd, i.type, i.keySize, i.valueSize, i.maxEntries, i.flags, name!))];
      });
      const run = () => o.workload(feeds.length ? { onTcpConnection: (a, b, n) => feeds.forEach((f) => f(a, b, n)) } : {});
      await (cc ? withDefaultCongestionControl(cc, run) : run());
    }
    const notes = new Map<string, string>();
    for (const [name, x] of attachments) {
      if (!x.exercise || x.verdict.status !== 'attached') continue;
      try {
        notes.set(name, x.exercise());
      } catch (e) {
        notes.set(name, `running it failed: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    const counts = libbpfRunCounts(live);
    for (const cell of cells) {
      const x = attachments.get(cell.program);
      if (!x) continue;
      const a: AttachResult = { ...x.verdict };
      if (x.verdict.status === 'attached') Object.assign(a, counts.get(cell.program));
      const note = notes.get(cell.program) ?? x.notCompared;
      if (note) a.note = note;
      cell.attach = a;
      const check = attachCheck(ours?.get(cell.program), a, x.notCompared);
      if (!check) continue;
      cell.checks.push(check);
      if (!check.ok && cell.verdict === 'pass') {
        cell.verdict = 'fail';
        cell.reason = `attach differs: libbpf ${check.observed}${a.reason ? ` (${a.reason})` : ''}, ours ${check.truth}${ours?.get(cell.program)?.reason ? ` (${ours.get(cell.program)!.reason})` : ''}`;
      }
    }
  } finally {
    att?.detach();
  }
}

const AVAILABLE_CC = '/proc/sys/net/ipv4/tcp_available_congestion_control';
/** The kernel's registered TCP congestion controls. */
function availableCongestionControls(): string[] {
  try {
    return readFileSync(AVAILABLE_CC, 'utf8').trim().split(/\s+/);
  } catch {
    return [];
  }
}
/** Congestion controls registered since `before` was read. */
function registeredCongestionControls(before: readonly string[]): string[] {
  return availableCongestionControls().filter((c) => !before.includes(c));
}
