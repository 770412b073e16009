// Network and cgroup attachments in real guests (TCG), as a tool's user space makes them
// (harness/runtime/attach-net.ts): one program per family of net_attach.bpf.c, loaded by our
// loader and attached to the guest's defaults, then known traffic. Every family either attached
// and ran as often as the traffic explains, with the kernel naming the same target (link info,
// BPF_PROG_QUERY, the interface's IFLA_XDP, a tc filter dump), or fails on the kernel that lacks
// it naming the feature and the version that brought it. After close() the kernel lists nothing
// and a second round of traffic moves no counter.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';
import { compileBpf } from '../helpers/tools.js';
import type { AttachRecord, NetAttachReport } from './fixtures/guest-net-attach.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-attach-net-'));
const here = (n: string) => fileURLToPath(new URL(n, import.meta.url));
/** Modules the attachments need on Debian's kernels (=m there): the veth pair, clsact, cls_bpf. */
const MODULES = ['veth', 'sch_ingress', 'cls_bpf'];
let agent: string;
let object: string;

beforeAll(async () => {
  object = compileBpf(here('./fixtures/net_attach.bpf.c'));
  agent = await bundleGuestScript(here('./fixtures/guest-net-attach.ts'), join(tmp, 'net-attach.mjs'));
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function run(kernelId: string, append = ''): Promise<NetAttachReport> {
  const store = new KernelStore();
  const k = await store.fetch(kernelId);
  const mods = await store.modules(k, MODULES);
  const initrd = await buildInitramfs({
    files: [
      { path: '/t/net-attach.mjs', source: agent },
      { path: '/t/net_attach.bpf.o', source: object },
      ...mods.map((m, i) => ({ path: `/t/mods/${i}-${m.name}.ko`, source: m.path })),
    ],
    agent: false,
    kernelConfig: k.config,
    release: k.release,
  });
  const r = await runGuest({ kernelId, vmlinuz: k.vmlinuz, initrd, append: `cm.agent=/t/net-attach.mjs ${append}`.trim(), accel: 'tcg', logDir: join(tmp, `logs-${kernelId}`) });
  const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
  expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
  const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'net-attach') as { data: { report: NetAttachReport; ms: number } } | undefined;
  expect(msg, JSON.stringify(r.messages)).toBeDefined();
  const rep = msg!.data.report;
  console.log(
    `[measure] ${kernelId} (${rep.release}): boot ${r.bootMs} ms, script ${msg!.data.ms} ms, whole run ${Math.round(r.durationMs)} ms; ` +
      `modules ${rep.modules.map((m) => `${m.file} ${m.outcome} ${m.ms} ms`).join(', ')}; workload ${rep.workload.ms} ms\n  ` +
      rep.attaches.map((a) => `${a.what}: ${a.status}${a.via ? ` via ${a.via}` : ''}${a.ms !== undefined ? ` in ${a.ms} ms` : ''}${a.reason ? ` (${a.reason})` : ''}${a.status === 'attached' ? `; program runs ${rep.runCnt[a.program]}` : ''}`).join('\n  '),
  );
  return rep;
}

const byWhat = (rep: NetAttachReport, what: string): AttachRecord => {
  const a = rep.attaches.find((x) => x.what === what);
  expect(a, `no attachment '${what}' in ${rep.attaches.map((x) => x.what).join(', ')}`).toBeDefined();
  return a!;
};

/** Every attached record: the kernel's answer names what the independent facts name. */
function expectWitnessed(rep: NetAttachReport): void {
  for (const a of rep.attaches.filter((x) => x.status === 'attached')) {
    const w = a.witness as Record<string, any>;
    const t = a.truth as Record<string, any>;
    expect(w, `${a.what}: ${JSON.stringify(a)}`).toBeDefined();
    expect(w.error, a.what).toBeUndefined();
    if (w.link) {
      expect(w.link.progId, a.what).toBe(a.progId);
      for (const k of ['ifindex', 'cgroupId', 'netnsIno', 'attachType', 'type', 'netfilter'] as const) if (t[k] !== undefined) expect(w.link[k], `${a.what}: link ${k}`).toEqual(t[k]);
    }
    if (w.query && Array.isArray(w.query.progIds)) expect(w.query.progIds, `${a.what}: BPF_PROG_QUERY`).toContain(a.progId);
    if (Array.isArray(w.query)) expect(w.query, `${a.what}: BPF_PROG_QUERY`).toContain(a.progId);
    if (w.filters) expect(w.filters, `${a.what}: tc filter dump`).toEqual([expect.objectContaining({ progId: a.progId, directAction: true })]);
    expect(t.progId, a.what).toBe(a.progId);
  }
}

/** What every kernel in the test has: the counts the workload explains, exactly where it can. */
function expectRuns(rep: NetAttachReport): void {
  const c = rep.counters;
  const w = rep.workload;
  // The kernel's own run count equals the program's count of itself, for every program that ran.
  for (const [prog, n] of Object.entries(rep.runCnt)) {
    const own = c[`${prog.replace(/_count$/, '')}_runs`];
    expect(own, `${prog}: its own run counter`).toBeDefined();
    expect(n, `${prog}: run_cnt vs its own counter`).toBe(own);
  }
  expect({
    xdp_udp: c.xdp_pass_udp, xdp_probe: c.xdp_pass_probe,
    tc_ingress_udp: c.tc_ingress_udp, tc_egress_probe: c.tc_egress_probe,
    skb_ingress_udp: c.skb_ingress_udp, skb_egress_udp: c.skb_egress_udp,
    sock_create_tcp: c.sock_create_tcp, sock_create_udp: c.sock_create_udp,
    connect4: c.connect4_runs, connect4_port: c.connect4_port,
    sendmsg4_port: c.sendmsg4_port,
    getsockopt_rcvbuf: c.getsockopt_rcvbuf,
    sysctl_reads: c.sysctl_reads,
    sockops_connect: c.sockops_connect, sockops_active: c.sockops_active, sockops_passive: c.sockops_passive,
    sk_lookup_tcp: c.sk_lookup_tcp, sk_lookup_udp: c.sk_lookup_udp,
    skb_verdict_bytes: c.skb_verdict_bytes, msg_verdict_bytes: c.msg_verdict_bytes, msg_verdict: c.msg_verdict_runs,
  }).toEqual({
    xdp_udp: w.udp, xdp_probe: w.frames,
    tc_ingress_udp: w.udp, tc_egress_probe: w.frames,
    skb_ingress_udp: w.udp, skb_egress_udp: w.udp,
    // N clients and the listener; the two dgram sockets and the getsockopt one.
    sock_create_tcp: w.tcp + 1, sock_create_udp: 3,
    connect4: w.tcp, connect4_port: w.tcp,
    sendmsg4_port: w.udp,
    getsockopt_rcvbuf: w.getsockopts,
    sysctl_reads: w.sysctlReads,
    sockops_connect: w.tcp, sockops_active: w.tcp, sockops_passive: w.tcp,
    sk_lookup_tcp: w.tcp, sk_lookup_udp: w.udp,
    skb_verdict_bytes: w.tcp * w.messageBytes, msg_verdict_bytes: w.tcp * w.messageBytes, msg_verdict: w.tcp,
  });
  // AF_PACKET sends dissect each frame (skb_probe_transport_header) in the sender's netns.
  expect(c.dissect_probe, 'flow dissector runs on the AF_PACKET frames').toBe(w.frames + w.netkitFrames);
  expect(c.skb_verdict_runs, 'stream verdict: at least one run per message').toBeGreaterThanOrEqual(w.tcp);
  // Other sysctls read meanwhile run the hook too (on 5.10, node reads kernel/osrelease twice).
  expect(c.sysctl_runs).toBeGreaterThanOrEqual(w.sysctlReads);
  // Detached: the kernel lists nothing, and the second round moved no counter and no run count.
  for (const a of rep.attaches.filter((x) => x.status === 'attached' && x.afterDetach)) {
    const d = a.afterDetach as Record<string, any>;
    expect(d.error, a.what).toBeUndefined();
    if (Array.isArray(d.query)) expect(d.query, `${a.what} after close()`).not.toContain(a.progId);
    if (d.filters !== undefined) expect(d.filters, `${a.what} after close()`).toBe(0);
    if (d.xdp) expect(d.xdp, `${a.what} after close()`).toMatchObject({ attached: 0, progId: 0 });
  }
  expect(rep.afterDetachWorkload.tcp).toBeGreaterThan(0);
  expect(rep.countersAfter, 'counters after close() and a second round of traffic').toEqual(rep.countersDetached);
  expect(rep.runCntAfter, 'run counts after close() and a second round of traffic').toEqual(rep.runCntDetached);
  expect(rep.fdsLeft).toBe(0);
}

describe('network and cgroup attachments in guests (TCG)', () => {
  it('5.10: xdp, legacy tc, cgroup, netns, sockmap attach and run; tcx, netkit and netfilter fail naming the Linux version they need', async () => {
    const rep = await run('5.10', 'cmtest.legacy=flow_dissector');
    expect(rep.modules.map((m) => m.outcome)).toEqual(['loaded', 'loaded', 'loaded']);
    expect(rep.setup.veth).toBe('ok');
    expect(rep.setup.netkit).toMatch(/^error: netlink RTM_NEWLINK netkit cmnk0\/cmnk1: \w+ \(.*\): Unknown device type: netkit devices and links need Linux 6\.7 \(this kernel: 5\.10/);
    const status = Object.fromEntries(rep.attaches.map((a) => [a.what, a.status === 'attached' ? `${a.status} via ${a.via}` : a.status]));
    expect(status).toEqual({
      'xdp lo': 'attached via BPF_LINK_CREATE',
      'xdp cmv1 drv (netlink)': 'attached via netlink IFLA_XDP',
      'tc lo ingress (auto)': 'attached via netlink cls_bpf',
      'tc cmv0 egress (legacy)': 'attached via netlink cls_bpf',
      'tcx lo ingress': 'failed',
      'netkit cmnk0 peer': 'failed',
      'cgroup skb_ingress': 'attached via BPF_LINK_CREATE',
      'cgroup skb_egress': 'attached via BPF_LINK_CREATE',
      'cgroup sock_create': 'attached via BPF_LINK_CREATE',
      'cgroup connect4': 'attached via BPF_LINK_CREATE',
      'cgroup sendmsg4': 'attached via BPF_LINK_CREATE',
      'cgroup getsockopt_count': 'attached via BPF_LINK_CREATE',
      'cgroup sysctl_count (BPF_PROG_ATTACH)': 'attached via BPF_PROG_ATTACH',
      'cgroup sockops_count': 'attached via BPF_LINK_CREATE',
      'netns sk_lookup': 'attached via BPF_LINK_CREATE',
      'netns flow_dissector (BPF_PROG_ATTACH)': 'attached via BPF_PROG_ATTACH',
      'sockmap skb_parser': 'attached via BPF_PROG_ATTACH',
      'sockmap skb_verdict': 'attached via BPF_PROG_ATTACH',
      'sockmap msg_verdict': 'attached via BPF_PROG_ATTACH',
      'netfilter ipv4 local_in': 'not-loaded',
      'netfilter ipv4 local_in (attach type probe)': 'failed',
    });
    expect(byWhat(rep, 'tcx lo ingress').reason).toMatch(/^tc lo ingress: bpf\(BPF_LINK_CREATE\): EINVAL .*: tcx links need Linux 6\.6 \(this kernel: 5\.10/);
    expect(byWhat(rep, 'netkit cmnk0 peer').reason).toMatch(/netkit devices and links need Linux 6\.7/);
    expect(byWhat(rep, 'netfilter ipv4 local_in (attach type probe)').reason).toMatch(/^netfilter ipv4 local_in prio 100: bpf\(BPF_LINK_CREATE\): EINVAL .*: netfilter links need Linux 6\.4 \(this kernel: 5\.10/);
    // The program itself cannot load there: 5.10 knows no BPF_PROG_TYPE_NETFILTER.
    expect(rep.loads.nf_local_in).toMatch(/^error: bpf\(BPF_PROG_LOAD\): EINVAL .*nf_local_in/);
    expectWitnessed(rep);
    expectRuns(rep);
    expect(rep.counters.tcx_ingress_runs).toBe(0);
  }, 300_000);

  it('7.3: every family attaches through its link (tcx, netkit, netfilter too) and runs as the traffic explains', async () => {
    const rep = await run('7.3');
    expect(rep.modules.map((m) => m.outcome)).toEqual(['loaded', 'loaded', 'loaded']);
    expect(rep.setup).toEqual({ veth: 'ok', netkit: 'ok' });
    const notAttached = rep.attaches.filter((a) => a.status !== 'attached').map((a) => `${a.what}: ${a.reason}`);
    expect(notAttached).toEqual([]);
    expect(byWhat(rep, 'tc lo ingress (auto)').via).toBe('BPF_LINK_CREATE tcx');
    expect(byWhat(rep, 'tcx lo ingress').via).toBe('BPF_LINK_CREATE tcx');
    expect(byWhat(rep, 'netns flow_dissector').via).toBe('BPF_LINK_CREATE');
    expectWitnessed(rep);
    expectRuns(rep);
    const c = rep.counters;
    expect({ tcx: c.tcx_ingress_udp, netkit: c.netkit_peer_probe, netfilter: c.nf_local_in_udp }).toEqual({ tcx: rep.workload.udp, netkit: rep.workload.frames, netfilter: rep.workload.udp });
    // BPF_PROG_QUERY knows sockmaps here (5.19+): the programs are listed while attached.
    expect(byWhat(rep, 'sockmap msg_verdict').witness).toMatchObject({ query: [byWhat(rep, 'sockmap msg_verdict').progId] });
  }, 300_000);
});
