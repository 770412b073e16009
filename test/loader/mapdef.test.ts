// The pure parts of creating maps as libbpf does (harness/loader/mapdef.ts), the possible-CPU list,
// and libbpf's virtual kconfig externs read offline from a kernel's BTF. Witnesses: Debian's
// libbpf itself (bpf_map__set_max_entries applies its ring buffer rule on an opened object;
// libbpf_num_possible_cpus() reads this machine's CPU list), bpftool's dump of kernel BTF.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import { describe, expect, it } from 'vitest';
import { parseBtf } from '../../harness/core/btf/btf.js';
import { fillKconfig } from '../../harness/core/kconfig.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { MapType } from '../../harness/core/uapi.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { createMaxEntries, pinnedMismatch, pinPath, ringbufSize, type MapDef } from '../../harness/loader/mapdef.js';
import { kconfigSpecialsFromBtf, parseCpuList, possibleCpuCount, syscallPrefix } from '../../harness/runtime/facts.js';
import { compileBpf } from '../helpers/tools.js';
import { compileMapsExterns } from '../runtime/fixtures/maps-externs-objects.js';

const PAGE = 4096;

/** libbpf's answer: max_entries of map `name` of an opened (not loaded) object after bpf_map__set_max_entries(size). */
function libbpfRingbufSizes(object: string, name: string, sizes: number[]): number[] {
  const so = koffi.load('libbpf.so.1');
  const open = so.func('void *bpf_object__open_mem(const void *buf, size_t size, void *opts)');
  const close = so.func('void bpf_object__close(void *obj)');
  const find = so.func('void *bpf_object__find_map_by_name(void *obj, const char *name)');
  const set = so.func('int bpf_map__set_max_entries(void *map, uint32_t max_entries)');
  const get = so.func('uint32_t bpf_map__max_entries(void *map)');
  const bytes = readFileSync(object);
  const obj = open(bytes, bytes.length, null);
  expect(obj, 'bpf_object__open_mem').toBeTruthy();
  try {
    const map = find(obj, name);
    expect(map, `map ${name}`).toBeTruthy();
    return sizes.map((s) => {
      expect(set(map, s)).toBe(0);
      return Number(get(map));
    });
  } finally {
    close(obj);
  }
}

describe('ring buffer sizes', () => {
  it('follow libbpf: a power-of-2 multiple of the page size passes, anything else rounds up to the next one', () => {
    const sizes = [0, 1, 100, 4095, 4096, 4097, 5000, 8192, 12288, 16384, 10000, 3 << 20, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 3 * 2 ** 30, 2 ** 32 - 1];
    const theirs = libbpfRingbufSizes(compileBpf('test/runtime/fixtures/newer_maps.bpf.c'), 'user_rb', sizes);
    expect(new Set(theirs).size, 'libbpf rounded the sizes to several values').toBeGreaterThan(5);
    expect(sizes.map((s) => ringbufSize(s, PAGE))).toEqual(theirs);
    // And the pure rule's own shape: the sizes libbpf leaves alone are the kernel's valid ones.
    expect(ringbufSize(5000, PAGE)).toBe(8192);
    expect(ringbufSize(2 ** 31 + 1, PAGE)).toBe(2 ** 31 + 1);
  });

  it('apply to both ring buffer types, and nowhere else', () => {
    const facts = { pageSize: PAGE, possibleCpus: () => 3 };
    expect(createMaxEntries({ type: MapType.RINGBUF, maxEntries: 5000 }, facts)).toBe(8192);
    expect(createMaxEntries({ type: MapType.USER_RINGBUF, maxEntries: 10000 }, facts)).toBe(16384);
    expect(createMaxEntries({ type: MapType.HASH, maxEntries: 5000 }, facts)).toBe(5000);
  });
});

