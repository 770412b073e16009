// A TCP congestion control written as struct_ops, registered and carrying real TCP connections on
// the loopback of real guests (TCG): 5.10 and 6.1 (struct_ops maps, no struct_ops links) and 7.3
// (both, and a struct tcp_congestion_ops laid out differently). In each guest (fixtures/guest-struct-ops.ts),
// our loader registers the fixture, then Debian's libbpf registers the same object (the witness),
// then both do the same with the table in `.struct_ops.link` (the current libbpf there: Debian's
// 1.1 predates those). The witnesses are the kernel's: its list of available congestion controls,
// each socket's TCP_CONGESTION, the programs' run counts, the map as the kernel describes it, and
// the programs' own counter.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { BPF_F_LINK } from '../../harness/loader/struct-ops.js';
import { currentLibbpf, type CurrentLibbpf } from '../../harness/reference/build.js';
import { MapType } from '../../harness/runtime/consts.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';
import { compileBpf } from '../helpers/tools.js';
import type { CaseResult, Report } from './fixtures/guest-struct-ops.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-struct-ops-'));
const fixture = fileURLToPath(new URL('fixtures/struct_ops_cc.bpf.c', import.meta.url));
let agent: string;
let objects: { plain: string; link: string };
let libbpf: CurrentLibbpf;
/** What the guest script sends over each connection (fixtures/guest-struct-ops.ts). */
const TRANSFER_BYTES = 1 << 20;

beforeAll(async () => {
  objects = {
    plain: compileBpf(fixture, ['-D__TARGET_ARCH_x86']),
    link: compileBpf(fixture, ['-D__TARGET_ARCH_x86', '-DCM_CC_SECTION=".struct_ops.link"', '-DCM_CC_NAME="corematrix_link"']),
  };
  libbpf = await currentLibbpf();
  agent = await bundleGuestScript(fileURLToPath(new URL('fixtures/guest-struct-ops.ts', import.meta.url)), join(tmp, 'struct-ops.mjs'));
}, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function inGuest(kernelId: string): Promise<Report> {
  const k = await new KernelStore().fetch(kernelId);
  const so = `/usr/lib/corematrix/libbpf/libbpf.so.${libbpf.version}`;
  const files = [
    { path: '/t/struct-ops.mjs', source: agent },
    { path: '/t/struct_ops_cc.bpf.o', source: objects.plain },
    { path: '/t/struct_ops_cc_link.bpf.o', source: objects.link },
    { path: so, source: libbpf.so },
    { path: '/t/struct-ops.json', data: JSON.stringify({ currentLibbpf: so }) },
  ];
  const initrd = await buildInitramfs({ files, agent: false, kernelConfig: k.config, release: k.release });
  const r = await runGuest({ kernelId, vmlinuz: k.vmlinuz, initrd, append: 'cm.agent=/t/struct-ops.mjs', accel: 'tcg', logDir: join(tmp, 'logs') });
  const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
  expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
  const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'struct-ops') as { data: Report } | undefined;
  expect(msg, `${log}\n${r.consoleTail}`).toBeDefined();
  const rep = msg!.data;
  console.log(`[measure] ${kernelId} (${rep.release}): boot ${r.bootMs} ms, script ${rep.ms} ms, whole run ${Math.round(r.durationMs)} ms; default CC ${rep.defaultCc}\n  ${rep.cases.map(line).join('\n  ')}`);
  return rep;
}

function line(c: CaseResult): string {
  if (c.error) return `${c.loader} ${c.table}: ${c.error} (${JSON.stringify(c.ms)})`;
  const rc = (s?: { runCounts: Record<string, number | null> }) => Object.entries(s?.runCounts ?? {}).map(([k, v]) => `${k.replace('cm_', '')}=${v}`).join(' ');
  return `${c.loader} ${c.table} via ${c.via}: listed ${c.listedBefore}→${c.listedRegistered}→${c.listedAfterClose}; conn1 ${c.conn1?.clientCc}/${c.conn1?.serverCc} ${c.conn1?.ms} ms, calls ${c.after1?.calls} runs ${rc(c.after1)}; conn2 ${c.conn2?.clientCcBefore}→${c.conn2?.clientCc}/${c.conn2?.serverCc}, calls ${c.after2?.calls} runs ${rc(c.after2)}; map value_size ${c.map?.valueSize} flags ${c.map?.flags} vmlinux_value_type_id ${c.map?.btfVmlinuxValueTypeId}; ms ${JSON.stringify(c.ms)}`;
}

