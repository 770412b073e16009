// Loads the vmlinux BTF of matrix kernels for `btf join`, oldest first (matrix order), so the
// last one is the newest and keeps the plain type names.
import { readFileSync } from 'node:fs';
import { parseBtf } from '../core/btf/btf.js';
import { UsageError, wrap } from '../core/errors.js';
import { KernelStore } from '../kernels/store.js';
import type { JoinInput } from './join.js';

export async function loadKernelBtfs(selectors: string[], store = new KernelStore()): Promise<JoinInput[]> {
  const order = store.select(['all']).map((e) => e.id);
  // One arch's layouts per header: `all` is the amd64 kernels (the arm64 ones are asked for by id).
  const picked = [...store.select(selectors)].filter((e) => !selectors.includes('all') || (e.arch ?? 'amd64') === 'amd64');
  const arches = [...new Set(picked.map((e) => e.arch ?? 'amd64'))];
  if (arches.length > 1) throw new UsageError(`btf join: kernels of one arch at a time, not ${arches.join(' and ')} (${picked.map((e) => e.id).join(', ')})`);
  const entries = picked.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  const out: JoinInput[] = [];
  for (const e of entries) {
    try {
      const a = await store.fetch(e.id);
      out.push({ id: e.id, btf: parseBtf(readFileSync(a.btf), { source: `${e.id} BTF (${a.btf})` }) });
    } catch (err) {
      throw wrap(`kernel ${e.id}`, err);
    }
  }
  return out;
}
