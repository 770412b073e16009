// The standard workload: what the agent runs in a guest after attaching a user's BPF programs, so
// that programs on the common hooks run and their run counts can be explained. It runs inside the
// agent process (node, root, root cgroup, initial network namespace, lo up, /tmp on tmpfs).
//
// Every step does a fixed number of things (WORKLOAD_COUNTS) and the report says how many it
// really did, so a test can state the runs it expects: N opens of the marker file give N runs of
// an openat probe filtered on MARKER_FILE. To keep the counts exact:
//  - file steps use node's synchronous fs calls: each is one system call on this thread (the
//    asynchronous ones may go through io_uring, which no openat probe sees);
//  - sends and receives wait for each other, one at a time, so none are batched (libuv would
//    send queued datagrams with one sendmmsg);
//  - addresses are IP literals, so nothing resolves a name (no getaddrinfo, no extra sockets).
// A BPF program under test may deny or drop things: no step throws, every wait has a deadline,
// a failure is recorded in the step and the workload goes on with the next one.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { mmap, PROT_READ, PROT_WRITE } from '../runtime/sys.js';

/** The marker file's name: every open of it is the workload's (probes filter on it). */
export const MARKER_FILE = 'cm-workload-marker';
/** What the marker is renamed to before it is unlinked (never opened). */
export const MARKER_RENAMED = `${MARKER_FILE}.renamed`;
/** Where the marker lives unless `dir` says otherwise. */
export const WORKLOAD_DIR = '/tmp/cm-workload';
/** The sysctl the workload reads (harmless, present on every kernel). */
export const SYSCTL_FILE = '/proc/sys/kernel/ostype';
/** The block device written when it exists (null_blk's first device). */
export const BLOCK_DEVICE = '/dev/nullb0';
/** Payload prefixes: a witness (strace, a probe reading the buffer) finds the workload's own bytes by them. */
export const TCP_REQUEST = 'cm-workload-tcp-request';
export const TCP_REPLY = 'cm-workload-tcp-reply';
export const UDP_DATAGRAM = 'cm-workload-udp';

/** How many times each step does its thing when nothing fails (a command step: 1 per command). */
export const WORKLOAD_COUNTS = {
  /** fork + execve of `/bin/busybox true` (child_process.spawn), one after another. */
  exec: 3,
  /** openat(2) of the marker file: create+truncate for writing, read, append. */
  open: 3,
  /** read(2) of the marker. */
  read: 1,
  /** write(2) to the marker: after the create and after the append open. */
  write: 2,
  /** fsync(2) of the marker after each write. */
  fsync: 2,
  /** rename(2) of the marker to MARKER_RENAMED. */
  rename: 1,
  /** unlink(2) of MARKER_RENAMED. */
  unlink: 1,
  /** listen(2) on 127.0.0.1, an ephemeral port. */
  'tcp-listen': 1,
  /** connect(2) to the listener, one connection after another. */
  'tcp-connect': 3,
  /** Connections the listener accepted. */
  'tcp-accept': 3,
  /** One TCP_REQUEST write per connection, client to server (each one write(2), one tcp_sendmsg). */
  'tcp-send': 3,
  /** One TCP_REPLY write per connection, server to client. */
  'tcp-reply': 3,
  /** Connections closed by both ends. */
  'tcp-close': 3,
  /** UDP datagrams sent to a socket bound on 127.0.0.1, each after the previous one arrived. */
  'udp-send': 4,
  /** UDP datagrams received. */
  'udp-receive': 4,
  /** setTimeout sleeps of TIMER_MS, one after another. */
  timer: 3,
  /** A child `busybox sleep 0.05` (blocks in nanosleep: context switches). */
  sleep: 1,
  /** Pages of a fresh mapping of /dev/zero written once each: one write fault per page. */
  'page-fault': 64,
  /** SIGTERM sent to a child `busybox sleep 5`, which dies of it. */
  signal: 1,
  /** Reads of SYSCTL_FILE through /proc/sys (cgroup/sysctl programs run on each). */
  sysctl: 2,
  /** One write(2) of BLOCK_BYTES to BLOCK_DEVICE at offset 0. */
  'block-write': 1,
  /** fsync(2) of BLOCK_DEVICE: the written pages go to the device as write requests. */
  'block-fsync': 1,
} as const;

export type FixedStep = keyof typeof WORKLOAD_COUNTS;
export type StepName = FixedStep | 'command';

