// Objects that only observe share one run of the workload (agent/observers.ts), through the matrix
// with both loaders, in real 5.10 and 7.3 guests (TCG). Three copies of one object with a kprobe on
// vfs_rename, which the workload calls exactly once: two copies share a run, the third runs alone
// (its config adds a workload command, which renames nothing). The kernel's run count is 1 for
// every copy and both loaders: sharing the run changed no count.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { compileBpf, ensureBuilt } from '../helpers/tools.js';

const KERNELS = ['5.10', '7.3'];
const SHARED = ['watch-a.bpf.o', 'watch-b.bpf.o'];
const ALONE = 'watch-alone.bpf.o';
const tmp = mkdtempSync(join(tmpdir(), 'cm-shared-run-'));
let report: RunReport;
let out = '';

beforeAll(() => {
  ensureBuilt();
  const object = compileBpf(fileURLToPath(new URL('fixtures/observer.bpf.c', import.meta.url)));
  for (const n of [...SHARED, ALONE]) copyFileSync(object, join(tmp, n));
  writeFileSync(join(tmp, 'watch-alone.bpf.yaml'), 'workload:\n  - "true"\n');
  const objects = [SHARED[0]!, ALONE, SHARED[1]!].flatMap((n) => ['--object', join(tmp, n)]);
  ({ report, out } = runMatrixCli(['--kernels', KERNELS.join(','), '--suites', 'none', ...objects, '--loader', 'both', '--jobs', '2'], join(tmp, 'out')));
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('observing objects share a run of the workload (5.10, 7.3, both loaders)', () => {
  it('every copy of the vfs_rename kprobe ran exactly once, shared or alone, for ours and libbpf', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(KERNELS.map((k) => `${k}:ok`));
    for (const k of report.kernels) {
      expect(k.cells).toHaveLength(6);
      for (const c of k.cells) {
        expect(c.verdict, `${k.kernel.id} ${c.object.name} ${c.loader}: ${c.reason}`).toBe('pass');
        expect(c.attach, `${k.kernel.id} ${c.object.name} ${c.loader}`).toMatchObject({ status: 'attached', target: expect.stringContaining('vfs_rename'), runCount: 1 });
      }
    }
  });

  it('the guest says which of our runs were shared: the two plain copies; the configured one ran alone', () => {
    for (const k of KERNELS) {
      const log = readFileSync(join(tmp, 'out', 'guests', `${k}.ttyS1.log`), 'utf8');
      const lines = [...log.matchAll(/"msg":"agent: (watch-[a-z]+\.bpf\.o): 1 attached; workload ok in [\d.]+ ms([^;]*);/g)].map((m) => `${m[1]}${m[2]}`);
      expect(lines, k).toEqual([`${ALONE}`, `${SHARED[0]}, shared by 2 objects that only observe`, `${SHARED[1]}, shared by 2 objects that only observe`]);
    }
  });
});
