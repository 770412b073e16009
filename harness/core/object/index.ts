// The object half of the loader core: ELF object → ObjectSpec; ObjectSpec + program → LinkedProgram.
export * from './types.js';
export { loadObjectSpec } from './load.js';
export { linkProgram, type LinkOptions } from './link.js';
export { fixupDatasecs, type DatasecLayout } from './datasec.js';
export { classifySection, ProgType, AttachType, type ProgramKind } from './sections.js';
export { MapType, BPF_F_NO_PREALLOC, BPF_F_RDONLY_PROG, BPF_F_MMAPABLE, isMapInMap, isDataSection, isPercpuDataSection } from './maps.js';
export { JUMPTABLES_SECTION, MAP_TYPE_INSN_ARRAY, INSN_ARRAY_VALUE_SIZE, JUMP_TABLE_MAP_NAME, jumpTableTargets, jumpTableMapDef, insnArrayValue, type JumpTableMapDef } from './jumptables.js';
export { ARENA_SECTION, MAP_TYPE_ARENA, arenaDataOffset, arenaMmapSize, type ArenaSpec } from './arena.js';
