// What the arm64 tests boot: a busybox-only initramfs of any arch (busybox from busybox-arch.ts),
// with the project's own images/init, told its result port on the kernel command line
// (cm.result=, harness/vm/arch.ts). Until images/init reads cm.result= itself, the copy put in the
// image gets the few lines that make it do so (RESULT_PORT_PATCH, the change the lead applies).
import { readFileSync } from 'node:fs';
import { type ArchBusybox, busyboxRootEntries } from '../../harness/images/busybox-arch.js';
import { type CpioEntry, writeCpio } from '../../harness/images/cpio.js';
import { initScript } from '../../harness/images/initramfs.js';

const FIXED_PORT = 'R=/dev/ttyS1\n';

/** The lines that replace `R=/dev/ttyS1` in images/init: the port from cm.result=, ttyS1 without it. */
export const RESULT_PORT_PATCH = `# The result port: ttyS1 (x86's second 16550) unless the host names another on the command line
# (cm.result=, harness/vm/arch.ts; arm64 virt: a PCI 16550, /dev/ttyS0; the last one wins). The agent writes there too.
read -r CMDLINE < /proc/cmdline
R=/dev/ttyS1
case " $CMDLINE " in *" cm.result="*) R=\${CMDLINE##*cm.result=}; R=\${R%% *} ;; esac
export CM_RESULT_PORT=$R
`;

/** images/init, reading its result port from cm.result= (as is, once it does so itself). */
export function resultPortInit(): string {
  const text = readFileSync(initScript(), 'utf8');
  if (text.includes('cm.result=')) return text;
  if (!text.includes(FIXED_PORT)) throw new Error(`${initScript()}: neither reads cm.result= nor has the line '${FIXED_PORT.trim()}' to patch`);
  return text.replace(FIXED_PORT, RESULT_PORT_PATCH);
}

/** Writes a busybox + /init (+ files) initramfs (uncompressed newc) to `out`. */
export function busyboxInitramfs(out: string, bb: ArchBusybox, extra: CpioEntry[] = [], init = resultPortInit()): string {
  writeCpio(out, [...busyboxRootEntries(bb), { kind: 'file', path: 'init', data: init, mode: 0o755 }, ...extra]);
  return out;
}
