// Runs one guest: QEMU of the kernel's arch (qemu-system-x86_64, or qemu-system-aarch64 for arm64:
// harness/vm/arch.ts) boots a kernel with our initramfs, the console goes to a per-guest log file,
// the result port (ttyS1 on amd64, a PCI 16550 on arm64) is read live as JSON lines. Every run
// ends with a verdict and the console tail; QEMU never outlives its deadline or the host process.
//
// Plumbing: QEMU's stdout carries the console (chardev stdio), an extra pipe on fd 3 (a socket)
// carries the result port, stderr carries QEMU's own errors. QEMU runs under
// `setpriv --pdeathsig KILL` when available, so even a SIGKILLed host leaves no guest behind;
// execa's cleanup kills it on exit, SIGINT and SIGTERM.
import { accessSync, constants, createWriteStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import { CoreMatrixError } from '../core/errors.js';
import { decodeMessage, describeStep, type AgentStep, type GuestMessage } from '../protocol.js';
import { ConsoleScanner, type Splat } from './console.js';

export type Verdict = 'ok' | 'panic' | 'oops' | 'hung-task' | 'agent-oom' | 'agent-hang' | 'no-agent' | 'qemu-died' | 'timeout' | 'agent-failed' | 'no-btf';
export type { Accel } from './arch.js';
import { archQemuArgs, ARCH_MACHINES, findQemu, kvmCapable, pdeathsigPrefix, type Accel, type ArchQemuOptions } from './arch.js';
import { DEFAULT_ARCH, type DebianArch } from '../kernels/arch.js';

export interface GuestRun {
  kernelId: string;
  verdict: Verdict;
  /** Everything decoded from the result port except heartbeats (those only reach onMessage). */
  messages: GuestMessage[];
  /** Path of the full console log. */
  consoleLog: string;
  /** The last ~40 console lines, escape codes removed. */
  consoleTail: string;
  durationMs: number;
  /** Guest uptime when the agent said hello (else when /init started). */
  bootMs?: number;
  /** Guest uptime when /init started. */
  initMs?: number;
  accel: Accel;
  /** One line saying why, for every verdict but 'ok'. */
  detail?: string;
  /** The agent's last step (what it was doing when a hang, a panic or a timeout ended the guest). */
  lastStep?: AgentStep;
  /** Panics, oopses, hung-task reports and warnings seen on the console. */
  splats: Splat[];
  qemuExitCode?: number;
}

export interface RunGuestOptions {
  kernelId: string;
  /** The kernel's arch (default amd64): which QEMU, machine, console and result port (harness/vm/arch.ts). */
  arch?: DebianArch;
  vmlinuz: string;
  initrd: string;
  /** Extra kernel command line (appended after `console=ttyS0 panic=-1 …`). */
  append?: string;
  memoryMb?: number;
  /** vCPUs (default 1; under TCG each is a host thread). */
  cpus?: number;
  /** Overall budget; default 120 s under KVM, 360 s under TCG. */
  timeoutMs?: number;
  /** Longest silence on the result port once the guest has spoken; default 30 s (the agent beats every 2 s). */
  heartbeatTimeoutMs?: number;
  /** Longest wait for the first result-port line (/init starting); default 30 s KVM, 90 s TCG. */
  bootTimeoutMs?: number;
  accel?: 'auto' | Accel;
  /** `user`: QEMU's user-mode network on an e1000 NIC (the guest brings it up: harness/agent/exec.ts). Default: no NIC. */
  net?: 'user';
  logDir: string;
  onMessage?: (m: GuestMessage) => void;
  signal?: AbortSignal;
}

/** amd64's QEMU (every arch's: ARCH_MACHINES[arch].qemu). */
export const QEMU = ARCH_MACHINES.amd64.qemu;
/** amd64's base kernel command line: console on ttyS0, reboot (= QEMU exit, -no-reboot) at once on panic. */
export const BASE_APPEND = ARCH_MACHINES.amd64.baseAppend;
const TAIL_LINES = 40;
const PANIC_GRACE_MS = 10_000;
const POWEROFF_GRACE_MS = 15_000;
/** The OOM killer's console line (4.19+ "Out of memory: Killed process 190 (node) total-vm:…"; older "Out of memory: Kill process …"). */
const OOM_KILL = /Out of memory(?: \(oom_kill_allocating_task\))?: Kill(?:ed)? process (\d+) \(([^)]*)\)/;
/** The agent's process name as the kernel reports it (comm of `node /agent.js`). */
const AGENT_COMM = 'node';


