// How a guest of each arch is booted: the QEMU binary and machine, the CPU model under TCG, where
// the console and the result port are (host side: QEMU arguments; guest side: device names), and
// the kernel command line that tells /init which port is the result port.
//
//   amd64: qemu-system-x86_64 (pc), console ttyS0, result port ttyS1: a second 16550 (built into
//          every Debian kernel). Exactly the arguments qemu.ts has always used.
//   arm64: qemu-system-aarch64 -M virt (package qemu-system-arm), console ttyAMA0 (the PL011, the
//          only UART of virt in QEMU 7.2), result port a 16550 on virt's PCIe bus (-device
//          pci-serial): Debian's arm64 kernels build 8250 and 8250_PCI in (=y), while virtio (mmio,
//          pci) and virtio_console are modules, so this is the one second port needing no module.
//          The guest sees it as /dev/ttyS0 (the first 8250 port with a real UART; ttyS1..3 are
//          the driver's empty placeholders), told to /init as cm.result=/dev/ttyS0.
//
// qemu.ts's runGuest boots every arch with these arguments (the orchestrator's runner, verdicts and
// all); `bootGuest` is a small runner (console, result lines, deadlines) for tests and measurements.
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { CoreMatrixError } from '../core/errors.js';
import type { DebianArch } from '../kernels/arch.js';
import { decodeMessage, type GuestMessage } from '../protocol.js';
import { onPath } from '../tools.js';
import { ConsoleScanner, type Splat } from './console.js';

export type Accel = 'kvm' | 'tcg';

export interface ArchMachine {
  arch: DebianArch;
  /** The QEMU system emulator, and the Debian package that has it. */
  qemu: string;
  qemuPackage: string;
  /** Machine selection (none on x86: the default pc). */
  machine: string[];
  /** CPU model under TCG (undefined: QEMU's default); under KVM always `host`. */
  tcgCpu?: string;
  /** The guest's console tty (kernel `console=`), wired to QEMU's stdout. */
  console: string;
  /** The result port as the guest sees it. */
  resultPort: string;
  /** QEMU arguments that attach the result port to the chardev `id`. */
  resultDevice(id: string): string[];
  /** The result port when nobody reads results (an interactive guest): still there, leading nowhere. */
  nullResultPort: string[];
  /** Kernel arguments every guest of this arch gets before the caller's. */
  baseAppend: string;
}

/**
 * arm64 TCG CPU: neoverse-n1 (Armv8.2: LSE atomics, RCpc; no pointer authentication, SVE or MTE),
 * the core of many arm64 cloud machines. Measured on these 2-core hosts booting Debian's 6.1 arm64
 * (busybox /init, guest uptime at /init, noisy: other guests ran): max 8.4–16 s (its pointer
 * authentication is emulated with the QARMA cipher, paid in every kernel function's prologue and
 * epilogue), max,pauth-impdef=on 2.6–2.7 s, cortex-a72 1.6–2.2 s, neoverse-n1 1.6–1.9 s. See docs/arm64.md.
 */
export const ARM64_TCG_CPU = 'neoverse-n1';

export const ARCH_MACHINES: Record<DebianArch, ArchMachine> = {
  amd64: {
    arch: 'amd64',
    qemu: 'qemu-system-x86_64',
    qemuPackage: 'qemu-system-x86',
    machine: [],
    console: 'ttyS0',
    resultPort: '/dev/ttyS1',
    resultDevice: (id) => ['-serial', `chardev:${id}`],
    nullResultPort: ['-serial', 'null'],
    baseAppend: 'console=ttyS0 panic=-1',
  },
  arm64: {
    arch: 'arm64',
    qemu: 'qemu-system-aarch64',
    qemuPackage: 'qemu-system-arm',
    machine: ['-M', 'virt'],
    tcgCpu: ARM64_TCG_CPU,
    console: 'ttyAMA0',
    resultPort: '/dev/ttyS0',
    resultDevice: (id) => ['-device', `pci-serial,chardev=${id}`],
    nullResultPort: ['-chardev', 'null,id=res', '-device', 'pci-serial,chardev=res'],
    baseAppend: 'console=ttyAMA0 panic=-1 cm.result=/dev/ttyS0',
  },
};

