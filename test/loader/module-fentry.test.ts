// fentry/fexit on a function of a kernel module, through the matrix with both loaders (TCG):
// null_blk's null_queue_rq (a blk-mq callback) on 6.1 and 7.3, named alone and as
// `null_blk:null_queue_rq`. Ours finds it in the module's BTF and loads with attach_btf_obj_fd;
// the current libbpf, in the same guest, is the witness: both load, both attach, and the kernel's
// run counts (the workload's block write through /dev/nullb0) agree between the two programs and
// the two loaders. 5.10 has no module BTF: both loaders refuse, ours saying why.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CellResult, RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { compileBpf, ensureBuilt } from '../helpers/tools.js';

const KERNELS = ['5.10', '6.1', '7.3'];
const OBJECT = 'module-fentry.bpf.o';
const tmp = mkdtempSync(join(tmpdir(), 'cm-modfentry-'));
let report: RunReport;
let out = '';

beforeAll(() => {
  ensureBuilt();
  copyFileSync(compileBpf(fileURLToPath(new URL('fixtures/module-fentry.bpf.c', import.meta.url))), join(tmp, OBJECT));
  ({ report, out } = runMatrixCli(['--kernels', KERNELS.join(','), '--suites', 'none', '--object', join(tmp, OBJECT), '--loader', 'both', '--jobs', '2'], join(tmp, 'out')));
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cell = (kernel: string, loader: 'ours' | 'libbpf', program: string): CellResult =>
  report.kernels.find((k) => k.kernel.id === kernel)!.cells.find((c) => c.loader === loader && c.program === program)!;

describe('fentry/fexit on a module function (null_blk), both loaders', () => {
  it('6.1 and 7.3: both load and attach both programs; every call the fentry saw, the fexit saw, and libbpf counted the same', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(KERNELS.map((k) => `${k}:ok`));
    for (const k of ['6.1', '7.3']) {
      const entry = cell(k, 'ours', 'on_queue_rq');
      const exit = cell(k, 'ours', 'after_queue_rq');
      for (const c of [entry, exit]) expect(c.verdict, `${k} ${c.program}: ${c.reason}`).toBe('pass');
      expect(entry.attach, k).toMatchObject({ status: 'attached', via: 'BPF_LINK_CREATE', target: 'fentry null_queue_rq' });
      expect(exit.attach, k).toMatchObject({ status: 'attached', via: 'BPF_LINK_CREATE', target: 'fexit null_blk:null_queue_rq' });
      // The workload writes 64 KiB to /dev/nullb0 and fsyncs: at least one request is queued.
      expect(entry.attach!.runCount, k).toBeGreaterThanOrEqual(1);
      expect(exit.attach!.runCount, k).toBe(entry.attach!.runCount);
      for (const p of ['on_queue_rq', 'after_queue_rq']) {
        const lib = cell(k, 'libbpf', p);
        expect(lib.verdict, `${k} ${p}: ${lib.reason}`).toBe('pass');
        expect(lib.checks[0]?.observed, `${k} ${p}`).toBe('loaded');
        expect(lib.attach, `${k} ${p}`).toMatchObject({ status: 'attached', via: 'bpf_program__attach', runCount: entry.attach!.runCount });
      }
    }
  });

  it('5.10 exposes no module BTF: ours refuses each program saying so, and libbpf refuses them too', () => {
    expect(cell('5.10', 'ours', 'on_queue_rq').reason).toMatch(/attach target null_queue_rq is not in the kernel's or its loaded modules' BTF \(this kernel exposes no module BTF\)/);
    expect(cell('5.10', 'ours', 'after_queue_rq').reason).toMatch(/attach target null_blk:null_queue_rq is not in the BTF of module null_blk \(this kernel exposes no module BTF\)/);
    for (const p of ['on_queue_rq', 'after_queue_rq']) {
      const lib = cell('5.10', 'libbpf', p);
      expect(lib.verdict, `libbpf agrees with our refusal of ${p}`).toBe('pass');
      expect(lib.checks[0]?.observed).not.toBe('loaded');
    }
  });
});
