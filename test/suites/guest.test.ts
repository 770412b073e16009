// Host-side checks of the guest code that need no BPF: .rodata writing into the real compiled
// objects (the seed's struct my_config), the ring buffer record decoder against the C layout,
// the truth sources that read /proc, and the loopback trigger over real sockets. The programs
// themselves run in real guests (the agent's tests).
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadObjectSpec } from '../../harness/core/object/index.js';
import type { ObjectSpec } from '../../harness/core/object/types.js';
import { buildSuites, type BuiltSuite } from '../../harness/suites/build.js';
import { decodeOpenEvent, evalTruth, rodataFor, runningKernelVersion, threadId, TRIGGERS, type TriggerOutcome } from '../../harness/suites/guest.js';
import { locateRodata, writeRodata } from '../../harness/suites/rodata.js';
import { parseTruth } from '../../harness/suites/truth.js';
import type { GuestContext, SuiteSpec } from '../../harness/suites/types.js';

let built: BuiltSuite[];
const open = (name: string): { obj: ObjectSpec; spec: SuiteSpec } => {
  const b = built.find((x) => x.name === name)!;
  return { obj: loadObjectSpec(new Uint8Array(readFileSync(b.object)), name), spec: b.spec };
};
const rodataOf = (obj: ObjectSpec) => obj.maps.find((m) => m.section === '.rodata')!;

beforeAll(async () => {
  built = await buildSuites();
}, 120_000);

describe('.rodata values', () => {
  it('writes struct members (cfg.max, cfg.min) at their BTF offsets', () => {
    const { obj, spec } = open('globals');
    const m = rodataOf(obj);
    const data = new Uint8Array(m.data!);
    expect(locateRodata(obj.btf, m.valueTypeId, 'cfg.max')).toEqual({ offset: 0, size: 4, kind: 'int' });
    expect(locateRodata(obj.btf, m.valueTypeId, 'cfg.min')).toEqual({ offset: 4, size: 4, kind: 'int' });
    const dv = new DataView(data.buffer);
    expect([dv.getInt32(0, true), dv.getInt32(4, true)]).toEqual([1 << 30, 0]); // the C initialiser
    writeRodata(obj.btf, m.valueTypeId, data, rodataFor(spec), 'globals.bpf.o');
    expect([dv.getInt32(0, true), dv.getInt32(4, true)]).toEqual([1000, 100]);
  });

  it('resolves $pid and refuses unknown names, strings for ints and values that do not fit', () => {
    const { obj, spec } = open('task-fields');
    const m = rodataOf(obj);
    const data = new Uint8Array(m.data!);
    expect(rodataFor(spec)).toEqual({ target_tgid: process.pid });
    writeRodata(obj.btf, m.valueTypeId, data, rodataFor(spec), 'task-fields.bpf.o');
    const off = locateRodata(obj.btf, m.valueTypeId, 'target_tgid')!.offset;
    expect(new DataView(data.buffer).getInt32(off, true)).toBe(process.pid);
    expect(() => writeRodata(obj.btf, m.valueTypeId, data, { target_pid: 1 }, 'x.o')).toThrow("x.o: no integer or char-array .rodata variable or member 'target_pid'");
    expect(() => writeRodata(obj.btf, m.valueTypeId, data, { target_tgid: 'one' }, 'x.o')).toThrow("x.o: .rodata 'target_tgid' is an integer, not a string");
    expect(() => writeRodata(obj.btf, m.valueTypeId, data, { target_tgid: 2 ** 33 }, 'x.o')).toThrow("x.o: 8589934592 does not fit .rodata 'target_tgid' (4 bytes)");
  });
});

describe('ring buffer records', () => {
  it('decodes the open-event layout of ringbuf-fentry (struct event in prog.bpf.c)', () => {
    const src = readFileSync(built.find((b) => b.name === 'ringbuf-fentry')!.source, 'utf8');
    expect(src).toMatch(/struct event \{\s*__u32 tgid;\s*__u32 tid;\s*__s32 dfd;\s*__u32 seq;\s*char filename\[64\];\s*\};/);
    const rec = new Uint8Array(80);
    const dv = new DataView(rec.buffer);
    dv.setUint32(0, 4242, true);
    dv.setUint32(4, 4243, true);
    dv.setInt32(8, -100, true); // AT_FDCWD
    dv.setUint32(12, 7, true);
    rec.set(new TextEncoder().encode('/tmp/cm-open-4242'), 16);
    expect(decodeOpenEvent(rec)).toEqual({ tgid: 4242, tid: 4243, dfd: -100, seq: 7, filename: '/tmp/cm-open-4242' });
  });
});