/** The arch QEMU can run with KVM here: the host's own (a foreign arch is always TCG). */
export function kvmCapable(arch: DebianArch): boolean {
  return (process.arch === 'x64' && arch === 'amd64') || (process.arch === 'arm64' && arch === 'arm64');
}

export interface ArchQemuOptions {
  vmlinuz: string;
  initrd: string;
  /** Extra kernel command line (after the arch's base). */
  append?: string;
  memoryMb?: number;
  cpus?: number;
  accel: Accel;
  /** A TCG CPU model other than the arch's default (measurements; e.g. `max`). */
  cpu?: string;
  /**
   * `user`: QEMU's user-mode network on an e1000 NIC (on virt's PCIe bus for arm64, where e1000 is
   * a module in Debian's kernels, as virtio-net is). Default: no NIC.
   */
  net?: 'user';
  /** `fd3` (default): the result port on the socket at fd 3; `none`: a port that leads nowhere. */
  results?: 'fd3' | 'none';
}

/**
 * The QEMU argument vector (after the binary) for one guest of `arch`: console on stdout (chardev
 * stdio), result port on the socket QEMU inherits as fd 3. For amd64 it is exactly qemu.ts's.
 */
export function archQemuArgs(arch: DebianArch, o: ArchQemuOptions): string[] {
  const m = ARCH_MACHINES[arch];
  if (o.accel === 'kvm' && !kvmCapable(arch)) throw new CoreMatrixError(`${arch} guest: KVM runs only the host's own arch (${process.arch}); use TCG`);
  const cpu = o.accel === 'kvm' ? 'host' : (o.cpu ?? m.tcgCpu);
  return [
    '-nodefaults', '-no-user-config', '-no-reboot', '-nographic',
    ...m.machine,
    '-accel', o.accel,
    ...(cpu ? ['-cpu', cpu] : []),
    '-m', String(o.memoryMb ?? 1024), '-smp', String(o.cpus ?? 1),
    '-kernel', o.vmlinuz, '-initrd', o.initrd,
    '-append', `${m.baseAppend}${o.append ? ' ' + o.append : ''}`,
    '-chardev', 'stdio,id=con,signal=off', '-serial', 'chardev:con',
    ...(o.results === 'none' ? m.nullResultPort : ['-chardev', 'socket,id=res,fd=3', ...m.resultDevice('res')]),
    // No option ROM: the firmware would scan it for iPXE.
    ...(o.net === 'user' ? ['-netdev', 'user,id=net0', '-device', 'e1000,netdev=net0,romfile='] : []),
  ];
}

/** Finds the arch's QEMU on PATH; a missing one is a setup error naming the package. */
export function findQemu(arch: DebianArch): string {
  const m = ARCH_MACHINES[arch];
  const qemu = onPath(m.qemu);
  if (!qemu) throw new CoreMatrixError(`${m.qemu} not found on PATH (apt-get install ${m.qemuPackage})`);
  return qemu;
}

let setprivOk: boolean | undefined;
/** `setpriv --pdeathsig KILL --` when there is one: QEMU dies with the host process. */
export function pdeathsigPrefix(): string[] {
  if (setprivOk === undefined) {
    try {
      setprivOk = execFileSync('setpriv', ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).includes('--pdeathsig');
    } catch {
      setprivOk = false;
    }
  }
  return setprivOk ? ['setpriv', '--pdeathsig', 'KILL', '--'] : [];
}

export interface BootOptions extends Omit<ArchQemuOptions, 'accel' | 'results'> {
  arch: DebianArch;
  accel?: Accel;
  /** Overall budget (default 180 s). */
  timeoutMs?: number;
  /** After `done`, how long the guest may take to power off (default 15 s). */
  poweroffGraceMs?: number;
}

export interface BootResult {
  /** ok: hello, done ok=true, and QEMU exited 0 (the guest powered off). */
  verdict: 'ok' | 'panic' | 'timeout' | 'qemu-died' | 'no-hello' | 'failed';
  detail?: string;
  argv: string[];
  messages: GuestMessage[];
  /** Every console line (as received). */
  console: string[];
  splats: Splat[];
  /** Guest uptime when /init started (its `init: started at N ms` line). */
  initMs?: number;
  /** Guest uptime in the hello line. */
  helloBootMs?: number;
  /** `machine` (uname -m) and `release` in the hello line. */
  machine?: string;
  release?: string;
  /** Host wall time from spawning QEMU to the hello line, and to QEMU's exit. */
  helloWallMs?: number;
  wallMs: number;
  exitCode: number | null;
  stderr: string;
}

