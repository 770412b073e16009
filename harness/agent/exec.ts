// The commands in the guest, run after the agent's work: each suite's own (spec `exec`, in
// /cm/suites/<suite>), then the user's (`matrix --exec`, in /cm/files/<first folder>). Each is
// `/bin/sh -c <command>` in its own process group, with a time limit; its exit status, its
// duration and the tail of its stdout+stderr become one cell. The agent stays async while a
// command runs, so its heartbeats go on. With `--net user` the NIC is brought up first (QEMU's
// user net: a static 10.0.2.15/24 and a default route through 10.0.2.2).

import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { RESULT_SCHEMA, type CellResult, type KernelInfo } from '../results.js';
import { finitModule } from '../runtime/index.js';
import type { ExecPlan, NetPlan } from './manifest.js';

/** The output tail a cell keeps: its last lines, at most this many bytes. */
export const TAIL_LINES = 80;
export const TAIL_BYTES = 8192;
/** How long the command's pipes may stay open after it exited (a child it left behind holds them) before they are cut. */
const DRAIN_MS = 1000;

type Log = (level: 'info' | 'warn' | 'error', msg: string) => void;

/** Keeps the last bytes of a stream, enough for TAIL_LINES lines of up to TAIL_BYTES. */
class Tail {
  private chunks: Buffer[] = [];
  private bytes = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.bytes += b.length;
    while (this.bytes - this.chunks[0]!.length >= TAIL_BYTES * 2) this.bytes -= this.chunks.shift()!.length;
  }
  text(): string {
    let s = Buffer.concat(this.chunks).toString('utf8');
    if (s.endsWith('\n')) s = s.slice(0, -1);
    let lines = s.split('\n').slice(-TAIL_LINES);
    while (lines.length > 1 && Buffer.byteLength(lines.join('\n')) > TAIL_BYTES) lines = lines.slice(1);
    const t = lines.join('\n');
    return Buffer.byteLength(t) > TAIL_BYTES ? t.slice(-TAIL_BYTES) : t;
  }
}

/** The last line with something on it, one line of at most 200 characters. */
function lastLine(tail: string): string {
  const line = tail.split('\n').reverse().find((l) => l.trim() !== '')?.trim() ?? '';
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}

/** How long the NIC may take to report its link (e1000 under TCG: about 2 s after `up`). */
const CARRIER_WAIT_MS = 10_000;

/**
 * Brings up QEMU's user-mode network: loads the NIC's modules, then the first interface that is
 * not lo gets the plan's address and a default route (busybox ip), and its link is waited for (a
 * packet sent before it is lost). Returns one line saying what came up; throws, saying what did not.
 */
