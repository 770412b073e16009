// How --files reach the guests, measured (docs/exec.md): shipped in the image (cpio, unpacked by
// the kernel into the initramfs' tmpfs at boot) against a read-only 9p share (QEMU -virtfs, the
// guest loads 9p, 9pnet, 9pnet_virtio and what they need, then mounts). For each kernel and
// payload: the host's image build, the guest's uptime when its script starts (boot), the modules
// and the mount (9p), reading every file once, and running the shipped bpftool once.
//
//   npx tsx test/matrix/exec-share.bench.ts [kernel...]        (default: 7.3 5.10; TCG)
//
// Guest times move by a second or more with the machine's load: run it on a quiet machine, twice.
//
// 9p needs an extra QEMU argument that runGuest does not take: this script puts a wrapper named
// qemu-system-x86_64 first on PATH for the 9p boots.
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildImage, type ImageFile } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { planExecOn } from '../../harness/matrix/exec.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';

const kernels = process.argv.slice(2).length ? process.argv.slice(2) : ['7.3', '5.10'];
const tmp = mkdtempSync(join(tmpdir(), 'cm-share-bench-'));
const script = await bundleGuestScript(fileURLToPath(new URL('./fixtures/share-guest.ts', import.meta.url)), join(tmp, 'share.mjs'));

// Payloads: bpftool alone (a small tool), and bpftool beside 64 MiB of data (a large test folder).
const small = join(tmp, 'small');
mkdirSync(small);
copyFileSync('/usr/sbin/bpftool', join(small, 'bpftool'));
chmodSync(join(small, 'bpftool'), 0o755);
const large = join(tmp, 'large');
mkdirSync(join(large, 'data'), { recursive: true });
copyFileSync('/usr/sbin/bpftool', join(large, 'bpftool'));
chmodSync(join(large, 'bpftool'), 0o755);
for (let i = 0; i < 16; i++) writeFileSync(join(large, 'data', `blob-${i}`), randomBytes(4 << 20));

// A QEMU that also shares $CM_SHARE_DIR read-only as mount tag cmfiles.
const wrapDir = join(tmp, 'wrap');
mkdirSync(wrapDir);
const realQemu = '/usr/bin/qemu-system-x86_64';
writeFileSync(join(wrapDir, 'qemu-system-x86_64'), `#!/bin/sh\nexec ${realQemu} "$@" -virtfs local,path="$CM_SHARE_DIR",mount_tag=cmfiles,security_model=none,readonly=on\n`);
chmodSync(join(wrapDir, 'qemu-system-x86_64'), 0o755);

const store = new KernelStore();
const rows: string[] = [];
for (const id of kernels) {
  const k = await store.fetch(id);
  // virtio_pci is no dependency of 9pnet_virtio, but its transport: a module on 5.10, built in on 7.3.
  const pci = /^CONFIG_VIRTIO_PCI=m$/m.test(readFileSync(k.config, 'utf8')) ? ['virtio_pci'] : [];
  const mods = await store.modules(k, [...pci, '9p', '9pnet_virtio']);
  const modFiles: ImageFile[] = mods.map((m) => ({ path: `/cm/9p/${m.name}.ko`, source: m.path }));
  const order = mods.map((m) => `/cm/9p/${m.name}.ko`).join(',');
  for (const [name, dir] of [['bpftool 0.6 MiB', small], ['bpftool + 64 MiB', large]] as const) {
    const exec = await planExecOn('amd64', { command: 'bpftool version', files: [dir], timeoutMs: 60_000 });
    for (const how of ['none', 'image', '9p'] as const) {
      if (how === 'none' && dir === large) continue;
      // A nonce makes every image new: the build is measured cold, as a changed folder would be.
      const nonce = { path: '/cm/nonce', data: randomBytes(16).toString('hex') };
      const files: ImageFile[] = [{ path: '/t/share.mjs', source: script }, nonce, ...modFiles, ...exec.files.filter((f) => !f.path.startsWith('/cm/files/') || how === 'image')];
      const t0 = performance.now();
      const img = await buildImage({ files, agent: false, kernelConfig: k.config, release: k.release });
      const buildMs = performance.now() - t0;
      const env = how === '9p' ? { PATH: `${wrapDir}:${process.env.PATH}`, CM_SHARE_DIR: dir } : {};
      const saved = { PATH: process.env.PATH, CM_SHARE_DIR: process.env.CM_SHARE_DIR };
      Object.assign(process.env, env);
      let r;
      try {
        r = await runGuest({ kernelId: `${id}-${how}`, vmlinuz: k.vmlinuz, initrd: img.path, accel: 'tcg', logDir: join(tmp, 'logs'), append: `cm.agent=/t/share.mjs cm.share=${how} cm.mods=${order} cm.dir=${exec.plan.cwd}` });
      } finally {
        process.env.PATH = saved.PATH;
        if (saved.CM_SHARE_DIR === undefined) delete process.env.CM_SHARE_DIR;
        else process.env.CM_SHARE_DIR = saved.CM_SHARE_DIR;
      }
      const m = r.messages.find((x) => x.t === 'result') as { data: Record<string, number | string> } | undefined;
      if (r.verdict !== 'ok' || !m) {
        rows.push(`| ${id} | ${name} | ${how} | guest ${r.verdict}: ${r.detail ?? ''} |`);
        continue;
      }
      const d = m.data;
      rows.push(`| ${id} | ${name} | ${how} | ${(img.runBytes / 2 ** 20).toFixed(1)} MiB | ${Math.round(buildMs)} ms | ${d.bootMs} ms | ${d.unpackMs ?? '–'} ms | ${d.modulesMs ?? '–'} | ${d.mountMs ?? '–'} | ${d.readMs ?? '–'} (${d.readBytes ?? 0} B) | ${d.runMs ?? '–'} | ${Math.round(r.durationMs)} ms |`);
      console.error(rows.at(-1));
    }
  }
}
console.log('| kernel | payload | how | run layer | image build | boot (uptime at script) | initramfs unpack (dmesg) | modules ms | mount ms | read all ms | bpftool version ms | guest wall |');
console.log('|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
for (const r of rows) console.log(r);
rmSync(tmp, { recursive: true, force: true });