describe('perf event arrays without max_entries', () => {
  it('get one slot per possible CPU; a declared size stays', () => {
    const facts = { pageSize: PAGE, possibleCpus: () => 5 };
    expect(createMaxEntries({ type: MapType.PERF_EVENT_ARRAY, maxEntries: 0 }, facts)).toBe(5);
    expect(createMaxEntries({ type: MapType.PERF_EVENT_ARRAY, maxEntries: 2 }, facts)).toBe(2);
    expect(createMaxEntries({ type: MapType.ARRAY, maxEntries: 0 }, facts)).toBe(0);
  });

  it('possible CPU lists parse as the kernel prints them; the count is what libbpf counts on this machine', () => {
    expect(parseCpuList('0-3,5\n')).toEqual([0, 1, 2, 3, 5]);
    expect(parseCpuList('0')).toEqual([0]);
    expect(parseCpuList('0-1,1-2')).toEqual([0, 1, 2]);
    expect(() => parseCpuList('3-1', 'possible')).toThrow(/possible: '3-1' is not a CPU number or a range/);
    expect(() => parseCpuList('0-x')).toThrow(/'0-x'/);
    const libbpfCount = Number(koffi.load('libbpf.so.1').func('int libbpf_num_possible_cpus(void)')());
    expect(libbpfCount).toBeGreaterThan(0);
    expect(possibleCpuCount()).toBe(libbpfCount);
  });
});

describe('pinned maps', () => {
  const want: MapDef = { type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16, flags: 0, mapExtra: 0n };
  it('are reused only when every attribute libbpf compares matches', () => {
    expect(pinnedMismatch(want, { ...want })).toBeUndefined();
    expect(pinnedMismatch(want, { ...want, mapExtra: undefined })).toBeUndefined(); // pre-5.16 info has no map_extra
    expect(pinnedMismatch({ ...want, maxEntries: 32 }, want)).toBe('max_entries 32 here, 16 pinned');
    expect(pinnedMismatch(want, { ...want, type: MapType.LRU_HASH, flags: 1 })).toBe('type 1 here, 9 pinned, map_flags 0x0 here, 0x1 pinned');
    expect(pinnedMismatch({ ...want, type: MapType.BLOOM_FILTER, mapExtra: 3n }, { ...want, type: MapType.BLOOM_FILTER, mapExtra: 5n })).toBe('map_extra 0x3 here, 0x5 pinned');
    // A devmap reports BPF_F_RDONLY_PROG it was not created with.
    const dev = { ...want, type: MapType.DEVMAP, valueSize: 4 };
    expect(pinnedMismatch(dev, { ...dev, flags: 1 << 7 })).toBeUndefined();
  });

  it('live at <root>/<full map name>', () => {
    expect(pinPath('/sys/fs/bpf/', 'cm_pinned_counts')).toBe('/sys/fs/bpf/cm_pinned_counts');
  });
});

