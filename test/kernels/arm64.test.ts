// The kernel store on arm64: Debian's arm64 kernels resolved and downloaded through a private apt
// state that reads binary-arm64 lists (the machine's apt sources untouched), the raw Image kept
// (what qemu-system-aarch64 boots), the config, and the vmlinux BTF found in the Image (a raw
// Image has no ELF section headers). Witnesses: bpftool's own parse of the BTF (type count), the
// booted kernel's /sys/kernel/btf/vmlinux (same bytes), the config's CONFIG_ARM64=y, file(1).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBtf } from '../../harness/core/btf/btf.js';
import { archBusybox } from '../../harness/images/busybox-arch.js';
import { AptState } from '../../harness/kernels/apt.js';
import { ARCH_FACTS, archOf, archOfRelease, type DebianArch, flavourOfRelease, flavourSuffix, kernelPackageNames } from '../../harness/kernels/arch.js';
import { arm64Image, btfCandidates, extractArm64Kernel, findImageBtf, parseArm64ImageHeader } from '../../harness/kernels/extract-arm64.js';
import { type KernelArtifacts, type KernelEntry, KernelStore, releaseOfPackage } from '../../harness/kernels/store.js';
import { bootGuest } from '../../harness/vm/arch.js';
import { busyboxInitramfs } from '../helpers/arch-guest.js';

type ArchEntry = KernelEntry & { arch: DebianArch };
const ARM64_61: ArchEntry = { id: '6.1-arm64', series: '6.1', flavour: 'generic', suites: ['bookworm'], arch: 'arm64' };
const ARM64_7X: ArchEntry = { id: '7.x-arm64', series: '7.x', flavour: 'generic', suites: ['trixie-backports', 'sid'], arch: 'arm64' };

const tmp = mkdtempSync(join(tmpdir(), 'cm-arm64-store-'));
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
/** The machine's apt configuration, to show it is only read. */
const etcApt = () => execFileSync('sh', ['-c', 'find /etc/apt -type f -exec sha256sum {} + | sort; dpkg --print-foreign-architectures'], { encoding: 'utf8' });

/** bpftool's count of the types in a BTF file (its `[id] KIND …` lines). */
function bpftoolTypes(file: string): number {
  const out = execFileSync('bpftool', ['btf', 'dump', 'file', file], { encoding: 'utf8', maxBuffer: 1 << 30 });
  let n = 0;
  for (const line of out.split('\n')) if (line.startsWith('[')) n++;
  return n;
}

let store: KernelStore;
let k61: KernelArtifacts;
let etcBefore: string;

