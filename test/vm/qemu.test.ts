// Real boots under TCG: a Debian kernel from the kernel store, our initramfs, QEMU.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildImage, buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore, type KernelArtifacts } from '../../harness/kernels/store.js';
import { repoRoot } from '../../harness/paths.js';
import { lastProbe, probeAccel, resetAccelProbe, runGuest } from '../../harness/vm/qemu.js';

const KERNEL = '6.1-cloud'; // the fastest boot of the matrix (lz4, ~2 s to init)
const tmp = mkdtempSync(join(tmpdir(), 'cm-vm-'));
const logDir = join(tmp, 'logs');
let k: KernelArtifacts;
let tiny: string;
let full: string;
let built: Awaited<ReturnType<typeof buildImage>>;

// Test agents (plain CommonJS run by node inside the guest).
const agentOk = `
const fs = require('fs'), os = require('os');
const t0 = Math.round(os.uptime() * 1000);
const fd = fs.openSync('/dev/ttyS1', 'w');
const say = (m) => fs.writeSync(fd, JSON.stringify(m) + '\\n');
say({ t: 'hello', v: 1, release: os.release(), machine: os.machine(), bootMs: t0 });
say({ t: 'hb', ms: 0 });
const koffi = require('koffi');
const getpid = koffi.load('libc.so.6').func('int getpid()');
say({ t: 'result', kind: 'probe', data: { node: process.version, koffi: koffi.version, pid: getpid(), btf: fs.statSync('/sys/kernel/btf/vmlinux').size, bpffs: fs.readFileSync('/proc/mounts', 'utf8').includes(' /sys/fs/bpf bpf ') } });
say({ t: 'done', ok: true, ms: Math.round(os.uptime() * 1000) - t0 });
`;
const agentHang = `
const fs = require('fs'), os = require('os');
const fd = fs.openSync('/dev/ttyS1', 'w');
fs.writeSync(fd, JSON.stringify({ t: 'hello', v: 1, release: os.release(), machine: os.machine(), bootMs: 1 }) + '\\n');
setInterval(() => {}, 1 << 30);
`;
const agentCrash = `throw new Error('boom in the agent');\n`;