const qemuFound = new Map<DebianArch, string>();
/** The arch's QEMU, found on PATH once; a missing QEMU is a setup error naming its package, not a verdict. */
function checkQemu(arch: DebianArch): string {
  let p = qemuFound.get(arch);
  if (!p) qemuFound.set(arch, (p = findQemu(arch)));
  return p;
}

function checkFile(what: string, kernelId: string, path: string): void {
  let ok = false;
  try {
    ok = statSync(path).isFile();
  } catch {
    throw new CoreMatrixError(`guest ${kernelId}: ${what} ${path} not found`);
  }
  if (!ok) throw new CoreMatrixError(`guest ${kernelId}: ${what} ${path} is not a regular file`);
}

function fileSafe(id: string): string {
  return id.replace(/[^A-Za-z0-9._+-]/g, '_');
}

/** A guest's QEMU options (the amd64 case of the per-arch ones, harness/vm/arch.ts). */
export type QemuArgsOptions = Omit<ArchQemuOptions, 'cpu'>;

/** The QEMU argument vector for one amd64 guest (exported for tests and `--dry-run`). */
export function qemuArgs(o: QemuArgsOptions): string[] {
  return archQemuArgs('amd64', o);
}

type KillReason = { verdict: 'timeout' | 'agent-hang' | 'no-agent'; detail: string } | { verdict: 'panic-grace' | 'poweroff-grace' | 'aborted'; detail: string };

