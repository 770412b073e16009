// Runs once before any test file: puts every kernel of the default matrix into the store, the
// custom one (6.12-nonetns, built from linux-source-6.12: 6 to 8 minutes on 2 cores the first
// time, then cached by recipe hash) included. Without this, several test files would wait on the
// same build lock at once, each under its own hook timeout. A kernel that cannot be had (no
// network, empty cache) is said once here and fails the tests that need it, not the pure ones.
import { KernelStore } from '../harness/kernels/store.js';

export default async function setup(): Promise<void> {
  const t0 = Date.now();
  const store = new KernelStore({ log: (l) => process.stderr.write(`[test setup] ${l}\n`) });
  for (const e of store.select(['all'])) {
    try {
      await store.fetch(e);
    } catch (err) {
      process.stderr.write(`[test setup] kernel ${e.id} is not available: ${(err as Error).message.split('\n')[0]}\n`);
    }
  }
  const s = (Date.now() - t0) / 1000;
  if (s > 5) process.stderr.write(`[test setup] kernel store ready in ${s.toFixed(0)} s\n`);
}
