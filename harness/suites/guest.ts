// Guest side of the suites: make the loaded programs run (the trigger), then evaluate every
// check: read what the BPF side observed (a global variable, or records of a ring buffer) and
// compute the truth independently (the agent's own pid/tid, /proc, the guest's kernel config,
// the host's BTF dump). Plain node built-ins only: this runs inside the guest's agent bundle.
//
//   import { guestRunner } from './suites/guest.js';
//   const checks = await guestRunner.run(spec, loadedObject, ctx);
//
// Before load, `.rodata` values come from `rodataFor(spec)` (placeholders such as $pid resolved).

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readlinkSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import type { Check } from '../results.js';
import type { GuestContext, LoadedObject, SuiteRunner, SuiteSpec, TriggerKind, TriggerSpec } from './types.js';
import { convertConfig, kernelVersionCode, parseObserve, parseTruth, sameValue, type Source, type TruthExpr } from './truth.js';

type Value = number | string | boolean | bigint | (number | string)[] | undefined;

/** What a trigger did: its own measurements, keyed as TRIGGER_KEYS lists, with where each came from. */
export interface TriggerOutcome {
  values: Record<string, number | string | boolean>;
  sources: Record<string, string>;
  /** Ring buffer records drained right after the trigger (map name → raw records). */
  ringbufs: Map<string, Uint8Array[]>;
}

export interface RunOptions {
  /** Ring buffer maps to drain after the trigger (default: those the checks observe). */
  ringbufs?: string[];
}

/** `.rodata` values of a spec with placeholders resolved ($pid → this process's pid). */
export function rodataFor(spec: SuiteSpec): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (const [k, v] of Object.entries(spec.rodata ?? {})) out[k] = v === '$pid' ? process.pid : v;
  return out;
}

/** This thread's id (node has no gettid(): /proc/thread-self links to <tgid>/task/<tid>). */
export function threadId(): number {
  const m = /task\/(\d+)$/.exec(readlinkSync('/proc/thread-self'));
  if (!m) throw new Error('cannot read /proc/thread-self');
  return Number(m[1]);
}

const ETH_HLEN = 14;
/** Linux ABI constants the loopback trigger's socket has by construction. */
const AF_INET = 2;
const SOCK_STREAM = 1;
const IPPROTO_TCP = 6;
const SOCK_BINDADDR_LOCK = 4; // include/net/sock.h: SNDBUF 1, RCVBUF 2, BINDADDR 4, BINDPORT 8

type Trigger = (spec: SuiteSpec, obj: LoadedObject, drain: string[], ctx: GuestContext) => Promise<TriggerOutcome>;

/** include/uapi/linux/if_tun.h, x86-64: _IOW('T', 202, int) and _IOR('T', 210, unsigned int). */
const TUNSETIFF = 0x400454ca;
const TUNGETIFF = 0x800454d2;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
/** struct ifreq: char ifr_name[IFNAMSIZ = 16], then a 24-byte union (ifr_flags: short at 16). */
const IFREQ_SIZE = 40;

function ifreq(name: string, flags: number): Uint8Array {
  const b = new Uint8Array(IFREQ_SIZE);
  b.set(new TextEncoder().encode(name));
  new DataView(b.buffer).setUint16(16, flags, true);
  return b;
}

const outcome = (): TriggerOutcome => ({ values: {}, sources: {}, ringbufs: new Map() });

