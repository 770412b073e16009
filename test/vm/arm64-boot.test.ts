// Debian's arm64 kernels under qemu-system-aarch64 (TCG, -M virt): the store's raw Image, a
// busybox-static arm64 initramfs with the project's /init in its hello mode, the hello and done
// lines read from the result port (a PCI 16550, /dev/ttyS0 in the guest), the console on the PL011.
// Witnesses: the guest's own `uname -m` and `uname -r` in the hello line; QEMU's exit code (the
// guest powered itself off); a guest told the wrong port stays silent (the port is where we say).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ArchBusybox, archBusybox, busyboxApplets } from '../../harness/images/busybox-arch.js';
import type { DebianArch } from '../../harness/kernels/arch.js';
import { type KernelArtifacts, type KernelEntry, KernelStore } from '../../harness/kernels/store.js';
import { ARCH_MACHINES, archQemuArgs, type BootResult, bootGuest } from '../../harness/vm/arch.js';
import { probeAccel, runGuest } from '../../harness/vm/qemu.js';
import { busyboxInitramfs } from '../helpers/arch-guest.js';

type ArchEntry = KernelEntry & { arch: DebianArch };
const ARM64_61: ArchEntry = { id: '6.1-arm64', series: '6.1', flavour: 'generic', suites: ['bookworm'], arch: 'arm64' };
const ARM64_7X: ArchEntry = { id: '7.x-arm64', series: '7.x', flavour: 'generic', suites: ['trixie-backports', 'sid'], arch: 'arm64' };

const tmp = mkdtempSync(join(tmpdir(), 'cm-arm64-boot-'));
const store = new KernelStore();
let bb: ArchBusybox;
let initrd: string;

beforeAll(async () => {
  bb = await archBusybox('arm64', { suites: ['bookworm'] });
  initrd = busyboxInitramfs(join(tmp, 'arm64.cpio'), bb);
}, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const console_ = (r: BootResult) => `${r.detail ?? ''}\n${r.argv.join(' ')}\n${r.stderr}\n${r.console.slice(-30).join('\n')}`;
const measure = (what: string, r: BootResult) =>
  `[measure] ${what}: /init at ${r.initMs} ms guest uptime, hello on the host ${r.helloWallMs} ms after spawn, powered off ${r.wallMs} ms after spawn`;

async function boot(k: KernelArtifacts, append = 'cm.init=hello', cpu?: string): Promise<BootResult> {
  return bootGuest({ arch: k.arch, vmlinuz: k.vmlinuz, initrd, append, timeoutMs: 240_000, ...(cpu ? { cpu } : {}) });
}

function expectHello(r: BootResult, k: KernelArtifacts): void {
  expect(r.verdict, console_(r)).toBe('ok');
  expect(r.exitCode).toBe(0);
  expect(r.machine).toBe('aarch64');
  expect(r.release).toBe(k.release);
  expect(r.messages.map((m) => m.t)).toEqual(['log', 'hello', 'done']);
  // The console is the PL011 and carries the kernel's log, not the result lines.
  expect(r.console.some((l) => /Run \/init as init process/.test(l))).toBe(true);
  expect(r.console.join('\n')).not.toMatch(/"t":"hello"/);
}

describe('arm64 machine arguments', () => {
  it('amd64 keeps exactly the arguments qemu.ts boots with; arm64 is virt, PL011 console, PCI 16550 result port', () => {
    const o = { vmlinuz: '/k', initrd: '/i', append: 'x=1', memoryMb: 512, cpus: 2, accel: 'tcg' as const };
    // amd64: the arguments every amd64 guest has booted with (qemuArgs is this case now).
    expect(archQemuArgs('amd64', o)).toEqual([
      '-nodefaults', '-no-user-config', '-no-reboot', '-nographic', '-accel', 'tcg', '-m', '512', '-smp', '2', '-kernel', '/k', '-initrd', '/i',
      '-append', 'console=ttyS0 panic=-1 x=1', '-chardev', 'stdio,id=con,signal=off', '-serial', 'chardev:con', '-chardev', 'socket,id=res,fd=3', '-serial', 'chardev:res',
    ]);
    expect(archQemuArgs('amd64', { ...o, results: 'none' }).slice(-2)).toEqual(['-serial', 'null']);
    expect(archQemuArgs('amd64', { ...o, net: 'user' }).slice(-4)).toEqual(['-netdev', 'user,id=net0', '-device', 'e1000,netdev=net0,romfile=']);
    expect(archQemuArgs('amd64', { ...o, accel: 'kvm' }).join(' ')).toContain('-accel kvm -cpu host -m 512');
    expect(archQemuArgs('arm64', { ...o, results: 'none' }).slice(-4)).toEqual(['-chardev', 'null,id=res', '-device', 'pci-serial,chardev=res']);
    const a = archQemuArgs('arm64', o);
    expect(a.join(' ')).toContain('-M virt -accel tcg -cpu neoverse-n1 -m 512 -smp 2');
    expect(a.join(' ')).toContain('-append console=ttyAMA0 panic=-1 cm.result=/dev/ttyS0 x=1');
    expect(a.slice(-4)).toEqual(['-chardev', 'socket,id=res,fd=3', '-device', 'pci-serial,chardev=res']);
    expect(() => archQemuArgs('arm64', { ...o, accel: 'kvm' })).toThrow(/KVM runs only the host's own arch/);
    expect(ARCH_MACHINES.arm64.qemuPackage).toBe('qemu-system-arm');
  });

  it("busybox-static arm64 comes from the private apt state: a static aarch64 ELF whose applets are the host's busybox-static's when the versions agree", () => {
    const bytes = readFileSync(bb.path);
    expect(bytes.readUInt16LE(18)).toBe(183); // EM_AARCH64
    expect(execFileSync('file', ['-b', bb.path], { encoding: 'utf8' })).toMatch(/ARM aarch64.*statically linked/);
    expect(bb.from).toMatch(/^busybox-static \S+ \(bookworm\)$/);
    const hostVersion = execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'busybox-static'], { encoding: 'utf8' });
    const host = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
    expect(busyboxApplets(readFileSync('/bin/busybox'))).toEqual(host.filter((a) => a !== 'busybox')); // the reader, against busybox itself
    if (bb.from.split(' ')[1] === hostVersion) expect(bb.applets).toEqual(host.filter((a) => a !== 'busybox'));
    console.log(`[measure] arm64 ${bb.from}: ${bb.applets.length} applets (host busybox-static ${hostVersion}: ${host.length})`);
  });
});

