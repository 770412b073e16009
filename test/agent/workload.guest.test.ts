// The standard workload in real guests (TCG): 5.10 with null_blk loaded (the block steps run) and
// 7.3 without (they are skipped, saying why). The witness is the kernel's own tracing, set up in
// tracefs before the workload and read from the `trace` buffer after it:
//  - a kprobe event on do_sys_openat2 fetching the file name (`+0(%si):ustring`), filtered on the
//    marker: its hits must equal the opens the report claims;
//  - the syscalls/sys_enter_openat tracepoint filtered on the marker (`filename.ustring`: 5.17, and
//    Debian's 5.10 has it backported): the same count;
//  - sched_process_exec of /bin/busybox, signal_generate of SIGTERM, page_fault_user in the
//    page-fault step's range, block_rq_issue writes to nullb0: the execs, the signal, the faults
//    and the bytes the report claims.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_BYTES, BLOCK_DEVICE, MARKER_FILE, WORKLOAD_COUNTS, describeWorkload, type FixedStep, type WorkloadReport, type WorkloadStep } from '../../harness/agent/workload.js';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-workload-guest-'));
const source = (rel: string) => JSON.stringify(fileURLToPath(new URL(rel, import.meta.url)));
let agent: string;

/** What the guest sends back: the report, the witnesses' setup errors, and the trace lines that matter. */
interface GuestResult {
  report: WorkloadReport;
  /** Per witness: undefined when set up, else the error of the tracefs write that failed. */
  setup: Record<string, string | null>;
  /** Trace lines of every witness event but page faults. */
  lines: string[];
  /** page_fault_user events of the agent: all of them, and those inside the page-fault step's range. */
  faults: { total: number; inRange: number };
  modules: string[];
  /** /dev/nullb0's major:minor, when it exists. */
  nullb0?: string;
  workloadMs: number;
}

// The guest script: the workload between tracefs set-up and read-back, sent as one `workload`
// result (test/helpers/guest-report.ts). Written here and bundled like any guest script; it
// imports the workload, finit_module and the report frame by their repository paths.
const GUEST_SCRIPT = `
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { runWorkload, MARKER_FILE } from ${source('../../harness/agent/workload.ts')};
import { finitModule } from ${source('../../harness/runtime/sys.ts')};
import { guestReport } from ${source('../helpers/guest-report.ts')};

const T = '/sys/kernel/tracing';
/** Writes tracefs files in order; the first failure as "file: message", else null. */
const tracefs = (...writes) => {
  for (const [file, text, flag] of writes) {
    try { writeFileSync(T + '/' + file, text, { flag: flag ?? 'w' }); } catch (e) { return file + ': ' + e.message; }
  }
  return null;
};
await guestReport('workload', async () => {
  const modules = [];
  for (const m of JSON.parse(readFileSync('/t/modules.json', 'utf8'))) {
    const fd = openSync(m.path, 'r');
    try { modules.push(m.name + ' ' + finitModule(fd, m.name)); } finally { closeSync(fd); }
  }
  const nullb0 = existsSync('/sys/block/nullb0/dev') ? readFileSync('/sys/block/nullb0/dev', 'utf8').trim() : undefined;
  const glob = '"*/' + MARKER_FILE + '"';
  tracefs(['tracing_on', '0'], ['buffer_size_kb', '8192'], ['trace', '']);
  const setup = {
    kprobe: tracefs(['kprobe_events', 'p:cmwl/open do_sys_openat2 fname=+0(%si):ustring\\n', 'a'], ['events/cmwl/open/filter', 'fname ~ ' + glob], ['events/cmwl/open/enable', '1']),
    tracepoint: tracefs(['events/syscalls/sys_enter_openat/filter', 'filename.ustring ~ ' + glob], ['events/syscalls/sys_enter_openat/enable', '1']),
    exec: tracefs(['events/sched/sched_process_exec/filter', 'filename == "/bin/busybox"'], ['events/sched/sched_process_exec/enable', '1']),
    signal: tracefs(['events/signal/signal_generate/filter', 'sig == 15'], ['events/signal/signal_generate/enable', '1']),
    fault: tracefs(['events/exceptions/page_fault_user/filter', 'common_pid == ' + process.pid], ['events/exceptions/page_fault_user/enable', '1']),
    block: nullb0 ? tracefs(['events/block/block_rq_issue/enable', '1']) : 'no nullb0',
  };
  tracefs(['tracing_on', '1']);
  const w0 = Date.now();
  const report = await runWorkload();
  const workloadMs = Date.now() - w0;
  tracefs(['tracing_on', '0']);
  // Page faults are many (the agent's own): only those in the step's range travel to the host.
  const range = report.steps.find((s) => s.step === 'page-fault')?.target?.split('-').map((x) => BigInt(x)) ?? [0n, 0n];
  const lines = [];
  const faults = { total: 0, inRange: 0 };
  for (const line of readFileSync(T + '/trace', 'utf8').split('\\n')) {
    if (line.startsWith('#') || !line.trim()) continue;
    const f = / page_fault_user: address=(0x[0-9a-f]+)/.exec(line);
    if (!f) { lines.push(line); continue; }
    faults.total++;
    const a = BigInt(f[1]);
    if (a >= range[0] && a < range[1]) faults.inRange++;
  }
  return { report, setup, lines, faults, modules, nullb0, workloadMs };
});
`;