/** Boots one guest and returns its verdict. Throws only for bad input (missing files) or abort. */
export async function runGuest(opts: RunGuestOptions): Promise<GuestRun> {
  const { kernelId } = opts;
  const arch = opts.arch ?? DEFAULT_ARCH;
  checkFile('kernel image', kernelId, opts.vmlinuz);
  checkFile('initramfs', kernelId, opts.initrd);
  const qemu = checkQemu(arch);
  opts.signal?.throwIfAborted();
  const accel: Accel = !opts.accel || opts.accel === 'auto' ? await probeAccel(opts.vmlinuz, opts.initrd, arch) : opts.accel;
  const timeoutMs = opts.timeoutMs ?? (accel === 'tcg' ? 360_000 : 120_000);
  const heartbeatMs = opts.heartbeatTimeoutMs ?? 30_000;
  const bootTimeoutMs = opts.bootTimeoutMs ?? (accel === 'tcg' ? 90_000 : 30_000);
  mkdirSync(opts.logDir, { recursive: true });
  const consoleLog = join(opts.logDir, `${fileSafe(kernelId)}.console.log`);
  // The result port's lines (named after amd64's ttyS1 on every arch: harness/bench/corpus.ts reads them).
  const channelLog = join(opts.logDir, `${fileSafe(kernelId)}.ttyS1.log`);

  const argv = [...pdeathsigPrefix(), qemu, ...archQemuArgs(arch, { ...opts, accel })];
  const t0 = performance.now();
  const child = execa(argv[0]!, argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    buffer: false,
    reject: false,
    cleanup: true,
    stripFinalNewline: false,
  });

  const scanner = new ConsoleScanner();
  const messages: GuestMessage[] = [];
  const consoleOut = createWriteStream(consoleLog);
  const channelOut = createWriteStream(channelLog);
  let stderr = '';
  let hello: Extract<GuestMessage, { t: 'hello' }> | undefined;
  let done: Extract<GuestMessage, { t: 'done' }> | undefined;
  let initMs: number | undefined;
  let spoken = false;
  let killed: KillReason | undefined;
  let oomKill: string | undefined;

  const kill = (why: KillReason) => {
    if (killed) return;
    killed = why;
    child.kill('SIGKILL');
  };
  const timers: NodeJS.Timeout[] = [];
  const later = (ms: number, f: () => void) => {
    const t = setTimeout(f, ms);
    t.unref?.();
    timers.push(t);
    return t;
  };
  later(timeoutMs, () => kill({ verdict: 'timeout', detail: `guest still running after ${Math.round(timeoutMs / 1000)} s (${accel})` }));
  let silence = later(bootTimeoutMs, () =>
    kill({ verdict: 'no-agent', detail: `nothing on the result port within ${Math.round(bootTimeoutMs / 1000)} s of boot (/init never started?)` }),
  );
  const heard = () => {
    clearTimeout(silence);
    if (done) return;
    silence = later(heartbeatMs, () =>
      kill(
        hello
          ? { verdict: 'agent-hang', detail: `agent silent for ${Math.round(heartbeatMs / 1000)} s (${lastWhat()})` }
          : { verdict: 'no-agent', detail: `no hello from the agent within ${Math.round(heartbeatMs / 1000)} s of /init starting (${lastWhat()})` },
      ),
    );
  };
  let last: GuestMessage | undefined;
  let lastStep: AgentStep | undefined;
  let busy: { step: string; forMs: number } | undefined;
  const lastWhat = () =>
    lastStep ? `in ${describeStep(lastStep)}${busy ? `, busy for ${Math.round(busy.forMs / 1000)} s before the beats stopped` : ''}` : `last: ${last ? JSON.stringify(last).slice(0, 120) : 'nothing'}`;
  const onAbort = () => kill({ verdict: 'aborted', detail: 'aborted' });
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  const consoleDone = lines(child.stdout!, (raw) => {
    consoleOut.write(raw + '\n');
    const s = scanner.push(raw);
    if (!oomKill) {
      const m = OOM_KILL.exec(raw);
      if (m && m[2] === AGENT_COMM) oomKill = m[0];
    }
    if (s?.kind === 'panic') later(PANIC_GRACE_MS, () => kill({ verdict: 'panic-grace', detail: s.line }));
  });
  const channelDone = lines(child.stdio[3] as Readable, (raw) => {
    channelOut.write(raw + '\n');
    const m = decodeMessage(raw);
    if (!m) return;
    spoken = true;
    last = m;
    if (m.t === 'hello') hello = m;
    else if (m.t === 'step') {
      lastStep = m.step;
      busy = undefined;
    } else if (m.t === 'hb') busy = m.busy;
    else if (m.t === 'done') {
      done = m;
      clearTimeout(silence);
      later(POWEROFF_GRACE_MS, () => kill({ verdict: 'poweroff-grace', detail: 'guest did not power off after done' }));
    } else if (m.t === 'log' && initMs === undefined) {
      const im = /^init: started at (\d+) ms/.exec(m.msg);
      if (im) initMs = Number(im[1]);
    }
    if (m.t !== 'hb') messages.push(m);
    heard();
    try {
      opts.onMessage?.(m);
    } catch {
      /* a throwing observer must not break the run */
    }
  });
  child.stderr!.on('data', (b: Buffer) => {
    if (stderr.length < 4096) stderr += b.toString('utf8');
  });

  const result = await child;
  await Promise.all([consoleDone, channelDone]);
  for (const t of timers) clearTimeout(t);
  opts.signal?.removeEventListener('abort', onAbort);
  await Promise.all([new Promise((r) => consoleOut.end(r)), new Promise((r) => channelOut.end(r))]);
  const durationMs = Math.round(performance.now() - t0);
  if (killed?.verdict === 'aborted') throw new CoreMatrixError(`guest ${kernelId}: aborted`, { cause: opts.signal?.reason });

  const run: GuestRun = {
    kernelId,
    verdict: 'ok',
    messages,
    consoleLog,
    consoleTail: scanner.tailText(TAIL_LINES),
    durationMs,
    accel,
    splats: scanner.splats,
    ...(hello ? { bootMs: hello.bootMs } : initMs !== undefined ? { bootMs: initMs } : {}),
    ...(initMs !== undefined ? { initMs } : {}),
    ...(typeof result.exitCode === 'number' ? { qemuExitCode: result.exitCode } : {}),
  };
  // Where the agent was, for every way a guest can end early (a finished agent was nowhere).
  // A failed agent (its own done ok=false, or init's for an agent that died) was somewhere too.
  const unfinished = !done || !done.ok;
  const where = unfinished && lastStep ? ` (${lastWhat()})` : '';
  const set = (verdict: Verdict, detail: string) => Object.assign(run, { verdict, detail: verdict === 'agent-hang' || verdict === 'no-agent' ? detail : detail + where });
  if (lastStep && unfinished) run.lastStep = lastStep;
  const panic = scanner.first('panic');
  const oops = scanner.first('oops');
  const hung = scanner.first('hung-task');
  const qemuError = stderr.trim().split('\n').find((l) => l.trim() !== '')?.trim();
  if (panic) set('panic', panic.line);
  else if (oops) set('oops', oops.line);
  else if (hung) set('hung-task', hung.line);
  // The OOM killer ended the agent: init then reports a failed agent, or the host a silent one.
  else if (oomKill && !(done && done.ok)) set('agent-oom', `the kernel's OOM killer killed the agent: ${oomKill}`);
  else if (killed && (killed.verdict === 'timeout' || killed.verdict === 'agent-hang' || killed.verdict === 'no-agent')) set(killed.verdict, killed.detail);
  else if (!killed && (result.failed || result.exitCode !== 0))
    set(
      'qemu-died',
      result.exitCode === undefined && !result.signal
        ? `qemu did not start: ${result.originalMessage ?? result.shortMessage}`
        : `qemu exited ${result.signal ? `on ${result.signal}` : `with code ${result.exitCode}`}${qemuError ? `: ${qemuError}` : ''}`,
    );
  else if (done?.verdict === 'no-btf') set('no-btf', lastError(messages) ?? 'the agent found no kernel BTF');
  else if (done && !done.ok) set('agent-failed', lastError(messages) ?? 'agent reported done with ok=false');
  else if (done) {
    /* ok */
  } else if (!hello) set('no-agent', lastError(messages) ?? (spoken ? 'the guest powered off without an agent hello' : 'the guest powered off without a word on the result port'));
  else set('agent-failed', lastError(messages) ?? 'agent stopped without sending done');
  if (killed?.verdict === 'poweroff-grace' && run.verdict === 'ok') run.detail = killed.detail;
  return run;
}