describe('Debian arm64 kernels boot under qemu-system-aarch64 (TCG)', () => {
  it('6.1 arm64 (bookworm): hello and done on the result port, uname -m aarch64', async () => {
    const k = await store.fetch(ARM64_61);
    const r = await boot(k);
    expectHello(r, k);
    console.log(measure(`${k.package} ${k.version} (neoverse-n1)`, r));
  }, 300_000);

  it("6.1 arm64 through the orchestrator's runGuest: TCG without a KVM probe, the result port read, verdict ok", async () => {
    const k = await store.fetch(ARM64_61);
    const saved = process.env.COREMATRIX_ACCEL;
    delete process.env.COREMATRIX_ACCEL;
    try {
      // No probe guest for another arch than the host's: the answer is there at once, for files that do not even exist.
      const t0 = performance.now();
      expect(await probeAccel('/nonexistent/Image', '/nonexistent/initrd', 'arm64')).toBe('tcg');
      expect(performance.now() - t0).toBeLessThan(50);
      const r = await runGuest({ kernelId: '6.1-arm64', arch: 'arm64', vmlinuz: k.vmlinuz, initrd, append: 'cm.init=hello', accel: 'auto', logDir: join(tmp, 'logs'), timeoutMs: 240_000 });
      expect([r.verdict, r.accel, r.detail], r.consoleTail).toEqual(['ok', 'tcg', undefined]);
      expect(r.messages.find((m) => m.t === 'hello')).toMatchObject({ machine: 'aarch64', release: k.release });
      expect(readFileSync(r.consoleLog, 'utf8')).toMatch(/Machine model: linux,dummy-virt/);
      console.log(`[measure] runGuest 6.1 arm64 hello: /init at ${r.initMs} ms guest uptime, ${r.durationMs} ms wall`);
    } finally {
      if (saved !== undefined) process.env.COREMATRIX_ACCEL = saved;
    }
  }, 300_000);

  it('6.1 arm64: a guest told another port (ttyS1, an empty 8250 slot) says nothing on the result port', async () => {
    const k = await store.fetch(ARM64_61);
    // /init takes the last cm.result= on the command line: this one, after the arch's own.
    const r = await boot(k, 'cm.init=hello cm.result=/dev/ttyS1');
    expect(r.exitCode, console_(r)).toBe(0); // it powered off...
    expect(r.verdict).toBe('no-hello'); // ...without a word on the port we read
    expect(r.messages).toEqual([]);
  }, 300_000);

  it('the newest 7.x arm64 the store finds: hello and done, uname -m aarch64', async () => {
    const rows = await store.candidates(ARM64_7X);
    if (rows.length === 0) {
      console.log(`[measure] no 7.x arm64 kernel in ${ARM64_7X.suites.join(', ')}: skipped`);
      return;
    }
    const k = await store.fetch(ARM64_7X);
    expect(k.package).toMatch(/^linux-binary-7\.\d+\.\d+\+deb\d+-arm64$/);
    const r = await boot(k);
    expectHello(r, k);
    console.log(measure(`${k.package} ${k.version} (neoverse-n1)`, r));
  }, 300_000);

  it('6.1 arm64 on the CPU models considered: all boot; neoverse-n1 is the default (measured)', async () => {
    const k = await store.fetch(ARM64_61);
    const lines: string[] = [];
    for (const cpu of ['neoverse-n1', 'cortex-a72', 'max']) {
      const r = await boot(k, 'cm.init=hello', cpu);
      expectHello(r, k);
      lines.push(`${cpu.padEnd(12)} /init ${String(r.initMs).padStart(6)} ms, hello ${String(r.helloWallMs).padStart(6)} ms wall, off ${r.wallMs} ms wall`);
    }
    console.log(`[measure] 6.1 arm64 by -cpu (TCG, 1 vCPU, 1024 MB):\n  ${lines.join('\n  ')}`);
  }, 600_000);
});
