// The standard workload on the host (the same node code the guest agent runs), checked against a
// witness that is not ours: strace -f of a node process running it must show exactly the opens,
// connects, sends, execs and signals the report claims. strace must be installed (apt-get install
// strace): a missing witness fails the test rather than skipping it.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MARKER_FILE,
  MARKER_RENAMED, SYSCTL_FILE,
  TCP_REPLY,
  TCP_REQUEST,
  UDP_DATAGRAM,
  WORKLOAD_COUNTS,
  runWorkload,
  type FixedStep,
  type WorkloadOptions,
  type WorkloadReport,
  type WorkloadStep,
} from '../../harness/agent/workload.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const workloadModule = fileURLToPath(new URL('../../harness/agent/workload.ts', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'cm-workload-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const step = (r: WorkloadReport, name: FixedStep | 'command'): WorkloadStep => {
  const s = r.steps.find((x) => x.step === name);
  if (!s) throw new Error(`no ${name} step in ${JSON.stringify(r.steps.map((x) => x.step))}`);
  return s;
};
const portOf = (s: WorkloadStep) => Number(/:(\d+)$/.exec(s.target ?? '')?.[1]);

/** A port nothing listens on: bound by us, then closed. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

// ---- strace as the witness ---------------------------------------------------------------------

interface Call {
  pid: number;
  /** The whole call, `name(args) = result` (an interrupted call joined with its resumption). */
  text: string;
  name: string;
}

/** strace -f output as calls; `<unfinished ...>` and `<... x resumed>` halves joined per pid. */
function parseStrace(text: string): { calls: Call[]; events: { pid: number; text: string }[] } {
  const pending = new Map<number, string>();
  const calls: Call[] = [];
  const events: { pid: number; text: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    let rest = m[2]!;
    if (rest.startsWith('+++') || rest.startsWith('---')) {
      events.push({ pid, text: rest });
      continue;
    }
    if (rest.endsWith(' <unfinished ...>')) {
      pending.set(pid, rest.slice(0, -' <unfinished ...>'.length));
      continue;
    }
    const resumed = /^<\.\.\. \w+ resumed>(.*)$/.exec(rest);
    if (resumed) {
      rest = (pending.get(pid) ?? '') + resumed[1];
      pending.delete(pid);
    }
    const name = /^(\w+)\(/.exec(rest)?.[1];
    if (name) calls.push({ pid, text: rest, name });
  }
  return { calls, events };
}

const succeeded = (c: Call) => !/\) = -1 /.test(c.text) && !/= \?/.test(c.text);
const TRACED = 'openat,open,creat,execve,connect,accept,accept4,read,write,writev,sendto,sendmsg,sendmmsg,kill,rename,renameat,renameat2,unlink,unlinkat,fsync,mmap';

let haveStrace = false;
beforeAll(() => {
  haveStrace = spawnSync('strace', ['-V'], { stdio: 'ignore' }).status === 0;
});

/** Runs the workload in a fresh node process under strace -f; its report and the trace. */
function underStrace(name: string, o: WorkloadOptions): { report: WorkloadReport; calls: Call[]; events: { pid: number; text: string }[] } {
  if (!haveStrace) throw new Error('strace is not installed (apt-get install strace): it is this test\'s witness');
  const dir = join(tmp, name);
  const runner = join(tmp, `${name}.mts`);
  const out = join(tmp, `${name}.json`);
  const trace = join(tmp, `${name}.strace`);
  writeFileSync(runner, `import { writeFileSync } from 'node:fs';\nimport { runWorkload } from ${JSON.stringify(workloadModule)};\nwriteFileSync(${JSON.stringify(out)}, JSON.stringify(await runWorkload(${JSON.stringify({ ...o, dir })})));\n`);
  // -yy: descriptors with what they are (path, TCP:[a->b]); -s: the payloads, to find our own bytes.
  execFileSync('strace', ['-f', '-qq', '-yy', '-s', '256', '-e', `trace=${TRACED}`, '-o', trace, process.execPath, '--import', 'tsx', runner], { cwd: repo, stdio: 'pipe', timeout: 60_000 });
  const report = JSON.parse(readFileSync(out, 'utf8')) as WorkloadReport;
  return { report, ...parseStrace(readFileSync(trace, 'utf8')) };
}

