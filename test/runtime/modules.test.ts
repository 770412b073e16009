// finit_module through our syscall module, in a real 6.1 guest (TCG): a module from the kernel's
// own package loads (its BTF and device node appear), loading it again says it is present, and a
// file that is not a module or a module built for another kernel is a one-line errno error.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-modules-guest-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

it('6.1 guest: finitModule loads tun.ko, then finds it present; not-a-module and a 5.10 module are errno errors', async () => {
  const agent = await bundleGuestScript(fileURLToPath(new URL('./fixtures/guest-modules.ts', import.meta.url)), join(tmp, 'guest-modules.mjs'));
  const store = new KernelStore();
  const k = await store.fetch('6.1');
  const [tun] = await store.modules(k, ['tun']);
  const [oldTun] = await store.modules(await store.fetch('5.10'), ['tun']);
  const initrd = await buildInitramfs({
    files: [
      { path: '/t/guest-modules.mjs', source: agent },
      { path: '/t/mods/1-tun.ko', source: tun!.path },
      { path: '/t/mods/2-tun-again.ko', source: tun!.path },
      { path: '/t/mods/3-not-a-module.ko', data: 'just text\n' },
      { path: '/t/mods/4-tun-5.10.ko', source: oldTun!.path },
    ],
    agent: false,
    kernelConfig: k.config,
    release: k.release,
  });
  const r = await runGuest({ kernelId: '6.1', vmlinuz: k.vmlinuz, initrd, append: 'cm.agent=/t/guest-modules.mjs', accel: 'tcg', logDir: join(tmp, 'logs') });
  expect(r.verdict, `${r.detail}\n${r.consoleTail}`).toBe('ok');
  const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'modules') as { data: { attempts: { file: string; outcome: string }[]; btf: boolean; dev: boolean; live: boolean } } | undefined;
  expect(msg, JSON.stringify(r.messages)).toBeDefined();
  const { attempts, btf, dev, live } = msg!.data;
  expect(attempts.map((a) => a.outcome.replace(/ \(.*\)$/, ''))).toEqual([
    'loaded',
    'present',
    'error: finit_module(3-not-a-module.ko): ENOEXEC',
    'error: finit_module(4-tun-5.10.ko): ENOEXEC',
  ]);
  expect(attempts[2]!.outcome).toBe('error: finit_module(3-not-a-module.ko): ENOEXEC (Exec format error)');
  // What loading it did: the module is live, its BTF is there to relocate against, devtmpfs made the node.
  expect({ btf, dev, live }).toEqual({ btf: true, dev: true, live: true });
}, 300_000);
