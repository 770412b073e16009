// What each guest is booted with, from its kernel's own config: the vCPU count reaches QEMU, and
// the BPF LSM is switched on exactly where the kernel builds it but leaves it out of its default
// list (Debian 5.10), read from the cached configs of real Debian kernels.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KernelStore } from '../../harness/kernels/store.js';
import { bpfLsmAppend, qemuArgs } from '../../harness/vm/qemu.js';

describe('guest boot arguments', () => {
  it('passes the vCPU count and memory to QEMU', () => {
    const args = qemuArgs({ vmlinuz: '/k', initrd: '/i', accel: 'tcg', cpus: 2, memoryMb: 2048 });
    expect(args.slice(args.indexOf('-smp'), args.indexOf('-smp') + 2)).toEqual(['-smp', '2']);
    expect(args.slice(args.indexOf('-m'), args.indexOf('-m') + 2)).toEqual(['-m', '2048']);
    const plain = qemuArgs({ vmlinuz: '/k', initrd: '/i', accel: 'tcg' });
    expect(plain.slice(plain.indexOf('-smp'), plain.indexOf('-smp') + 2)).toEqual(['-smp', '1']);
  });

  it('adds bpf to the LSM list only where the kernel builds the BPF LSM and leaves it out', () => {
    expect(bpfLsmAppend('CONFIG_BPF_LSM=y\nCONFIG_LSM="lockdown,yama,apparmor"\n')).toBe('lsm=lockdown,yama,apparmor,bpf');
    expect(bpfLsmAppend('CONFIG_BPF_LSM=y\nCONFIG_LSM="lockdown,bpf"\n')).toBeUndefined();
    expect(bpfLsmAppend('# CONFIG_BPF_LSM is not set\nCONFIG_LSM="lockdown"\n')).toBeUndefined();
  });

  it('on Debian\'s own configs: 5.10 needs it, 6.1 and 7.3 have bpf in CONFIG_LSM already', async () => {
    const store = new KernelStore();
    const config = async (id: string) => readFileSync((await store.fetch(id)).config, 'utf8');
    const k510 = await config('5.10');
    expect(bpfLsmAppend(k510)).toBe(`lsm=${/^CONFIG_LSM="([^"]*)"$/m.exec(k510)![1]},bpf`);
    expect(bpfLsmAppend(await config('6.1'))).toBeUndefined();
    expect(bpfLsmAppend(await config('7.3'))).toBeUndefined();
  }, 600_000);
});