/** Boots one guest of any arch and reads its result port until it powers off (or a deadline). */
export async function bootGuest(o: BootOptions): Promise<BootResult> {
  const accel = o.accel ?? 'tcg';
  const argv = [...pdeathsigPrefix(), findQemu(o.arch), ...archQemuArgs(o.arch, { ...o, accel })];
  const t0 = performance.now();
  // An extra 'pipe' is a socketpair: QEMU's `-chardev socket,fd=3` takes it as a connected socket.
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
  const scanner = new ConsoleScanner();
  const consoleLines: string[] = [];
  const messages: GuestMessage[] = [];
  let stderr = '';
  let killed: { verdict: BootResult['verdict']; detail: string } | undefined;
  let hello: Extract<GuestMessage, { t: 'hello' }> | undefined;
  let done: Extract<GuestMessage, { t: 'done' }> | undefined;
  let helloWallMs: number | undefined;
  let initMs: number | undefined;
  const timers: NodeJS.Timeout[] = [];
  const kill = (verdict: BootResult['verdict'], detail: string) => {
    killed ??= { verdict, detail };
    child.kill('SIGKILL');
  };
  timers.push(setTimeout(() => kill('timeout', `guest still running after ${Math.round((o.timeoutMs ?? 180_000) / 1000)} s`), o.timeoutMs ?? 180_000));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', (e) => reject(new CoreMatrixError(`${argv[0]}: cannot start (${e.message})`)));
    child.on('close', (code) => resolve(code));
  });
  child.stderr!.on('data', (b: Buffer) => {
    if (stderr.length < 4096) stderr += b.toString();
  });
  const consoleDone = eachLine(child.stdout!, (line) => {
    consoleLines.push(line);
    const s = scanner.push(line);
    if (s?.kind === 'panic') timers.push(setTimeout(() => kill('panic', s.line), 5_000));
  });
  const channelDone = eachLine(child.stdio[3] as Readable, (line) => {
    const m = decodeMessage(line);
    if (!m) return;
    messages.push(m);
    if (m.t === 'hello') {
      hello = m;
      helloWallMs = Math.round(performance.now() - t0);
    } else if (m.t === 'done') {
      done = m;
      timers.push(setTimeout(() => kill('failed', 'guest did not power off after done'), o.poweroffGraceMs ?? 15_000));
    } else if (m.t === 'log' && initMs === undefined) {
      const im = /^init: started at (\d+) ms/.exec(m.msg);
      if (im) initMs = Number(im[1]);
    }
  });
  const exitCode = await exited;
  await Promise.all([consoleDone, channelDone]);
  for (const t of timers) clearTimeout(t);
  const panic = scanner.first('panic') ?? scanner.first('oops');
  const r: BootResult = {
    verdict: 'ok', argv, messages, console: consoleLines, splats: scanner.splats, wallMs: Math.round(performance.now() - t0), exitCode, stderr,
    ...(initMs !== undefined ? { initMs } : {}),
    ...(hello ? { helloBootMs: hello.bootMs, machine: hello.machine, release: hello.release, helloWallMs: helloWallMs! } : {}),
  };
  const firstErr = stderr.trim().split('\n')[0];
  if (panic) Object.assign(r, { verdict: 'panic', detail: panic.line });
  else if (killed) Object.assign(r, killed);
  else if (exitCode !== 0) Object.assign(r, { verdict: 'qemu-died', detail: `qemu exited with ${exitCode}${firstErr ? `: ${firstErr}` : ''}` });
  else if (!hello) Object.assign(r, { verdict: 'no-hello', detail: 'the guest powered off without a hello on the result port' });
  else if (!done?.ok) Object.assign(r, { verdict: 'failed', detail: done ? 'done with ok=false' : 'no done line' });
  return r;
}

function eachLine(stream: Readable, f: (line: string) => void): Promise<void> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: stream, crlfDelay: Infinity });
    rl.on('line', f);
    rl.on('close', () => resolve());
    stream.on('error', () => resolve());
  });
}
