// The module that touches koffi for the runtime: libc's syscall(2), close, mmap/munmap, ioctl, read,
// mount, errno, and native memory for everything a syscall reads through a pointer. (The socket
// calls live in socket.ts, libbpf's API in reference/; both bind through koffi themselves.)
//
// Why native memory: `union bpf_attr` holds u64 pointers to other buffers (instructions, license,
// log, keys, values). A V8 typed array may live on the JS heap and move, so every buffer the
// kernel sees through a pointer is calloc'd here and viewed from JS with koffi.view (no copy).

import koffi from 'koffi';
import { CoreMatrixError } from '../core/errors.js';
import { untrackFd } from './fds.js';
import { syscallNumbers } from './arch-syscalls.js';

const libc = koffi.load('libc.so.6');
// long syscall(long number, ...): variadic; koffi wants a (type, value) pair per extra argument.
const cSyscall = libc.func('long syscall(long number, ...)');
const cIoctl = libc.func('int ioctl(int fd, unsigned long request, ...)');
const cClose = libc.func('int close(int fd)');
const cRead = libc.func('long read(int fd, void *buf, size_t count)');
const cMmap = libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)');
const cMunmap = libc.func('int munmap(void *addr, size_t length)');
const cMprotect = libc.func('int mprotect(void *addr, size_t len, int prot)');
const cCalloc = libc.func('void *calloc(size_t nmemb, size_t size)');
const cFree = libc.func('void free(void *ptr)');
const cStrerror = libc.func('const char *strerror(int errnum)');
const cMount = libc.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)');
const cSysconf = libc.func('long sysconf(int name)');
const cGetrlimit = libc.func('int getrlimit(int resource, void *rlim)');
const cSetrlimit = libc.func('int setrlimit(int resource, void *rlim)');

// System call numbers of the arch this runs on (x86-64 or arm64): arch-syscalls.ts.
const NR = syscallNumbers();
export const SYS_bpf = NR.bpf;
export const SYS_perf_event_open = NR.perf_event_open;
export const SYS_finit_module = NR.finit_module;
export const SYS_reboot = NR.reboot;

const ERRNO_NAMES = new Map<number, string>();
for (const [name, num] of Object.entries(koffi.os.errno)) if (!ERRNO_NAMES.has(num)) ERRNO_NAMES.set(num, name);
// Linux-only codes koffi's table may lack.
for (const [num, name] of [[524, 'ENOTSUPP'], [95, 'EOPNOTSUPP'], [28, 'ENOSPC'], [7, 'E2BIG']] as const)
  if (!ERRNO_NAMES.has(num)) ERRNO_NAMES.set(num, name);

/** The symbolic name of an errno value ("EINVAL"), or "errno N". */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}
/** The errno number for a symbolic name (throws on an unknown name: a typo in our code). */
export function errnoNumber(name: string): number {
  const n = koffi.os.errno[name] ?? (name === 'ENOTSUPP' ? 524 : undefined);
  if (n === undefined) throw new Error(`unknown errno name ${name}`);
  return n;
}

/** A failed system call: one line naming the call, the command and the errno name. */
export class SyscallError extends CoreMatrixError {
  override name = 'SyscallError';
  readonly code: string;
  constructor(
    /** What was called, e.g. "bpf(BPF_MAP_CREATE)" or "perf_event_open(kprobe do_sys_openat2)". */
    readonly call: string,
    readonly errno: number,
    detail?: string,
  ) {
    const code = errnoName(errno);
    const text = errno === 524 ? 'Operation not supported' : (cStrerror(errno) as string);
    super(`${call}: ${code} (${text})${detail ? `: ${detail}` : ''}`);
    this.code = code;
  }
}

function fail(call: string): never {
  throw new SyscallError(call, koffi.errno());
}

/** Native (calloc'd, zeroed) memory with a stable address and a JS view. Free it explicitly. */
export class NativeMem {
  readonly addr: bigint;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  private freed = false;
  constructor(readonly size: number) {
    const n = Math.max(size, 1);
    const p = cCalloc(1, n) as bigint | null;
    if (!p) throw new CoreMatrixError(`calloc(${n}) failed`);
    this.addr = BigInt(koffi.address(p));
    const ab = koffi.view(p, n);
    this.bytes = new Uint8Array(ab, 0, size);
    this.view = new DataView(ab, 0, n);
  }
  /** Copies `src` to a new native buffer. */
  static from(src: Uint8Array): NativeMem {
    const m = new NativeMem(src.length);
    m.bytes.set(src);
    return m;
  }
  /** A NUL-terminated copy of a string. */
  static cstring(s: string): NativeMem {
    const enc = new TextEncoder().encode(s);
    const m = new NativeMem(enc.length + 1);
    m.bytes.set(enc);
    return m;
  }
  /** A copy of the bytes (safe to keep after free). */
  copy(len = this.size): Uint8Array {
    return this.bytes.slice(0, len);
  }
  free(): void {
    if (this.freed) return;
    this.freed = true;
    cFree(this.addr);
  }
}

