// Plain data parsed from a BPF object (names after cilium/ebpf's CollectionSpec/ProgramSpec/
// MapSpec): no file descriptors, nothing kernel-specific. The runtime turns these into maps
// and programs; the CO-RE engine patches `ObjectSpec.sections` in place before linking.

import type { Btf } from '../btf/btf.js';
import type { BtfExt } from '../btf/ext.js';
import type { ArenaSpec } from './arena.js';
import type { ProgramKind } from './sections.js';

/** One function symbol (STT_FUNC) in an executable section: a program or a subprogram. */
export interface FunctionSpec {
  name: string;
  section: string;
  /** Instruction index of its first instruction within the section. */
  sectionOffset: number;
  insnCount: number;
  /** STB_GLOBAL / STB_WEAK (true) or STB_LOCAL (false). */
  global: boolean;
  /**
   * A global function of restricted visibility (STV_HIDDEN or STV_INTERNAL: `__hidden`, as
   * usdt.bpf.h's bpf_usdt_arg): libbpf loads its BTF FUNC as static, so the verifier checks it
   * with its caller's context instead of as an independent global function.
   */
  hidden: boolean;
}

/** Records as the kernel wants them: insnOff is an instruction index. */
export interface KernelFuncInfo {
  insnOff: number;
  typeId: number;
}
export interface KernelLineInfo {
  insnOff: number;
  fileNameOff: number;
  lineOff: number;
  line: number;
  col: number;
}

/**
 * A program: its function, what its section name says (type, attach type, flags, target: see
 * ProgramKind in sections.ts) and its BTF line/func info. `section` is the ELF section name as
 * written, `?` included (`SEC("?kprobe/x")`: `autoload` false, classified as `kprobe/x`).
 */
export interface ProgramSpec extends FunctionSpec, ProgramKind {
  /** The program's own func_info (insnOff relative to its first instruction, in instructions). */
  funcInfo: KernelFuncInfo[];
  /** The program's own line_info (insnOff relative to its first instruction, in instructions). */
  lineInfo: KernelLineInfo[];
  /**
   * freplace only: the program whose function it replaces, set by an object config: a program of
   * this object, or `<object>:<program>` of an earlier object of the run (libbpf:
   * bpf_program__set_attach_target with that program's fd). Loaded after it.
   */
  attachProgram?: string;
}

export type MapKind = 'btf' | 'legacy' | 'data' | 'kconfig';

export interface MapSpec {
  /** Variable name for `.maps`/`maps` definitions; the section name for global data (`.rodata`, `.data.foo`, `.kconfig`). */
  name: string;
  kind: MapKind;
  /** ELF section the definition or data comes from (`.kconfig` has none: the name is used). */
  section: string;
  /** bpf_map_type. */
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  numaNode: number;
  /** 0 = none, 1 = LIBBPF_PIN_BY_NAME. */
  pinning: number;
  mapExtra: bigint;
  /** BTF ids of key and value types in the object's BTF (0 = none). Data maps: value is the DATASEC. */
  keyTypeId: number;
  valueTypeId: number;
  /** The VAR in `.maps` defining this map (BTF maps only). */
  btfVarId?: number;
  /** Map-in-map: the inner map template (from `__array(values, struct inner)`). */
  inner?: MapSpec;
  /** Map-in-map / prog-array initial contents from `.values = {...}`: slot → map (or program) name. */
  initValues?: { slot: number; target: string }[];
  /** Global data maps: the initial value (zeros for .bss). A copy; the runtime fills `.kconfig`. */
  data?: Uint8Array;
  /** Freeze after filling (.rodata*, .kconfig). */
  frozen: boolean;
  /** Offset of the definition within its section (BTF/legacy maps). */
  offset: number;
}

export type ExternKind = 'kconfig' | 'ksym';

export interface ExternSpec {
  name: string;
  kind: ExternKind;
  /** BTF id of the extern's VAR (variables) or FUNC (kfuncs). */
  typeId: number;
  /** BTF id of the VAR's type (variables) or the FUNC_PROTO (kfuncs). */
  valueTypeId: number;
  weak: boolean;
  /** ksym: a kfunc (called), resolved to a BTF FUNC id in the kernel. */
  func: boolean;
  /** ksym variable with a real BTF type (resolved to a BTF VAR id); false for `const void` ksyms (kallsyms address). */
  typed: boolean;
  /** kconfig: byte offset inside the `.kconfig` map value. */
  offset?: number;
  /** kconfig: byte size of the value (sizeof its type). */
  size?: number;
}