export const TIMER_MS = 10;
export const CHILD_SLEEP = '0.05';
export const BLOCK_BYTES = 65536;
const PAGE = 4096;
const TAIL_CHARS = 2000;
const DEFAULT_TIMEOUT_MS = 5000;

export interface WorkloadStep {
  step: StepName;
  /** How many times it was done: successful operations only. */
  count: number;
  /** How many it set out to do (WORKLOAD_COUNTS; 1 for a command). */
  expected: number;
  /** ok: done `expected` times; failed: `error` says what went wrong; skipped: `reason` says why. */
  status: 'ok' | 'failed' | 'skipped';
  /** What it acted on: a path, 127.0.0.1:port, a command line, an address range. */
  target?: string;
  ms: number;
  error?: string;
  reason?: string;
  /** Child processes it started (exec, sleep, signal, command). */
  pids?: number[];
  bytes?: number;
  /** command: exit code (null when killed), the signal that ended it, stdout+stderr's last characters. */
  exitCode?: number | null;
  signal?: string | null;
  output?: string;
  /** page-fault: minor faults of the whole process over the step (getrusage), for comparison. */
  minorFaults?: number;
}

export interface WorkloadReport {
  /** The process that ran it (a witness filters on it). */
  pid: number;
  dir: string;
  steps: WorkloadStep[];
  /** No step failed (skipped steps are fine). */
  ok: boolean;
  ms: number;
}

export interface WorkloadOptions {
  /** Where the marker file lives (default WORKLOAD_DIR; created if missing). */
  dir?: string;
  /** Run after the standard steps, each through `/bin/sh -c` with the timeout. */
  commands?: string[];
  /** Deadline of each network wait and child process (default 5000 ms); a wait that times out ends its step (the path is blocked). */
  timeoutMs?: number;
  /** Deadline of each of `commands` (default 30 s). */
  commandTimeoutMs?: number;
  /** Tests only: connect to this port instead of the workload's own listener (a closed one makes tcp-connect fail). */
  tcpConnectPort?: number;
  /** Tests only: the block device to write (default BLOCK_DEVICE). */
  blockDevice?: string;
  /**
   * Called with each TCP connection's two socket fds once it is accepted, before any data moves:
   * the attacher puts them into an object's sockmap, as the object's tool would its own sockets.
   * A failure is recorded on the tcp-accept step; the workload goes on.
   */
  onTcpConnection?: (clientFd: number, serverFd: number, index: number) => void;
}

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();
/** A failure as one line: the errno name and call for system errors (`ECONNREFUSED (connect)`), else the message. */
const errorText = (e: unknown): string => {
  const x = e as NodeJS.ErrnoException;
  if (x?.code && /^E[A-Z0-9]+$/.test(x.code)) return `${x.code}${x.syscall ? ` (${x.syscall})` : ''}`;
  return oneLine(String(x?.message ?? e));
};
const now = () => performance.now();
const since = (t: number) => Math.round((now() - t) * 10) / 10;

