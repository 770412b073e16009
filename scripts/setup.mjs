// One set-up step for `npm run matrix`, `npm test` and `npm run bench`: makes sure the Debian
// packages corematrix drives are installed. As root it installs what is missing with apt-get;
// otherwise it prints the exact command and exits 2. It never edits the machine's apt sources.
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

// [package, a file that proves it is installed]
const needs = [
  ['clang-19', '/usr/bin/clang-19'],
  ['llvm-19', '/usr/bin/llvm-objdump-19'],
  ['bpftool', '/usr/sbin/bpftool'],
  ['libbpf-dev', '/usr/include/bpf/bpf_helpers.h'],
  ['libbpf1', '/usr/lib/x86_64-linux-gnu/libbpf.so.1'],
  ['libelf1', '/usr/lib/x86_64-linux-gnu/libelf.so.1'],
  ['qemu-system-x86', '/usr/bin/qemu-system-x86_64'],
  // The default matrix's arm64 kernels boot under qemu-system-aarch64 (docs/arm64.md).
  ['qemu-system-arm', '/usr/bin/qemu-system-aarch64'],
  // The current libbpf is cross-built for the arm64 guests' reference loader (docs/arm64.md).
  ['gcc-aarch64-linux-gnu', '/usr/bin/aarch64-linux-gnu-gcc'],
  ['libc6-dev-arm64-cross', '/usr/aarch64-linux-gnu/include/stdio.h'],
  // The arm64 agent's V8 code cache is made by the guest's node under qemu-aarch64-static (docs/arm64.md).
  ['qemu-user-static', '/usr/bin/qemu-aarch64-static'],
  ['busybox-static', '/bin/busybox'],
  ['cpio', '/usr/bin/cpio'],
  ['zstd', '/usr/bin/zstd'],
  ['xz-utils', '/usr/bin/xz'],
  ['lz4', '/usr/bin/lz4'],
  ['gzip', '/usr/bin/gzip'],
  ['dpkg', '/usr/bin/dpkg-deb'],
  ['apt', '/usr/bin/apt-get'],
  ['gcc', '/usr/bin/gcc'],
  ['libc6-dev', '/usr/include/stdio.h'],
  // Custom kernels (matrix entries with `source:`): build tools, and pahole for DWARF → BTF.
  ['dwarves', '/usr/bin/pahole'],
  // A custom kernel compiles through ccache (its folder in the corematrix cache): a rebuild after a
  // recipe change compiles only what changed (docs/kernels.md, "Build time").
  ['ccache', '/usr/bin/ccache'],
  ['make', '/usr/bin/make'],
  ['flex', '/usr/bin/flex'],
  ['bison', '/usr/bin/bison'],
  ['bc', '/usr/bin/bc'],
  ['libelf-dev', '/usr/include/libelf.h'],
  // The current libbpf (harness/reference/build.ts): tools/lib/bpf links -lelf -lz, and its
  // Makefile generates bpf_helper_defs.h with scripts/bpf_doc.py; objcopy/readelf from binutils.
  ['zlib1g-dev', '/usr/include/zlib.h'],
  ['python3', '/usr/bin/python3'],
  ['binutils', '/usr/bin/objcopy'],
];
// Only the tests need a browser (the HTML report is checked in headless Chromium).
// Tests only: the report page's witness browser, strace (the workload's witness) and sys/sdt.h (USDT targets).
if (process.argv.includes('--test')) needs.push(['chromium', '/usr/bin/chromium'], ['strace', '/usr/bin/strace'], ['systemtap-sdt-dev', '/usr/include/x86_64-linux-gnu/sys/sdt.h']);
const quiet = process.argv.includes('--quiet');
// busybox-static provides /bin/busybox, but so does plain busybox (dynamic): require static.
const isStaticBusybox = () => {
  try { return !execFileSync('file', ['-L', '/bin/busybox'], { encoding: 'utf8' }).includes('dynamically'); }
  catch { return existsSync('/bin/busybox'); }
};
const missing = needs.filter(([pkg, file]) => !existsSync(file) || (pkg === 'busybox-static' && !isStaticBusybox())).map(([pkg]) => pkg);
if (missing.length === 0) {
  if (!quiet) console.log('corematrix setup: all system packages present');
  process.exit(0);
}
const cmd = `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing.join(' ')}`;
if (process.getuid?.() !== 0) {
  console.error(`corematrix setup: missing Debian packages: ${missing.join(', ')}\nrun as root:\n  ${cmd}`);
  process.exit(2);
}
console.error(`corematrix setup: installing ${missing.join(', ')}`);
try {
  execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] });
} catch (e) {
  console.error(`corematrix setup: apt-get failed (${e.status ?? e.message}); the command was:\n  ${cmd}`);
  process.exit(2);
}