/** The trigger registry: one function per TriggerSpec kind. */
export const TRIGGERS: Record<TriggerKind, Trigger> = {
  async 'prctl-set-name'(spec) {
    const t = spec.trigger as Extract<TriggerSpec, { kind: 'prctl-set-name' }>;
    const o = outcome();
    o.values.oldComm = readFileSync('/proc/self/comm', 'utf8').replace(/\n$/, '');
    o.sources.oldComm = '/proc/self/comm before the write';
    // /proc/self/comm → comm_write → __set_task_comm(leader, name) from the main thread (tid = tgid).
    writeFileSync('/proc/self/comm', t.name);
    o.values.name = t.name;
    o.sources.name = 'spec trigger.name';
    o.values.count = 1;
    o.sources.count = 'one write to /proc/self/comm';
    return o;
  },

  async 'loopback-tcp'(_spec) {
    const o = outcome();
    // Loaded here, not at the top: node:net brings node's whole stream stack, which every guest
    // would otherwise compile at start-up (~100 ms under TCG without a JIT) for one trigger.
    const { createServer, connect } = process.getBuiltinModule('node:net');
    const server = createServer((s) => s.destroy());
    await new Promise<void>((res, rej) => server.once('error', rej).listen(0, '127.0.0.1', () => res()));
    const port = (server.address() as AddressInfo).port;
    let client: Socket | undefined;
    try {
      client = await new Promise<Socket>((res, rej) => {
        // localAddress: node binds the client to 127.0.0.1, port 0, before connect(2).
        const c = connect({ port, host: '127.0.0.1', localAddress: '127.0.0.1' });
        c.once('connect', () => res(c)).once('error', rej);
      });
      o.values.port = port;
      o.sources.port = 'listening port of the agent (server.address())';
      o.values.family = client.remoteFamily === 'IPv4' ? AF_INET : -1;
      o.sources.family = `socket.remoteFamily ${client.remoteFamily} (AF_INET = 2)`;
      o.values.protocol = IPPROTO_TCP;
      o.sources.protocol = 'node net sockets are TCP (IPPROTO_TCP = 6)';
      o.values.sockType = SOCK_STREAM;
      o.sources.sockType = 'node net sockets are SOCK_STREAM (1)';
      o.values.userlocks = client.localAddress === '127.0.0.1' ? SOCK_BINDADDR_LOCK : 0;
      o.sources.userlocks = `client bound to ${client.localAddress} with port 0: inet_bind sets SOCK_BINDADDR_LOCK (4) only`;
      o.values.netRefcnt = 1;
      o.sources.netRefcnt = 'a user-space socket holds a netns reference (sk_net_refcnt = 1)';
      o.values.count = 1;
      o.sources.count = 'one connect(2)';
    } finally {
      client?.destroy();
      await new Promise<void>((res) => server.close(() => res()));
    }
    return o;
  },

  async 'test-run'(spec, obj) {
    const t = spec.trigger as Extract<TriggerSpec, { kind: 'test-run' }>;
    const o = outcome();
    const ro = rodataFor(spec);
    const min = typeof ro['cfg.min'] === 'number' ? ro['cfg.min'] : undefined;
    const max = typeof ro['cfg.max'] === 'number' ? ro['cfg.max'] : undefined;
    let rejected = 0;
    let outside = 0;
    let total = 0;
    for (const n of t.packetLengths) {
      const ret = obj.testRun(t.program, new Uint8Array(n));
      if (ret !== 0) rejected++;
      // BPF_PROG_TEST_RUN of a socket filter pulls the Ethernet header: skb->len = n - ETH_HLEN.
      const len = n - ETH_HLEN;
      total += len;
      if (min !== undefined && max !== undefined && (len < min || len > max)) outside++;
    }
    o.values.count = t.packetLengths.length;
    o.sources.count = 'BPF_PROG_TEST_RUN calls';
    o.values.rejected = rejected;
    o.sources.rejected = 'test runs whose return value was not 0';
    if (min !== undefined && max !== undefined) {
      o.values.outside = outside;
      o.sources.outside = `lengths ${t.packetLengths.join(',')} minus ${ETH_HLEN} outside [${min}, ${max}], counted in TypeScript`;
    }
    o.values.totalLen = total;
    o.sources.totalLen = `sum of packet lengths minus ${ETH_HLEN} each`;
    return o;
  },

  async syscalls(spec, obj, drain) {
    const t = spec.trigger as Extract<TriggerSpec, { kind: 'syscalls' }>;
    const o = outcome();
    const dir = process.env.TMPDIR || '/tmp';
    mkdirSync(dir, { recursive: true });
    const path = join(dir, `cm-open-${process.pid}`);
    writeFileSync(path, 'corematrix marker\n');
    for (const m of drain) obj.drainRingbuf(m); // the creation above is not one of the N opens
    for (let i = 0; i < t.opens; i++) closeSync(openSync(path, 'r'));
    for (const m of drain) o.ringbufs.set(m, obj.drainRingbuf(m));
    o.values.count = t.opens;
    o.sources.count = `fs.openSync(${path}) calls`;
    o.values.path = path;
    o.sources.path = 'marker file';
    return o;
  },

  async tun(spec, _obj, _drain, ctx) {
    const t = spec.trigger as Extract<TriggerSpec, { kind: 'tun' }>;
    if (!ctx.ioctl) throw new Error('trigger tun needs ioctl(2), which this context does not give');
    const o = outcome();
    // devtmpfs makes the node when the tun module registers its misc device.
    const fd = openSync('/dev/net/tun', 'r+');
    try {
      ctx.ioctl(fd, TUNSETIFF, ifreq(t.name, IFF_TUN | IFF_NO_PI), `TUNSETIFF ${t.name}`);
      const back = new Uint8Array(IFREQ_SIZE);
      ctx.ioctl(fd, TUNGETIFF, back, 'TUNGETIFF');
      const nul = back.indexOf(0);
      o.values.name = new TextDecoder().decode(back.subarray(0, nul < 0 ? 16 : Math.min(nul, 16)));
      o.sources.name = 'TUNGETIFF ifr_name';
      o.values.flags = new DataView(back.buffer).getUint16(16, true);
      o.sources.flags = `TUNGETIFF ifr_flags (asked for IFF_TUN | IFF_NO_PI = ${IFF_TUN | IFF_NO_PI})`;
      o.values.ifindex = Number(readFileSync(`/sys/class/net/${o.values.name}/ifindex`, 'utf8'));
      o.sources.ifindex = `/sys/class/net/${o.values.name}/ifindex`;
    } finally {
      closeSync(fd);
    }
    o.values.count = 2;
    o.sources.count = 'ioctl(2) calls on the tun file (TUNSETIFF, TUNGETIFF)';
    return o;
  },

  async 'block-io'(spec) {
    const t = spec.trigger as Extract<TriggerSpec, { kind: 'block-io' }>;
    const o = outcome();
    const path = `/dev/${t.device}`;
    const fd = openSync(path, 'r+');
    try {
      // Nothing has read this block yet: the page cache misses and a read request goes out.
      readSync(fd, Buffer.alloc(4096), 0, 4096, 64 << 20);
      writeSync(fd, Buffer.alloc(t.bytes, 0xa5), 0, t.bytes, 0);
      fsyncSync(fd); // writeback now, not in 30 s: every written byte reaches the device
    } finally {
      closeSync(fd);
    }
    o.values.bytes = t.bytes;
    o.sources.bytes = `bytes written to ${path} at offset 0, then fsync`;
    o.values.device = t.device;
    o.sources.device = 'spec trigger.device';
    o.values.reads = 1;
    o.sources.reads = `one 4096-byte read of ${path} at 64 MiB`;
    return o;
  },

  async none() {
    return outcome();
  },
};

