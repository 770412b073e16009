// Subprograms are laid out as libbpf lays them out (depth first, in the order calls are met), so
// the kernel's translated instructions agree call for call: through the matrix with both loaders
// on 7.3 (TCG), libbpf in the same guest is the witness. Breadth first (our layout before) put
// b() before c() and every call offset after it differed (the selftests' test_pkt_access,
// test_subprogs, test_xdp_noinline, profiler3 and others on the whole corpus).
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { linkProgram } from '../../harness/core/object/link.js';
import type { RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { compileBpf, ensureBuilt } from '../helpers/tools.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-subprog-order-'));
let object: string;
let report: RunReport;
let out = '';

beforeAll(() => {
  ensureBuilt();
  object = join(tmp, 'subprog-order.bpf.o');
  copyFileSync(compileBpf(fileURLToPath(new URL('fixtures/subprog-order.bpf.c', import.meta.url))), object);
  ({ report, out } = runMatrixCli(['--kernels', '7.3', '--suites', 'none', '--object', object, '--loader', 'both'], join(tmp, 'out')));
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('subprogram layout', () => {
  it('is depth first, in the order calls and callbacks are met', () => {
    const linked = linkProgram(loadObjectSpec(readFileSync(object), 'subprog-order.bpf.o'), 'main_prog');
    expect(linked.layout.map((f) => f.name)).toEqual(['main_prog', 'a', 'c', 'b', 'step']);
  });

  it('gives the kernel the same translated instructions as libbpf on 7.3', () => {
    const k = report.kernels[0]!;
    expect(k.guest, out).toBe('ok');
    const lib = k.cells.find((c) => c.loader === 'libbpf' && c.program === 'main_prog')!;
    expect(lib.checks[0], lib.reason).toMatchObject({ observed: 'loaded', truth: 'loaded', ok: true });
    expect(lib.verdict).toBe('pass');
  });
});
