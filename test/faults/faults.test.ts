// Faults, each on a real guest (6.1 under TCG) or a real host condition: every one ends as its
// own verdict with evidence, within its time budget, and the run still produces a report.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { KernelEntry } from '../../harness/kernels/matrix.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { runMatrix, runPassed, type MatrixOptions } from '../../harness/matrix/run.js';
import { compileBpf } from '../helpers/tools.js';

const out = () => mkdtempSync(join(tmpdir(), 'cm-faults-'));
const base = (o: Partial<MatrixOptions>): MatrixOptions => ({
  kernels: ['6.1'], jobs: 2, accel: 'tcg', outDir: out(), runId: 'faults', log: () => {}, ...o,
});
const qemuChildren = () => {
  try {
    return execFileSync('pgrep', ['-f', 'qemu-system-x86_64.*corematrix-faults'], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
};

describe('guest faults (6.1, TCG)', () => {
  it('a kernel panic mid-run is a panic verdict with the panic line, and the cells already sent are kept', async () => {
    const r = await runMatrix(base({ suites: ['kernel-version', 'task-fields'], faults: { panicAfterSuite: 'kernel-version' } }));
    const k = r.kernels[0]!;
    expect(k.guest).toBe('panic');
    expect(k.detail).toMatch(/Kernel panic - not syncing/);
    expect(k.consoleTail).toMatch(/sysrq|Kernel panic/i);
    // What the guest sent before the panic is kept; what it never ran is listed as not run.
    expect(k.cells.map((c) => `${c.suite}:${c.verdict}`)).toEqual(['kernel-version:pass', 'task-fields:error']);
    expect(k.cells[1]!.reason).toMatch(/^not run: the guest ended \(panic\) after the agent's last step: suite kernel-version, object kernel-version\.bpf\.o(, program copy_kernel_version)? \(run\)$/);
    expect(runPassed(r)).toBe(false);
  }, 300_000);

  it('a kernel panic inside one object costs that object only: the others, by both loaders, run in a follow-up guest', async () => {
    const { copyFileSync } = await import('node:fs');
    const dir = out();
    const observer = compileBpf(fileURLToPath(new URL('../loader/fixtures/observer.bpf.c', import.meta.url)));
    const objects = ['first.bpf.o', 'killer.bpf.o', 'last.bpf.o'].map((n) => {
      copyFileSync(observer, join(dir, n));
      return join(dir, n);
    });
    const logs: string[] = [];
    const r = await runMatrix(base({ outDir: join(dir, 'out'), suites: [], objects, loader: 'both', faults: { panicInObject: 'killer.bpf.o' }, log: (l) => logs.push(l) }));
    const k = r.kernels[0]!;
    // The row keeps the death (a guest did die), and says what the follow-up did.
    expect(k.guest).toBe('panic');
    expect(k.followUps).toBe(1);
    expect(k.detail).toMatch(/Kernel panic - not syncing.*; 2 unfinished unit\(s\) ran again in a follow-up guest: ok$/);
    expect(logs.join('\n')).toMatch(/\[6\.1\] the guest died \(panic\) in object killer\.bpf\.o \(load\): its 2 unfinished unit\(s\) go to follow-up guest 1/);
    // One cell per object, program and loader: the other two objects loaded, attached and ran with both.
    expect(k.cells.map((c) => `${c.object.name} ${c.loader} ${c.verdict}`).sort()).toEqual([
      'first.bpf.o libbpf pass', 'first.bpf.o ours pass', 'killer.bpf.o libbpf error', 'killer.bpf.o ours error', 'last.bpf.o libbpf pass', 'last.bpf.o ours pass',
    ]);
    for (const c of k.cells.filter((x) => x.object.name !== 'killer.bpf.o')) expect(c.attach, `${c.object.name} ${c.loader}`).toMatchObject({ status: 'attached', runCount: 1 });
    for (const c of k.cells.filter((x) => x.object.name === 'killer.bpf.o')) {
      expect(c.reason).toBe("not run: this object's load killed the guest (panic) in object killer.bpf.o (load); the guest's other unfinished objects ran again in a follow-up guest");
    }
    // Both guests' logs are kept, the follow-up's under its own name.
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(join(dir, 'out', 'guests')).filter((f) => f.endsWith('.console.log')).sort()).toEqual(['6.1-again1.console.log', '6.1.console.log']);
    expect(runPassed(r)).toBe(false);
  }, 600_000);

  it('a load that holds the agent thread past the heartbeat timeout is not a hang: the watchdog beats for it, naming the step', async () => {
    const dir = out();
    const r = await runMatrix(base({ outDir: dir, suites: ['kernel-version', 'task-fields'], faults: { blockInLoad: { program: 'set_task_comm', ms: 20_000 } }, heartbeatTimeoutMs: 8_000 }));
    const k = r.kernels[0]!;
    expect(k.guest, `${k.detail}`).toBe('ok');
    expect(k.cells.map((c) => `${c.suite}:${c.verdict}`)).toEqual(['kernel-version:pass', 'task-fields:pass']);
    const { readFileSync } = await import('node:fs');
    const channel = readFileSync(join(dir, 'guests', '6.1.ttyS1.log'), 'utf8');
    // The watchdog's beats, sent while the main thread was held: at least two in 20 s of silence.
    const busy = channel.split('\n').filter((l) => l.includes('"busy"')).map((l) => JSON.parse(l) as { busy: { step: string; forMs: number } });
    expect(busy.length).toBeGreaterThanOrEqual(2);
    expect(busy[0]!.busy.step).toBe('suite task-fields, object task-fields.bpf.o, program set_task_comm (load)');
    expect(Math.max(...busy.map((b) => b.busy.forMs))).toBeGreaterThan(8_000);
  }, 300_000);

  it('an on-demand run after the workload (a syscall program\'s test run) that holds the thread past the heartbeat timeout is not a hang either', async () => {
    const dir = out();
    const object = compileBpf(fileURLToPath(new URL('../loader/fixtures/attach_trace.bpf.c', import.meta.url)), ['-D__TARGET_ARCH_x86']);
    const name = basename(object);
    const r = await runMatrix(base({ outDir: dir, suites: [], objects: [object], faults: { blockInRun: { object: name, ms: 20_000 } }, heartbeatTimeoutMs: 8_000 }));
    const k = r.kernels[0]!;
    expect(k.guest, `${k.detail}`).toBe('ok');
    const { readFileSync } = await import('node:fs');
    const busy = readFileSync(join(dir, 'guests', '6.1.ttyS1.log'), 'utf8').split('\n').filter((l) => l.includes('"busy"')).map((l) => JSON.parse(l) as { busy: { step: string; forMs: number } });
    expect(busy.length).toBeGreaterThanOrEqual(2);
    expect(busy[0]!.busy.step).toBe(`object ${name} (run)`);
    expect(k.cells.some((c) => c.attach?.note?.startsWith('BPF_PROG_TEST_RUN returned'))).toBe(true);
  }, 300_000);

  it('a load that never returns is a hang naming suite, object and program; earlier cells are kept, the rest are not run', async () => {
    const r = await runMatrix(base({
      suites: ['kernel-version', 'task-fields', 'globals'], faults: { blockInLoad: { program: 'set_task_comm' } },
      stepBudgets: { loadMs: 4_000 }, heartbeatTimeoutMs: 8_000,
    }));
    const k = r.kernels[0]!;
    expect(k.guest).toBe('agent-hang');
    expect(k.detail).toMatch(/agent silent for 8 s \(in suite task-fields, object task-fields\.bpf\.o, program set_task_comm \(load\), busy for [234] s before the beats stopped\)/);
    const by = new Map(k.cells.map((c) => [c.suite, c]));
    expect(by.get('kernel-version')!.verdict).toBe('pass');
    for (const s of ['task-fields', 'globals']) {
      expect(by.get(s)!.verdict).toBe('error');
      expect(by.get(s)!.reason).toBe("not run: the guest ended (agent-hang) after the agent's last step: suite task-fields, object task-fields.bpf.o, program set_task_comm (load)");
    }
    expect(k.cells.map((c) => c.program)).toEqual(['copy_kernel_version', 'set_task_comm', 'bpf_prog']);
    expect(runPassed(r)).toBe(false);
  }, 300_000);

  it('an agent killed by the OOM killer is agent-oom, naming the kill', async () => {
    const r = await runMatrix(base({ suites: ['kernel-version'], faults: { oom: true }, memoryMb: 448 }));
    const k = r.kernels[0]!;
    expect(k.guest, `${k.detail}\n${k.consoleTail}`).toBe('agent-oom');
    expect(k.detail).toMatch(/OOM killer killed the agent: Out of memory: Kill(ed)? process \d+ \(node\)/);
  }, 300_000);

  it('a kprobe target missing on the kernel fails that cell, naming the function', async () => {
    const r = await runMatrix(base({ suitesDir: 'test/faults/fixtures/suites', suites: ['no-such-kprobe'] }));
    const k = r.kernels[0]!;
    expect(k.guest).toBe('ok'); // the guest and the agent did their work: the cell carries the failure
    const cell = k.cells.find((c) => c.suite === 'no-such-kprobe')!;
    expect(cell.verdict).toBe('fail');
    expect(cell.reason).toMatch(/attach/);
    expect(cell.reason).toMatch(/no_such_function_corematrix/);
  }, 300_000);

  it('an object refused before any program load (a strong kconfig extern no config sets) still fails each program, never vanishes', async () => {
    const r = await runMatrix(base({ suitesDir: 'test/faults/fixtures/suites', suites: ['strong-extern'] }));
    const k = r.kernels[0]!;
    expect(k.guest).toBe('ok');
    const cells = k.cells.filter((c) => c.suite === 'strong-extern');
    expect(cells.map((c) => c.program)).toEqual(['on_comm']);
    expect(cells[0]!.verdict).toBe('fail');
    expect(cells[0]!.reason).toMatch(/^not loaded: .*extern CONFIG_COREMATRIX_NO_SUCH_OPTION \(kconfig\): not set in the kernel config, and the extern is not __weak/);
    expect(runPassed(r)).toBe(false);
  }, 300_000);

  it('a verifier rejection fails the cell with the verifier log attached; an object without programs fails as a whole', async () => {
    const { compileBpf } = await import('../helpers/tools.js');
    const obj = compileBpf('test/faults/fixtures/oob.bpf.c');
    const none = compileBpf('test/faults/fixtures/no-programs.bpf.c');
    const r = await runMatrix(base({ suites: [], objects: [obj, none] }));
    const cell = r.kernels[0]!.cells.find((c) => c.program === 'read_past_value')!;
    expect(cell.verdict).toBe('fail');
    expect(cell.reason).toMatch(/^rejected: /);
    expect(cell.verifier?.logTail).toMatch(/invalid access to map value|value_size=4 off=40/);
    // An object with no program is a failing cell of its own, not a silent gap.
    const empty = r.kernels[0]!.cells.filter((c) => c.object.name === basename(none));
    expect(empty.map((c) => [c.program, c.verdict, c.reason])).toEqual([['(object)', 'fail', `${basename(none)} has no BPF programs (no function in a program section)`]]);
  }, 300_000);
});

describe('host faults', () => {
  it('a kernel package that cannot be downloaded is no-kernel; the other kernel still runs', async () => {
    const store = new KernelStore();
    const good = store.entry('6.1');
    const gone: KernelEntry = { ...good, id: '6.1-gone', version: '6.1.0-99999-1' };
    const r = await runMatrix(base({ kernels: [], entries: [gone, good], suites: ['kernel-version'] }));
    const byId = new Map(r.kernels.map((k) => [k.kernel.id, k]));
    expect(byId.get('6.1-gone')!.guest).toBe('no-kernel');
    expect(byId.get('6.1-gone')!.detail).toMatch(/6\.1\.0-99999-1/);
    expect(byId.get('6.1-gone')!.detail!.split('\n')).toHaveLength(1);
    expect(byId.get('6.1')!.guest).toBe('ok');
    expect(byId.get('6.1')!.cells.every((c) => c.verdict === 'pass')).toBe(true);
    expect(r.complete).toBe(true);
    expect(runPassed(r)).toBe(false);
  }, 300_000);

  it('SIGTERM mid-run writes a partial report marked incomplete, lists the interrupted guest as aborted with its cells, and exits non-zero', async () => {
    const { spawn } = await import('node:child_process');
    const { existsSync, readFileSync } = await import('node:fs');
    const dir = out();
    const child = spawn(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '6.1,5.10', '--suites', 'kernel-version', '--jobs', '1', '--accel', 'tcg', '--out', dir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CI: '1' } });
    let err = '';
    // The first kernel to finish (which one depends on the boot order the run picks from its
    // history), then the second guest running: stop now.
    const [first, second] = await new Promise<[string, string]>((resolve) => {
      child.stderr.on('data', (b: Buffer) => {
        err += b.toString();
        const m = /\[([^\]]+)\] (done|agent-failed) in /.exec(err);
        if (!m) return;
        const other = m[1] === '6.1' ? '5.10' : '6.1';
        if (new RegExp(`\\[${other.replace('.', '\\.')}\\] agent up at`).test(err.slice(m.index))) resolve([m[1]!, other]);
      });
    });
    expect(['6.1', '5.10']).toContain(first);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code).not.toBe(0);
    expect(existsSync(join(dir, 'report.json'))).toBe(true);
    const rep = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { complete: boolean; kernels: { kernel: { id: string }; guest: string; cells: { verdict: string; reason?: string; loader: string }[] }[] };
    expect(rep.complete).toBe(false);
    expect(rep.kernels.map((k) => `${k.kernel.id}:${k.guest}`).sort()).toEqual([`${first}:ok`, `${second}:aborted`].sort());
    // The interrupted guest owed one cell per loader (CI=1: both): sent before the signal, or listed as not run.
    const aborted = rep.kernels.find((k) => k.guest === 'aborted')!;
    expect(aborted.cells.map((c) => c.loader).sort()).toEqual(['libbpf', 'ours']);
    for (const c of aborted.cells) if (c.verdict !== 'pass') expect(c.reason).toBe('not run: the run was interrupted while this guest ran');
    expect(readFileSync(join(dir, 'summary.md'), 'utf8')).toMatch(/INCOMPLETE|incomplete/);
  }, 300_000);

  it('leaves no QEMU behind', () => {
    expect(qemuChildren()).toBe('');
  });
});