describe("libbpf's virtual kconfig externs", () => {
  it('read offline from a kernel BTF agree with bpftool\'s dump of it (5.10: wrapper, no cookie; 6.1: both)', async () => {
    expect(syscallPrefix('x64')).toBe('x64');
    expect(syscallPrefix('arm64')).toBe('arm64');
    expect(syscallPrefix('ppc64')).toBe('powerpc');
    expect(syscallPrefix('loong64')).toBeUndefined();
    const store = new KernelStore();
    const seen: Record<string, Record<string, number>> = {};
    for (const id of ['5.10', '6.1']) {
      const k = await store.fetch(id);
      const dump = execFileSync('bpftool', ['btf', 'dump', 'file', k.btf], { maxBuffer: 1 << 30, encoding: 'utf8' });
      const witness = {
        LINUX_HAS_SYSCALL_WRAPPER: /^\[\d+\] FUNC '__x64_sys_bpf' /m.test(dump) ? 1 : 0,
        LINUX_HAS_BPF_COOKIE: /^\t'BPF_FUNC_get_attach_cookie' val=/m.test(dump) ? 1 : 0,
      };
      seen[id] = kconfigSpecialsFromBtf(parseBtf(new Uint8Array(readFileSync(k.btf))), 'x64');
      expect(seen[id], id).toEqual(witness);
    }
    expect(seen).toEqual({ '5.10': { LINUX_HAS_SYSCALL_WRAPPER: 1, LINUX_HAS_BPF_COOKIE: 0 }, '6.1': { LINUX_HAS_SYSCALL_WRAPPER: 1, LINUX_HAS_BPF_COOKIE: 1 } });
  }, 60_000);

  it('fill bool externs from 0/1 as libbpf does; an unknown weak LINUX_* stays zero, a strong one is refused', async () => {
    const spec = loadObjectSpec(readFileSync(await compileMapsExterns()), 'maps_externs.bpf.o');
    const data = new Uint8Array(spec.maps.find((m) => m.kind === 'kconfig')!.data!).fill(0xee);
    const facts = { config: new Map(), linuxKernelVersion: 0x6012c, specials: { LINUX_HAS_SYSCALL_WRAPPER: 1, LINUX_HAS_BPF_COOKIE: 0 } };
    const got = fillKconfig(spec.btf, spec.externs, data, facts);
    expect(Object.fromEntries(got.map((g) => [g.name, g.value]))).toEqual({ LINUX_HAS_SYSCALL_WRAPPER: true, LINUX_HAS_BPF_COOKIE: false, LINUX_KERNEL_VERSION: 0x6012c, LINUX_COREMATRIX_NO_SUCH_EXTERN: null });
    const at = (n: string) => spec.externs.find((e) => e.name === n)!.offset!;
    expect([data[at('LINUX_HAS_SYSCALL_WRAPPER')], data[at('LINUX_HAS_BPF_COOKIE')]]).toEqual([1, 0]);
    const strong = spec.externs.map((e) => (e.name === 'LINUX_COREMATRIX_NO_SUCH_EXTERN' ? { ...e, weak: false } : e));
    expect(() => fillKconfig(spec.btf, strong, data, facts)).toThrow(/extern LINUX_COREMATRIX_NO_SUCH_EXTERN \(kconfig\): only CONFIG_\* options and the LINUX_\* externs libbpf fills are known/);
    expect(() => fillKconfig(spec.btf, spec.externs, data, { ...facts, specials: { ...facts.specials, LINUX_HAS_BPF_COOKIE: 2 } })).toThrow(/LINUX_HAS_BPF_COOKIE \(kconfig\): value '2' for a bool/);
  }, 60_000);

  it('a string longer than its char[N] extern is cut to N-1 bytes and a NUL, as libbpf does (not refused)', () => {
    const spec = loadObjectSpec(readFileSync(compileBpf(fileURLToPath(new URL('../runtime/fixtures/kconfig_string.bpf.c', import.meta.url)))), 'kconfig_string.bpf.o');
    const data = new Uint8Array(spec.maps.find((m) => m.kind === 'kconfig')!.data!).fill(0xee);
    const config = new Map([['CONFIG_DEFAULT_HOSTNAME', '(none)'], ['CONFIG_LOCALVERSION', '-cloud']]);
    const got = fillKconfig(spec.btf, spec.externs, data, { config, linuxKernelVersion: 0 });
    expect(Object.fromEntries(got.map((g) => [g.name, g.value]))).toEqual({ CONFIG_DEFAULT_HOSTNAME: '(no', CONFIG_LOCALVERSION: '-cloud' });
    const at = (n: string) => spec.externs.find((e) => e.name === n)!.offset!;
    expect([...data.subarray(at('CONFIG_DEFAULT_HOSTNAME'), at('CONFIG_DEFAULT_HOSTNAME') + 4)]).toEqual([...new TextEncoder().encode('(no'), 0]);
    expect([...data.subarray(at('CONFIG_LOCALVERSION'), at('CONFIG_LOCALVERSION') + 7)]).toEqual([...new TextEncoder().encode('-cloud'), 0]);
  });
});
