// Cells from the reference loader: each object loaded by Debian's libbpf in this guest. With
// `both`, every program is compared with our loader's load in the same kernel (verdict and the
// kernel's translated instructions); any difference fails the cell and names the first
// differing instruction and both loaders' relocation decisions.
import { readFileSync } from 'node:fs';
import { differential, type DifferentialOptions } from '../reference/differential.js';
import { loadWithLibbpf } from '../reference/libbpf.js';
import { RESULT_SCHEMA, type CellResult, type KernelInfo } from '../results.js';

export interface ReferenceObject {
  suite: string;
  path: string;
  name: string;
  sha256: string;
  programs?: string[];
}

export function referenceCells(o: ReferenceObject, kernel: KernelInfo, mode: 'libbpf' | 'both', opts: Omit<DifferentialOptions, 'programs'>): CellResult[] {
  const base = (program: string): CellResult => ({
    schema: RESULT_SCHEMA, kernel, suite: o.suite, program, loader: 'libbpf', object: { name: o.name, sha256: o.sha256 },
    verdict: 'pass', relocations: [], externs: [], checks: [], timings: { loadMs: 0, runMs: 0 },
  });
  try {
    const bytes = readFileSync(o.path);
    if (mode === 'libbpf') {
      const ref = loadWithLibbpf(bytes, o.name, { programs: o.programs, btfCustomPath: opts.btfCustomPath, ...(opts.library ? { library: opts.library } : {}), ...(opts.configured ? { configure: opts.configured.settings } : {}) });
      ref.close();
      return ref.outcomes.map((r) => {
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
    }
    const d = differential(bytes, o.name, { ...opts, programs: o.programs });
    return d.comparisons.map((c) => {
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
  } catch (e) {
    const cell = base('(object)');
    cell.verdict = 'error';
    cell.reason = `reference loader: ${(e as Error).message.split('\n')[0]}`;
    return [cell];
  }
}
