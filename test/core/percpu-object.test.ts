// Global per-CPU data (`.percpu`, `.percpu.<name>`) read and linked by the pure core, on a fixture
// compiled here with clang-19 (test/fixtures/percpu-jumptables/percpu.bpf.c). Witnesses: libbpf
// 1.8 itself (the current libbpf, opened on the host: parsing makes no bpf() call) for every
// internal map's type, key and value size, max_entries, flags and initial value; llvm-objcopy for
// the sections' bytes; llvm-readobj for the variables' offsets.
import koffi from 'koffi';
import { Buffer } from 'node:buffer';
import { beforeAll, describe, expect, it } from 'vitest';
import { Kind } from '../../harness/core/btf/kinds.js';
import { BPF_PSEUDO_MAP_VALUE, LD_IMM64, readInsn } from '../../harness/core/insn.js';
import { isPercpuDataSection, linkProgram, loadObjectSpec, MapType, type ObjectSpec } from '../../harness/core/object/index.js';
import { currentLibbpf } from '../../harness/reference/build.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readobjJson, type ReadobjJson } from '../fixtures/compile.js';
import { compileBpf, dumpSection } from '../helpers/tools.js';

interface LibbpfMap { name: string; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number; initial?: string }

/** The maps libbpf (the .so at `so`) makes of `bytes` when it opens them, in its order. */
function libbpfMaps(so: string, bytes: Uint8Array): LibbpfMap[] {
  const l = koffi.load(so);
  const openMem = l.func('void *bpf_object__open_mem(const uint8_t *buf, size_t size, void *opts)');
  const nextMap = l.func('void *bpf_object__next_map(void *obj, void *map)');
  const close = l.func('void bpf_object__close(void *obj)');
  const get = (sig: string) => l.func(sig);
  const name = get('const char *bpf_map__name(void *map)');
  const type = get('int bpf_map__type(void *map)');
  const keySize = get('uint32_t bpf_map__key_size(void *map)');
  const valueSize = get('uint32_t bpf_map__value_size(void *map)');
  const maxEntries = get('uint32_t bpf_map__max_entries(void *map)');
  const flags = get('uint32_t bpf_map__map_flags(void *map)');
  const initial = get('void *bpf_map__initial_value(void *map, _Out_ size_t *psize)');
  const buf = Buffer.from(bytes);
  const obj = openMem(buf, buf.length, null);
  if (!obj) throw new Error('libbpf could not open the fixture');
  const out: LibbpfMap[] = [];
  try {
    for (let m = nextMap(obj, null); m; m = nextMap(obj, m)) {
      const size = [0];
      const p = initial(m, size);
      const init = p ? Buffer.from(koffi.decode(p, 'uint8_t', size[0]!) as number[]).toString('hex') : undefined;
      out.push({ name: name(m), type: type(m), keySize: keySize(m), valueSize: valueSize(m), maxEntries: maxEntries(m), flags: flags(m), ...(init !== undefined ? { initial: init } : {}) });
    }
  } finally {
    close(obj);
  }
  return out;
}

let path: string;
let bytes: Uint8Array;
let obj: ObjectSpec;
let ro: ReadobjJson;
let theirs: LibbpfMap[];

beforeAll(async () => {
  path = compileBpf(fileURLToPath(new URL('../fixtures/percpu-jumptables/percpu.bpf.c', import.meta.url)));
  bytes = new Uint8Array(readFileSync(path));
  obj = loadObjectSpec(bytes, 'percpu.bpf.o');
  ro = readobjJson(path);
  theirs = libbpfMaps((await currentLibbpf()).so, bytes);
}, 20 * 60_000);

const sym = (name: string) => ro.Symbols.find((s) => s.Symbol.Name.Name === name)!.Symbol;
const hex = (b: Uint8Array | undefined) => Buffer.from(b ?? []).toString('hex');

describe('.percpu sections', () => {
  it('are what libbpf calls global per-CPU data: `.percpu` and `.percpu.<name>`, nothing else', () => {
    expect(['.percpu', '.percpu.x', '.percpu.a.b'].filter(isPercpuDataSection)).toEqual(['.percpu', '.percpu.x', '.percpu.a.b']);
    expect(['.percpux', '.data.percpu', 'percpu', '.bss', '.data'].filter(isPercpuDataSection)).toEqual([]);
  });

  it('each become a one-entry PERCPU_ARRAY holding the section, as libbpf 1.8 makes it', () => {
    const percpu = obj.maps.filter((m) => m.section.startsWith('.percpu'));
    expect(percpu.map((m) => m.name)).toEqual(['.percpu', '.percpu.a_long_section_name']);
    for (const m of percpu) {
      const lib = theirs.find((t) => t.name === m.name);
      expect(lib, `libbpf has a map named ${m.name}`).toBeDefined();
      expect({ type: m.type, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries, flags: m.flags, initial: hex(m.data) })
        .toEqual({ type: lib!.type, keySize: lib!.keySize, valueSize: lib!.valueSize, maxEntries: lib!.maxEntries, flags: lib!.flags, initial: lib!.initial });
      expect(m.type).toBe(MapType.PERCPU_ARRAY);
      expect(m.flags).toBe(0); // not mmapable (a per-CPU array cannot be), not read-only for programs
      expect(m.kind).toBe('data');
      expect(m.frozen).toBe(false);
      expect(hex(m.data)).toBe(hex(dumpSection(path, m.section)));
      expect(obj.btf.type(m.valueTypeId)).toMatchObject({ kind: Kind.DATASEC, name: m.section });
    }
    // The initial values the C source gives: hits = 7, pair = { 3, 100 } at 8, flag = 5.
    expect(hex(percpu[0]!.data)).toBe('07000000' + '00000000' + '03000000' + '00000000' + '6400000000000000');
    expect(hex(percpu[1]!.data)).toBe('05');
  });

  it('leave `.data` an ordinary array, as libbpf leaves it', () => {
    const data = obj.maps.find((m) => m.name === '.data')!;
    const lib = theirs.find((t) => t.name.endsWith('.data'))!;
    expect({ type: data.type, valueSize: data.valueSize, flags: data.flags, initial: hex(data.data) }).toEqual({ type: lib.type, valueSize: lib.valueSize, flags: lib.flags, initial: lib.initial });
    expect(theirs).toHaveLength(3);
  });

  it('are referenced like `.data`: ld_imm64 becomes a map-value load at the variable\'s offset', () => {
    const linked = linkProgram(obj, 'count_percpu');
    const mapName = (i: number) => obj.maps[i]!.name;
    expect(linked.mapRefs.map((r) => [mapName(r.map), r.offset])).toEqual([
      ['.percpu', sym('hits').Value],
      ['.percpu.a_long_section_name', sym('flag').Value],
      ['.data', sym('plain').Value],
      ['.percpu', sym('pair').Value],
    ]);
    expect(sym('pair').Value).toBe(8);
    for (const r of linked.mapRefs) {
      const lo = readInsn(linked.insns, r.insn);
      expect(lo.code).toBe(LD_IMM64);
      expect(lo.src).toBe(BPF_PSEUDO_MAP_VALUE);
      expect(lo.imm).toBe(r.map);
      expect(readInsn(linked.insns, r.insn + 1).imm).toBe(r.offset);
    }
    expect(linked.jumpTables).toEqual([]);
  });

  it('a program that does not touch them references none', () => {
    const linked = linkProgram(obj, 'no_percpu');
    expect(linked.mapRefs.map((r) => obj.maps[r.map]!.name)).toEqual(['.data']);
  });
});
