// Uprobes, uretprobes, multi-uprobes and USDT probes attached by our own loader in real guests
// (TCG), with Debian's libbpf attaching the same object in the same guest as the witness:
//  - 5.10: no BPF cookies (usdt.bpf.h finds its spec through __bpf_usdt_ip_to_spec_id, keyed by
//    the probe addresses readelf prints), no multi-uprobe links (uprobe.multi fails, naming it);
//  - 6.1: cookies, but no multi-uprobe links: one uprobe per USDT location, a BPF perf link each;
//  - 7.3: cookies (the spec id travels as the BPF cookie), USDT programs loaded and attached as one
//    multi-uprobe link per probe, uprobe.multi on a glob.
// The target (fixtures/usdt_target.c, built here with gcc and sys/sdt.h) runs N iterations; every
// count must be exactly what N iterations explain, every argument what the program passed, the
// semaphore of cm:sema raised while attached (the target prints how often it saw it non-zero) and
// lowered after; after detaching, another run changes nothing. The tracefs uprobe_events path is
// checked too, and its entries must be gone after close.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { cacheDir } from '../../harness/paths.js';
import { LINK_CREATE_PERF_EVENT } from '../../harness/runtime/uprobe.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';
import { compileAndRunC, compileBpf } from '../helpers/tools.js';
import type { Params, Report, Side } from './fixtures/guest-uprobe-usdt.js';

const N = 7;
const PARAMS: Omit<Params, 'iterations'> = { object: '/t/uprobe_usdt.bpf.o', target: '/t/usdt_target', pie: '/t/usdt_target_pie', usdtCookie: 0xc0ffee, uprobeCookie: 0x1234, multiCookies: [11, 31] };
const SOURCE = 'test/runtime/fixtures/usdt_target.c';
const tmp = mkdtempSync(join(tmpdir(), 'cm-uprobe-usdt-'));
let agent: string;
let object: string;
let target: string;
let pie: string;

