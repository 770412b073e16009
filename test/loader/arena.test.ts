// The object half of BPF arenas (no kernel needed): `.addr_space.1` and the one ARENA map found
// as libbpf finds them, every reference to an `__arena` global pointed at the arena map's value
// at (where the globals go) + (the symbol's place in the section), the placement rule, and
// libbpf's refusals. Witnesses: llvm-objcopy's copy of the section and llvm-readobj's symbols.
// The guest half (the kernel reading the globals back) is arena.guest.test.ts.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../harness/core/errors.js';
import { BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, LD_IMM64 } from '../../harness/core/insn.js';
import { arenaDataOffset, ARENA_SECTION, MAP_TYPE_ARENA } from '../../harness/core/object/arena.js';
import { linkProgram } from '../../harness/core/object/link.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { readobjJson } from '../fixtures/compile.js';
import { compileBpf, dumpSection, writeTmp } from '../helpers/tools.js';

const SRC = fileURLToPath(new URL('./fixtures/arena_globals.bpf.c', import.meta.url));
const object = () => compileBpf(SRC, ['-mcpu=v3']);

/** A small object from C text (the refusals). */
function compile(name: string, body: string): Uint8Array {
  const src = writeTmp(`${name}.bpf.c`, `#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n#define __arena __attribute__((address_space(1)))\n${body}\nchar _license[] SEC("license") = "GPL";\n`);
  return new Uint8Array(readFileSync(compileBpf(src, ['-mcpu=v3'])));
}
const ARENA_MAP = (name: string) => `struct { __uint(type, 33); __uint(map_flags, BPF_F_MMAPABLE); __uint(max_entries, 4); } ${name} SEC(".maps");`;

describe('arena globals in the object', () => {
  it('the arena map and the section\'s bytes, as llvm-objcopy copies them', () => {
    const path = object();
    const spec = loadObjectSpec(new Uint8Array(readFileSync(path)), 'arena_globals.o');
    expect(spec.arena).toBeDefined();
    const m = spec.maps[spec.arena!.map]!;
    expect(m).toMatchObject({ name: 'arena', type: MAP_TYPE_ARENA, maxEntries: 8, keySize: 0, valueSize: 0 });
    expect([...spec.arena!.data]).toEqual([...dumpSection(path, ARENA_SECTION)]);
    // No array map for it: the arena holds the globals.
    expect(spec.maps.map((x) => x.name)).not.toContain(ARENA_SECTION);
  });

  it('each reference: the arena map\'s value at (where the globals go) + (the symbol\'s offset in the section)', () => {
    const path = object();
    const spec = loadObjectSpec(new Uint8Array(readFileSync(path)), 'arena_globals.o');
    const sym = (n: string) => readobjJson(path).Symbols.find((s) => s.Symbol.Name.Name === n)!.Symbol.Value;
    const at = 6 * 4096;
    for (const [program, name] of [['bump_counter', 'counter'], ['answer_address', 'answer']] as const) {
      const linked = linkProgram(spec, program, { arenaDataOffset: at });
      const dv = new DataView(linked.insns.buffer, linked.insns.byteOffset, linked.insns.byteLength);
      expect(linked.insns[0], program).toBe(LD_IMM64);
      expect(linked.insns[1]! >> 4, program).toBe(BPF_PSEUDO_MAP_VALUE);
      expect(dv.getInt32(4, true), `${program}: the map the runtime puts the fd of`).toBe(spec.arena!.map);
      expect(dv.getInt32(12, true), `${program}: offset of ${name}`).toBe(at + sym(name));
      expect(linked.mapRefs[0]).toEqual({ insn: 0, map: spec.arena!.map, offset: at + sym(name) });
    }
    // A reference to the arena map itself (&arena) takes no offset.
    const where = linkProgram(spec, 'where_answer', { arenaDataOffset: at });
    expect(where.insns[1]! >> 4).toBe(BPF_PSEUDO_MAP_FD);
    expect(where.mapRefs[0]).toEqual({ insn: 0, map: spec.arena!.map });
  });

  it('placement: the last pages that hold the globals where the kernel takes full-range offsets, else 0; too small an arena refused', () => {
    const base = { name: 'arena', maxEntries: 8, dataSize: 5620, pageSize: 4096, source: 'a.o' };
    expect(arenaDataOffset({ ...base, fullRangeOffsets: true })).toBe(6 * 4096);
    expect(arenaDataOffset({ ...base, fullRangeOffsets: false })).toBe(0);
    expect(arenaDataOffset({ ...base, dataSize: 8 * 4096, fullRangeOffsets: true })).toBe(0);
    expect(() => arenaDataOffset({ ...base, maxEntries: 1, fullRangeOffsets: true })).toThrow("a.o: map 'arena': the ARENA map (4096 bytes) is too small to hold the 5620 bytes of global __arena variables in .addr_space.1");
  });

  it('libbpf\'s refusals: __arena globals without an ARENA map, two ARENA maps', () => {
    const noMap = compile('arena_no_map', 'int __arena x = 1;\nSEC("syscall") int p(void *c) { return x; }');
    expect(() => loadObjectSpec(noMap, 'no_map.o')).toThrow(FormatError);
    expect(() => loadObjectSpec(noMap, 'no_map.o')).toThrow('no_map.o: section .addr_space.1: global __arena variables need an ARENA map declared in SEC(".maps")');
    const two = compile('arena_two_maps', `${ARENA_MAP('a1')}\n${ARENA_MAP('a2')}\nSEC("syscall") int p(void *c) { return 0; }`);
    expect(() => loadObjectSpec(two, 'two.o')).toThrow("two.o: map 'a2': only one ARENA map per object is supported (map 'a1' is also one)");
    // One ARENA map and no globals: an arena, and no arena data.
    const plain = loadObjectSpec(compile('arena_plain', `${ARENA_MAP('a1')}\nSEC("syscall") int p(void *c) { return 0; }`), 'plain.o');
    expect(plain.arena).toBeUndefined();
    expect(plain.maps[0]).toMatchObject({ name: 'a1', type: MAP_TYPE_ARENA });
  });
});