beforeAll(async () => {
  etcBefore = etcApt();
  store = new KernelStore();
  k61 = await store.fetch(ARM64_61);
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('arch names', () => {
  it("flavour suffixes, package names and releases agree with each other and with the store's parser", () => {
    expect(flavourSuffix('arm64', 'generic')).toBe('-arm64');
    expect(flavourSuffix('arm64', 'cloud')).toBe('-cloud-arm64');
    expect(flavourSuffix('amd64', 'rt')).toBe('-rt-amd64');
    for (const rel of ['6.1.0-50-arm64', '6.1.0-50-cloud-arm64', '7.3.4+deb13-rt-arm64', '6.1.0-50-amd64', '7.3.4+deb13-cloud-amd64']) {
      const arch = archOfRelease(rel)!;
      const flavour = flavourOfRelease(rel, arch)!;
      expect(rel.endsWith(flavourSuffix(arch, flavour))).toBe(true);
      expect(flavourOfRelease(rel, arch === 'arm64' ? 'amd64' : 'arm64')).toBeUndefined();
      const names = kernelPackageNames(rel);
      expect(releaseOfPackage(names.image)).toBe(rel);
      expect(releaseOfPackage(names.binary)).toBe(rel);
    }
    expect(archOfRelease('7.3.4+deb13-arm64-16k')).toBeUndefined(); // 16K pages: not a flavour we boot
    expect(archOf({ arch: 'arm64' })).toBe('arm64');
    expect(archOf({})).toBe('amd64');
    expect(ARCH_FACTS.arm64).toMatchObject({ machine: 'aarch64', elfMachine: 183, bpfTargetArch: 'arm64' });
  });
});

describe('the kernel store fetches Debian arm64 kernels', () => {
  it('6.1 arm64 from bookworm: package, version, release, the raw Image, CONFIG_ARM64=y', () => {
    expect(k61.arch).toBe('arm64');
    expect(k61.package).toMatch(/^linux-image-6\.1\.0-\d+-arm64-unsigned$/);
    expect(k61.version).toMatch(/^6\.1\.\d+-\d+/);
    expect(k61.suite).toBe('bookworm');
    expect(k61.release).toMatch(/^6\.1\.0-\d+-arm64$/);
    expect(flavourOfRelease(k61.release, 'arm64')).toBe('generic');
    expect(k61.packages).toEqual([{ name: k61.package, version: k61.version, suite: 'bookworm', holds: ['vmlinuz', 'config'] }]);
    // The vmlinuz kept is the bootable raw Image: file(1) says so, and so does its header.
    expect(execFileSync('file', ['-b', k61.vmlinuz], { encoding: 'utf8' })).toMatch(/^Linux kernel ARM64 boot executable Image, little-endian, 4K pages/);
    const image = readFileSync(k61.vmlinuz);
    const h = parseArm64ImageHeader(image);
    expect(h.pageSize).toBe(4096);
    expect(Number(h.imageSize)).toBeGreaterThanOrEqual(image.length);
    expect(k61.compression).toBe('Image');
    expect(k61.banner.split(' ')[0]).toBe(k61.release);
    expect(k61.banner).toMatch(new RegExp(`#1 SMP .*Debian ${k61.version.replace(/[.+~]/g, '\\$&')}`));
    const config = readFileSync(k61.config, 'utf8');
    expect(config).toMatch(/^CONFIG_ARM64=y$/m);
    expect(config).not.toMatch(/^CONFIG_X86_64=y$/m);
    expect(config).toMatch(/^CONFIG_DEBUG_INFO_BTF=y$/m);
    // What harness/vm/arch.ts relies on for the result port: 8250 with its PCI glue built in.
    expect(config).toMatch(/^CONFIG_SERIAL_8250_PCI=y$/m);
    expect(config).toMatch(/^CONFIG_SERIAL_AMBA_PL011_CONSOLE=y$/m);
    console.log(`[measure] ${k61.package} ${k61.version}: Image ${(k61.sizes.vmlinuz / 1e6).toFixed(1)} MB, config ${k61.sizes.config} B, BTF ${(k61.sizes.btf / 1e6).toFixed(2)} MB`);
  });

  it('6.1 arm64: the BTF found in the Image parses, and bpftool counts the same types', () => {
    const bytes = readFileSync(k61.btf);
    const t0 = performance.now();
    const btf = parseBtf(bytes, { source: k61.btf });
    const ms = performance.now() - t0;
    const types = btf.count - 1; // without void
    expect(bpftoolTypes(k61.btf)).toBe(types);
    expect(types).toBeGreaterThan(50_000);
    // arm64's own types, and not x86's.
    expect(btf.byName('user_pt_regs').length).toBeGreaterThan(0);
    expect(btf.byName('kvm_vcpu_arch').length).toBeGreaterThan(0);
    expect(btf.byName('fpu_state_config')).toEqual([]); // x86's FPU
    // Exactly one self-consistent BTF header in the whole Image.
    expect(btfCandidates(readFileSync(k61.vmlinuz)).length).toBe(1);
    console.log(`[measure] ${k61.release}: ${types} BTF types (bpftool agrees), parsed in ${ms.toFixed(0)} ms`);
  });

  it('6.1 arm64: bpftool writes a vmlinux.h from it with the arm64 register file (the header arm64 objects compile against)', () => {
    const h = execFileSync('bpftool', ['btf', 'dump', 'file', k61.btf, 'format', 'c'], { encoding: 'utf8', maxBuffer: 1 << 30 });
    expect(h).toMatch(/struct user_pt_regs \{\n\t__u64 regs\[31\];\n\t__u64 sp;\n\t__u64 pc;\n\t__u64 pstate;\n\};/);
    expect(h).not.toMatch(/\bstruct pt_regs \{\n\tlong unsigned int r15;/); // x86's layout
  });

  it('6.1 arm64: the Image boots, and the kernel serves the very BTF the store extracted', async () => {
    const bb = await archBusybox('arm64', { suites: ['bookworm'] });
    // Not the project's /init: a script that reports the kernel's BTF file and powers off.
    const init = `#!/bin/busybox sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
read -r CMDLINE < /proc/cmdline
R=\${CMDLINE##*cm.result=}; R=\${R%% *}
stty -F $R raw -echo
set -- $(sha256sum /sys/kernel/btf/vmlinux)
N=$(wc -c < /sys/kernel/btf/vmlinux)
printf '{"t":"hello","v":1,"release":"%s","machine":"%s","bootMs":0}\\n' "$(uname -r)" "$(uname -m)" > $R
printf '{"t":"result","kind":"btf","data":{"sha256":"%s","size":%s}}\\n' "$1" "$N" > $R
printf '{"t":"done","ok":true,"ms":0}\\n' > $R
echo o > /proc/sysrq-trigger
sleep 5
`;
    const initrd = busyboxInitramfs(join(tmp, 'btf.cpio'), bb, [], init);
    const r = await bootGuest({ arch: 'arm64', vmlinuz: k61.vmlinuz, initrd, timeoutMs: 240_000 });
    expect(r.verdict, `${r.detail}\n${r.console.slice(-20).join('\n')}`).toBe('ok');
    expect(r.machine).toBe('aarch64');
    expect(r.release).toBe(k61.release);
    const res = r.messages.find((m) => m.t === 'result') as { data: { sha256: string; size: number } } | undefined;
    expect(res?.data).toEqual({ sha256: k61.sha256.btf, size: k61.sizes.btf });
  }, 300_000);

  it('the private arm64 apt state: its own folder and binary-arm64 lists; the machine\'s apt configuration unchanged', () => {
    const apt = store.aptFor('arm64');
    expect(apt.arch).toBe('arm64');
    expect(apt.dir).not.toBe(store.apt.dir);
    const sources = readFileSync(join(apt.dir, 'etc/sources.list'), 'utf8').split('\n').filter((l) => l.startsWith('deb '));
    expect(sources.length).toBeGreaterThan(0);
    for (const l of sources) expect(l).toMatch(/^deb \[arch=arm64 signed-by=\S+\] \S+ \S+ main$/);
    const lists = readdirSync(join(apt.dir, 'state/lists')).filter((f) => f.includes('_Packages'));
    expect(lists.length).toBeGreaterThan(0);
    for (const f of lists) expect(f).toMatch(/_main_binary-arm64_Packages/);
    expect(etcApt()).toBe(etcBefore);
  });

  it('the newest 7.x arm64 (split packages): the Image from linux-binary-*, the config from linux-base-*, BTF = bpftool', async () => {
    const rows = await store.candidates(ARM64_7X);
    if (rows.length === 0) {
      console.log(`[measure] no 7.x arm64 kernel in ${ARM64_7X.suites.join(', ')}: skipped`);
      return;
    }
    const k = await store.fetch(ARM64_7X);
    expect(k.package).toMatch(/^linux-binary-7\.\d+\.\d+\+deb\d+-arm64$/);
    expect(k.packages.map((p) => [p.name, p.holds])).toEqual([[k.package, ['vmlinuz']], [`linux-base-${k.release}`, ['config']]]);
    expect(readFileSync(k.config, 'utf8')).toMatch(/^CONFIG_ARM64=y$/m);
    expect(parseArm64ImageHeader(readFileSync(k.vmlinuz)).pageSize).toBe(4096);
    const types = parseBtf(readFileSync(k.btf)).count - 1;
    expect(bpftoolTypes(k.btf)).toBe(types);
    console.log(`[measure] ${k.package} ${k.version}: Image ${(k.sizes.vmlinuz / 1e6).toFixed(1)} MB, ${types} BTF types (bpftool agrees), BTF ${(k.sizes.btf / 1e6).toFixed(2)} MB`);
  }, 600_000);

  it('a corrupt arm64 BTF blob is taken again from the cached Image (no download)', async () => {
    const cache = join(tmp, 'kernels');
    const said: string[] = [];
    const own = new KernelStore({ cache, log: (l) => said.push(l), apt: store.apt });
    const a = await own.fetch(ARM64_61);
    expect(a.sha256).toEqual(k61.sha256);
    writeFileSync(a.btf, Buffer.alloc(a.sizes.btf)); // same size, other bytes
    const b = await own.fetch(ARM64_61);
    expect(sha256(readFileSync(b.btf))).toBe(k61.sha256.btf);
    expect(said.join('\n')).toMatch(/cached btf is corrupt: .*; re-extracted it from the vmlinuz/);
    expect(said.filter((l) => /downloading/.test(l))).toHaveLength(1); // the first fetch only
  }, 600_000);
});

describe('arm64 Image forms', () => {
  let image: Buffer;
  beforeAll(() => {
    image = readFileSync(k61.vmlinuz);
  });

  it("a gzip'd Image and an EFI zboot image (gzip, zstd) unpack to the same raw Image, BTF and banner", async () => {
    const gz = execFileSync('gzip', ['-1', '-n', '-c'], { input: image, maxBuffer: 1 << 28 });
    const g = await arm64Image(gz, 'Image.gz');
    expect(g.format).toBe('gzip');
    expect(g.image.equals(image)).toBe(true);
    // zboot: the header layout of drivers/firmware/efi/libstub/zboot-header.S, payload after it.
    const zboot = (payload: Buffer, comp: string) => {
      const head = Buffer.alloc(0x200);
      head.write('MZ', 0, 'latin1');
      head.write('zimg', 4, 'latin1');
      head.writeUInt32LE(head.length, 8);
      head.writeUInt32LE(payload.length, 12);
      head.write(`${comp}\0`, 0x18, 'latin1');
      return Buffer.concat([head, payload, Buffer.alloc(64)]);
    };
    const size = Buffer.alloc(4);
    size.writeUInt32LE(image.length);
    const zst = Buffer.concat([execFileSync('zstd', ['-1', '-q', '-c'], { input: image, maxBuffer: 1 << 28 }), size]);
    for (const [bytes, format] of [[zboot(gz, 'gzip'), 'zboot-gzip'], [zboot(zst, 'zstd22'), 'zboot-zstd']] as const) {
      const k = await extractArm64Kernel(bytes, format);
      expect(k.format).toBe(format);
      expect(k.image.equals(image)).toBe(true);
      expect(sha256(k.btf)).toBe(k61.sha256.btf);
      expect(k.banner).toBe(k61.banner);
    }
  }, 120_000);

  it('refuses what is not an arm64 kernel, and an Image whose BTF header is gone', async () => {
    await expect(arm64Image(readFileSync('/bin/true'), 'true')).rejects.toThrow(/^true: neither an arm64 Image, a gzip'd one, nor an EFI zboot image \(first bytes 7f454c46/);
    const { offset } = findImageBtf(image);
    const broken = Buffer.from(image);
    broken.fill(0, offset, offset + 24);
    expect(() => findImageBtf(broken, 'broken')).toThrow(/^broken: no vmlinux BTF in the image/);
    // Sizes that point past the end are not a candidate either.
    const lying = Buffer.from(image);
    lying.writeUInt32LE(image.length, offset + 20);
    expect(btfCandidates(lying)).toEqual([]);
    expect(statSync(k61.vmlinuz).size).toBe(image.length);
  });
});
