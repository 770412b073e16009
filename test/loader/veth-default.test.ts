// XDP programs of a user's object attach by default where XDP runs on real machines, a driver's
// own hook: through the matrix with both loaders (TCG), on 5.10 and 7.3, an object's first xdp
// program goes to the guest's veth pair (cmv1, driver mode) and runs once for each frame sent into
// that end from the other after the workload (the kernel's run count, XDP_FRAMES exactly: nothing
// else crosses the pair); the second goes to lo in generic mode, run by the workload's loopback
// traffic; a third finds both interfaces taken (each holds one XDP program). Ours asks for driver
// mode (BPF_LINK_CREATE with XDP_FLAGS_DRV_MODE); libbpf's bpf_program__attach_xdp passes no mode,
// and its target names the mode the kernel reports for the program on the interface (IFLA_XDP):
// both must say the same. Before this, every xdp program went to lo (generic), ran on the
// workload's traffic (tens of runs), and the second and third were not attachable.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XDP_FRAMES } from '../../harness/loader/attach.js';
import type { CellResult, RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { compileBpf, ensureBuilt } from '../helpers/tools.js';

const KERNELS = ['5.10', '7.3'];
const LOADERS = ['ours', 'libbpf'] as const;
const tmp = mkdtempSync(join(tmpdir(), 'cm-veth-'));
let report: RunReport;
let out = '';

beforeAll(() => {
  ensureBuilt();
  copyFileSync(compileBpf(fileURLToPath(new URL('fixtures/veth_xdp.bpf.c', import.meta.url))), join(tmp, 'veth_xdp.bpf.o'));
  ({ report, out } = runMatrixCli(['--kernels', KERNELS.join(','), '--suites', 'none', '--object', join(tmp, 'veth_xdp.bpf.o'), '--loader', 'both', '--jobs', '1'], join(tmp, 'out')));
}, 900_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cell = (kernel: string, loader: 'ours' | 'libbpf', program: string): CellResult =>
  report.kernels.find((k) => k.kernel.id === kernel)!.cells.find((c) => c.loader === loader && c.program === program)!;

describe('xdp programs on the guest\'s veth pair in driver mode, then lo, both loaders', () => {
  it('both guests ran', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(KERNELS.map((k) => `${k}:ok`));
  });

  for (const kernel of KERNELS) {
    it(`${kernel}: the first xdp program is on cmv1 in driver mode and ran once per frame sent into it, for both loaders`, () => {
      for (const loader of LOADERS) {
        const c = cell(kernel, loader, 'xdp_veth');
        expect(c.verdict, `${loader}: ${c.reason}`).toBe('pass');
        expect(c.attach, loader).toMatchObject({
          status: 'attached', target: 'xdp cmv1 (drv)', runCount: XDP_FRAMES,
          via: loader === 'ours' ? 'BPF_LINK_CREATE' : 'bpf_program__attach_xdp',
          note: `${XDP_FRAMES} frames sent out of cmv0 into cmv1`,
        });
      }
    });

    it(`${kernel}: the second is on lo in generic mode and ran on the workload's traffic; the third finds both taken`, () => {
      for (const loader of LOADERS) {
        const lo = cell(kernel, loader, 'xdp_lo');
        expect(lo.verdict, `${loader}: ${lo.reason}`).toBe('pass');
        expect(lo.attach, loader).toMatchObject({ status: 'attached', target: 'xdp lo (skb)' });
        expect(lo.attach!.runCount, `${loader}: lo's XDP hook saw the workload's loopback packets`).toBeGreaterThan(0);
        const third = cell(kernel, loader, 'xdp_third');
        expect(third.attach, loader).toMatchObject({
          status: 'not-attachable',
          reason: 'xdp cmv1 (drv) and xdp lo (skb) hold one program each, and xdp_veth and xdp_lo of this object are attached there',
        });
      }
    });
  }
});
