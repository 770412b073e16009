// What the arm64 tests boot: a busybox-only initramfs of any arch (busybox from busybox-arch.ts),
// with the project's own images/init, which takes its result port from the kernel command line
// (cm.result=, harness/vm/arch.ts).
import { type ArchBusybox, busyboxRootEntries } from '../../harness/images/busybox-arch.js';
import { type CpioEntry, writeCpio } from '../../harness/images/cpio.js';
import { archInitScript } from '../../harness/images/arm64-image.js';

/** Writes a busybox + /init (+ files) initramfs (uncompressed newc) to `out`. */
export function busyboxInitramfs(out: string, bb: ArchBusybox, extra: CpioEntry[] = [], init = archInitScript()): string {
  writeCpio(out, [...busyboxRootEntries(bb), { kind: 'file', path: 'init', data: init, mode: 0o755 }, ...extra]);
  return out;
}