/** The target as the guest runs it, gcc -O2: -no-pie (an ET_EXEC: its probe addresses are the ip→spec-id keys) or a PIE. */
function compileTarget(asPie: boolean): string {
  if (!existsSync('/usr/include/x86_64-linux-gnu/sys/sdt.h') && !existsSync('/usr/include/sys/sdt.h')) throw new Error('sys/sdt.h missing: apt-get install systemtap-sdt-dev');
  const flags = ['-O2', '-g', '-Wall', asPie ? '-pie' : '-no-pie', ...(asPie ? ['-fPIE'] : [])];
  const out = join(cacheDir('test-objects'), `usdt_target-${createHash('sha256').update(readFileSync(SOURCE)).update(flags.join(' ')).digest('hex').slice(0, 16)}`);
  if (!existsSync(out)) {
    execFileSync('gcc', [...flags, '-o', `${out}.${process.pid}.tmp`, SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(`${out}.${process.pid}.tmp`, out);
  }
  return out;
}

beforeAll(async () => {
  target = compileTarget(false);
  pie = compileTarget(true);
  object = compileBpf(fileURLToPath(new URL('./fixtures/uprobe_usdt.bpf.c', import.meta.url)), ['-D__TARGET_ARCH_x86']);
  agent = await bundleGuestScript(fileURLToPath(new URL('./fixtures/guest-uprobe-usdt.ts', import.meta.url)), join(tmp, 'uprobe-usdt.mjs'));
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function runIn(kernelId: string): Promise<Report> {
  const k = await new KernelStore().fetch(kernelId);
  const params = join(tmp, 'params.json');
  writeFileSync(params, JSON.stringify({ ...PARAMS, iterations: N } satisfies Params));
  const files = [
    { path: '/t/uprobe-usdt.mjs', source: agent },
    { path: '/t/uprobe_usdt.bpf.o', source: object },
    { path: '/t/usdt_target', source: target, mode: 0o755 },
    { path: '/t/usdt_target_pie', source: pie, mode: 0o755 },
    { path: '/t/params.json', source: params },
  ];
  const initrd = await buildInitramfs({ files, agent: false, kernelConfig: k.config, release: k.release });
  // The script is synchronous from load to report (no heartbeats meanwhile): allow it a long silence.
  const r = await runGuest({ kernelId, vmlinuz: k.vmlinuz, initrd, append: 'cm.agent=/t/uprobe-usdt.mjs', accel: 'tcg', logDir: join(tmp, 'logs'), heartbeatTimeoutMs: 300_000, timeoutMs: 540_000 });
  const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
  expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
  const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'uprobe-usdt') as { data: { report: Report; ms: number } } | undefined;
  expect(msg, JSON.stringify(r.messages)).toBeDefined();
  const rep = msg!.data.report;
  const a = rep.ours.attach;
  const usdtLocs = (p: string) => a[p]?.locations?.length ?? 1;
  const perLocation = ['on_tick', 'on_sema', 'on_twice'].map((p) => `${p} ${(a[p]!.ms / usdtLocs(p)).toFixed(1)} ms/location (${usdtLocs(p)})`).join(', ');
  console.log(`[measure] ${kernelId} (${rep.release}): boot ${r.bootMs} ms, script ${msg!.data.ms} ms, whole run ${Math.round(r.durationMs)} ms; cookies ${rep.cookies}, multi ${rep.multi}`);
  console.log(`[measure] ${kernelId} attach (ours): ${Object.entries(a).map(([p, x]) => `${p} ${x.ms.toFixed(1)} ms via ${x.via ?? `ERROR ${x.error}`}`).join('; ')}`);
  console.log(`[measure] ${kernelId} USDT per location (ours): ${perLocation}; libbpf: ${Object.entries(rep.libbpf.attach).map(([p, x]) => `${p} ${x.ms.toFixed(1)} ms`).join(', ')}`);
  console.log(`[measure] ${kernelId} PIE for one pid: ours ${JSON.stringify(rep.ours.pid)}; libbpf ${JSON.stringify(rep.libbpf.pid)}`);
  console.log(`[measure] ${kernelId} counts ours: ${JSON.stringify(rep.ours.vars)}\n[measure] ${kernelId} counts libbpf ${rep.libbpf.version}: ${JSON.stringify(rep.libbpf.vars)}\n[measure] ${kernelId} legacy: ${JSON.stringify(rep.legacy)}`);
  return rep;
}

const tri = (n: number) => (n * (n - 1)) / 2;

/** What N iterations of usdt_target make each program record (fixtures/usdt_target.c, uprobe_usdt.bpf.c). */
function expected(o: { cookies: boolean; multi: boolean; usdtCookie: boolean }): Record<string, number> {
  return {
    work_hits: N, work_a_sum: tri(N), work_b: 40, work_cookie: o.cookies ? PARAMS.uprobeCookie : 0,
    work_ret_hits: N, work_ret_sum: 3 * tri(N) + 40 * N,
    libc_hits: N,
    multi_hits: o.multi ? 2 * N : 0, multi_cookie_sum: o.multi ? N * (PARAMS.multiCookies[0]! + PARAMS.multiCookies[1]!) : 0,
    // cm_multi_one(i) + cm_multi_two(i) = 2i + 3; the session program runs at entry and return of cm_multi_one.
    multi_ret_hits: o.multi ? 2 * N : 0, multi_ret_sum: o.multi ? 2 * tri(N) + 3 * N : 0, session_hits: o.multi ? 2 * N : 0,
    tick_hits: N, tick_neg_sum: -tri(N) - 7 * N, tick_small_sum: 200 * N + tri(N), tick_mid_sum: -1000 * N - tri(N), tick_const_sum: 5 * N,
    tick_memory_sum: 1000000007 * ((N * (N + 1)) / 2), tick_i_sum: tri(N), tick_argc: 6, tick_cookie: o.usdtCookie ? PARAMS.usdtCookie : 0,
    sema_hits: N, sema_v_sum: 100 * N + tri(N),
    twice_site1_hits: N, twice_site2_hits: N, twice_site1_sum: tri(N), twice_site2_sum: 10 * tri(N), twice_other: 0,
  };
}

/** Checks one loader's side: exact counts and arguments, the target's own account, nothing after detach. */
function checkSide(side: Side, o: { cookies: boolean; multi: boolean }): void {
  expect(side.loadError).toBeUndefined();
  const t = side.target!;
  expect(t.iterations).toBe(N);
  // The kernel raised cm:sema's semaphore for every iteration while the USDT was attached.
  expect(t.sema_seen).toBe(N);
  const { libc_tgid, ...vars } = side.vars;
  expect(libc_tgid).toBe(t.pid);
  expect(vars).toEqual(expected({ ...o, usdtCookie: true }));
  // The target's own sums agree with what the probes saw.
  expect(vars.work_ret_sum).toBe(t.work_sum);
  if (o.multi) expect(vars.multi_ret_sum).toBe(t.multi_sum);
  // Detached: the semaphore is down again, and a whole run counts nothing.
  expect(side.targetAfterDetach!.sema_seen).toBe(0);
  expect(side.varsAfterDetach).toEqual(side.vars);
}

/** The probe addresses readelf prints for cm:<name> (the witness of the ip→spec-id keys). */
function readelfLocations(name: string): string[] {
  const out = execFileSync('readelf', ['-n', target], { encoding: 'utf8' });
  return [...out.matchAll(/Name: (\S+)\n\s+Location: 0x([0-9a-f]+)/g)].filter((m) => m[1] === name).map((m) => `0x${BigInt(`0x${m[2]}`).toString(16)}`);
}

/**
 * The run-time address of the PIE's cm:tick probe in a process whose executable mapping of it is
 * `mapping` (a /proc/<pid>/maps line): readelf's probe address → file offset through readelf's
 * program headers → that mapping.
 */
function pieAddress(mapping: string): number {
  const loc = parseInt(/Name: tick\n\s+Location: 0x([0-9a-f]+)/.exec(execFileSync('readelf', ['-n', pie], { encoding: 'utf8' }))![1]!, 16);
  const seg = [...execFileSync('readelf', ['-lW', pie], { encoding: 'utf8' }).matchAll(/LOAD\s+0x([0-9a-f]+) 0x([0-9a-f]+) 0x[0-9a-f]+ 0x[0-9a-f]+ 0x([0-9a-f]+) (.{3})/g)]
    .map((m) => ({ offset: parseInt(m[1]!, 16), vaddr: parseInt(m[2]!, 16), memsz: parseInt(m[3]!, 16), flags: m[4]! }))
    .find((x) => x.vaddr <= loc && loc < x.vaddr + x.memsz && x.flags.includes('E'))!;
  const fileOffset = loc - seg.vaddr + seg.offset;
  const [range, , off] = mapping.split(/\s+/);
  return parseInt(range!.split('-')[0]!, 16) - parseInt(off!, 16) + fileOffset;
}

/** The PIE phase: N runs of one process counted, by both loaders; without cookies only with its pid. */
function checkPid(rep: Report): void {
  for (const side of [rep.ours.pid!, rep.libbpf.pid!]) {
    expect(side.error).toBeUndefined();
    expect([side.tickHits, side.tickISum, side.target!.iterations]).toEqual([N, tri(N), N]);
  }
  if (rep.cookies) {
    expect([rep.ours.pid!.withoutPid, rep.libbpf.pid!.withoutPid]).toEqual(['attached', 'attached']);
  } else {
    expect(rep.ours.pid!.withoutPid).toBe('usdt /t/usdt_target_pie:cm:tick: a shared object (or PIE) without BPF cookies can only be attached for one process (give a pid)');
    expect(rep.libbpf.pid!.withoutPid).toBe('errno 95'); // libbpf: -ENOTSUP, "attaching to shared libraries without specific PID is not supported"
    expect(rep.ours.pid!.ipKeys).toEqual([pieAddress(rep.ours.pid!.mapping!)]);
  }
}

describe('uprobe, uretprobe, uprobe.multi and USDT attachment in guests (TCG)', () => {
  it('link_create.perf_event.bpf_cookie sits where linux/bpf.h puts it', () => {
    const out = compileAndRunC('#include <stdio.h>\n#include <stddef.h>\n#include <linux/bpf.h>\nint main(void){ printf("%zu %zu\\n", offsetof(union bpf_attr, link_create.perf_event.bpf_cookie), sizeof(((union bpf_attr *)0)->link_create.perf_event.bpf_cookie)); return 0; }\n');
    expect(out.trim()).toBe(LINK_CREATE_PERF_EVENT.fields['perf_event.bpf_cookie'].join(' '));
  });

  it('5.10: no cookies, no multi-uprobe links: ip→spec-id keys are readelf\'s probe addresses; counts and arguments exact, equal to libbpf\'s', async () => {
    const rep = await runIn('5.10');
    expect(rep.probes).toEqual({ bpfCookie: 'missing', uprobeMultiLink: 'missing', uprobePmu: true, refCtrOffset: true });
    expect([rep.cookies, rep.multi]).toEqual([false, false]);
    const a = rep.ours.attach;
    for (const p of ['on_work', 'on_work_ret', 'on_libc']) expect(a[p], p).toMatchObject({ via: 'uprobe PMU' });
    expect(a.on_work!.target).toBe('uprobe /t/usdt_target:cm_work+0x0');
    expect(a.on_work_ret!.target).toBe('uretprobe /t/usdt_target:cm_work+0x0');
    expect(a.on_libc!.target).toBe('uprobe /lib/x86_64-linux-gnu/libc.so.6:strverscmp+0x0');
    expect(a.on_multi!.error).toMatch(/^uprobe\.multi \/t\/usdt_target:cm_multi_\* \(2 offsets\): bpf\(BPF_LINK_CREATE\): EINVAL \(Invalid argument\): kernel lacks BPF_TRACE_UPROBE_MULTI links \(needs Linux 6\.6 or later\)$/);
    expect(a.on_multi_ret!.error).toMatch(/^uretprobe\.multi \/t\/usdt_target:cm_multi_\* \(2 offsets\): .*kernel lacks BPF_TRACE_UPROBE_MULTI links/);
    expect(a.on_session!.error).toMatch(/^uprobe\.session \/t\/usdt_target:cm_multi_one \(1 offset\): .*kernel lacks BPF_TRACE_UPROBE_MULTI links/);
    for (const p of ['on_tick', 'on_sema', 'on_twice']) expect(a[p], p).toMatchObject({ via: 'uprobe PMU' });
    expect(a.on_twice!.target).toBe('usdt /t/usdt_target:cm:twice (2 locations)');
    // The spec ids as the kernel's ip→spec-id map holds them: every probe address readelf prints, one spec per distinct argument string.
    const ips = rep.ours.ipToSpecId!;
    const want = [...readelfLocations('tick'), ...readelfLocations('sema'), ...readelfLocations('twice')];
    expect(Object.keys(ips).sort()).toEqual(want.sort());
    expect(new Set(Object.values(ips)).size).toBe(4);
    for (const p of ['on_tick', 'on_sema', 'on_twice']) for (const l of a[p]!.locations!) expect(ips[`0x${l.ipKey!.toString(16)}`]).toBe(l.specId);
    expect(a.on_sema!.locations![0]!.semaphoreOffset).toBeGreaterThan(0);
    checkSide(rep.ours, { cookies: false, multi: false });
    // tracefs: a uprobe on cm_work and cm:sema with its reference counter, both counting, both removed on close.
    expect(rep.legacy).toMatchObject({ via: 'tracefs uprobe_events', workHits: N, semaHits: N, eventsAfterClose: [] });
    expect(rep.legacy.target!.sema_seen).toBe(N);
    expect(rep.legacy.eventsWhileAttached.length).toBe(2);
    expect(rep.legacy.eventsWhileAttached[1]).toMatch(/^p:corematrix\/cm_u_\d+_\w+_\d+ \/t\/usdt_target:0x[0-9a-f]+\(0x[0-9a-f]+\)$/);
    // libbpf, same object, same guest: the same counts and arguments (it cannot load uprobe.multi).
    expect(rep.libbpf.loadError).toBeUndefined();
    for (const [p, x] of Object.entries(rep.libbpf.attach)) expect(x.error, p).toBeUndefined();
    checkSide(rep.libbpf, { cookies: false, multi: false });
    checkPid(rep);
    expect(rep.fdsLeft).toBe(0);
  }, 600_000);

  it('6.1: cookies, no multi-uprobe links: one BPF perf link per USDT location carries its spec id; counts exact, equal to libbpf\'s', async () => {
    const rep = await runIn('6.1');
    expect(rep.probes).toEqual({ bpfCookie: 'supported', uprobeMultiLink: 'missing', uprobePmu: true, refCtrOffset: true });
    expect([rep.cookies, rep.multi]).toEqual([true, false]);
    const a = rep.ours.attach;
    for (const p of ['on_work', 'on_tick', 'on_sema', 'on_twice']) expect(a[p], p).toMatchObject({ via: 'uprobe PMU, BPF_LINK_CREATE' });
    expect(a.on_work_ret).toMatchObject({ via: 'uprobe PMU' });
    expect(a.on_multi!.error).toMatch(/kernel lacks BPF_TRACE_UPROBE_MULTI links \(needs Linux 6\.6 or later\)$/);
    expect(rep.ours.ipToSpecId).toBeUndefined();
    checkSide(rep.ours, { cookies: true, multi: false });
    // tracefs: cm_work, and cm:sema with its reference counter and a cookie (a perf link on a tracefs event).
    expect(rep.legacy).toMatchObject({ via: 'tracefs uprobe_events; tracefs uprobe_events, BPF_LINK_CREATE', workHits: N, semaHits: N, eventsAfterClose: [] });
    expect(rep.legacy.target!.sema_seen).toBe(N);
    expect(rep.libbpf.loadError).toBeUndefined();
    for (const [p, x] of Object.entries(rep.libbpf.attach)) expect(x.error, p).toBeUndefined();
    checkSide(rep.libbpf, { cookies: true, multi: false });
    checkPid(rep);
    expect(rep.fdsLeft).toBe(0);
  }, 600_000);

  it('7.3: cookies and multi-uprobe links: counts and arguments exact, equal to libbpf\'s', async () => {
    const rep = await runIn('7.3');
    expect(rep.probes).toEqual({ bpfCookie: 'supported', uprobeMultiLink: 'supported', uprobePmu: true, refCtrOffset: true });
    expect([rep.cookies, rep.multi]).toEqual([true, true]);
    const a = rep.ours.attach;
    // The uprobe with a cookie goes through a BPF perf link; the others through PERF_EVENT_IOC_SET_BPF.
    expect(a.on_work).toMatchObject({ via: 'uprobe PMU, BPF_LINK_CREATE', target: 'uprobe /t/usdt_target:cm_work+0x0' });
    expect(a.on_work_ret).toMatchObject({ via: 'uprobe PMU' });
    expect(a.on_multi).toMatchObject({ via: 'BPF_LINK_CREATE uprobe_multi', target: 'uprobe.multi /t/usdt_target:cm_multi_* (2 offsets)' });
    expect(a.on_multi_ret).toMatchObject({ via: 'BPF_LINK_CREATE uprobe_multi', target: 'uretprobe.multi /t/usdt_target:cm_multi_* (2 offsets)' });
    expect(a.on_session).toMatchObject({ via: 'BPF_LINK_CREATE uprobe_session', target: 'uprobe.session /t/usdt_target:cm_multi_one (1 offset)' });
    for (const p of ['on_tick', 'on_sema', 'on_twice']) expect(a[p], p).toMatchObject({ via: 'BPF_LINK_CREATE uprobe_multi' });
    expect(a.on_twice!.locations!.map((l) => l.ipKey)).toEqual([undefined, undefined]);
    expect(rep.ours.ipToSpecId).toBeUndefined();
    checkSide(rep.ours, { cookies: true, multi: true });
    // tracefs: the uprobe (USDT programs are multi-uprobe programs here and cannot go on a perf event).
    expect(rep.legacy).toMatchObject({ via: 'tracefs uprobe_events', workHits: N, semaHits: 0, eventsAfterClose: [] });
    expect(rep.legacy.eventsWhileAttached.length).toBe(1);
    // libbpf 1.1 attaches USDT per location with perf links carrying the spec id as cookie.
    expect(rep.libbpf.loadError).toBeUndefined();
    for (const [p, x] of Object.entries(rep.libbpf.attach)) expect(x.error, p).toBeUndefined();
    checkSide(rep.libbpf, { cookies: true, multi: false });
    checkPid(rep);
    expect(rep.fdsLeft).toBe(0);
  }, 600_000);
});
