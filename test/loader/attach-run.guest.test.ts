// Attach and run, in real guests (TCG): one object with a program per tracing family
// (fixtures/attach_trace.bpf.c) attached through the agent's own path (attachAndRun), the standard
// workload run under it, and the kernel's run counts held against independent counts:
//  - each program counts its own invocations: after detaching, the kernel's run_cnt must equal it;
//  - the openat probes count the opens of the workload's marker file: equal to what the workload
//    says it did (3), which test/agent/workload tests hold against strace and tracefs;
//  - do_unlinkat is a function 5.10 and 6.1 have and 7.3 does not: the same kprobe attaches and
//    runs on the first and fails there, naming the function;
//  - vfs_fsync_range is in 7.3's BTF and traceable, but fsync(2) no longer reaches it there: the
//    fentry, fexit and kprobe.multi on it attach and never run, while they run on 5.10.
// Then the matrix itself (both kernels in one run, both loaders, with the network fixture too: its
// sk_msg and sk_skb programs run on the workload's connections): the cells carry the same attach
// verdicts, libbpf attaching the same object in the same guest agrees with each, and the
// cross-kernel diff shows how each kernel attached and ran each program.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORKLOAD_COUNTS } from '../../harness/agent/workload.js';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { runMatrix } from '../../harness/matrix/run.js';
import { diffKernels } from '../../harness/report/diff.js';
import type { AttachResult } from '../../harness/results.js';
import { bpfLsmAppend, runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';
import { compileBpf } from '../helpers/tools.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-attach-run-'));
let agent: string;
let object: string;
let netObject: string;

/** The fixture's enum order: calls[i] is the count of PROGRAMS[i]. */
const PROGRAMS = [
  'tp_openat', 'kp_openat2', 'kretp_openat2', 'ksyscall_openat', 'raw_sys_enter', 'fentry_fsync', 'fexit_fsync', 'tp_btf_exec',
  'iter_task', 'perf_clock', 'lsm_file_open', 'syscall_prog', 'kprobe_multi_fsync', 'kp_missing', 'kp_unlinkat', 'up_fsync', 'uret_fsync',
];

interface GuestResult {
  outcomes: { name: string; status: string; reason?: string }[];
  attach: Record<string, AttachResult>;
  final: Record<string, number | null>;
  calls: number[];
  tpMarkerOpens: number;
  kpMarkerOpens: number;
  iterTasks: number;
  workload: { steps: { step: string; count: number; status: string }[]; ms: number };
  ms: number;
}