/** Resolves with `p`, or rejects naming `what` once `deadline` (performance.now() ms) has passed. */
function before<T>(p: Promise<T>, deadline: number, what: string): Promise<T> {
  const left = Math.max(0, deadline - now());
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${Math.round(left)} ms`)), left);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** A step's record from what it counted. */
function record(step: StepName, count: number, t0: number, extra: Partial<WorkloadStep> & { expected?: number } = {}): WorkloadStep {
  const expected = extra.expected ?? (step === 'command' ? 1 : WORKLOAD_COUNTS[step]);
  const status = extra.error ? 'failed' : extra.reason ? 'skipped' : count === expected ? 'ok' : 'failed';
  const r: WorkloadStep = { step, count, expected, status, ms: since(t0), ...extra };
  if (status === 'failed' && !r.error) r.error = `${step}: done ${count} of ${expected} times`;
  return r;
}

/** A step that did not run because one before it failed. */
const skipped = (step: FixedStep, reason: string, target?: string): WorkloadStep => ({ step, count: 0, expected: WORKLOAD_COUNTS[step], status: 'skipped', ms: 0, reason, ...(target ? { target } : {}) });

// ---- child processes ---------------------------------------------------------------------------

interface ChildEnd {
  pid?: number;
  code: number | null;
  signal: string | null;
  output: string;
  error?: string;
}

/**
 * Spawns `file args` and waits for it to end; killed (SIGKILL) and reported once `timeoutMs` passes.
 * `capture`: stdout and stderr kept (their tail), and the child leads its own process group, which
 * is killed as a whole: a shell's children would otherwise hold the pipes open past the timeout.
 */
function runChild(file: string, args: string[], timeoutMs: number, opts: { capture?: boolean; onSpawn?: (c: ChildProcess) => void } = {}): Promise<ChildEnd> {
  return new Promise((resolve) => {
    let output = '';
    let child: ChildProcess;
    try {
      child = spawn(file, args, opts.capture ? { stdio: ['ignore', 'pipe', 'pipe'], detached: true } : { stdio: 'ignore' });
    } catch (e) {
      resolve({ code: null, signal: null, output, error: `spawn ${file}: ${errorText(e)}` });
      return;
    }
    const keep = (b: Buffer) => {
      output = (output + b.toString('utf8')).slice(-TAIL_CHARS);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let error: string | undefined;
    const timer = setTimeout(() => {
      error = `${[file, ...args].join(' ')}: still running after ${timeoutMs} ms, killed`;
      try {
        if (opts.capture && child.pid) process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        child.kill('SIGKILL'); // the group is gone already: the child alone
      }
    }, timeoutMs);
    child.once('spawn', () => opts.onSpawn?.(child));
    child.once('error', (e) => {
      clearTimeout(timer);
      resolve({ pid: child.pid, code: null, signal: null, output, error: `spawn ${file}: ${errorText(e)}` });
    });
    // 'close', not 'exit': the pipes are drained by then, so the output tail is complete.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ pid: child.pid, code, signal, output, ...(error ? { error } : {}) });
    });
  });
}

async function execSteps(timeoutMs: number): Promise<WorkloadStep> {
  const t0 = now();
  const pids: number[] = [];
  let count = 0;
  let error: string | undefined;
  for (let i = 0; i < WORKLOAD_COUNTS.exec; i++) {
    const r = await runChild('/bin/busybox', ['true'], timeoutMs);
    if (r.pid) pids.push(r.pid);
    if (r.error || r.code !== 0) error ??= r.error ?? `/bin/busybox true: exit ${r.code ?? r.signal}`;
    else count++;
  }
  return record('exec', count, t0, { target: '/bin/busybox true', pids, ...(error ? { error } : {}) });
}

// ---- the marker file ---------------------------------------------------------------------------

function fileSteps(dir: string): WorkloadStep[] {
  const marker = join(dir, MARKER_FILE);
  const renamed = join(dir, MARKER_RENAMED);
  const n = { open: 0, read: 0, write: 0, fsync: 0 };
  const ms = { open: 0, read: 0, write: 0, fsync: 0 };
  const errors: Partial<Record<keyof typeof n, string>> = {};
  const timed = <T>(op: keyof typeof n, fn: () => T): T | undefined => {
    const t = now();
    try {
      const v = fn();
      n[op]++;
      return v;
    } catch (e) {
      errors[op] ??= `${op} ${marker}: ${errorText(e)}`;
      return undefined;
    } finally {
      ms[op] += now() - t;
    }
  };
  const payload = Buffer.from(`${MARKER_FILE}\n`);
  const withFd = (flags: string, use: (fd: number) => void) => {
    const fd = timed('open', () => openSync(marker, flags, 0o644));
    if (fd === undefined) return;
    try {
      use(fd);
    } finally {
      closeSync(fd);
    }
  };
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    errors.open = `mkdir ${dir}: ${errorText(e)}`;
  }
  withFd('w', (fd) => {
    timed('write', () => writeSync(fd, payload));
    timed('fsync', () => fsyncSync(fd));
  });
  withFd('r', (fd) => {
    timed('read', () => readSync(fd, Buffer.alloc(PAGE), 0, PAGE, null)); // no position: read(2), not pread64(2)
  });
  withFd('a', (fd) => {
    timed('write', () => writeSync(fd, payload));
    timed('fsync', () => fsyncSync(fd));
  });
  const steps = (['open', 'read', 'write', 'fsync'] as const).map((op) => {
    const s = record(op, n[op], now(), { target: marker, ...(errors[op] ? { error: errors[op] } : {}) });
    s.ms = Math.round(ms[op] * 10) / 10;
    return s;
  });
  let t = now();
  try {
    renameSync(marker, renamed);
    steps.push(record('rename', 1, t, { target: `${marker} → ${renamed}` }));
  } catch (e) {
    steps.push(record('rename', 0, t, { target: `${marker} → ${renamed}`, error: `rename ${marker}: ${errorText(e)}` }));
  }
  t = now();
  try {
    unlinkSync(renamed);
    steps.push(record('unlink', 1, t, { target: renamed }));
  } catch (e) {
    steps.push(record('unlink', 0, t, { target: renamed, error: `unlink ${renamed}: ${errorText(e)}` }));
  }
  return steps;
}

// ---- TCP on the loopback -----------------------------------------------------------------------

/** The next `event` of `emitter`, or its 'error' as a rejection. */
function once<T = void>(emitter: NodeJS.EventEmitter, event: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onEvent = (v: T) => {
      emitter.off('error', onError);
      resolve(v);
    };
    const onError = (e: Error) => {
      emitter.off(event, onEvent);
      reject(e);
    };
    emitter.once(event, onEvent);
    emitter.once('error', onError);
  });
}

/** Reads from `s` until `bytes` bytes have arrived. */
function receive(s: Socket, bytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (b: Buffer) => {
      got += b.toString('utf8');
      if (got.length >= bytes) done(() => resolve(got));
    };
    const onEnd = () => done(() => reject(new Error(`connection closed after ${got.length} of ${bytes} bytes`)));
    const onError = (e: Error) => done(() => reject(e));
    const done = (f: () => void) => {
      s.off('data', onData).off('end', onEnd).off('error', onError);
      f();
    };
    s.on('data', onData).once('end', onEnd).once('error', onError);
  });
}

/** The kernel fd under a node socket (libuv's handle), or -1. */
const socketFd = (s: Socket): number => (s as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;

async function tcpSteps(timeoutMs: number, connectPort?: number, onConnection?: WorkloadOptions['onTcpConnection']): Promise<WorkloadStep[]> {
  const N = WORKLOAD_COUNTS['tcp-connect'];
  const steps: WorkloadStep[] = [];
  const server: Server = createServer({ pauseOnConnect: false });
  const accepted: Socket[] = [];
  const waiting: ((s: Socket) => void)[] = [];
  server.on('connection', (s) => {
    s.on('error', () => {}); // a reset by a BPF program is seen by the step waiting on it
    accepted.push(s);
    waiting.shift()?.(s);
  });
  server.on('error', () => {});
  const clients: Socket[] = [];
  const stop = () => {
    for (const s of [...clients, ...accepted]) s.destroy();
    server.close();
  };
  try {
    let t = now();
    let port: number;
    try {
      server.listen(0, '127.0.0.1');
      await before(once(server, 'listening'), t + timeoutMs, 'listen on 127.0.0.1');
      port = (server.address() as { port: number }).port;
      steps.push(record('tcp-listen', 1, t, { target: `127.0.0.1:${port}` }));
    } catch (e) {
      steps.push(record('tcp-listen', 0, t, { target: '127.0.0.1', error: `tcp-listen 127.0.0.1: ${errorText(e)}` }));
      for (const s of ['tcp-connect', 'tcp-accept', 'tcp-send', 'tcp-reply', 'tcp-close'] as const) steps.push(skipped(s, 'tcp-listen failed'));
      return steps;
    }
    const target = `127.0.0.1:${connectPort ?? port}`;

    // Connections one after another: each connect(2) waits for its accept before the next.
    t = now();
    let connectError: string | undefined;
    let acceptError: string | undefined;
    let acceptedCount = 0;
    const pairs: [Socket, Socket][] = [];
    for (let i = 0; i < N; i++) {
      const deadline = now() + timeoutMs;
      const acceptedOne = accepted.length > pairs.length ? Promise.resolve(accepted[pairs.length]!) : new Promise<Socket>((r) => waiting.push(r));
      const c = connect({ host: '127.0.0.1', port: connectPort ?? port });
      // A write a BPF program refuses (an sk_msg verdict of SK_DROP: EACCES) is an 'error' event:
      // the step waiting on the other end sees the message not arrive; unheard, it would end the process.
      c.on('error', () => {});
      clients.push(c);
      try {
        await before(once(c, 'connect'), deadline, `connect ${target}`);
      } catch (e) {
        // The path is blocked (a program under test drops or refuses): the rest would wait as long.
        connectError ??= `tcp-connect ${target}: ${errorText(e)}`;
        c.destroy();
        break;
      }
      try {
        const s = await before(acceptedOne, deadline, `accept on 127.0.0.1:${port}`);
        acceptedCount++;
        pairs.push([c, s]);
        try {
          onConnection?.(socketFd(c), socketFd(s), pairs.length - 1);
        } catch (e) {
          acceptError ??= `tcp-accept 127.0.0.1:${port}: handing the connection over failed: ${errorText(e)}`;
        }
      } catch (e) {
        acceptError ??= `tcp-accept 127.0.0.1:${port}: ${errorText(e)}`;
      }
    }
    const connected = clients.filter((c) => !c.destroyed).length;
    steps.push(record('tcp-connect', connected, t, { target, ...(connectError ? { error: connectError } : {}) }));
    if (connected === 0) steps.push(skipped('tcp-accept', 'no connection', `127.0.0.1:${port}`));
    else steps.push(record('tcp-accept', acceptedCount, t, { target: `127.0.0.1:${port}`, ...(acceptError ? { error: acceptError } : {}) }));
    if (pairs.length === 0) {
      for (const s of ['tcp-send', 'tcp-reply', 'tcp-close'] as const) steps.push(skipped(s, 'no connection', target));
      return steps;
    }

    // One message each way per connection, each write awaited at the other end before the next.
    const exchange = async (step: 'tcp-send' | 'tcp-reply', text: (i: number) => string, from: 0 | 1) => {
      const t1 = now();
      let count = 0;
      let error: string | undefined;
      for (const [i, pair] of pairs.entries()) {
        const msg = text(i);
        const arrived = receive(pair[1 - from]!, msg.length);
        arrived.catch(() => {});
        try {
          pair[from]!.write(msg);
          await before(arrived, now() + timeoutMs, `${step} on connection ${i + 1}`);
          count++;
        } catch (e) {
          error ??= `${step} ${target}: ${errorText(e)}`;
          break;
        }
      }
      steps.push(record(step, count, t1, { target, bytes: pairs.reduce((n, _, i) => n + text(i).length, 0), ...(error ? { error } : {}) }));
    };
    await exchange('tcp-send', (i) => `${TCP_REQUEST}-${i + 1}\n`, 0);
    await exchange('tcp-reply', (i) => `${TCP_REPLY}-${i + 1}\n`, 1);

    // The client closes first; the server (allowHalfOpen off) answers the FIN with its own.
    t = now();
    let closed = 0;
    let closeError: string | undefined;
    for (const [i, [c, s]] of pairs.entries()) {
      const bothClosed = Promise.all([once(c, 'close'), once(s, 'close')]);
      c.end();
      try {
        await before(bothClosed, now() + timeoutMs, `close of connection ${i + 1}`);
        closed++;
      } catch (e) {
        closeError ??= `tcp-close ${target}: ${errorText(e)}`;
        break;
      }
    }
    steps.push(record('tcp-close', closed, t, { target, ...(closeError ? { error: closeError } : {}) }));
    return steps;
  } finally {
    stop();
  }
}

// ---- UDP on the loopback -----------------------------------------------------------------------

async function udpSteps(timeoutMs: number): Promise<WorkloadStep[]> {
  const M = WORKLOAD_COUNTS['udp-send'];
  const receiver: UdpSocket = createSocket('udp4');
  const sender: UdpSocket = createSocket('udp4');
  receiver.on('error', () => {});
  sender.on('error', () => {});
  const t0 = now();
  try {
    let port: number;
    try {
      receiver.bind(0, '127.0.0.1');
      await before(once(receiver, 'listening'), t0 + timeoutMs, 'bind 127.0.0.1');
      port = receiver.address().port;
    } catch (e) {
      const error = `udp bind 127.0.0.1: ${errorText(e)}`;
      return [record('udp-send', 0, t0, { target: '127.0.0.1', error }), skipped('udp-receive', 'no socket to receive on', '127.0.0.1')];
    }
    const target = `127.0.0.1:${port}`;
    const inbox: string[] = [];
    let wake: (() => void) | undefined;
    receiver.on('message', (m) => {
      inbox.push(m.toString('utf8'));
      wake?.();
    });
    let sent = 0;
    let sendError: string | undefined;
    let receiveError: string | undefined;
    let bytes = 0;
    let sendMs = 0;
    for (let i = 0; i < M; i++) {
      const msg = `${UDP_DATAGRAM}-${i + 1}`;
      const deadline = now() + timeoutMs;
      const t = now();
      try {
        await before(new Promise<void>((resolve, reject) => sender.send(msg, port, '127.0.0.1', (e) => (e ? reject(e) : resolve()))), deadline, `send to ${target}`);
        sent++;
        bytes += msg.length;
      } catch (e) {
        sendError ??= `udp-send ${target}: ${errorText(e)}`;
        continue;
      } finally {
        sendMs += now() - t;
      }
      // The next datagram goes only after this one arrived (or was given up for lost).
      try {
        const arrived = inbox.length > i ? Promise.resolve() : new Promise<void>((r) => (wake = r));
        await before(arrived, deadline, `datagram ${i + 1} on ${target}`);
      } catch (e) {
        // Lost (dropped by a program under test): the next ones would be too; stop waiting.
        receiveError ??= `udp-receive ${target}: ${errorText(e)}`;
        break;
      } finally {
        wake = undefined;
      }
    }
    const received = inbox.filter((m) => m.startsWith(UDP_DATAGRAM)).length;
    const send = record('udp-send', sent, t0, { target, bytes, ...(sendError ? { error: sendError } : {}) });
    send.ms = Math.round(sendMs * 10) / 10;
    return [send, record('udp-receive', received, t0, { target, ...(receiveError ? { error: receiveError } : {}) })];
  } finally {
    receiver.close();
    sender.close();
  }
}

// ---- sleeps, page faults, a signal, block I/O ----------------------------------------------------

async function timerStep(): Promise<WorkloadStep> {
  const t0 = now();
  for (let i = 0; i < WORKLOAD_COUNTS.timer; i++) await new Promise((r) => setTimeout(r, TIMER_MS));
  return record('timer', WORKLOAD_COUNTS.timer, t0, { target: `setTimeout ${TIMER_MS} ms` });
}

async function sleepStep(timeoutMs: number): Promise<WorkloadStep> {
  const t0 = now();
  const r = await runChild('/bin/busybox', ['sleep', CHILD_SLEEP], timeoutMs);
  const error = r.error ?? (r.code === 0 ? undefined : `busybox sleep ${CHILD_SLEEP}: exit ${r.code ?? r.signal}`);
  return record('sleep', error ? 0 : 1, t0, { target: `/bin/busybox sleep ${CHILD_SLEEP}`, ...(r.pid ? { pids: [r.pid] } : {}), ...(error ? { error } : {}) });
}

/**
 * Writes one byte to each page of a fresh shared mapping of /dev/zero: each write is a page fault
 * of this process at an address in `target` (the range), none of them merged or read ahead (write
 * faults of a shared mapping are taken a page at a time; shmem takes no huge pages by default).
 */
/** Reads of SYSCTL_FILE, each one open + read + close of /proc/sys (a sysctl access in the kernel). */
function sysctlStep(): WorkloadStep {
  const t0 = now();
  let count = 0;
  try {
    for (let i = 0; i < WORKLOAD_COUNTS.sysctl; i++) {
      readFileSync(SYSCTL_FILE, 'utf8');
      count++;
    }
  } catch (e) {
    return record('sysctl', count, t0, { target: SYSCTL_FILE, error: `read ${SYSCTL_FILE}: ${errorText(e)}` });
  }
  return record('sysctl', count, t0, { target: SYSCTL_FILE });
}

function pageFaultStep(): WorkloadStep {
  const pages = WORKLOAD_COUNTS['page-fault'];
  const t0 = now();
  let fd = -1;
  try {
    fd = openSync('/dev/zero', 'r+');
    const m = mmap(fd, pages * PAGE, PROT_READ | PROT_WRITE, 0, 'workload /dev/zero');
    closeSync(fd);
    fd = -1;
    const target = `0x${m.addr.toString(16)}-0x${(m.addr + BigInt(pages * PAGE)).toString(16)}`;
    const faultsBefore = process.resourceUsage().minorPageFault;
    let touched = 0;
    try {
      for (let p = 0; p < pages; p++) {
        m.bytes[p * PAGE] = 1;
        touched++;
      }
    } finally {
      m.close();
    }
    return record('page-fault', touched, t0, { target, bytes: pages * PAGE, minorFaults: process.resourceUsage().minorPageFault - faultsBefore });
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    return record('page-fault', 0, t0, { target: '/dev/zero', error: `page-fault: ${errorText(e)}` });
  }
}

async function signalStep(timeoutMs: number): Promise<WorkloadStep> {
  const t0 = now();
  let sent = false;
  const r = await runChild('/bin/busybox', ['sleep', '5'], timeoutMs, { onSpawn: (c) => (sent = c.kill('SIGTERM')) });
  const error = r.error ?? (!sent ? 'kill(SIGTERM) of busybox sleep 5 failed' : r.signal !== 'SIGTERM' ? `busybox sleep 5 ended with ${r.signal ?? `exit ${r.code}`}, not SIGTERM` : undefined);
  return record('signal', error ? 0 : 1, t0, { target: `SIGTERM to /bin/busybox sleep 5`, signal: r.signal, ...(r.pid ? { pids: [r.pid] } : {}), ...(error ? { error } : {}) });
}

function blockSteps(device: string): WorkloadStep[] {
  if (!existsSync(device)) {
    const reason = `${device} is absent (null_blk not loaded)`;
    return [skipped('block-write', reason, device), skipped('block-fsync', reason, device)];
  }
  let t = now();
  let fd: number;
  try {
    fd = openSync(device, 'r+');
  } catch (e) {
    const error = `open ${device}: ${errorText(e)}`;
    return [record('block-write', 0, t, { target: device, error }), skipped('block-fsync', 'the device did not open', device)];
  }
  try {
    const steps: WorkloadStep[] = [];
    try {
      const n = writeSync(fd, Buffer.alloc(BLOCK_BYTES, 0xa5), 0, BLOCK_BYTES, null); // at offset 0: the device was just opened
      steps.push(record('block-write', n === BLOCK_BYTES ? 1 : 0, t, { target: device, bytes: n, ...(n === BLOCK_BYTES ? {} : { error: `write ${device}: ${n} of ${BLOCK_BYTES} bytes` }) }));
    } catch (e) {
      steps.push(record('block-write', 0, t, { target: device, error: `write ${device}: ${errorText(e)}` }));
    }
    t = now();
    try {
      fsyncSync(fd); // writeback now: the pages reach the device as write requests
      steps.push(record('block-fsync', 1, t, { target: device }));
    } catch (e) {
      steps.push(record('block-fsync', 0, t, { target: device, error: `fsync ${device}: ${errorText(e)}` }));
    }
    return steps;
  } finally {
    closeSync(fd);
  }
}

async function commandStep(command: string, timeoutMs: number): Promise<WorkloadStep> {
  const t0 = now();
  const r = await runChild('/bin/sh', ['-c', command], timeoutMs, { capture: true });
  const error = r.error ?? (r.code === 0 ? undefined : `/bin/sh -c: ${r.code === null ? `killed by ${r.signal}` : `exit ${r.code}`}`);
  return record('command', error ? 0 : 1, t0, { target: command, exitCode: r.code, signal: r.signal, output: r.output, ...(r.pid ? { pids: [r.pid] } : {}), ...(error ? { error } : {}) });
}

/** Runs every step in order; never throws for a step's failure (see the report). */
export async function runWorkload(o: WorkloadOptions = {}): Promise<WorkloadReport> {
  const t0 = now();
  const dir = o.dir ?? WORKLOAD_DIR;
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const steps: WorkloadStep[] = [];
  steps.push(await execSteps(timeoutMs));
  steps.push(...fileSteps(dir));
  steps.push(...(await tcpSteps(timeoutMs, o.tcpConnectPort, o.onTcpConnection)));
  steps.push(...(await udpSteps(timeoutMs)));
  steps.push(await timerStep());
  steps.push(await sleepStep(timeoutMs));
  steps.push(pageFaultStep());
  steps.push(await signalStep(timeoutMs));
  steps.push(sysctlStep());
  steps.push(...blockSteps(o.blockDevice ?? BLOCK_DEVICE));
  for (const c of o.commands ?? []) steps.push(await commandStep(c, o.commandTimeoutMs ?? 30_000));
  return { pid: process.pid, dir, steps, ok: steps.every((s) => s.status !== 'failed'), ms: since(t0) };
}

/** One line per step, for logs: `open 3/3 ok 0.4 ms /tmp/cm-workload/cm-workload-marker`. */
export function describeWorkload(r: WorkloadReport): string {
  return r.steps
    .map((s) => `${s.step} ${s.count}/${s.expected} ${s.status} ${s.ms} ms${s.target ? ` ${s.target}` : ''}${s.error ? ` (${s.error})` : s.reason ? ` (${s.reason})` : ''}`)
    .join('\n');
}