/** Collects native allocations made for one call and frees them all at once. */
export class Scratch {
  private mems: NativeMem[] = [];
  alloc(size: number): NativeMem {
    const m = new NativeMem(size);
    this.mems.push(m);
    return m;
  }
  from(src: Uint8Array): NativeMem {
    const m = NativeMem.from(src);
    this.mems.push(m);
    return m;
  }
  cstring(s: string): NativeMem {
    const m = NativeMem.cstring(s);
    this.mems.push(m);
    return m;
  }
  free(): void {
    for (const m of this.mems) m.free();
    this.mems = [];
  }
}

/** Runs `fn` with a scratch arena that is freed afterwards, whatever happens. */
export function withScratch<T>(fn: (s: Scratch) => T): T {
  const s = new Scratch();
  try {
    return fn(s);
  } finally {
    s.free();
  }
}

const SYS_rt_sigprocmask = NR.rt_sigprocmask;
const SIG_BLOCK = 0;
const SIG_SETMASK = 2;
/**
 * bpf commands that give up when a signal is pending: the verifier returns EAGAIN
 * (BPF_PROG_LOAD = 5) and a repeated test run EINTR (BPF_PROG_TEST_RUN = 10). Under emulation
 * they take milliseconds, so a timer or a profiler's SIGPROF (every 1 ms by default) hits them
 * often; retrying does not help when every attempt is as long as the interval.
 */
const INTERRUPTIBLE = new Set([5, 10]);
/**
 * The signals blocked around them (bit n-1 is signal n): all but SIGHUP, SIGINT, SIGQUIT and
 * SIGTERM, so a user can still stop a long load (it then ends in EAGAIN, as it should), and
 * glibc's own 32 and 33 (thread cancellation, set*id across threads).
 */
const BLOCKED = ~[1, 2, 3, 15, 32, 33].reduce((m, sig) => m | (1n << BigInt(sig - 1)), 0n) & 0xffff_ffff_ffff_ffffn;
/** [new mask, old mask] for rt_sigprocmask, allocated once. */
let sigMasks: NativeMem | undefined;

/**
 * bpf(cmd, attr, size) returning the raw result or -errno (no throw): for probes and retries.
 * The interruptible commands run with signals blocked in this thread (BLOCKED); one that arrives
 * meanwhile is delivered once they return (SIGKILL and SIGSTOP cannot be blocked and still end them).
 */
export function bpfRaw(cmd: number, attr: NativeMem, size: number): { ret: number; errno: number } {
  const call = () => {
    const ret = Number(cSyscall(SYS_bpf, 'int', cmd, 'uint64_t', attr.addr, 'uint32_t', size));
    return ret < 0 ? { ret, errno: koffi.errno() } : { ret, errno: 0 };
  };
  if (!INTERRUPTIBLE.has(cmd)) return call();
  if (!sigMasks) {
    sigMasks = new NativeMem(16);
    sigMasks.view.setBigUint64(0, BLOCKED, true);
  }
  const [all, old] = [sigMasks.addr, sigMasks.addr + 8n];
  if (Number(cSyscall(SYS_rt_sigprocmask, 'int', SIG_BLOCK, 'uint64_t', all, 'uint64_t', old, 'size_t', 8)) < 0) fail('rt_sigprocmask(SIG_BLOCK)');
  try {
    return call();
  } finally {
    if (Number(cSyscall(SYS_rt_sigprocmask, 'int', SIG_SETMASK, 'uint64_t', old, 'uint64_t', 0n, 'size_t', 8)) < 0) fail('rt_sigprocmask(SIG_SETMASK)');
  }
}

/** bpf(cmd, attr, size); throws SyscallError naming `cmdName` on failure. */
export function bpf(cmd: number, cmdName: string, attr: NativeMem, size: number): number {
  const { ret, errno } = bpfRaw(cmd, attr, size);
  if (ret < 0) throw new SyscallError(`bpf(${cmdName})`, errno);
  return ret;
}

