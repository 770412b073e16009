// The whole pipeline on real kernels: compile the suites once, build images, boot 5.10 and 6.1
// under QEMU (TCG), load the same objects with our loader in each guest (modules the suites need
// loaded first), and check what the
// programs observed against ground truth each guest measured itself.
import { mkdtempSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runMatrix, runPassed } from '../../harness/matrix/run.js';
import type { RunReport } from '../../harness/results.js';
import { writeReports } from '../../harness/report/index.js';

const KERNELS = ['5.10', '6.1'];
const SUITES = ['task-fields', 'kconfig', 'globals', 'renamed-field', 'kernel-version', 'module-btf', 'block-io'];

let report: RunReport;
let out: string;
const partials: RunReport[] = [];
beforeAll(async () => {
  out = mkdtempSync(join(tmpdir(), 'cm-e2e-'));
  report = await runMatrix({
    kernels: KERNELS, suites: SUITES, jobs: 2, accel: 'tcg', outDir: out, runId: 'e2e', loader: 'both',
    log: (l) => console.log(l), progress: (k, s) => console.log(`[${k}] ${s}`), onKernelDone: (p) => partials.push(p),
  });
}, 1_500_000);

describe('matrix on 5.10 and 6.1 (TCG)', () => {
  it('boots both kernels and every cell passes', () => {
    const bad = report.kernels.flatMap((k) => [
      ...(k.guest === 'ok' ? [] : [`${k.kernel.id}: guest ${k.guest}: ${k.detail}\n${k.consoleTail ?? ''}`]),
      ...k.cells.filter((c) => c.verdict !== 'pass' && c.verdict !== 'expected-skip').map((c) => `${k.kernel.id} ${c.suite}/${c.program}: ${c.verdict}: ${c.reason}`),
    ]);
    expect(bad).toEqual([]);
    expect(report.kernels.map((k) => k.kernel.id)).toEqual(KERNELS);
    for (const k of report.kernels) expect(new Set(k.cells.map((c) => c.suite))).toEqual(new Set(SUITES));
    // Every suite program was also loaded by libbpf in the same guest, with identical xlated code.
    for (const k of report.kernels) {
      const ref = k.cells.filter((c) => c.loader === 'libbpf');
      expect(ref.map((c) => c.suite).sort()).toEqual([...SUITES].sort());
      for (const c of ref.filter((x) => x.verdict !== 'expected-skip')) expect(c.checks[0]?.ok, `${k.kernel.id} ${c.suite}: ${c.reason}`).toBe(true);
    }
    expect(runPassed(report)).toBe(true);
  });

  it('hands over the report so far when the first kernel finishes: incomplete, that kernel only, its final cells', () => {
    expect(partials).toHaveLength(1);
    const [p] = partials;
    expect(p!.complete).toBe(false);
    expect(p!.kernels).toHaveLength(1);
    const done = p!.kernels[0]!;
    expect(report.kernels.find((k) => k.kernel.id === done.kernel.id)!.cells).toEqual(done.cells);
  });

  it('loads the same object bytes everywhere and relocates them differently', () => {
    const cells = (id: string) => report.kernels.find((k) => k.kernel.id === id)!.cells;
    const tf = KERNELS.map((id) => cells(id).find((c) => c.suite === 'task-fields' && c.loader === 'ours')!);
    expect(tf[0]!.object.sha256).toBe(tf[1]!.object.sha256);
    const pid = tf.map((c) => c.relocations.find((r) => r.kind === 'byte_off' && r.spec === 'pid')!);
    expect(pid[0]!.status).toBe('ok');
    expect(pid[0]!.target).not.toBe(pid[1]!.target);
  });

  it('opens each kernel\'s BTF from the host\'s index, having found the kernel\'s bytes equal to the package\'s (6.1 reads them with bpf(), 5.10 from sysfs)', () => {
    for (const id of KERNELS) {
      const log = readFileSync(join(out, 'guests', `${id}.ttyS1.log`), 'utf8');
      expect(log, id).toContain("kernel BTF opened from the host's index");
      expect(log, id).toContain(id === '5.10' ? '(read from /sys/kernel/btf/vmlinux)' : '(read with bpf(BPF_OBJ_GET_INFO_BY_FD))');
    }
  });

  it('checks values the guest measured itself', () => {
    for (const k of report.kernels) {
      const tf = k.cells.find((c) => c.suite === 'task-fields' && c.loader === 'ours')!;
      expect(tf.checks.length).toBeGreaterThan(0);
      for (const c of tf.checks) expect(c.ok, `${k.kernel.id} ${c.name}: ${JSON.stringify(c)}`).toBe(true);
      const kc = k.cells.find((c) => c.suite === 'kconfig' && c.loader === 'ours')!;
      expect(kc.externs.length).toBeGreaterThan(0);
    }
  });

  it('module-btf: tun.ko loaded in the guest, its types relocated from /sys/kernel/btf/tun (6.1); 5.10 modules carry no BTF', () => {
    const cells = (id: string) => report.kernels.find((k) => k.kernel.id === id)!.cells.filter((c) => c.suite === 'module-btf');
    for (const c of cells('5.10')) {
      expect(c.verdict).toBe('expected-skip');
      expect(c.reason).toBe('module tun has no BTF: CONFIG_DEBUG_INFO_BTF_MODULES is not set in this kernel');
    }
    const [ours, libbpf] = ['ours', 'libbpf'].map((l) => cells('6.1').find((c) => c.loader === l)!);
    expect(ours!.verdict, ours!.reason).toBe('pass');
    expect(libbpf!.verdict, libbpf!.reason).toBe('pass'); // same translated instructions as libbpf's
    const size = ours!.relocations.find((r) => r.kind === 'type_size' && r.type === 'struct tun_file___cm')!;
    expect([size.status, size.target]).toEqual(['ok', 1728]);
    const flags = ours!.checks.find((c) => c.name.startsWith('tun->flags'))!;
    expect([flags.ok, flags.observed]).toEqual([true, 0x1001]); // IFF_TUN | IFF_NO_PI, read by the kprobe
  });

  it('block-io: null_blk loaded in both guests; the seed\'s REQ_WRITE test counts exactly the bytes the agent wrote', () => {
    for (const id of KERNELS) {
      const c = report.kernels.find((k) => k.kernel.id === id)!.cells.find((x) => x.suite === 'block-io' && x.loader === 'ours')!;
      expect(c.verdict, `${id}: ${c.reason}`).toBe('pass');
      expect(c.checks.find((x) => x.name === 'bytes written to nullb0')!.observed, id).toBe(65536);
      // 5.10 reaches the disk through rq->rq_disk, 6.1 through rq->q->disk.
      expect(c.checks.find((x) => x.name.startsWith('disk from rq->rq_disk'))!.observed, id).toBe(id === '5.10' ? 1 : 0);
    }
  });

  it('writes the four reports', async () => {
    const { files } = await writeReports(report, out);
    for (const f of ['report.json', 'junit.xml', 'summary.md', 'index.html']) expect(files.some((x) => x.endsWith(f)) && existsSync(join(out, f))).toBe(true);
  });
});