/** An interactive guest (`corematrix shell`): the console on this process's terminal. */
export interface InteractiveGuestOptions {
  /** The kernel's arch (default amd64). */
  arch?: DebianArch;
  vmlinuz: string;
  initrd: string;
  append?: string;
  memoryMb?: number;
  cpus?: number;
  accel?: 'auto' | Accel;
  net?: 'user';
  /** Killed after this long (default: never). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Boots a guest whose console (ttyS0) is this process's stdin and stdout: QEMU puts a terminal in
 * raw mode itself, and with `signal=off` Ctrl-C goes to the guest. Returns QEMU's exit status
 * (0 when the guest powered off), or 124 when the time limit killed it.
 */
export async function runInteractiveGuest(o: InteractiveGuestOptions): Promise<number> {
  const arch = o.arch ?? DEFAULT_ARCH;
  checkFile('kernel image', 'shell', o.vmlinuz);
  checkFile('initramfs', 'shell', o.initrd);
  const qemu = checkQemu(arch);
  const accel: Accel = !o.accel || o.accel === 'auto' ? await probeAccel(o.vmlinuz, o.initrd, arch) : o.accel;
  const argv = [...pdeathsigPrefix(), qemu, ...archQemuArgs(arch, { ...o, accel, results: 'none' })];
  const child = execa(argv[0]!, argv.slice(1), { stdio: 'inherit', reject: false, cleanup: true });
  let timedOut = false;
  const timer = o.timeoutMs ? setTimeout(() => ((timedOut = true), child.kill('SIGKILL')), o.timeoutMs) : undefined;
  const onAbort = () => child.kill('SIGKILL');
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const r = await child;
  clearTimeout(timer);
  o.signal?.removeEventListener('abort', onAbort);
  if (timedOut) return 124;
  return typeof r.exitCode === 'number' ? r.exitCode : 1;
}

/** The error lines the guest sent (agent's first, then init's), joined into one line. */
function lastError(ms: GuestMessage[]): string | undefined {
  const errs = ms.flatMap((m) => (m.t === 'log' && m.level === 'error' ? [m.msg.replace(/\s+/g, ' ').trim()] : []));
  if (errs.length === 0) return undefined;
  const line = [...new Set(errs)].slice(-3).join('; ');
  return line.length > 300 ? line.slice(0, 297) + '...' : line;
}

/** Calls `f` for each line of `stream`; resolves at end of stream. */
function lines(stream: Readable, f: (line: string) => void): Promise<void> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: stream, crlfDelay: Infinity });
    rl.on('line', f);
    rl.on('close', () => resolve());
    stream.on('error', () => resolve());
  });
}

// ---- accelerator probe ----

/** The probe's answer, for the one arch KVM can run here (the host's own). */
let probe: Promise<Accel> | undefined;
let said = false;
/** Another arch than the host's never runs under KVM: TCG without a probe. */
const FOREIGN_ARCH: Promise<Accel> = Promise.resolve('tcg');

/** How long a KVM probe guest may stay silent on the console before we call KVM broken. */
export const KVM_PROBE_SILENCE_MS = 4_000;
const KVM_PROBE_TIMEOUT_MS = 20_000;