/** perf_event_open(attr, pid, cpu, group_fd, flags) → fd, or throws naming `what`. */
export function perfEventOpen(attr: NativeMem, pid: number, cpu: number, groupFd: number, flags: number, what: string): number {
  const ret = Number(
    cSyscall(SYS_perf_event_open, 'uint64_t', attr.addr, 'int', pid, 'int', cpu, 'int', groupFd, 'unsigned long', flags),
  );
  if (ret < 0) fail(`perf_event_open(${what})`);
  return ret;
}

/** ioctl(fd, request, intArg). */
export function ioctl(fd: number, request: number, arg: number, what: string): number {
  const ret = cIoctl(fd, request, 'int', arg) as number;
  if (ret < 0) fail(`ioctl(${what})`);
  return ret;
}

/** ioctl(fd, request, &buf): the kernel reads and writes `buf` (copied in, and back out on success). */
export function ioctlBuffer(fd: number, request: number, buf: Uint8Array, what: string): number {
  const m = new NativeMem(buf.length);
  try {
    m.bytes.set(buf);
    const ret = cIoctl(fd, request, 'uint64_t', m.addr) as number;
    if (ret < 0) fail(`ioctl(${what})`);
    buf.set(m.bytes.subarray(0, buf.length));
    return ret;
  } finally {
    m.free();
  }
}

/**
 * finit_module(fd, "", 0): loads the kernel module in the open file. 'loaded', or 'present' when
 * the kernel already has it (EEXIST: built in or loaded before); any other failure throws.
 */
export function finitModule(fd: number, what: string): 'loaded' | 'present' {
  const params = new NativeMem(1);
  try {
    const ret = Number(cSyscall(SYS_finit_module, 'int', fd, 'uint64_t', params.addr, 'int', 0));
    if (ret === 0) return 'loaded';
    const errno = koffi.errno();
    if (errnoName(errno) === 'EEXIST') return 'present';
    throw new SyscallError(`finit_module(${what})`, errno);
  } finally {
    params.free();
  }
}

const SYS_sched_setaffinity = NR.sched_setaffinity;
const SYS_sched_getaffinity = NR.sched_getaffinity;
/** Bytes of a CPU mask passed to the kernel: room for 1,024 CPUs. */
const CPU_MASK_BYTES = 128;

/**
 * Runs `fn` with this thread pinned to one CPU (the first it may run on), then gives it back its
 * CPU mask: for work that must land on one CPU's per-CPU state from several syscalls.
 */
export function onOneCpu<T>(fn: (cpu: number) => T): T {
  const old = new NativeMem(CPU_MASK_BYTES);
  const one = new NativeMem(CPU_MASK_BYTES);
  try {
    const len = Number(cSyscall(SYS_sched_getaffinity, 'int', 0, 'size_t', CPU_MASK_BYTES, 'uint64_t', old.addr));
    if (len < 0) fail('sched_getaffinity');
    const byte = old.bytes.subarray(0, len).findIndex((b) => b !== 0);
    if (byte < 0) throw new CoreMatrixError('sched_getaffinity: this thread may run on no CPU');
    const bit = Math.log2(old.bytes[byte]! & -old.bytes[byte]!);
    one.bytes[byte] = 1 << bit;
    if (Number(cSyscall(SYS_sched_setaffinity, 'int', 0, 'size_t', len, 'uint64_t', one.addr)) < 0) fail('sched_setaffinity');
    try {
      return fn(byte * 8 + bit);
    } finally {
      if (Number(cSyscall(SYS_sched_setaffinity, 'int', 0, 'size_t', len, 'uint64_t', old.addr)) < 0) fail('sched_setaffinity (restoring the mask)');
    }
  } finally {
    old.free();
    one.free();
  }
}

/**
 * reboot(LINUX_REBOOT_CMD_POWER_OFF): the machine powers off at once (no sync, no process exit).
 * For the guest agent's last step only; returns only on failure (throws).
 */
export function powerOff(): never {
  const LINUX_REBOOT_MAGIC1 = 0xfee1dead;
  const LINUX_REBOOT_MAGIC2 = 672274793;
  const LINUX_REBOOT_CMD_POWER_OFF = 0x4321fedc;
  cSyscall(SYS_reboot, 'int', LINUX_REBOOT_MAGIC1 | 0, 'int', LINUX_REBOOT_MAGIC2, 'unsigned int', LINUX_REBOOT_CMD_POWER_OFF, 'uint64_t', 0n);
  fail('reboot(POWER_OFF)');
}