// ---------------------------------------------------------------------------------------------
// Ring buffer records of the open-event layout: u32 tgid, u32 tid, s32 dfd, u32 seq, char[64].

export interface OpenEvent {
  tgid: number;
  tid: number;
  dfd: number;
  seq: number;
  filename: string;
}

export function decodeOpenEvent(rec: Uint8Array): OpenEvent {
  if (rec.length < 16) throw new Error(`ring buffer record of ${rec.length} bytes is shorter than an open event`);
  const dv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
  const name = rec.subarray(16);
  const nul = name.indexOf(0);
  return { tgid: dv.getUint32(0, true), tid: dv.getUint32(4, true), dfd: dv.getInt32(8, true), seq: dv.getUint32(12, true), filename: new TextDecoder().decode(nul < 0 ? name : name.subarray(0, nul)) };
}

function single(values: number[]): Value {
  const u = [...new Set(values)];
  return u.length === 1 ? u[0] : u;
}

function observeValue(text: string, obj: LoadedObject, out: TriggerOutcome): Value {
  const o = parseObserve(text);
  if (typeof o === 'string') throw new Error(o);
  if (o.kind === 'var') return obj.readVar(o.name);
  const recs = out.ringbufs.get(o.map);
  if (!recs) throw new Error(`ring buffer ${o.map} was not drained by the trigger`);
  const events = recs.map(decodeOpenEvent);
  const marker = events.filter((e) => e.filename === out.values.path);
  switch (o.view) {
    case 'marker':
      return marker.length;
    case 'tgid':
      return single(marker.map((e) => e.tgid));
    case 'tid':
      return single(marker.map((e) => e.tid));
    case 'ordered':
      return events.every((e, i) => i === 0 || e.seq === events[i - 1]!.seq + 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Truth sources.

const TASK_STATE: Record<string, number> = { R: 0, S: 1, D: 2, T: 4, t: 8, X: 16, Z: 32, I: 0x402 };

/**
 * The Debian upstream version of the running kernel from /proc/version, else uname -r. The
 * version follows the build number ("#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1"); the compiler's
 * "(Debian 10.2.1-6)" earlier on the line is not it.
 */
export function runningKernelVersion(procVersion?: string, release = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()): [number, number, number] {
  let text = procVersion ?? '';
  if (procVersion === undefined) {
    try {
      text = readFileSync('/proc/version', 'utf8');
    } catch {
      /* not Linux */
    }
  }
  const m = /#\d+[^#]*?\bDebian (\d+)\.(\d+)\.(\d+)/.exec(text) ?? /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release);
  if (!m) throw new Error(`cannot parse a kernel version from /proc/version or ${release}`);
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

function sourceValue(s: Source, spec: SuiteSpec, ctx: GuestContext, out: TriggerOutcome, obj?: LoadedObject): { value: Value; from: string } {
  switch (s.kind) {
    case 'pid':
      return { value: process.pid, from: 'agent: getpid()' };
    case 'tid':
      return { value: threadId(), from: 'agent: /proc/thread-self' };
    case 'proc':
      if (s.key === 'comm') return { value: readFileSync('/proc/thread-self/comm', 'utf8').replace(/\n$/, ''), from: '/proc/thread-self/comm' };
      if (s.key === 'state') {
        const stat = readFileSync('/proc/thread-self/stat', 'utf8');
        const letter = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
        return { value: TASK_STATE[letter], from: `/proc/thread-self/stat state '${letter}'` };
      }
      {
        // A kernel without network namespaces (CONFIG_NET_NS=n) has no such file: no value, and
        // the spec says what the program stores then (`proc:netns ?? 0`).
        if (!existsSync('/proc/self/ns/net')) return { value: undefined, from: 'no /proc/self/ns/net (a kernel without network namespaces)' };
        const link = readlinkSync('/proc/self/ns/net');
        const m = /^net:\[(\d+)\]$/.exec(link);
        const ino = statSync('/proc/self/ns/net').ino;
        if (!m || Number(m[1]) !== ino) return { value: undefined, from: `/proc/self/ns/net: link ${link} and st_ino ${ino} disagree` };
        return { value: ino, from: `/proc/self/ns/net (${link})` };
      }
    case 'uname': {
      const [a, b, c] = runningKernelVersion();
      const value = s.key === 'kernel-version' ? kernelVersionCode(a, b, c) : s.key === 'major' ? a : s.key === 'minor' ? b : Math.min(c, 255);
      return { value, from: `/proc/version ${a}.${b}.${c}` };
    }
    case 'config':
      if (ctx.config.size === 0) return { value: undefined, from: 'no kernel config in the guest' };
      return { value: convertConfig(ctx.config.get(s.option), s.conv), from: `guest kernel config ${s.option}=${ctx.config.get(s.option) ?? '(not set)'}` };
    case 'host': {
      const v = ctx.hostTruth[s.key];
      const value = s.conv ? convertConfig(v === undefined ? undefined : String(v), s.conv) : v;
      return { value, from: `host: ${s.key} = ${v === undefined ? '(absent)' : String(v)}` };
    }
    case 'trigger':
      return { value: out.values[s.key], from: `trigger: ${out.sources[s.key] ?? s.key}` };
    case 'rodata':
      return { value: rodataFor(spec)[s.name], from: `spec rodata ${s.name}` };
    case 'const':
      return { value: s.value, from: 'spec constant' };
    case 'var':
      if (!obj) return { value: undefined, from: `global ${s.name}: no loaded object` };
      return { value: obj.readVar(s.name), from: `BPF global ${s.name}` };
  }
}

export function evalTruth(e: TruthExpr, spec: SuiteSpec, ctx: GuestContext, out: TriggerOutcome, obj?: LoadedObject): { value: Value; from: string } {
  const { value, from } = sourceValue(e.source, spec, ctx, out, obj);
  switch (e.op) {
    case 'value':
      return { value, from };
    case 'default':
      return value === undefined ? { value: e.fallback, from: `${from}, so ${e.fallback}` } : { value, from };
    case 'cond':
      return { value: value === undefined ? undefined : value && value !== '0' && value !== 'n' ? e.then : e.else, from };
    case 'add':
      return { value: typeof value === 'number' ? value + e.add : undefined, from: `${from} + ${e.add}` };
  }
}

/** JSON-safe: bigints become numbers when exact, else decimal strings. */
function plain(v: Value): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  return v === undefined ? null : v;
}

/** Runs the trigger of one suite, then every check. Never throws for a failed check: ok=false. */
export async function runSuite(spec: SuiteSpec, obj: LoadedObject, ctx: GuestContext, opts: RunOptions = {}): Promise<Check[]> {
  const drain =
    opts.ringbufs ??
    [...new Set(spec.checks.flatMap((c) => {
      const o = parseObserve(c.observe);
      return typeof o !== 'string' && o.kind === 'ringbuf' ? [o.map] : [];
    }))];
  const out = await TRIGGERS[spec.trigger.kind](spec, obj, drain, ctx);
  for (const m of drain) if (!out.ringbufs.has(m)) out.ringbufs.set(m, obj.drainRingbuf(m));
  return spec.checks.map((c): Check => {
    let observed: Value;
    try {
      observed = observeValue(c.observe, obj, out);
    } catch (e) {
      return { name: c.name, observed: null, truth: null, ok: false, source: `observe ${c.observe}: ${(e as Error).message.split('\n')[0]}` };
    }
    const expr = parseTruth(c.truth, spec.trigger.kind);
    if (typeof expr === 'string') return { name: c.name, observed: plain(observed), truth: null, ok: false, source: expr };
    let truth: { value: Value; from: string };
    try {
      truth = evalTruth(expr, spec, ctx, out, obj);
    } catch (e) {
      return { name: c.name, observed: plain(observed), truth: null, ok: false, source: `truth ${c.truth}: ${(e as Error).message.split('\n')[0]}` };
    }
    const ok = truth.value !== undefined && observed !== undefined && sameValue(observed, truth.value);
    return { name: c.name, observed: plain(observed), truth: plain(truth.value), ok, source: truth.from };
  });
}

export const guestRunner: SuiteRunner = { run: (spec, obj, ctx) => runSuite(spec, obj, ctx) };
