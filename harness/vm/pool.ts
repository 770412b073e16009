// Runs work items (guest boots) with bounded parallelism. Results keep the items' order.
// If one item throws (bad input, abort), the others are told to stop through their AbortSignal,
// every started item is waited for (so no QEMU is left running), and the first error is thrown.
import { availableParallelism } from 'node:os';

/** One guest per core: TCG guests are CPU-bound. */
export function defaultJobs(): number {
  return Math.max(1, availableParallelism());
}

export async function runPool<T, R>(items: T[], jobs: number, fn: (item: T, signal: AbortSignal) => Promise<R>, outer?: AbortSignal): Promise<R[]> {
  const ctl = new AbortController();
  const onOuter = () => ctl.abort(outer?.reason);
  if (outer?.aborted) ctl.abort(outer.reason);
  else outer?.addEventListener('abort', onOuter, { once: true });
  const results = new Array<R>(items.length);
  let next = 0;
  let firstError: { err: unknown } | undefined;
  const worker = async () => {
    while (!ctl.signal.aborted) {
      const i = next++;
      if (i >= items.length) return;
      try {
        results[i] = await fn(items[i]!, ctl.signal);
      } catch (err) {
        firstError ??= { err };
        ctl.abort(err);
      }
    }
  };
  const n = Math.max(1, Math.min(Math.floor(jobs) || 1, items.length));
  try {
    await Promise.all(Array.from({ length: n }, worker));
  } finally {
    outer?.removeEventListener('abort', onOuter);
  }
  if (firstError) throw firstError.err;
  if (ctl.signal.aborted) throw ctl.signal.reason;
  return results;
}