/** A registration that carried both connections, seen by the kernel at every step. */
function expectCarried(c: CaseResult, defaultCc: string): void {
  const what = `${c.loader} ${c.table}`;
  expect(c.error, what).toBeUndefined();
  expect(c.listedBefore, `${what}: ${c.cc} is not registered before`).toBe(false);
  expect(c.listedRegistered, `${what}: the kernel lists ${c.cc} once registered`).toBe(true);
  expect(c.listedAfterClose, `${what}: gone from the kernel's list once unregistered`).toBe(false);
  // Connection 1: the CC as the default, so both ends take it.
  expect(c.conn1).toMatchObject({ received: TRANSFER_BYTES, clientCc: c.cc, serverCc: c.cc, clientCcBefore: c.cc });
  // Connection 2: the default (restored) until setsockopt(TCP_CONGESTION) on the client only.
  expect(c.conn2).toMatchObject({ received: TRANSFER_BYTES, clientCcBefore: defaultCc, clientCc: c.cc, serverCc: defaultCc });
  const a1 = c.after1!;
  const a2 = c.after2!;
  // init runs once per socket that takes the CC: both ends of connection 1, the client of connection 2.
  expect(a1.runCounts.cm_init, `${what}: init ran for each end of connection 1`).toBe(2);
  expect(a2.runCounts.cm_init, `${what}: and once more for the setsockopt`).toBe(3);
  // The sender's ACKs went through cong_avoid; the programs' own counter (inits + acked segments)
  // is at least the kernel's count of init and cong_avoid runs.
  expect(a1.runCounts.cm_cong_avoid, `${what}: cong_avoid ran for connection 1's ACKs`).toBeGreaterThan(0);
  expect(a2.runCounts.cm_cong_avoid!, `${what}: and for connection 2's`).toBeGreaterThan(a1.runCounts.cm_cong_avoid!);
  expect(a1.calls).toBeGreaterThanOrEqual(a1.runCounts.cm_init! + a1.runCounts.cm_cong_avoid!);
  expect(a2.calls).toBeGreaterThanOrEqual(a2.runCounts.cm_init! + a2.runCounts.cm_cong_avoid!);
  expect(a2.calls).toBeGreaterThan(a1.calls);
  // ssthresh and undo_cwnd run only on loss or recovery, which a loaded TCG host can cause (seen
  // once on 7.3): their counts are read, not predicted.
  expect(a2.runCounts.cm_ssthresh).toBeTypeOf('number');
  expect(a2.runCounts.cm_undo_cwnd).toBeTypeOf('number');
}

/** Ours and libbpf's struct_ops maps, as the kernel describes them, are the same. */
function expectSameMap(ours: CaseResult, theirs: CaseResult, link: boolean): void {
  expect(ours.map).toMatchObject({ type: MapType.STRUCT_OPS, keySize: 4, maxEntries: 1, flags: link ? BPF_F_LINK : 0, name: 'cm_cc' });
  expect(ours.map!.btfVmlinuxValueTypeId).toBeGreaterThan(0);
  expect(ours.map).toEqual(theirs.map);
}

describe('struct_ops TCP congestion control in guests (TCG)', () => {
  // 5.10 as well: it knows its struct_ops types only after a first program load (so the maps are
  // created after the programs), and its struct_ops value still has refcnt/state in front.
  for (const id of ['5.10', '6.1']) {
    it(`${id}: registered by map update, carries TCP connections, unregisters; libbpf 1.1 the same; .struct_ops.link is refused by both (6.4+)`, async () => {
      const rep = await inGuest(id);
      const [ours, debian, oursLink, currentLink] = rep.cases;
      expectCarried(ours!, rep.defaultCc);
      expect(ours!.via).toBe('BPF_MAP_UPDATE_ELEM struct_ops');
      expectCarried(debian!, rep.defaultCc);
      expectSameMap(ours!, debian!, false);
      expect(oursLink!.error).toMatch(/^struct_ops_cc_link\.bpf\.o: map 'cm_cc': bpf\(BPF_MAP_CREATE\): EINVAL \(Invalid argument\): kernel lacks struct_ops links \(BPF_F_LINK, needs Linux 6\.4 or later\)/);
      expect(currentLink!.error, 'libbpf cannot create a BPF_F_LINK struct_ops map there either').toMatch(/bpf_object__load/);
    }, 300_000);
  }

  it('7.3: the same, and .struct_ops.link registers through a struct_ops link, ours and the current libbpf alike', async () => {
    const rep = await inGuest('7.3');
    const [ours, debian, oursLink, currentLink] = rep.cases;
    for (const c of rep.cases) expectCarried(c, rep.defaultCc);
    expect(ours!.via).toBe('BPF_MAP_UPDATE_ELEM struct_ops');
    expect(oursLink!.via).toBe('BPF_LINK_CREATE struct_ops');
    expectSameMap(ours!, debian!, false);
    expectSameMap(oursLink!, currentLink!, true);
  }, 300_000);
});