describe('truth sources and triggers (on the host, no BPF)', () => {
  const ctx: GuestContext = { release: 'x', config: new Map([['CONFIG_HZ', '250'], ['CONFIG_PHYLIB', 'm']]), hostTruth: { 'field.task_struct.__state': true, 'config.CONFIG_PREEMPT_RT': 'y' } };
  const none: TriggerOutcome = { values: { count: 3 }, sources: { count: 'three' }, ringbufs: new Map() };
  const spec = { name: 't', description: '', trigger: { kind: 'test-run', program: 'p', packetLengths: [64] }, checks: [], rodata: { 'cfg.max': 7 } } as SuiteSpec;
  const ev = (t: string) => {
    const e = parseTruth(t, spec.trigger.kind);
    if (typeof e === 'string') throw new Error(e);
    return evalTruth(e, spec, ctx, none).value;
  };

  it('reads the thread id, the task state and the netns inode from /proc', () => {
    const tid = threadId();
    expect(readFileSync('/proc/thread-self/stat', 'utf8').startsWith(`${tid} `)).toBe(true);
    expect(ev('proc:state')).toBe(0); // this thread is running while it reads its own stat
    expect(ev('proc:netns')).toBe(statSync('/proc/self/ns/net').ino);
    expect(readlinkSync('/proc/self/ns/net')).toBe(`net:[${ev('proc:netns')}]`);
    expect(ev('pid')).toBe(process.pid);
  });

  it('evaluates config, host, rodata, trigger and the operators', () => {
    expect([ev('config:CONFIG_HZ:int'), ev('config:CONFIG_PHYLIB:tristate'), ev('config:CONFIG_PREEMPT_RT:bool')]).toEqual([250, 2, 0]);
    expect([ev('host:config.CONFIG_PREEMPT_RT:bool'), ev('host:field.task_struct.__state ? 2 : 1'), ev('host:enum.x.Y ?? -1'), ev('host:enum.x.Y')]).toEqual([1, 2, -1, undefined]);
    expect([ev('rodata:cfg.max'), ev('trigger:count + 1000'), ev('const:0')]).toEqual([7, 1003, 0]);
    const [a, b, c] = runningKernelVersion();
    expect(ev('uname:kernel-version')).toBe((a << 16) + (b << 8) + Math.min(c, 255));
  });

  it('takes the kernel version after the build number, not the compiler\'s Debian version', () => {
    const v510 = 'Linux version 5.10.0-46-amd64 (debian-kernel@lists.debian.org) (gcc-10 (Debian 10.2.1-6) 10.2.1 20210110, GNU ld (GNU Binutils for Debian) 2.35.2) #1 SMP Debian 5.10.237-1 (2025-05-19)';
    expect(runningKernelVersion(v510, '5.10.0-46-amd64')).toEqual([5, 10, 237]);
    const v73 = 'Linux version 7.3.4+deb13-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0) #1 SMP PREEMPT_DYNAMIC Debian 7.3.4-1~bpo13+1 (2026-10-01)';
    expect(runningKernelVersion(v73, '7.3.4+deb13-amd64')).toEqual([7, 3, 4]);
    expect(runningKernelVersion('Linux version 6.18.44 (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP', '6.18.44-x')).toEqual([6, 18, 44]);
  });

  it('an empty guest config gives no truth rather than zeros', () => {
    const e = parseTruth('config:CONFIG_HZ:int', 'none');
    if (typeof e === 'string') throw new Error(e);
    expect(evalTruth(e, spec, { ...ctx, config: new Map() }, none)).toEqual({ value: undefined, from: 'no kernel config in the guest' });
  });

  it('loopback-tcp really connects a client bound to 127.0.0.1', async () => {
    const out = await TRIGGERS['loopback-tcp']({ ...spec, trigger: { kind: 'loopback-tcp' } }, undefined as never, [], ctx);
    expect(out.values.port).toBeGreaterThan(0);
    expect(out.values).toMatchObject({ count: 1, family: 2, protocol: 6, sockType: 1, userlocks: 4, netRefcnt: 1 });
  });
});