/**
 * Decides once per process whether KVM works: /dev/kvm must be usable AND a probe boot of this
 * kernel under KVM must reach /init (cm.init=hello) — on some hosts a KVM guest hangs right
 * after decompression, silently. The probe is killed as soon as the console stays silent for
 * KVM_PROBE_SILENCE_MS. COREMATRIX_ACCEL=kvm|tcg skips the probe. The fallback is said once.
 * A kernel of another arch than the host's (arm64 on x86-64) is TCG, without a probe.
 */
export function probeAccel(vmlinuz: string, initrd: string, arch: DebianArch = DEFAULT_ARCH): Promise<Accel> {
  if (!kvmCapable(arch)) return FOREIGN_ARCH;
  probe ??= doProbe(vmlinuz, initrd, arch);
  return probe;
}

/** Forgets the cached probe result (tests). */
export function resetAccelProbe(): void {
  probe = undefined;
  said = false;
}

export interface ProbeOutcome {
  accel: Accel;
  reason: string;
  ms: number;
}
let lastOutcome: ProbeOutcome | undefined;
/** What the last probe found and how long it took. */
export function lastProbe(): ProbeOutcome | undefined {
  return lastOutcome;
}

async function doProbe(vmlinuz: string, initrd: string, arch: DebianArch): Promise<Accel> {
  const t0 = performance.now();
  const env = process.env.COREMATRIX_ACCEL;
  const finish = (accel: Accel, reason: string): Accel => {
    lastOutcome = { accel, reason, ms: Math.round(performance.now() - t0) };
    if (accel === 'tcg' && !said && env !== 'tcg') {
      said = true;
      process.stderr.write(`corematrix: KVM unusable (${reason}); guests run under TCG (slower)\n`);
    }
    return accel;
  };
  if (env === 'kvm' || env === 'tcg') return finish(env, `COREMATRIX_ACCEL=${env}`);
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return finish('tcg', existsSync('/dev/kvm') ? '/dev/kvm is not accessible' : 'no /dev/kvm');
  }
  checkFile('kernel image', 'kvm-probe', vmlinuz);
  checkFile('initramfs', 'kvm-probe', initrd);
  const qemu = checkQemu(arch);
  const argv = [...pdeathsigPrefix(), qemu, ...archQemuArgs(arch, { vmlinuz, initrd, append: 'cm.init=hello', memoryMb: 512, accel: 'kvm' })];
  const child = execa(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], buffer: false, reject: false, cleanup: true });
  let why = '';
  let ok = false;
  let silence: NodeJS.Timeout | undefined;
  const kill = (reason: string) => {
    if (!why) why = reason;
    child.kill('SIGKILL');
  };
  const arm = () => {
    clearTimeout(silence);
    silence = setTimeout(() => kill(`probe guest silent for ${KVM_PROBE_SILENCE_MS / 1000} s under KVM`), KVM_PROBE_SILENCE_MS);
  };
  arm();
  const overall = setTimeout(() => kill(`probe guest did not reach /init in ${KVM_PROBE_TIMEOUT_MS / 1000} s`), KVM_PROBE_TIMEOUT_MS);
  child.stdout!.on('data', arm);
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const channel = lines(child.stdio[3] as Readable, (line) => {
    if (decodeMessage(line)?.t === 'hello') ok = true;
  });
  const r = await child;
  await channel;
  clearTimeout(silence);
  clearTimeout(overall);
  if (ok) return finish('kvm', 'probe guest reached /init under KVM');
  return finish('tcg', why || `qemu -accel kvm exited with code ${r.exitCode}${stderr.trim() ? ': ' + stderr.trim().split('\n')[0] : ''}`);
}

/**
 * The `lsm=` argument that makes the BPF LSM active on a kernel built with CONFIG_BPF_LSM=y whose
 * default CONFIG_LSM list leaves it out (Debian 5.10): the default list plus `bpf`. Undefined when
 * the BPF LSM is already active by default or not built.
 */
export function bpfLsmAppend(kernelConfig: string): string | undefined {
  if (!/^CONFIG_BPF_LSM=y$/m.test(kernelConfig)) return undefined;
  const m = /^CONFIG_LSM="([^"]*)"$/m.exec(kernelConfig);
  if (!m) return undefined;
  const list = m[1]!.split(',').filter(Boolean);
  return list.includes('bpf') ? undefined : `lsm=${[...list, 'bpf'].join(',')}`;
}
