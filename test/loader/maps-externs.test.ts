// Maps and libbpf's special externs exactly as libbpf makes them, on this machine's kernel (root
// may call bpf() here): our Collection and Debian's libbpf load the same objects in a private
// mount namespace (so the bpffs for the pinned map is mounted there, not on the host), and every
// created map, extern value and pin decision is compared (test/runtime/fixtures/maps-externs-*).
// The same checks run in 5.10 and 6.1 guests in maps-externs.guest.test.ts.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MapType } from '../../harness/core/uapi.js';
import { openFds } from '../../harness/runtime/fds.js';
import { BpfMap } from '../../harness/runtime/map.js';
import type { Report } from '../runtime/fixtures/maps-externs-check.js';
import { expectReport } from '../runtime/fixtures/maps-externs-expect.js';
import { compileObjects } from '../runtime/fixtures/maps-externs-objects.js';

describe.runIf(existsSync('/sys/kernel/btf/vmlinux'))('maps and special externs on the host kernel', () => {
  it('match libbpf map by map, extern by extern, pin by pin', async () => {
    const o = await compileObjects();
    const script = fileURLToPath(new URL('../runtime/fixtures/host-maps-externs.ts', import.meta.url));
    const out = execFileSync('unshare', ['--mount', '--propagation', 'private', process.execPath, '--import', 'tsx', script, o.mapsExterns, o.newerMaps, o.pinConflict], { encoding: 'utf8' });
    const r = JSON.parse(out.trim().split('\n').pop()!) as Report;
    const kprobes = existsSync('/sys/bus/event_source/devices/kprobe/type');
    // The host kernel is new (bloom filters and user ring buffers exist there).
    expectReport(r, { where: `host ${r.release}`, newerMaps: true, kprobes });
  }, 120_000);

  it('name the map in every failed map syscall: create, update, freeze', () => {
    expect(() => BpfMap.create({ mapType: MapType.ARRAY, keySize: 0, valueSize: 4, maxEntries: 1, name: 'bad_array_map_x' })).toThrow(/^map 'bad_array_map_x': bpf\(BPF_MAP_CREATE\): EINVAL \(Invalid argument\)$/);
    const m = BpfMap.create({ mapType: MapType.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1, name: 'frozen_values' });
    try {
      m.freeze();
      expect(() => m.update(new Uint8Array(4), new Uint8Array(4))).toThrow(/^map 'frozen_values': bpf\(BPF_MAP_UPDATE_ELEM\): EPERM /);
      expect(() => m.freeze()).toThrow(/^map 'frozen_values': bpf\(BPF_MAP_FREEZE\): E[A-Z]+ /);
    } finally {
      m.close();
    }
    expect(openFds()).toEqual([]);
  });
});