beforeAll(async () => {
  object = compileBpf(fileURLToPath(new URL('fixtures/attach_trace.bpf.c', import.meta.url)), ['-D__TARGET_ARCH_x86']);
  netObject = compileBpf(fileURLToPath(new URL('../runtime/fixtures/net_attach.bpf.c', import.meta.url)));
  agent = await bundleGuestScript(fileURLToPath(new URL('fixtures/guest-attach-run.ts', import.meta.url)), join(tmp, 'attach-run.mjs'));
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function inGuest(kernelId: string): Promise<GuestResult> {
  const k = await new KernelStore().fetch(kernelId);
  const files = [{ path: '/t/attach-run.mjs', source: agent }, { path: '/t/attach_trace.bpf.o', source: object }];
  const initrd = await buildInitramfs({ files, agent: false, kernelConfig: k.config, release: k.release });
  const lsm = bpfLsmAppend(readFileSync(k.config, 'utf8'));
  const r = await runGuest({ kernelId, vmlinuz: k.vmlinuz, initrd, append: ['cm.agent=/t/attach-run.mjs', lsm].filter(Boolean).join(' '), accel: 'tcg', logDir: join(tmp, 'logs') });
  const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
  expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
  const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'attach-run') as { data: GuestResult } | undefined;
  expect(msg, log).toBeDefined();
  const g = msg!.data;
  console.log(`[measure] ${kernelId}: guest ${Math.round(r.durationMs)} ms, attach+workload+counts ${g.ms} ms, workload ${g.workload.ms} ms\n  ${PROGRAMS.map((p, i) => `${p}: ${g.attach[p]?.status ?? g.outcomes.find((o) => o.name === p)?.status} runs ${g.attach[p]?.runCount ?? '-'} own ${g.calls[i]}${g.attach[p]?.reason ? ` (${g.attach[p]!.reason})` : ''}`).join('\n  ')}`);
  return g;
}

function expectCommon(g: GuestResult, kernelId: string): void {
  const opens = g.workload.steps.find((s) => s.step === 'open')!;
  expect(opens, 'the workload opened its marker').toMatchObject({ count: WORKLOAD_COUNTS.open, status: 'ok' });
  // The marker opens the probes saw are the opens the workload made.
  expect(g.tpMarkerOpens, `${kernelId}: tracepoint sys_enter_openat saw the marker opens`).toBe(opens.count);
  expect(g.kpMarkerOpens, `${kernelId}: kprobe do_sys_openat2 saw the marker opens`).toBe(opens.count);
  // The kernel's count of runs, after detaching, is the program's own count, for every program that attached.
  for (const [i, p] of PROGRAMS.entries()) {
    const a = g.attach[p];
    if (a?.status !== 'attached') continue;
    expect(g.final[p], `${kernelId} ${p}: kernel run_cnt vs the program's own count`).toBe(g.calls[i]);
    expect(a.runCount!, `${kernelId} ${p}: run count read while attached ≤ the final one`).toBeLessThanOrEqual(g.calls[i]!);
  }
  for (const p of ['tp_openat', 'kp_openat2', 'kretp_openat2', 'ksyscall_openat', 'raw_sys_enter', 'fentry_fsync', 'fexit_fsync', 'tp_btf_exec', 'iter_task', 'perf_clock', 'lsm_file_open', 'up_fsync', 'uret_fsync'])
    expect(g.attach[p]?.status, `${kernelId} ${p}: ${g.attach[p]?.reason ?? ''}`).toBe('attached');
  const at = (p: string) => g.calls[PROGRAMS.indexOf(p)]!;
  for (const p of ['tp_openat', 'kp_openat2', 'kretp_openat2', 'ksyscall_openat', 'raw_sys_enter', 'tp_btf_exec', 'iter_task', 'perf_clock', 'lsm_file_open'])
    expect(g.attach[p]!.runCount, `${kernelId} ${p}: ran while attached`).toBeGreaterThan(0);
  expect(at('tp_btf_exec'), 'sched_process_exec ran at least for the workload\'s execs').toBeGreaterThanOrEqual(WORKLOAD_COUNTS.exec);
  // libc's fsync() was called for the workload's fsyncs: the uprobe and the uretprobe saw each.
  expect(at('up_fsync'), 'uprobe libc.so.6:fsync ran for the workload\'s fsyncs').toBeGreaterThanOrEqual(WORKLOAD_COUNTS.fsync);
  expect(at('uret_fsync')).toBe(at('up_fsync'));
  expect(g.iterTasks, 'the task iterator saw tasks').toBeGreaterThan(0);
  expect(g.attach.iter_task!.note, 'reading the iterator returned what the program wrote (2 bytes a task)').toBe(`read ${2 * g.iterTasks} bytes from the iterator`);
  expect(g.attach.kp_missing).toMatchObject({ status: 'failed' });
  expect(g.attach.kp_missing!.reason).toContain('cm_no_such_function');
}

describe('attach and run in guests (TCG)', () => {
  it('5.10: every tracing family attaches and the kernel counts what the programs count; kprobe.multi needs 5.18', async () => {
    const g = await inGuest('5.10');
    expectCommon(g, '5.10');
    expect(g.calls[PROGRAMS.indexOf('fentry_fsync')], 'vfs_fsync_range ran at least for the workload\'s fsyncs').toBeGreaterThanOrEqual(WORKLOAD_COUNTS.fsync);
    expect(g.outcomes.find((o) => o.name === 'syscall_prog')!.status, 'syscall programs arrived in 5.14').not.toBe('loaded');
    expect(g.attach.kprobe_multi_fsync).toMatchObject({ status: 'failed' });
    expect(g.attach.kprobe_multi_fsync!.reason).toMatch(/5\.18/);
    expect(g.attach.kp_unlinkat, 'do_unlinkat exists on 5.10: the unlink of the marker fires it').toMatchObject({ status: 'attached' });
    expect(g.calls[PROGRAMS.indexOf('kp_unlinkat')]).toBeGreaterThanOrEqual(WORKLOAD_COUNTS.unlink);
  });

  it('7.3: the same, with kprobe.multi; do_unlinkat is gone and its kprobe fails naming it', async () => {
    const g = await inGuest('7.3');
    expectCommon(g, '7.3');
    expect(g.calls[PROGRAMS.indexOf('syscall_prog')], 'the syscall program ran once (BPF_PROG_TEST_RUN)').toBe(1);
    for (const p of ['fentry_fsync', 'fexit_fsync', 'kprobe_multi_fsync'])
      expect(g.attach[p], `${p}: attached, and fsync(2) no longer reaches vfs_fsync_range on 7.3`).toMatchObject({ status: 'attached', runCount: 0 });
    expect(g.attach.kprobe_multi_fsync).toMatchObject({ via: 'BPF_LINK_CREATE kprobe_multi' });
    expect(g.attach.kp_unlinkat).toMatchObject({ status: 'failed' });
    expect(g.attach.kp_unlinkat!.reason).toContain('do_unlinkat');
  });

  it('the matrix on 5.10 and 7.3: cells carry attach and run counts; the diff shows where do_unlinkat went', async () => {
    const run = await runMatrix({ kernels: ['5.10', '7.3'], jobs: 2, accel: 'tcg', outDir: join(tmp, 'matrix'), runId: 'attach-run', log: () => {}, suites: [], objects: [object, netObject], loader: 'both' });
    for (const k of run.kernels) expect(k.guest, `${k.kernel.id}: ${k.detail}`).toBe('ok');
    const cell = (kernel: string, program: string, loader = 'ours') => run.kernels.find((k) => k.kernel.id === kernel)!.cells.find((c) => c.program === program && c.loader === loader)!;
    // The workload's TCP connections were put into the object's sockmap (as its tool would put its
    // own sockets): sk_msg ran once per message sent, the stream verdict once per message received.
    const messages = WORKLOAD_COUNTS['tcp-send'] + WORKLOAD_COUNTS['tcp-reply'];
    for (const kernel of ['5.10', '7.3']) {
      expect(cell(kernel, 'msg_verdict').attach, `${kernel} sk_msg`).toMatchObject({ status: 'attached', target: 'sockmap sock_map sk_msg', runCount: messages });
      expect(cell(kernel, 'skb_verdict').attach, `${kernel} sk_skb`).toMatchObject({ status: 'attached', runCount: messages });
      expect(cell(kernel, 'msg_verdict', 'libbpf').attach, `${kernel} libbpf sk_msg`).toMatchObject({ status: 'attached', runCount: messages });
    }
    // libbpf, in the same guests, attached the same programs (bpf_program__attach, or its API for
    // the default hooks) and agrees with every one of our verdicts.
    for (const k of run.kernels) {
      // (programs neither loader loaded, syscall_prog on 5.10, have nothing to compare)
      for (const c of k.cells.filter((x) => x.loader === 'libbpf' && cell(k.kernel.id, x.program).attach)) {
        expect(c.attach?.status, `${k.kernel.id} ${c.program}: libbpf's attach (${c.attach?.via}: ${c.attach?.reason ?? ''})`).toBe(cell(k.kernel.id, c.program).attach!.status);
        expect(c.verdict, `${k.kernel.id} ${c.program}: ${c.reason}`).toBe('pass');
      }
    }
    // and libbpf, too, finds vfs_fsync_range silent on 7.3 while it ran on 5.10
    expect(cell('7.3', 'fentry_fsync', 'libbpf').attach).toMatchObject({ status: 'attached', runCount: 0 });
    expect(cell('5.10', 'fentry_fsync', 'libbpf').attach!.runCount).toBeGreaterThanOrEqual(WORKLOAD_COUNTS.fsync);
    for (const kernel of ['5.10', '7.3']) {
      expect(cell(kernel, 'tp_openat').attach).toMatchObject({ status: 'attached', via: 'perf tracepoint', target: 'tracepoint syscalls:sys_enter_openat' });
      expect(cell(kernel, 'tp_openat').attach!.runCount).toBeGreaterThanOrEqual(WORKLOAD_COUNTS.open);
      expect(cell(kernel, 'kp_missing')).toMatchObject({ verdict: 'fail' });
      expect(cell(kernel, 'kp_missing').reason).toMatch(/^attach failed: .*cm_no_such_function/);
    }
    expect(cell('5.10', 'kp_unlinkat')).toMatchObject({ verdict: 'pass', attach: { status: 'attached' } });
    expect(cell('7.3', 'kp_unlinkat')).toMatchObject({ verdict: 'fail', attach: { status: 'failed' } });
    const diff = diffKernels(run);
    const row = diff.groups.find((gr) => gr.program === 'kp_unlinkat')!.rows.find((r) => r.kind === 'attach')!;
    expect(row.differs).toBe(true);
    expect(row.values.map((v) => v.value)).toEqual([expect.stringMatching(/^ran \d+$/), 'failed']);
    // Ran on 5.10, attached and silent on 7.3: an unexpected difference, and the square says so.
    expect(diff.unexpected.map((f) => `${f.cell}: ${f.what}`)).toContain(`object:${basename(object)}/fentry_fsync[ours]: ran on 5.10, attached but never ran on 7.3`);
  });
});