describe('standard workload (host)', () => {
  it('every step runs its fixed count; the block step says why it was skipped; a command has its exit code and output', async () => {
    const r = await runWorkload({ dir: join(tmp, 'direct'), commands: ['echo cm-command-out; echo cm-command-err >&2; exit 3', 'echo fine'] });
    const fixed = Object.keys(WORKLOAD_COUNTS) as FixedStep[];
    expect(r.steps.map((s) => s.step)).toEqual([...fixed, 'command', 'command']);
    const block = (s: WorkloadStep) => s.step === 'block-write' || s.step === 'block-fsync';
    for (const s of r.steps.filter((x) => x.step !== 'command' && !block(x))) {
      expect(s.status, `${s.step}: ${s.error}`).toBe('ok');
      expect(s.count, s.step).toBe(WORKLOAD_COUNTS[s.step as FixedStep]);
      expect(s.ms, s.step).toBeGreaterThanOrEqual(0);
    }
    for (const s of r.steps.filter(block)) {
      if (s.status === 'skipped') expect(s.reason).toBe('/dev/nullb0 is absent (null_blk not loaded)');
      else expect(s).toMatchObject({ status: 'ok', count: 1 });
    }
    expect(step(r, 'open').target).toBe(join(tmp, 'direct', MARKER_FILE));
    // Each page written once is one fault; the process faults elsewhere too, never less.
    expect(step(r, 'page-fault').minorFaults).toBeGreaterThanOrEqual(WORKLOAD_COUNTS['page-fault']);
    expect(step(r, 'signal').signal).toBe('SIGTERM');
    const [bad, good] = r.steps.filter((s) => s.step === 'command');
    expect(bad).toMatchObject({ status: 'failed', count: 0, exitCode: 3, error: '/bin/sh -c: exit 3' });
    expect(bad!.output).toContain('cm-command-out');
    expect(bad!.output).toContain('cm-command-err');
    expect(good).toMatchObject({ status: 'ok', count: 1, exitCode: 0, output: 'fine\n' });
    expect(r.ok).toBe(false); // the failed command
    expect(r.pid).toBe(process.pid);
    console.log(`[measure] host workload: ${r.ms} ms; ${r.steps.map((s) => `${s.step} ${s.ms}`).join(', ')}`);
  });

  it('a command that outlives the timeout is killed and recorded; the workload still finishes', async () => {
    const t0 = performance.now();
    const r = await runWorkload({ dir: join(tmp, 'timeout'), commands: ['busybox sleep 3', 'echo after'], commandTimeoutMs: 500 });
    const [slow, after] = r.steps.filter((s) => s.step === 'command');
    expect(slow).toMatchObject({ status: 'failed', count: 0, exitCode: null, signal: 'SIGKILL' });
    expect(slow!.error).toBe('/bin/sh -c busybox sleep 3: still running after 500 ms, killed');
    expect(after).toMatchObject({ status: 'ok', output: 'after\n' });
    expect(performance.now() - t0).toBeLessThan(2500);
  });

  it('strace -f sees exactly the opens, reads, writes, fsyncs, execs, connects, sends and the signal the report claims', () => {
    const { report: r, calls, events } = underStrace('witness', { commands: ['echo cm-witness-command'] });
    const marker = join(tmp, 'witness', MARKER_FILE);
    const renamed = join(tmp, 'witness', MARKER_RENAMED);
    const ours = calls.filter((c) => c.pid === r.pid);

    // The marker: opened (by name) and used (by descriptor, -yy names its path) exactly as claimed.
    const opens = calls.filter((c) => (c.name === 'openat' || c.name === 'open' || c.name === 'creat') && c.text.includes(`"${marker}"`));
    expect(opens.length).toBe(step(r, 'open').count);
    expect(opens.length).toBe(WORKLOAD_COUNTS.open);
    expect(opens.every(succeeded)).toBe(true);
    const onMarker = (name: string) => calls.filter((c) => c.name === name && c.text.startsWith(`${name}(`) && new RegExp(`^${name}\\(\\d+<${marker.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}>`).test(c.text));
    expect(onMarker('read').length).toBe(step(r, 'read').count);
    expect(onMarker('write').length).toBe(step(r, 'write').count);
    expect(onMarker('fsync').length).toBe(step(r, 'fsync').count);
    // The sysctl reads: one open of the /proc/sys file each, by the workload's own process.
    const sysctlOpens = ours.filter((c) => c.name === 'openat' && c.text.includes(`"${SYSCTL_FILE}"`));
    expect(sysctlOpens.length).toBe(step(r, 'sysctl').count);
    expect(sysctlOpens.length).toBe(WORKLOAD_COUNTS.sysctl);
    expect(calls.filter((c) => /^rename(at2?)?\(/.test(c.text) && c.text.includes(`"${marker}"`) && c.text.includes(`"${renamed}"`) && succeeded(c)).length).toBe(1);
    expect(calls.filter((c) => /^unlink(at)?\(/.test(c.text) && c.text.includes(`"${renamed}"`) && succeeded(c)).length).toBe(1);
    expect(calls.filter((c) => /^unlink(at)?\(/.test(c.text) && c.text.includes(`"${marker}"`)).length).toBe(0);

    // Execs: `busybox true` by the exec step, in the children the report names.
    const trues = calls.filter((c) => c.name === 'execve' && c.text.startsWith('execve("/bin/busybox", ["/bin/busybox", "true"]') && succeeded(c));
    expect(trues.length).toBe(step(r, 'exec').count);
    expect(trues.length).toBe(WORKLOAD_COUNTS.exec);
    expect(trues.map((c) => c.pid).sort()).toEqual([...step(r, 'exec').pids!].sort());
    const sleeps = calls.filter((c) => c.name === 'execve' && c.text.includes('["/bin/busybox", "sleep", "0.05"]'));
    expect(sleeps.map((c) => c.pid)).toEqual(step(r, 'sleep').pids);
    const shells = calls.filter((c) => c.name === 'execve' && c.text.includes('"-c", "echo cm-witness-command"'));
    expect(shells.map((c) => c.pid)).toEqual(step(r, 'command').pids);

    // TCP: the connects to the listener's port, the accepts, one write each way per connection.
    const port = portOf(step(r, 'tcp-listen'));
    const connects = ours.filter((c) => c.name === 'connect' && c.text.includes(`sin_port=htons(${port})`));
    expect(connects.length).toBe(step(r, 'tcp-connect').count);
    expect(connects.length).toBe(WORKLOAD_COUNTS['tcp-connect']);
    expect(ours.filter((c) => c.name.startsWith('accept') && succeeded(c) && c.text.includes(`TCP:[127.0.0.1:${port}->`)).length).toBe(step(r, 'tcp-accept').count);
    const sends = (prefix: string) => ours.filter((c) => /^(write|writev|sendto|sendmsg)\(\d+<TCP:/.test(c.text) && c.text.includes(`"${prefix}-`) && succeeded(c)).length;
    expect(sends(TCP_REQUEST)).toBe(step(r, 'tcp-send').count);
    expect(sends(TCP_REPLY)).toBe(step(r, 'tcp-reply').count);
    expect(sends(TCP_REPLY)).toBe(WORKLOAD_COUNTS['tcp-reply']);

    // UDP: every datagram carrying our prefix, to the receiver's port (sendmmsg may carry several).
    const udpPort = portOf(step(r, 'udp-send'));
    const datagrams = ours
      .filter((c) => /^(sendto|sendmsg|sendmmsg)\(\d+<UDP:/.test(c.text) && c.text.includes(`htons(${udpPort})`) && succeeded(c))
      .reduce((n, c) => n + (c.text.match(new RegExp(`"${UDP_DATAGRAM}-\\d+"`, 'g'))?.length ?? 0), 0);
    expect(datagrams).toBe(step(r, 'udp-send').count);
    expect(datagrams).toBe(WORKLOAD_COUNTS['udp-send']);

    // The page-fault step's mapping: /dev/zero, at the address the report names, of its length.
    const [start, end] = step(r, 'page-fault').target!.split('-').map((x) => BigInt(x));
    const maps = ours.filter((c) => c.name === 'mmap' && c.text.includes('</dev/zero') && c.text.endsWith(`= 0x${start!.toString(16)}`));
    expect(maps.length).toBe(1);
    expect(maps[0]!.text).toContain(`mmap(NULL, ${end! - start!}, PROT_READ|PROT_WRITE, MAP_SHARED,`);

    // The signal: one kill(SIGTERM) of the child the report names, which died of it.
    const [victim] = step(r, 'signal').pids!;
    expect(ours.filter((c) => c.name === 'kill' && c.text.startsWith(`kill(${victim}, SIGTERM)`) && succeeded(c)).length).toBe(1);
    expect(calls.filter((c) => c.name === 'kill' && c.text.includes('SIGUSR1')).length).toBe(0);
    expect(events.filter((e) => e.pid === victim && e.text === '+++ killed by SIGTERM +++').length).toBe(1);
  }, 60_000);

  it('a connect to a closed port is recorded as failed, the rest of TCP as skipped, and later steps still run (strace agrees)', async () => {
    const port = await closedPort();
    const { report: r, calls } = underStrace('refused', { tcpConnectPort: port, timeoutMs: 2000 });
    const connect = step(r, 'tcp-connect');
    expect(connect).toMatchObject({ status: 'failed', count: 0, target: `127.0.0.1:${port}` });
    expect(connect.error).toMatch(new RegExp(`^tcp-connect 127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
    for (const s of ['tcp-accept', 'tcp-send', 'tcp-reply', 'tcp-close'] as const) expect(step(r, s)).toMatchObject({ status: 'skipped', reason: 'no connection', count: 0 });
    // One attempt, refused: a blocked path ends its step (the next attempts would wait as long).
    const attempts = calls.filter((c) => c.pid === r.pid && c.name === 'connect' && c.text.includes(`sin_port=htons(${port})`));
    expect(attempts.length).toBe(1);
    // The steps after it ran in full.
    for (const s of ['udp-send', 'udp-receive', 'timer', 'sleep', 'page-fault', 'signal'] as const) expect(step(r, s), s).toMatchObject({ status: 'ok', count: WORKLOAD_COUNTS[s] });
    expect(calls.filter((c) => c.name === 'kill' && c.text.startsWith(`kill(${step(r, 'signal').pids![0]}, SIGTERM)`)).length).toBe(1);
    expect(r.ok).toBe(false);
  }, 60_000);
});
