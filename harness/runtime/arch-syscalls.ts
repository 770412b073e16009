// The system call numbers the runtime calls through libc's syscall(2), per architecture. Node's
// process.arch picks the table: the same agent bundle runs in x86-64 and arm64 guests.
//
// x86-64 has its own table (arch/x86/entry/syscalls/syscall_64.tbl); arm64 uses the generic one
// (include/uapi/asm-generic/unistd.h), shared with riscv64 and loongarch64. Every other number the
// runtime passes to the kernel (bpf commands, ioctl requests, errno values, rlimit resources,
// signal numbers) is the same on both.
import { CoreMatrixError } from '../core/errors.js';

export interface SyscallNumbers {
  bpf: number;
  perf_event_open: number;
  finit_module: number;
  reboot: number;
  rt_sigprocmask: number;
  sched_setaffinity: number;
  sched_getaffinity: number;
}

/** Per node `process.arch`. Checked against the host's kernel headers in test/vm/arm64-agent.test.ts. */
export const SYSCALL_NUMBERS: Readonly<Record<'x64' | 'arm64', Readonly<SyscallNumbers>>> = {
  // asm/unistd_64.h
  x64: { bpf: 321, perf_event_open: 298, finit_module: 313, reboot: 169, rt_sigprocmask: 14, sched_setaffinity: 203, sched_getaffinity: 204 },
  // asm-generic/unistd.h
  arm64: { bpf: 280, perf_event_open: 241, finit_module: 273, reboot: 142, rt_sigprocmask: 135, sched_setaffinity: 122, sched_getaffinity: 123 },
};

/** The table for `arch` (node's name); an arch the runtime was not written for is an error, not a guess. */
export function syscallNumbers(arch: string = process.arch): Readonly<SyscallNumbers> {
  const t = (SYSCALL_NUMBERS as Record<string, Readonly<SyscallNumbers> | undefined>)[arch];
  if (!t) throw new CoreMatrixError(`runtime: no system call numbers for ${arch} (known: ${Object.keys(SYSCALL_NUMBERS).join(', ')})`);
  return t;
}
