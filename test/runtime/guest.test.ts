// runtimeSelfTest inside real Debian kernels under QEMU (TCG): 5.10 (oldest of the matrix:
// no LINK_CREATE for fentry, no BTF FLOAT/ENUM64/…, RLIMIT_MEMLOCK accounting) and 6.1.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import type { FeatureState } from '../../harness/runtime/probe.js';
import type { SelfTestResult } from '../../harness/runtime/selftest.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-runtime-guest-'));
let agent: string;

beforeAll(async () => {
  agent = join(tmp, 'runtime-selftest.mjs');
  await bundleGuestScript(fileURLToPath(new URL('./fixtures/guest-selftest.ts', import.meta.url)), agent);
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Report {
  results: SelfTestResult[];
  probes: Record<string, FeatureState>;
  btfMs: number;
  selfTestMs: number;
}

async function runIn(kernelId: string, append = '') {
  const k = await new KernelStore().fetch(kernelId);
  const initrd = await buildInitramfs({ files: [{ path: '/t/runtime-selftest.mjs', source: agent }], agent: false, kernelConfig: k.config, release: k.release });
  const r = await runGuest({ kernelId, vmlinuz: k.vmlinuz, initrd, append: `cm.agent=/t/runtime-selftest.mjs ${append}`.trim(), accel: 'tcg', logDir: join(tmp, 'logs') });
  expect(r.verdict, `${r.detail}\n${r.consoleTail}`).toBe('ok');
  const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'runtime-selftest');
  expect(msg, JSON.stringify(r.messages)).toBeDefined();
  const rep = (msg as { data: Report }).data;
  console.log(`[measure] ${kernelId} (${k.release}): boot ${r.bootMs} ms, BTF parse ${rep.btfMs} ms, ${rep.results.length} checks in ${rep.selfTestMs} ms, whole run ${Math.round(r.durationMs)} ms`);
  // Every check ran (tracefs is mounted, kprobes and BTF exist in every Debian kernel) and passed.
  for (const t of rep.results) {
    expect(t, `${t.name}: ${t.detail ?? ''}`).toMatchObject({ ok: true });
    expect(t.skipped, `${t.name}: ${t.detail}`).toBeUndefined();
  }
  // LINUX_KERNEL_VERSION is the real sublevel from Debian's version (clamped at 255), not the ABI name.
  const [a, b, c] = k.version.split(/[.-]/).map(Number) as [number, number, number];
  const facts = rep.results.find((t) => t.name.startsWith('kernel facts'))!;
  expect(facts.detail).toContain(`LINUX_KERNEL_VERSION ${a}.${b}.${Math.min(c, 255)},`);
  expect(Object.values(rep.probes)).not.toContain('unknown');
  return rep;
}

describe('runtime self-test in guest kernels (TCG)', () => {
  it('5.10: everything works; probes see what 5.10 lacks', async () => {
    const rep = await runIn('5.10');
    // Facts of kernel history (first version in parentheses): each probe must tell them apart.
    for (const missing of ['btf:FLOAT' /* 5.13 */, 'btf:DECL_TAG' /* 5.16 */, 'btf:TYPE_TAG' /* 5.17 */, 'btf:ENUM64' /* 6.0 */, 'map:BLOOM_FILTER' /* 5.16 */, 'prog:SYSCALL' /* 5.14 */, 'helper:SOCKET_FILTER:loop' /* 5.17 */])
      expect(rep.probes[missing], missing).toBe('missing');
    for (const present of ['btf:DATASEC', 'btf:FUNC_GLOBAL', 'map:RINGBUF', 'map_flag:MMAPABLE', 'bpf_link', 'kprobe_pmu', 'prog:SK_LOOKUP'])
      expect(rep.probes[present], present).toBe('supported');
  }, 600_000);

  it('6.1: everything works; probes find every feature they know', async () => {
    const rep = await runIn('6.1');
    expect(Object.entries(rep.probes).filter(([, v]) => v !== 'supported')).toEqual([]);
  }, 600_000);

  it('6.1-cloud with a signal every 50 µs (node --cpu-prof): no load or test run gives up on a pending signal', async () => {
    // V8's sampling profiler sends the main thread SIGPROF every 50 µs. A verifier run or a
    // repeated test run takes milliseconds under TCG: with signals not blocked around them, most
    // of the self-test failed with EAGAIN (BPF_PROG_LOAD) or EINTR (BPF_PROG_TEST_RUN).
    await runIn('6.1-cloud', 'cm.node=--cpu-prof,--cpu-prof-dir=/tmp,--cpu-prof-interval=50');
  }, 600_000);
});
