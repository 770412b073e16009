// netkit programs of a user's object attach by default, through the matrix with both loaders
// (TCG): on 7.3 (netkit since 6.7) each end's program goes to the guest's netkit pair and runs
// once for each frame sent out of its end (the kernel's run count, NETKIT_FRAMES exactly), for
// ours (BPF_LINK_CREATE) and libbpf (bpf_program__attach_netkit) alike; 6.1 has no netkit: the
// programs load (a tc program's attach type is not checked there) and cannot be attached.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NETKIT_FRAMES } from '../../harness/loader/attach.js';
import type { CellResult, RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { compileBpf, ensureBuilt } from '../helpers/tools.js';

const KERNELS = ['6.1', '7.3'];
const tmp = mkdtempSync(join(tmpdir(), 'cm-netkit-'));
let report: RunReport;
let out = '';

beforeAll(() => {
  ensureBuilt();
  copyFileSync(compileBpf(fileURLToPath(new URL('fixtures/netkit.bpf.c', import.meta.url))), join(tmp, 'netkit.bpf.o'));
  ({ report, out } = runMatrixCli(['--kernels', KERNELS.join(','), '--suites', 'none', '--object', join(tmp, 'netkit.bpf.o'), '--loader', 'both', '--jobs', '2'], join(tmp, 'out')));
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cell = (kernel: string, loader: 'ours' | 'libbpf', program: string): CellResult =>
  report.kernels.find((k) => k.kernel.id === kernel)!.cells.find((c) => c.loader === loader && c.program === program)!;

describe('netkit programs on the guest\'s netkit pair, both loaders', () => {
  it('7.3: each end\'s program attaches and runs once per frame sent out of its end', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(KERNELS.map((k) => `${k}:ok`));
    for (const [program, end, side] of [['on_primary', 'cmnk0', 'primary'], ['on_peer', 'cmnk1', 'peer']] as const) {
      const ours = cell('7.3', 'ours', program);
      expect(ours.verdict, `${program}: ${ours.reason}`).toBe('pass');
      expect(ours.attach).toMatchObject({ status: 'attached', via: 'BPF_LINK_CREATE netkit', target: `netkit cmnk0 ${side}`, runCount: NETKIT_FRAMES, note: `${NETKIT_FRAMES} frames sent out of ${end}` });
      const lib = cell('7.3', 'libbpf', program);
      expect(lib.verdict, `${program}: ${lib.reason}`).toBe('pass');
      expect(lib.attach).toMatchObject({ status: 'attached', via: 'bpf_program__attach_netkit', runCount: NETKIT_FRAMES });
    }
  });

  it('6.1 has no netkit: both loaders load the programs (the kernel ignores a tc program\'s attach type there), and neither can attach them: the pair cannot be made', () => {
    for (const program of ['on_primary', 'on_peer']) {
      const ours = cell('6.1', 'ours', program);
      expect(ours.verdict).toBe('fail');
      expect(ours.attach).toMatchObject({ status: 'failed', reason: expect.stringMatching(/netkit devices and links need Linux 6\.7 \(this kernel: 6\.1\./) });
      const lib = cell('6.1', 'libbpf', program);
      expect(lib.verdict, 'libbpf agrees with us').toBe('pass');
      expect(lib.checks[0]?.observed).toBe('loaded');
      expect(lib.attach?.status).toBe('failed');
    }
  });
});