beforeAll(async () => {
  const entry = join(tmp, 'guest-workload.ts');
  writeFileSync(entry, GUEST_SCRIPT);
  agent = await bundleGuestScript(entry, join(tmp, 'guest-workload.mjs'));
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function workloadIn(kernelId: string, modules: string[]): Promise<GuestResult> {
  const store = new KernelStore();
  const k = await store.fetch(kernelId);
  const mods = modules.length ? await store.modules(k, modules) : [];
  const files = [
    { path: '/t/workload.mjs', source: agent },
    { path: '/t/modules.json', data: JSON.stringify(mods.map((m) => ({ name: m.name, path: `/t/modules/${m.name}.ko` }))) },
    ...mods.map((m) => ({ path: `/t/modules/${m.name}.ko`, source: m.path })),
  ];
  const initrd = await buildInitramfs({ files, agent: false, kernelConfig: k.config, release: k.release });
  const r = await runGuest({ kernelId, vmlinuz: k.vmlinuz, initrd, append: 'cm.agent=/t/workload.mjs', accel: 'tcg', logDir: join(tmp, 'logs') });
  const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
  expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
  const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'workload') as { data: GuestResult } | undefined;
  expect(msg, JSON.stringify(r.messages)).toBeDefined();
  const g = msg!.data;
  console.log(
    `[measure] ${kernelId} (${k.release}): boot ${r.bootMs} ms, whole run ${Math.round(r.durationMs)} ms, workload ${g.report.ms} ms (${g.workloadMs} ms by the clock); modules: ${g.modules.join(', ') || 'none'}; ` +
      `page faults of the agent while tracing: ${g.faults.total}, in the step's range: ${g.faults.inRange}; witness set-up: ${JSON.stringify(g.setup)}\n  ${describeWorkload(g.report).replace(/\n/g, '\n  ')}`,
  );
  return g;
}

const step = (r: WorkloadReport, name: FixedStep): WorkloadStep => r.steps.find((s) => s.step === name)!;
const hits = (g: GuestResult, event: string, also = '') => g.lines.filter((l) => l.includes(` ${event}: `) && l.includes(also));

/** The report against WORKLOAD_COUNTS, and the report against the trace. */
function checkAgainstTrace(g: GuestResult, expect_: { tracepoint: boolean; block: boolean }): void {
  const r = g.report;
  const block = (s: WorkloadStep) => s.step === 'block-write' || s.step === 'block-fsync';
  for (const s of r.steps) {
    if (block(s) && !expect_.block) continue;
    expect({ step: s.step, status: s.status, count: s.count, error: s.error }).toEqual({ step: s.step, status: 'ok', count: WORKLOAD_COUNTS[s.step as FixedStep], error: undefined });
  }
  if (!expect_.block) for (const s of r.steps.filter(block)) expect(s).toMatchObject({ status: 'skipped', reason: `${BLOCK_DEVICE} is absent (null_blk not loaded)` });
  expect(r.ok).toBe(true);

  // Opens of the marker: the kprobe's hits (and the tracepoint's, where its filter is accepted).
  const marker = `/tmp/cm-workload/${MARKER_FILE}`;
  expect(step(r, 'open').target).toBe(marker);
  expect(g.setup.kprobe).toBeNull();
  const kprobeHits = hits(g, 'open', `fname="${marker}"`);
  expect(kprobeHits.length, g.lines.join('\n')).toBe(step(r, 'open').count);
  if (expect_.tracepoint) expect(g.setup.tracepoint).toBeNull();
  if (g.setup.tracepoint === null) expect(g.lines.filter((l) => l.includes(' sys_openat(')).length, g.lines.join('\n')).toBe(step(r, 'open').count);

  // Every exec of /bin/busybox: the exec step's, the sleep's and the signal's children, by pid.
  const execPids = hits(g, 'sched_process_exec').map((l) => Number(/ pid=(\d+)/.exec(l)![1]));
  expect(execPids.sort()).toEqual([...step(r, 'exec').pids!, ...step(r, 'sleep').pids!, ...step(r, 'signal').pids!].sort());
  expect(execPids.length).toBe(WORKLOAD_COUNTS.exec + WORKLOAD_COUNTS.sleep + WORKLOAD_COUNTS.signal);

  // The one SIGTERM, to the child the signal step names.
  const sigterms = hits(g, 'signal_generate', 'sig=15');
  expect(sigterms.map((l) => Number(/ pid=(\d+)/.exec(l)![1]))).toEqual(step(r, 'signal').pids);

  // One fault per page written, at the addresses of the step's mapping.
  expect(g.setup.fault).toBeNull();
  expect(g.faults.inRange).toBe(step(r, 'page-fault').count);

  // The block write reached nullb0 as write requests carrying exactly the bytes written.
  if (expect_.block) {
    expect(g.setup.block).toBeNull();
    const [major, minor] = g.nullb0!.split(':');
    const writes = hits(g, 'block_rq_issue', ` ${major},${minor} `).filter((l) => /block_rq_issue: \d+,\d+ \w*W\w* /.test(l));
    const bytes = writes.reduce((n, l) => n + Number(/block_rq_issue: \d+,\d+ \w+ (\d+) /.exec(l)![1]), 0);
    expect(bytes, writes.join('\n')).toBe(BLOCK_BYTES);
  }
}

describe('standard workload in guests (TCG)', () => {
  it('5.10 with null_blk: every step runs its count, the block steps too; kprobe and sys_enter_openat tracepoint see exactly the reported opens', async () => {
    const g = await workloadIn('5.10', ['null_blk']);
    expect(g.modules.some((m) => m.startsWith('null_blk '))).toBe(true);
    expect(g.nullb0).toMatch(/^\d+:\d+$/);
    checkAgainstTrace(g, { tracepoint: true, block: true });
  }, 180_000);

  it('7.3 without null_blk: every step but the block ones runs its count; kprobe and sys_enter_openat tracepoint see exactly the reported opens', async () => {
    const g = await workloadIn('7.3', []);
    expect(g.nullb0).toBeUndefined();
    checkAgainstTrace(g, { tracepoint: true, block: false });
  }, 180_000);
});
