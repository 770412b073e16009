// BPF arena (Linux 6.9+): a BPF_MAP_TYPE_ARENA map is a sparse region of pages shared by the
// programs and the user space that mmap()s it. `__arena` globals (clang's address space 1) live in
// the `.addr_space.1` section: libbpf points every reference to them at the object's one arena map,
// copies the section's bytes into the arena after creating it, and puts them at the END of the
// arena where the kernel accepts a map-value offset anywhere in the region (else at its start).
// Pure: the page size and what the kernel accepts come in as plain values.

import { FormatError } from '../errors.js';

/** BPF_MAP_TYPE_ARENA (include/uapi/linux/bpf.h). */
export const MAP_TYPE_ARENA = 33;

/** The ELF section of `__arena` globals. */
export const ARENA_SECTION = '.addr_space.1';

/** An object's arena: its map (index in ObjectSpec.maps) and the globals' initial bytes. */
export interface ArenaSpec {
  map: number;
  /** A copy of `.addr_space.1` (zeros where it is NOBITS). */
  data: Uint8Array;
}

/** Bytes user space maps for an arena (libbpf's bpf_map_mmap_sz): one page per max_entries. */
export function arenaMmapSize(maxEntries: number, pageSize: number): number {
  return maxEntries * pageSize;
}

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

/**
 * Where the globals start inside the arena, as libbpf places them: at the end (the last pages that
 * hold them) when the kernel takes a full-range ld_imm64 map-value offset, else at 0. Throws when
 * the arena is too small for them, as libbpf refuses such an object.
 */
export function arenaDataOffset(a: { name: string; maxEntries: number; dataSize: number; pageSize: number; fullRangeOffsets: boolean; source: string }): number {
  const mmapSize = arenaMmapSize(a.maxEntries, a.pageSize);
  const alloc = roundUp(a.dataSize, a.pageSize);
  if (alloc > mmapSize) {
    throw new FormatError(`${a.source}: map '${a.name}': the ARENA map (${mmapSize} bytes) is too small to hold the ${a.dataSize} bytes of global __arena variables in ${ARENA_SECTION}`);
  }
  return a.fullRangeOffsets ? mmapSize - alloc : 0;
}