beforeAll(async () => {
  k = await new KernelStore().fetch(KERNEL);
  tiny = await buildInitramfs({ files: [], base: 'busybox' });
  const a = join(tmp, 'agent.js');
  writeFileSync(a, agentOk);
  built = await buildImage({
    files: [
      { path: '/t/hang.js', data: agentHang },
      { path: '/t/crash.js', data: agentCrash },
    ],
    agent: a,
    kernelConfig: k.config,
    release: k.release,
  });
  full = built.path;
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe(`guest runs on ${KERNEL} (TCG)`, () => {
  it('tiny init: hello + done → ok, with boot time', async () => {
    const r = await runGuest({ kernelId: 'hello', vmlinuz: k.vmlinuz, initrd: tiny, append: 'cm.init=hello', accel: 'tcg', logDir });
    expect(r.verdict, r.detail).toBe('ok');
    expect(r.accel).toBe('tcg');
    expect(r.bootMs).toBeGreaterThan(100);
    expect(r.bootMs).toBeLessThan(60_000);
    expect(r.messages.map((m) => m.t)).toEqual(['log', 'hello', 'done']);
    expect(r.messages.find((m) => m.t === 'hello')).toMatchObject({ release: k.release, machine: 'x86_64' });
    expect(readFileSync(r.consoleLog, 'utf8')).toContain(`Linux version ${k.release}`);
    expect(r.consoleTail.split('\n').length).toBeLessThanOrEqual(40);
    expect(r.consoleTail).toContain('reboot: Power down');
    console.log(`[measure] ${KERNEL} tiny init: init at ${r.initMs} ms guest uptime, whole run ${r.durationMs} ms`);
  });

  it('a crashed kernel → panic, with the panic line in the tail', async () => {
    const r = await runGuest({ kernelId: 'panic', vmlinuz: k.vmlinuz, initrd: tiny, append: 'cm.init=panic', accel: 'tcg', logDir });
    expect(r.verdict).toBe('panic');
    expect(r.detail).toMatch(/^Kernel panic - not syncing: sysrq triggered crash/);
    expect(r.consoleTail).toContain('Kernel panic - not syncing');
    expect(r.durationMs).toBeLessThan(30_000);
  });

  it('an init that never says hello → no-agent within the heartbeat timeout', async () => {
    const r = await runGuest({ kernelId: 'hang', vmlinuz: k.vmlinuz, initrd: tiny, append: 'cm.init=hang', accel: 'tcg', logDir, heartbeatTimeoutMs: 4000 });
    expect(r.verdict).toBe('no-agent');
    expect(r.detail).toMatch(/no hello from the agent within 4 s/);
    expect(r.initMs).toBeGreaterThan(0);
    // Killed ~4 s after /init spoke (plus QEMU start and firmware, a few seconds).
    expect(r.durationMs).toBeLessThan(r.initMs! + 4000 + 10_000);
  });

  it('a guest that outlives its budget → timeout, killed on time', async () => {
    const r = await runGuest({ kernelId: 'slow', vmlinuz: k.vmlinuz, initrd: tiny, append: 'cm.init=hang', accel: 'tcg', logDir, timeoutMs: 6000, heartbeatTimeoutMs: 60_000 });
    expect(r.verdict).toBe('timeout');
    expect(r.detail).toBe('guest still running after 6 s (tcg)');
    expect(r.durationMs).toBeGreaterThanOrEqual(6000);
    expect(r.durationMs).toBeLessThan(9000);
  });

  it('an image without node → no-agent, saying so, and the guest powers off', async () => {
    const r = await runGuest({ kernelId: 'no-node', vmlinuz: k.vmlinuz, initrd: tiny, accel: 'tcg', logDir });
    expect(r.verdict).toBe('no-agent');
    expect(r.detail).toBe('init: /bin/node is missing from the image');
    expect(r.qemuExitCode).toBe(0);
    expect(r.consoleTail).toContain('reboot: Power down');
  });

  it('a missing kernel image is a clear one-line error', async () => {
    const p = runGuest({ kernelId: '6.1', vmlinuz: join(tmp, 'nope/vmlinuz'), initrd: tiny, accel: 'tcg', logDir });
    await expect(p).rejects.toThrow(/^guest 6\.1: kernel image \/.*nope\/vmlinuz not found$/);
  });

  it('qemu failing to start → qemu-died with its error', async () => {
    const junk = join(tmp, 'junk-vmlinuz');
    writeFileSync(junk, 'not a kernel');
    const r = await runGuest({ kernelId: 'junk', vmlinuz: junk, initrd: tiny, accel: 'tcg', logDir });
    expect(r.verdict).toBe('qemu-died');
    expect(r.detail).toMatch(/^qemu exited with code 1: .*/);
  });

  it('the KVM probe decides quickly and only once', async () => {
    const saved = process.env.COREMATRIX_ACCEL;
    delete process.env.COREMATRIX_ACCEL;
    const err = vi.spyOn(process.stderr, 'write');
    try {
      resetAccelProbe();
      const t0 = performance.now();
      const a = await probeAccel(k.vmlinuz, tiny);
      const ms = performance.now() - t0;
      const t1 = performance.now();
      expect(await probeAccel(k.vmlinuz, tiny)).toBe(a);
      expect(performance.now() - t1).toBeLessThan(50);
      console.log(`[measure] KVM probe: ${a} after ${Math.round(ms)} ms (${lastProbe()?.reason})`);
      if (a === 'tcg') {
        expect(ms).toBeLessThan(15_000);
        const said = err.mock.calls.filter((c) => String(c[0]).includes('KVM unusable'));
        expect(said.length).toBe(existsSync('/dev/kvm') ? 1 : said.length);
      } else {
        const r = await runGuest({ kernelId: 'kvm', vmlinuz: k.vmlinuz, initrd: tiny, append: 'cm.init=hello', accel: 'auto', logDir });
        expect(r.verdict).toBe('ok');
        expect(r.accel).toBe('kvm');
      }
    } finally {
      err.mockRestore();
      if (saved !== undefined) process.env.COREMATRIX_ACCEL = saved;
    }
  });

  it('no QEMU outlives its host process (SIGINT, SIGTERM, SIGKILL)', async () => {
    const script = join(tmp, 'host.mts');
    writeFileSync(
      script,
      `import { runGuest } from ${JSON.stringify(join(repoRoot(), 'harness/vm/qemu.ts'))};\n` +
        `console.log('PID ' + process.pid);\n` +
        `await runGuest({ kernelId: 'orphan', vmlinuz: ${JSON.stringify(k.vmlinuz)}, initrd: ${JSON.stringify(tiny)}, append: 'cm.init=hang', accel: 'tcg', logDir: ${JSON.stringify(logDir)}, heartbeatTimeoutMs: 120000 });\n`,
    );
    const tsx = join(repoRoot(), 'node_modules/.bin/tsx');
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGKILL'] as const) {
      const host = spawn(tsx, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
      const pid = await new Promise<number>((resolve) => host.stdout!.on('data', (b: Buffer) => /PID (\d+)/.test(b.toString()) && resolve(Number(/PID (\d+)/.exec(b.toString())![1]))));
      let qemu: number | undefined;
      for (let i = 0; i < 100 && qemu === undefined; i++) {
        // A child may exit between the listing and the read (tsx's own helpers): not QEMU then.
        qemu = childrenOf(pid).find((c) => {
          try {
            return readFileSync(`/proc/${c}/comm`, 'utf8').startsWith('qemu-system');
          } catch {
            return false;
          }
        });
        if (qemu === undefined) await new Promise((r) => setTimeout(r, 100));
      }
      expect(qemu, `qemu under host pid ${pid}`).toBeDefined();
      process.kill(pid, sig);
      let gone = false;
      for (let i = 0; i < 50 && !gone; i++) {
        gone = !existsSync(`/proc/${qemu}`) || readFileSync(`/proc/${qemu}/stat`, 'utf8').split(' ')[2] === 'Z';
        if (!gone) await new Promise((r) => setTimeout(r, 100));
      }
      host.kill('SIGKILL');
      expect(gone, `qemu ${qemu} still alive 5 s after ${sig} of its host`).toBe(true);
    }
  });
});

describe(`node in the guest on ${KERNEL} (TCG)`, () => {
  it('node runs, koffi loads, libbpf.so.1 opens', async () => {
    const r = await runGuest({ kernelId: 'node', vmlinuz: k.vmlinuz, initrd: full, append: 'cm.init=node', accel: 'tcg', logDir });
    expect(r.verdict, r.detail + '\n' + r.consoleTail).toBe('ok');
    const logs = r.messages.flatMap((m) => (m.t === 'log' ? [m.msg] : []));
    const koffiVersion = (createRequire(import.meta.url)('koffi') as { version: string }).version;
    expect(logs.find((l) => l.startsWith('node-version'))).toMatch(new RegExp(`^node-version ${process.version.replace(/\./g, '\\.')} in \\d+ ms$`));
    expect(logs.find((l) => l.startsWith('koffi'))).toMatch(new RegExp(`^koffi koffi ${koffiVersion.replace(/\./g, '\\.')} getpid=\\d+ in \\d+ ms$`));
    expect(logs.find((l) => l.startsWith('libbpf'))).toMatch(/^libbpf libbpf 1\.\d+ in \d+ ms$/);
    console.log(`[measure] image ${(built.baseBytes / 1e6).toFixed(1)} MB base + ${built.runBytes} B run layer and seed; init at ${r.initMs} ms; ${logs.slice(1).join('; ')}; run ${r.durationMs} ms`);
  });

  it('the agent boots with its image: hello, result, done → ok', async () => {
    const results: unknown[] = [];
    const r = await runGuest({ kernelId: 'agent', vmlinuz: k.vmlinuz, initrd: full, accel: 'tcg', logDir, onMessage: (m) => m.t === 'result' && results.push(m.data) });
    expect(r.verdict, r.detail + '\n' + r.consoleTail).toBe('ok');
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ node: process.version, bpffs: true });
    expect((results[0] as { btf: number }).btf).toBeGreaterThan(1_000_000);
    expect(r.bootMs).toBeGreaterThan(r.initMs!);
    console.log(`[measure] agent: init at ${r.initMs} ms, node up (hello) at ${r.bootMs} ms → node start ${r.bootMs! - r.initMs!} ms`);
  });

  it('an agent that stops beating → agent-hang', async () => {
    const r = await runGuest({ kernelId: 'agent-hang', vmlinuz: k.vmlinuz, initrd: full, append: 'cm.agent=/t/hang.js', accel: 'tcg', logDir, heartbeatTimeoutMs: 8000 });
    expect(r.verdict, r.detail).toBe('agent-hang');
    expect(r.detail).toMatch(/^agent silent for 8 s \(last: \{"t":"hello"/);
  });

  it('an agent that crashes → agent-failed, and the guest still powers off', async () => {
    const r = await runGuest({ kernelId: 'agent-crash', vmlinuz: k.vmlinuz, initrd: full, append: 'cm.agent=/t/crash.js', accel: 'tcg', logDir });
    expect(r.verdict).toBe('agent-failed');
    expect(r.detail).toBe('init: node /t/crash.js exited with status 1');
    expect(readFileSync(r.consoleLog, 'utf8')).toContain('boom in the agent');
    expect(r.qemuExitCode).toBe(0);
  });
});

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}