export async function bringUpNetwork(net: NetPlan): Promise<string> {
  for (const m of net.modules) {
    const fd = openSync(m.path, 'r');
    try {
      finitModule(fd, m.name);
    } finally {
      closeSync(fd);
    }
  }
  const dev = readdirSync('/sys/class/net').sort().find((n) => n !== 'lo');
  if (!dev) throw new Error(`no network interface after loading ${net.modules.map((m) => m.name).join(', ') || 'nothing (driver built in)'}`);
  const ip = (...args: string[]) => {
    const r = spawnSync('/bin/ip', args, { encoding: 'utf8', timeout: 10_000 });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n')[0]}`);
  };
  const t0 = performance.now();
  ip('link', 'set', dev, 'up');
  ip('addr', 'add', net.address, 'dev', dev);
  ip('route', 'add', 'default', 'via', net.gateway);
  writeFileSync('/etc/resolv.conf', `nameserver ${net.dns}\n`);
  const carrier = () => {
    try {
      return readFileSync(`/sys/class/net/${dev}/carrier`, 'utf8').trim() === '1';
    } catch {
      return false; // EINVAL while the interface is down
    }
  };
  while (!carrier()) {
    if (performance.now() - t0 > CARRIER_WAIT_MS) throw new Error(`${dev}: no link ${CARRIER_WAIT_MS / 1000} s after it was set up`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return `${dev} ${net.address}, gateway ${net.gateway}, DNS ${net.dns}; link up after ${Math.round(performance.now() - t0)} ms`;
}

/**
 * Runs the command and returns its cell: pass on exit 0; fail on another status (`exit N: <last
 * line>`), on a command the guest cannot find or execute, or when it outlived its limit (its
 * process group is killed with SIGKILL). `netNote` is added to a failure's reason when the
 * network did not come up.
 */
export async function runCommand(plan: ExecPlan, kernel: KernelInfo, opts: { netProblem?: string; log?: Log } = {}): Promise<CellResult> {
  const t0 = performance.now();
  const tail = new Tail();
  const cell = (verdict: CellResult['verdict'], reason: string | undefined, output?: CellResult['output']): CellResult => ({
    schema: RESULT_SCHEMA, kernel, suite: plan.suite, program: plan.program, loader: 'ours', object: plan.object, verdict,
    ...(reason !== undefined ? { reason: opts.netProblem ? `${reason} (no network: ${opts.netProblem})` : reason } : {}),
    relocations: [], externs: [], checks: [], ...(output ? { output } : {}),
    timings: { loadMs: 0, runMs: Math.round(performance.now() - t0) },
  });
  if (!existsSync(plan.cwd)) return cell('error', `working directory ${plan.cwd} is missing from the image`);
  const env = { PATH: plan.path, HOME: '/root', TERM: 'dumb', CM_KERNEL: kernel.id, CM_RELEASE: kernel.release, CM_FILES: plan.files, ...(plan.ofSuite ? { CM_SUITE: plan.suite } : {}) };
  // Its own process group (detached): a timeout kills the shell and everything it started.
  const child = spawn('/bin/sh', ['-c', plan.command], { cwd: plan.cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout.on('data', (b: Buffer) => tail.push(b));
  child.stderr.on('data', (b: Buffer) => tail.push(b));
  const closed = new Promise<void>((r) => child.on('close', () => r()));
  let timedOut = false;
  const killGroup = () => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* the group is gone */
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup();
  }, plan.timeoutMs);
  const ended = await new Promise<{ code: number | null; signal: NodeJS.Signals | null } | { error: Error }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', (error) => resolve({ error }));
  });
  clearTimeout(timer);
  // What it left running in its group goes with it; its pipes then close.
  killGroup();
  await Promise.race([closed, new Promise((r) => setTimeout(r, DRAIN_MS))]);
  if ('error' in ended) return cell('error', `/bin/sh -c could not be started: ${ended.error.message.split('\n')[0]}`);
  const text = tail.text();
  const output: NonNullable<CellResult['output']> = { exitCode: ended.code, ...(ended.signal ? { signal: ended.signal } : {}), tail: text };
  const last = lastLine(text);
  const secs = (ms: number) => `${Math.round(ms / 100) / 10} s`;
  opts.log?.('info', `agent: exec ${plan.suite}: ${timedOut ? 'killed at its limit' : ended.signal ? `ended by ${ended.signal}` : `exit ${ended.code}`} in ${secs(performance.now() - t0)}`);
  // The limit as the user set it: the spec's exec.timeout for a suite's command, --exec-timeout for the user's.
  if (timedOut) return cell('fail', `killed after ${secs(plan.timeoutMs)} (${plan.ofSuite ? 'exec.timeout' : '--exec-timeout'})${last ? `: ${last}` : ''}`, output);
  if (ended.signal) return cell('fail', `killed by ${ended.signal}${last ? `: ${last}` : ''}`, output);
  if (ended.code === 0) return cell('pass', undefined, output);
  const what = ended.code === 127 ? 'not found in the guest (or a library it needs): ' : ended.code === 126 ? 'not executable in the guest: ' : '';
  return cell('fail', `exit ${ended.code}: ${what}${last || '(no output)'}`, output);
}

/** The cell of a suite's command where that suite is an expected skip on this kernel: not run, for the suite's reason. */
export function skippedCommand(plan: ExecPlan, kernel: KernelInfo, reason: string): CellResult {
  return {
    schema: RESULT_SCHEMA, kernel, suite: plan.suite, program: plan.program, loader: 'ours', object: plan.object, verdict: 'expected-skip',
    reason, relocations: [], externs: [], checks: [], timings: { loadMs: 0, runMs: 0 },
  };
}

/**
 * The exec section of the agent: the network (when asked, once, before the first command that
 * runs), then each command in turn, its cell handed to `onCell` as soon as it is known. A suite's
 * own command where the suite is an expected skip (`skipOf` says why) is not run: its cell is an
 * expected skip too. `onStart` names each command before it starts (the agent's step).
 */
export async function runExecs(
  plans: ExecPlan[], net: NetPlan | undefined, kernel: KernelInfo, log: Log,
  hooks: { skipOf?: (suite: string) => string | undefined; onStart?: (plan: ExecPlan, i: number) => void; onCell: (cell: CellResult) => void },
): Promise<void> {
  let netProblem: string | undefined;
  let netDone = !net;
  for (const [i, plan] of plans.entries()) {
    const skip = plan.ofSuite ? hooks.skipOf?.(plan.suite) : undefined;
    if (skip !== undefined) {
      hooks.onCell(skippedCommand(plan, kernel, skip));
      continue;
    }
    if (!netDone) {
      netDone = true;
      try {
        log('info', `agent: network: ${await bringUpNetwork(net!)}`);
      } catch (e) {
        netProblem = (e as Error).message.split('\n')[0]!;
        log('warn', `agent: network not up: ${netProblem}`);
      }
    }
    hooks.onStart?.(plan, i);
    hooks.onCell(await runCommand(plan, kernel, { ...(netProblem ? { netProblem } : {}), log }));
  }
}
