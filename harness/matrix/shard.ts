// Sharding a matrix run across CI jobs: `--shard i/n` keeps the kernels whose position in the
// selected list is ≡ i-1 (mod n). Deterministic (same selection, same shards), and the n shards
// partition the selection: every kernel runs in exactly one of them. With `--arch`, the split is
// of that arch's kernels only (the nightly gives the arm64 kernels a shard of their own), and the
// report records the arch with the shard, so that `report merge` checks each arch's split apart.
import { UsageError } from '../core/errors.js';
import type { DebianArch } from '../kernels/arch.js';

export interface Shard {
  /** 1-based. */
  index: number;
  count: number;
  /** The split is of this arch's kernels only (`--arch`). */
  arch?: DebianArch;
}

/** Parses `i/n` (1 ≤ i ≤ n); anything else is a one-line UsageError. */
export function parseShard(spec: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  if (!m) throw new UsageError(`--shard must be i/n (e.g. 2/4), not '${spec}'`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1) throw new UsageError(`--shard ${spec}: the shard count must be at least 1`);
  if (index < 1 || index > count) throw new UsageError(`--shard ${spec}: the shard index must be between 1 and ${count}`);
  return { index, count };
}

/** The items of shard `s`: item k (0-based) goes to shard (k mod n) + 1. */
export function shardOf<T>(items: readonly T[], s: Shard): T[] {
  return items.filter((_, k) => k % s.count === s.index - 1);
}