/** close(fd); also drops it from the debug fd registry. Closing twice is a bug: EBADF throws. */
export function close(fd: number): void {
  untrackFd(fd);
  if ((cClose(fd) as number) < 0) fail(`close(${fd})`);
}

/** read(fd, n bytes) → the bytes read. */
export function read(fd: number, n: number): Uint8Array {
  const m = new NativeMem(n);
  try {
    const got = Number(cRead(fd, m.addr, n));
    if (got < 0) fail(`read(${fd})`);
    return m.copy(got);
  } finally {
    m.free();
  }
}

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;

/** A mmap'd region: address, a JS view of it (no copy), unmapped by close(). */
export class Mapping {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  private closed = false;
  constructor(
    readonly addr: bigint,
    readonly length: number,
  ) {
    const ab = koffi.view(addr, length);
    this.bytes = new Uint8Array(ab);
    this.view = new DataView(ab);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if ((cMunmap(this.addr, this.length) as number) < 0) fail('munmap');
  }
}

/** mmap(NULL, length, prot, MAP_SHARED, fd, offset). */
export function mmap(fd: number, length: number, prot: number, offset: number, what: string): Mapping {
  const p = cMmap(null, length, prot, MAP_SHARED, fd, offset) as bigint | null;
  const addr = p === null ? 0n : BigInt(koffi.address(p));
  if (addr === 0xffffffffffffffffn || addr === 0n) fail(`mmap(${what})`);
  return new Mapping(addr, length);
}

/** mount(source, target, fstype, 0, NULL). */
export function mount(source: string, target: string, fstype: string): void {
  if ((cMount(source, target, fstype, 0, null) as number) < 0) fail(`mount(${fstype} on ${target})`);
}

let pageSizeCache = 0;
/** sysconf(_SC_PAGESIZE). */
const PROT_EXEC = 4;
const MAP_PRIVATE = 2;
const MAP_ANONYMOUS = 0x20;

/**
 * What the kernel refuses of the memory calls this process's JavaScript engine makes all the
 * time: a private anonymous page mapped read-write, then made read-execute and back, as V8 does
 * with its code pages (it aborts the process when mprotect fails). Undefined when all succeed.
 */
export function memoryCallsRefused(): string | undefined {
  const size = pageSize();
  const p = cMmap(null, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) as bigint | null;
  const addr = p === null ? 0n : BigInt(koffi.address(p));
  if (addr === 0xffffffffffffffffn || addr === 0n) return `mmap of an anonymous page: ${errnoName(koffi.errno())}`;
  try {
    for (const prot of [PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE]) {
      if ((cMprotect(p, size, prot) as number) < 0) return `mprotect(${prot & PROT_EXEC ? 'PROT_READ|PROT_EXEC' : 'PROT_READ|PROT_WRITE'}): ${errnoName(koffi.errno())}`;
    }
    return undefined;
  } finally {
    cMunmap(p, size);
  }
}

export function pageSize(): number {
  if (!pageSizeCache) pageSizeCache = Number(cSysconf(30 /* _SC_PAGESIZE */));
  return pageSizeCache;
}

const RLIMIT_MEMLOCK = 8;
const RLIM_INFINITY = 0xffffffffffffffffn;
let memlockDone = false;

/**
 * Lifts RLIMIT_MEMLOCK to infinity, once. Kernels before 5.11 charge BPF maps and programs to
 * it (the default is 64 KiB or 8 MiB) and fail with EPERM beyond; later kernels use memcg and
 * ignore it. Returns the previous soft limit (bigint) or undefined when it could not be changed.
 */
export function removeMemlockLimit(): bigint | undefined {
  if (memlockDone) return undefined;
  memlockDone = true;
  const m = new NativeMem(16);
  try {
    if ((cGetrlimit(RLIMIT_MEMLOCK, m.addr) as number) < 0) return undefined;
    const prev = m.view.getBigUint64(0, true);
    if (prev === RLIM_INFINITY && m.view.getBigUint64(8, true) === RLIM_INFINITY) return prev;
    m.view.setBigUint64(0, RLIM_INFINITY, true);
    m.view.setBigUint64(8, RLIM_INFINITY, true);
    if ((cSetrlimit(RLIMIT_MEMLOCK, m.addr) as number) < 0) return undefined;
    return prev;
  } finally {
    m.free();
  }
}
