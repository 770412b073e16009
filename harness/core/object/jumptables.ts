// Jump tables of indirect jumps (gotox, Linux 6.19+ / 7.x): for a switch clang-19+ may emit a table
// of code addresses in the `.jumptables` section (one u64 BYTE offset into the code section per
// entry) and `r = <table> ll; r += idx*8; r = *(u64 *)r; gotox r`. The kernel takes such a table as a
// BPF_MAP_TYPE_INSN_ARRAY map: libbpf makes one per (program, table) at relocation time, holding
// each entry as an instruction index in the FINAL program (the target moved with its function when
// that function was appended to the program), freezes it, and points the ld_imm64 at its value
// (src BPF_PSEUDO_MAP_VALUE, imm = the map fd). Pure: the maps themselves are the runtime's.

import { FormatError } from '../errors.js';
import type { LinkedJumpTable } from './types.js';

export const JUMPTABLES_SECTION = '.jumptables';
/** BPF_MAP_TYPE_INSN_ARRAY (include/uapi/linux/bpf.h). */
export const MAP_TYPE_INSN_ARRAY = 34;
/** Bytes of one table entry in `.jumptables` (u64). */
export const JUMP_TABLE_ENTRY_SIZE = 8;
/** sizeof(struct bpf_insn_array_value): u32 orig_off, xlated_off, jitted_off, and 4 reserved bytes. */
export const INSN_ARRAY_VALUE_SIZE = 16;
/** The name libbpf gives every jump table map. */
export const JUMP_TABLE_MAP_NAME = '.jumptables';

const U32_MAX = 0xffff_ffff;

/**
 * The entries of the table of `size` bytes at `offset` in `.jumptables`, as instruction indices of
 * the linked program: an entry is a byte offset into the section of the function that loads the
 * table; that function starts at instruction `fnSectionOffset` of its section and at `placedAt` in
 * the program. Refuses what libbpf refuses (a misaligned or truncated table, an entry that is not
 * a u32 instruction index once moved), naming the table.
 */
export function jumpTableTargets(
  data: Uint8Array,
  table: { symbol: string; offset: number; size: number },
  fnSectionOffset: number,
  placedAt: number,
  where: string,
): number[] {
  const what = `${where}: jump table '${table.symbol}' (${table.size} bytes at ${JUMPTABLES_SECTION}+${table.offset})`;
  if (table.offset % JUMP_TABLE_ENTRY_SIZE !== 0) throw new FormatError(`${what}: does not start at a multiple of ${JUMP_TABLE_ENTRY_SIZE}`);
  if (table.size % JUMP_TABLE_ENTRY_SIZE !== 0) throw new FormatError(`${what}: its size is not a multiple of ${JUMP_TABLE_ENTRY_SIZE}`);
  if (table.size === 0) throw new FormatError(`${what}: has no entries (its symbol has no size)`);
  if (table.offset + table.size > data.length) throw new FormatError(`${what}: extends past the end of ${JUMPTABLES_SECTION} (${data.length} bytes)`);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: number[] = [];
  for (let at = table.offset; at < table.offset + table.size; at += JUMP_TABLE_ENTRY_SIZE) {
    const byteOff = dv.getBigUint64(at, true);
    const target = Number(byteOff / 8n) - fnSectionOffset + placedAt;
    if (!Number.isSafeInteger(target) || target < 0 || target > U32_MAX) {
      throw new FormatError(`${what}: entry ${(at - table.offset) / JUMP_TABLE_ENTRY_SIZE} (0x${byteOff.toString(16)}) is no instruction of the program`);
    }
    out.push(target);
  }
  return out;
}

/** What BPF_MAP_CREATE gets for a jump table (as libbpf creates it: no flags, no BTF). */
export interface JumpTableMapDef {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export function jumpTableMapDef(table: LinkedJumpTable): JumpTableMapDef {
  return { name: JUMP_TABLE_MAP_NAME, type: MAP_TYPE_INSN_ARRAY, keySize: 4, valueSize: INSN_ARRAY_VALUE_SIZE, maxEntries: table.targets.length, flags: 0 };
}

/** One INSN_ARRAY value: orig_off = the target instruction; the kernel fills the rest at load. */
export function insnArrayValue(origOff: number): Uint8Array {
  const v = new Uint8Array(INSN_ARRAY_VALUE_SIZE);
  new DataView(v.buffer).setUint32(0, origOff, true);
  return v;
}