/** A relocation from the ELF REL sections of an executable section, resolved to what it names. */
export type CodeReloc =
  | { kind: 'call'; insn: number; targetSection: string; targetInsn: number }
  | { kind: 'func'; insn: number; targetSection: string; targetInsn: number }
  | { kind: 'map'; insn: number; map: number }
  | { kind: 'data'; insn: number; map: number; offset: number }
  | { kind: 'extern'; insn: number; extern: number; call: boolean }
  /**
   * A ld_imm64 of a jump table (gotox, `.jumptables`): the table is `size` bytes at `offset` of
   * that section (its symbol's value and size), one u64 byte offset into the code per entry.
   */
  | { kind: 'jumptable'; insn: number; symbol: string; offset: number; size: number };

export interface ObjectSpec {
  source: string;
  license: string;
  kernVersion: number;
  /** The object's BTF, with DATASEC sizes/offsets and extern entries fixed up so the kernel accepts it (type ids and string offsets unchanged). */
  btf: Btf;
  btfExt?: BtfExt;
  programs: ProgramSpec[];
  /** Every function symbol in an executable section (programs and subprograms). */
  functions: FunctionSpec[];
  maps: MapSpec[];
  externs: ExternSpec[];
  /** A COPY of each executable section's instructions; the CO-RE engine patches these in place. */
  sections: Map<string, Uint8Array>;
  /** ELF relocations of each executable section, resolved (instruction indices within the section). */
  relocs: Map<string, CodeReloc[]>;
  /** The struct_ops maps (`SEC(".struct_ops")`, `SEC(".struct_ops.link")` variables). */
  structOps: StructOpsSpec[];
  /**
   * The arena map and the `__arena` globals' initial bytes, when the object has `.addr_space.1`
   * (references to those globals are 'data' relocations against the arena map).
   */
  arena?: ArenaSpec;
  /** A copy of the `.jumptables` section (gotox jump tables: u64 byte offsets into the code), when there is one. */
  jumpTables?: Uint8Array;
}

/**
 * One struct_ops variable: a kernel ops table (`struct tcp_congestion_ops`) whose function
 * pointers name programs of the object. The kernel's `bpf_struct_ops_<type>` must exist; each
 * program it names loads with attach_btf_id = the kernel's `<type>` and expected_attach_type = the
 * member's index in the kernel's struct.
 */
export interface StructOpsSpec {
  /** The variable's name (the map's name). */
  name: string;
  section: string;
  /** Its struct's name (`tcp_congestion_ops`). */
  type: string;
  /** The struct's id in the object's BTF (typedefs and modifiers skipped). */
  typeId: number;
  /** A copy of the variable's initial bytes (its data members; function pointer slots are 0, see `programs`). */
  data: Uint8Array;
  /** Function pointer member → program (function) name, from the section's relocations. */
  programs: { member: string; program: string }[];
}

export interface LinkedProgram {
  name: string;
  type: number;
  expectedAttachType?: number;
  attachTo?: string;
  sleepable: boolean;
  /** The program followed by every subprogram it reaches, call offsets fixed. */
  insns: Uint8Array;
  /** Instruction-index func_info/line_info for the combined stream, sorted. */
  funcInfo: KernelFuncInfo[];
  lineInfo: KernelLineInfo[];
  /**
   * ld_imm64 map references. The instruction already has src = BPF_PSEUDO_MAP_FD (whole map) or
   * BPF_PSEUDO_MAP_VALUE (offset in the second imm) and imm = the map's index in `ObjectSpec.maps`:
   * the runtime writes the map's fd into imm.
   */
  mapRefs: { insn: number; map: number; offset?: number }[];
  /**
   * Extern references. kconfig ones are already map-value references to the `.kconfig` map (also
   * listed in mapRefs); ksym variables (ld_imm64, src 0) and kfunc calls (call, src =
   * BPF_PSEUDO_KFUNC_CALL, imm 0) must be patched by the runtime with BTF ids or addresses.
   */
  externRefs: { insn: number; extern: number }[];
  /**
   * The jump tables this program's gotox instructions use (see jumptables.ts), one per table and
   * program as libbpf makes them. Each ld_imm64 in `insns` already has src = BPF_PSEUDO_MAP_VALUE
   * and imm = the table's index here: the runtime creates the table's BPF_MAP_TYPE_INSN_ARRAY map
   * and writes its fd into imm.
   */
  jumpTables: LinkedJumpTable[];
  /** Functions in the order they were laid out, with their first instruction in `insns`. */
  layout: { name: string; section: string; start: number; insnCount: number }[];
}

/** One jump table of a linked program: where it comes from and what its map holds. */
export interface LinkedJumpTable {
  /** The table's symbol and its byte offset in `.jumptables` (two references to one table share it). */
  symbol: string;
  offset: number;
  /** Each entry's target, an instruction index in the linked program (the map value's orig_off). */
  targets: number[];
  /** The ld_imm64 instructions (indices in `insns`) that load the table's address. */
  insns: number[];
}
