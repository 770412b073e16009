// Reading saved RunReports (every field type-checked by validate.ts, a one-line error naming the
// file and the bad field's JSON path) and merging shards of one matrix run into one report.
// Different schemas are refused, never guessed.

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError, UsageError } from '../core/errors.js';
import { assertSchema, RESULT_SCHEMA, type CellResult, type GuestVerdict, type KernelRun, type RunReport } from '../results.js';
import { validateRunReport } from './validate.js';

export { validateRunReport };

/** Reads and validates a report.json (or a run directory holding one); errors are one line naming the file. */
export async function readRunReport(path: string): Promise<RunReport> {
  let file = path;
  if ((await stat(path).catch(() => undefined))?.isDirectory()) file = join(path, 'report.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new FormatError(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new FormatError(`${file}: not JSON (${(err as Error).message.split('\n')[0]})${text.length === 0 ? ': empty file' : ''}`);
  }
  return validateRunReport(doc, file);
}

/**
 * Parts that say they are shards (RunReport.shard) must come from one split in n, each shard at
 * most once (else FormatError); shards of one arch's kernels (`--arch`) form a split per arch,
 * which cannot be mixed with a split of every arch. Returns the shards of the splits that are
 * missing: a merge without them is an incomplete run.
 */
export function missingShards(parts: RunReport[], names: string[] = parts.map((_, i) => `part ${i + 1}`)): string[] {
  const sharded = parts.map((p, i) => ({ s: p.shard!, name: names[i]! })).filter((x) => x.s !== undefined);
  if (sharded.length === 0) return [];
  const label = (s: NonNullable<RunReport['shard']>) => `${s.arch ? `${s.arch} ` : ''}${s.index}/${s.count}`;
  const plain = parts.findIndex((p) => p.shard === undefined);
  if (plain >= 0) throw new FormatError(`${names[plain]}: not a shard, but ${sharded[0]!.name} is shard ${label(sharded[0]!.s)}`);
  const allArches = sharded.find((x) => x.s.arch === undefined);
  const oneArch = sharded.find((x) => x.s.arch !== undefined);
  if (allArches && oneArch) throw new FormatError(`${oneArch.name}: shard ${label(oneArch.s)} splits one arch's kernels, but ${allArches.name} (${label(allArches.s)}) splits every arch's`);
  const missing: string[] = [];
  for (const arch of new Set(sharded.map((x) => x.s.arch))) {
    const split = sharded.filter((x) => x.s.arch === arch);
    const first = split[0]!;
    const seen = new Map<number, string>();
    for (const { s, name } of split) {
      if (s.count !== first.s.count) throw new FormatError(`${name}: shard ${label(s)} is not from the same split as ${first.name} (${label(first.s)})`);
      const dup = seen.get(s.index);
      if (dup !== undefined) throw new FormatError(`${name}: shard ${label(s)} is also ${dup}`);
      seen.set(s.index, name);
    }
    for (let i = 1; i <= first.s.count; i++) if (!seen.has(i)) missing.push(label({ index: i, count: first.s.count, ...(arch ? { arch } : {}) }));
  }
  return missing;
}

const GUEST_RANK: Record<GuestVerdict, number> = {
  ok: 0, 'no-kernel': 1, 'harness-error': 1, aborted: 2, 'no-btf': 2, 'agent-failed': 2, 'no-agent': 3, timeout: 4, 'agent-hang': 5, 'agent-oom': 5, 'hung-task': 6, 'qemu-died': 7, oops: 8, panic: 9,
};

function cellKey(c: CellResult): string {
  return `${c.suite}\0${c.program}\0${c.loader}`;
}

/**
 * Merges shards of one run. Kernels with the same id are joined (their cells must not overlap and
 * their package version must agree); objects, suites are unions; the run is complete only when
 * every shard is and, for reports that say they are shards, none of the split is missing. Shards
 * of another schema, or of different splits, are refused.
 */
export function mergeReports(parts: RunReport[], names: string[] = parts.map((_, i) => `part ${i + 1}`)): RunReport {
  if (parts.length === 0) throw new UsageError('report merge: no reports to merge');
  parts.forEach((p, i) => assertSchema(p, names[i]!));
  const missing = missingShards(parts, names);
  const kernels = new Map<string, KernelRun>();
  const owner = new Map<string, string>();
  for (const [i, p] of parts.entries()) {
    for (const k of p.kernels) {
      const id = k.kernel.id;
      const have = kernels.get(id);
      if (!have) {
        kernels.set(id, { ...k, kernel: { ...k.kernel }, cells: [...k.cells] });
        owner.set(id, names[i]!);
        continue;
      }
      if (have.kernel.version !== k.kernel.version || have.kernel.package !== k.kernel.package)
        throw new FormatError(`${names[i]}: kernel ${id} is ${k.kernel.package} ${k.kernel.version} but ${owner.get(id)} has ${have.kernel.package} ${have.kernel.version}`);
      const keys = new Set(have.cells.map(cellKey));
      for (const c of k.cells) {
        if (keys.has(cellKey(c))) throw new FormatError(`${names[i]}: kernel ${id} cell ${c.suite}/${c.program}[${c.loader}] is also in ${owner.get(id)}`);
        have.cells.push(c);
      }
      if (GUEST_RANK[k.guest] > GUEST_RANK[have.guest]) {
        have.guest = k.guest;
        if (k.detail !== undefined) have.detail = k.detail;
        if (k.consoleTail !== undefined) have.consoleTail = k.consoleTail;
      }
      have.durationMs += k.durationMs;
      have.bootMs ??= k.bootMs;
    }
  }
  const objects = new Map<string, { name: string; sha256: string }>();
  for (const p of parts) for (const o of p.objects) objects.set(`${o.name}\0${o.sha256}`, o);
  const ids = [...new Set(parts.map((p) => p.runId))];
  const first = parts[0]!;
  return {
    schema: RESULT_SCHEMA,
    runId: ids.join('+'),
    startedAt: parts.map((p) => p.startedAt).sort()[0]!,
    finishedAt: parts.map((p) => p.finishedAt).sort().at(-1)!,
    // A shard that never arrived (its CI job died) leaves the run incomplete, not invalid.
    complete: missing.length === 0 && parts.every((p) => p.complete),
    host: first.host,
    suites: [...new Set(parts.flatMap((p) => p.suites))],
    objects: [...objects.values()],
    kernels: [...kernels.values()],
  };
}
