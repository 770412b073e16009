// USDT probes (SystemTap SDT, `sys/sdt.h`) as libbpf's USDT support reads them: the
// `.note.stapsdt` notes of an executable or shared library, each probe location turned into a
// uprobe's file offset (and the absolute address libbpf keys its ip→spec-id map with), the
// semaphore turned into a uprobe ref_ctr_offset, and the argument specs ("-4@%eax",
// "8@-8(%rbp)", "4@$5"; arm64 "-4@[sp, 96]", "8@x1", "4@5") turned into the bytes of
// `struct __bpf_usdt_spec` that usdt.bpf.h's bpf_usdt_arg() reads. Facts from libbpf's usdt.c
// and usdt.bpf.h (libbpf 1.1); no code of theirs. Pure: no files, no syscalls.

import { type Arch, type ElfBinary, ET_DYN, PF_X, SHT_NOTE } from './binary.js';
import { CoreMatrixError, FormatError } from './errors.js';

/** ELF note name and type of a SystemTap probe descriptor (NT_STAPSDT). */
export const STAPSDT_NOTE_NAME = 'stapsdt';
export const NT_STAPSDT = 3;
export const USDT_NOTE_SECTION = '.note.stapsdt';
/** Present when the notes' addresses may have moved since link time (prelink); see usdtLocations. */
export const USDT_BASE_SECTION = '.stapsdt.base';

/** usdt.bpf.h: BPF_USDT_MAX_ARG_CNT, and the sizes of its structs on a 64-bit little-endian target. */
export const USDT_MAX_ARGS = 12;
export const USDT_ARG_SPEC_SIZE = 16;
export const USDT_SPEC_SIZE = 208;
/** Byte offsets in struct __bpf_usdt_arg_spec: val_off u64, arg_type enum (u32), reg_off s16, arg_signed bool, arg_bitshift char. */
export const ARG_SPEC_LAYOUT = { valOff: 0, argType: 8, regOff: 12, argSigned: 14, argBitshift: 15 } as const;
/** Byte offsets in struct __bpf_usdt_spec: args[12], usdt_cookie u64, arg_cnt s16. */
export const SPEC_LAYOUT = { args: 0, usdtCookie: 192, argCnt: 200 } as const;

/** enum __bpf_usdt_arg_type. */
export const UsdtArgType = { CONST: 0, REG: 1, REG_DEREF: 2 } as const;

/** One `.note.stapsdt` note. Addresses are link-time virtual addresses. */
export interface UsdtNote {
  provider: string;
  name: string;
  /** The argument spec string ('' when the probe has none). */
  args: string;
  /** The probe's address (its nop). */
  location: number;
  /** The address of `_.stapsdt.base` when the note was written. */
  base: number;
  /** The semaphore's address, 0 when the probe has none. */
  semaphore: number;
}

/** A probe location resolved for attaching. */
export interface UsdtLocation {
  note: UsdtNote;
  /** The probe's virtual address after the `.stapsdt.base` adjustment (the ip→spec-id key for an executable). */
  address: number;
  /** File offset of the probe: what a uprobe attaches to. */
  fileOffset: number;
  /** File offset of the semaphore (a uprobe's ref_ctr_offset), 0 when there is none. */
  semaphoreOffset: number;
}

const align4 = (n: number) => (n + 3) & ~3;

/**
 * The notes of `.note.stapsdt`, in file order. A note there that is not a stapsdt probe
 * descriptor, or whose strings are not terminated, is a FormatError (libbpf refuses the file too).
 * No such section: an empty list.
 */
export function usdtNotes(bin: ElfBinary): UsdtNote[] {
  const sec = bin.section(USDT_NOTE_SECTION);
  if (!sec) return [];
  if (sec.type !== SHT_NOTE) throw new FormatError(`${bin.source}: ${USDT_NOTE_SECTION} is not a note section (type ${sec.type})`);
  const data = bin.data(sec);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const where = (off: number) => `${bin.source}: ${USDT_NOTE_SECTION} at offset ${off}`;
  const text = (start: number, end: number) => new TextDecoder('utf-8', { fatal: false }).decode(data.subarray(start, end));
  const notes: UsdtNote[] = [];
  for (let off = 0; off + 12 <= data.length; ) {
    const namesz = dv.getUint32(off, true);
    const descsz = dv.getUint32(off + 4, true);
    const type = dv.getUint32(off + 8, true);
    const nameAt = off + 12;
    const descAt = nameAt + align4(namesz);
    const next = descAt + align4(descsz);
    if (descAt + descsz > data.length) throw new FormatError(`${where(off)}: note extends past the section (${data.length} bytes)`);
    const owner = text(nameAt, nameAt + Math.max(0, namesz - 1));
    if (owner !== STAPSDT_NOTE_NAME || type !== NT_STAPSDT) throw new FormatError(`${where(off)}: note '${owner}' type ${type} is not a stapsdt probe descriptor`);
    // Three 8-byte addresses (location, base, semaphore), then provider, name and args, each NUL-terminated.
    if (descsz < 24 + 3) throw new FormatError(`${where(off)}: probe descriptor of ${descsz} bytes is too short`);
    const end = descAt + descsz;
    const strings: string[] = [];
    let p = descAt + 24;
    for (let i = 0; i < 3 && p < end; i++) {
      const nul = data.subarray(p, end).indexOf(0);
      if (nul < 0) break;
      strings.push(text(p, p + nul));
      p += nul + 1;
    }
    const [provider, name, args] = strings;
    if (provider === undefined || !name || args === undefined) throw new FormatError(`${where(off)}: probe descriptor lacks a terminated provider, name or argument string`);
    const addr = (i: number) => {
      const v = dv.getBigUint64(descAt + 8 * i, true);
      if (v >= 1n << 53n) throw new FormatError(`${where(off)}: address 0x${v.toString(16)} is out of range`);
      return Number(v);
    };
    notes.push({ provider, name, args: args.startsWith(':') ? '' : args, location: addr(0), base: addr(1), semaphore: addr(2) });
    off = next;
  }
  return notes;
}

/**
 * The locations of USDT `provider:name` in `bin`, resolved as libbpf resolves them: the address
 * moved by (address of `.stapsdt.base`) − (base the note recorded) when the file has that
 * section; the file offset through the executable PT_LOAD segment holding it; the semaphore's
 * file offset through the non-executable PT_LOAD segment holding it. No such probe: an empty list.
 */
export function usdtLocations(bin: ElfBinary, provider: string, name: string): UsdtLocation[] {
  const what = `USDT ${provider}:${name} in ${bin.source}`;
  const baseSec = bin.section(USDT_BASE_SECTION);
  const out: UsdtLocation[] = [];
  for (const note of usdtNotes(bin)) {
    if (note.provider !== provider || note.name !== name) continue;
    const address = baseSec && baseSec.addr ? note.location + baseSec.addr - note.base : note.location;
    const seg = bin.loadSegmentAt(address);
    if (!seg) throw new CoreMatrixError(`${what}: no loadable segment holds address 0x${address.toString(16)}`);
    if (!(seg.flags & PF_X)) throw new CoreMatrixError(`${what}: the segment holding address 0x${address.toString(16)} is not executable`);
    let semaphoreOffset = 0;
    if (note.semaphore) {
      const s = bin.loadSegmentAt(note.semaphore);
      if (!s) throw new CoreMatrixError(`${what}: no loadable segment holds the semaphore at 0x${note.semaphore.toString(16)}`);
      if (s.flags & PF_X) throw new CoreMatrixError(`${what}: the semaphore at 0x${note.semaphore.toString(16)} is in an executable segment`);
      semaphoreOffset = note.semaphore - s.vaddr + s.offset;
    }
    out.push({ note, address, fileOffset: address - seg.vaddr + seg.offset, semaphoreOffset });
  }
  return out;
}

/** Whether ip→spec-id keys of this file need the process's mapping (a shared object: its load address is only known per process). */
export function needsProcessMapping(bin: ElfBinary): boolean {
  return bin.type === ET_DYN;
}

/** An executable mapping of a file in /proc/<pid>/maps. */
export interface MappedSegment {
  start: number;
  end: number;
  /** File offset the mapping starts at. */
  offset: number;
}

/**
 * The executable mappings of `path` in the text of /proc/<pid>/maps (lines
 * "start-end perms offset dev inode path"), sorted by address.
 */
export function executableMappings(mapsText: string, path: string): MappedSegment[] {
  const out: MappedSegment[] = [];
  for (const line of mapsText.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S+)\s+([0-9a-f]+)\s+\S+\s+\d+\s*(.*)$/.exec(line);
    if (!m || m[5] !== path || m[3]![2] !== 'x') continue;
    out.push({ start: parseInt(m[1]!, 16), end: parseInt(m[2]!, 16), offset: parseInt(m[4]!, 16) });
  }
  return out.sort((a, b) => a.start - b.start);
}

/** The run-time address of file offset `fileOffset` in a process that maps the file as `mappings`. */
export function mappedAddress(mappings: readonly MappedSegment[], fileOffset: number): number | undefined {
  const seg = mappings.find((s) => s.offset <= fileOffset && fileOffset < s.offset + (s.end - s.start));
  return seg ? seg.start - seg.offset + fileOffset : undefined;
}

// ---- argument specs ---------------------------------------------------------------------------

/** One parsed argument: where bpf_usdt_arg() finds it and how it widens it to 64 bits. */
export interface UsdtArg {
  /** The spec as written ("-4@%eax"). */
  text: string;
  type: (typeof UsdtArgType)[keyof typeof UsdtArgType];
  /** Bytes: 1, 2, 4 or 8. */
  size: 1 | 2 | 4 | 8;
  signed: boolean;
  /** CONST: the value; REG_DEREF: the offset from the register; REG: 0. As a u64. */
  valOff: bigint;
  /** The register, as written (REG and REG_DEREF). */
  register?: string;
  /** offsetof(struct pt_regs, <register>) for the architecture (0 for CONST). */
  regOff: number;
}

/** x86-64 struct pt_regs: each register's byte offset and the names its sub-registers go by. */
const X86_64_REGS: readonly [number, readonly string[]][] = [
  [128, ['rip', 'eip']],
  [80, ['rax', 'eax', 'ax', 'al']],
  [40, ['rbx', 'ebx', 'bx', 'bl']],
  [88, ['rcx', 'ecx', 'cx', 'cl']],
  [96, ['rdx', 'edx', 'dx', 'dl']],
  [104, ['rsi', 'esi', 'si', 'sil']],
  [112, ['rdi', 'edi', 'di', 'dil']],
  [32, ['rbp', 'ebp', 'bp', 'bpl']],
  [152, ['rsp', 'esp', 'sp', 'spl']],
  ...[8, 9, 10, 11, 12, 13, 14, 15].map((n): [number, string[]] => [[72, 64, 56, 48, 24, 16, 8, 0][n - 8]!, [`r${n}`, `r${n}d`, `r${n}w`, `r${n}b`]]),
];
const X86_64_REG_OFFSET = new Map(X86_64_REGS.flatMap(([off, names]) => names.map((n) => [n, off] as const)));

/** offsetof(struct pt_regs, <reg>) on x86-64 for a register as USDT specs name it (without '%'). */
export function x86RegisterOffset(reg: string): number | undefined {
  return X86_64_REG_OFFSET.get(reg);
}

/** offsetof(struct user_pt_regs, <reg>) on arm64: x0..x30 (regs[n]) and sp. */
export function arm64RegisterOffset(reg: string): number | undefined {
  if (reg === 'sp') return 248;
  const m = /^x(\d+)$/.exec(reg);
  if (!m) return undefined;
  const n = Number(m[1]);
  return n < 31 ? n * 8 : undefined;
}

const INT = '([+-]?\\d+)';
/** Per architecture: [regex matching one argument at the start of the rest, builder]. Order as libbpf tries them. */
type ArgForm = [RegExp, (m: RegExpExecArray) => { type: UsdtArg['type']; valOff: bigint; register?: string }];
const ARG_FORMS: Record<Arch, readonly ArgForm[]> = {
  x86_64: [
    // -4@-20(%rbp): memory at register + offset
    [new RegExp(`^\\s*${INT}\\s*@\\s*${INT}\\s*\\(\\s*%([^)]{1,15})\\)\\s*`), (m) => ({ type: UsdtArgType.REG_DEREF, valOff: BigInt(m[2]!), register: m[3]!.trim() })],
    // 8@(%rsp): memory at register
    [new RegExp(`^\\s*${INT}\\s*@\\s*\\(\\s*%([^)]{1,15})\\)\\s*`), (m) => ({ type: UsdtArgType.REG_DEREF, valOff: 0n, register: m[2]!.trim() })],
    // -4@%eax: register
    [new RegExp(`^\\s*${INT}\\s*@\\s*%(\\S{1,15})\\s*`), (m) => ({ type: UsdtArgType.REG, valOff: 0n, register: m[2]! })],
    // 4@$71: constant
    [new RegExp(`^\\s*${INT}\\s*@\\s*\\$${INT}\\s*`), (m) => ({ type: UsdtArgType.CONST, valOff: BigInt(m[2]!) })],
  ],
  aarch64: [
    // -4@[sp, 96]
    [new RegExp(`^\\s*${INT}\\s*@\\s*\\[\\s*([a-z0-9]{1,15})\\s*,\\s*${INT}\\s*\\]\\s*`), (m) => ({ type: UsdtArgType.REG_DEREF, valOff: BigInt(m[3]!), register: m[2]! })],
    // -4@[sp]
    [new RegExp(`^\\s*${INT}\\s*@\\s*\\[\\s*([a-z0-9]{1,15})\\s*\\]\\s*`), (m) => ({ type: UsdtArgType.REG_DEREF, valOff: 0n, register: m[2]! })],
    // 4@5
    [new RegExp(`^\\s*${INT}\\s*@\\s*${INT}(?=\\s|$)\\s*`), (m) => ({ type: UsdtArgType.CONST, valOff: BigInt(m[2]!) })],
    // -8@x4
    [new RegExp(`^\\s*${INT}\\s*@\\s*([a-z0-9]{1,15})\\s*`), (m) => ({ type: UsdtArgType.REG, valOff: 0n, register: m[2]! })],
  ],
};

/**
 * Parses a note's argument string into at most 12 arguments, for `arch`. Sizes other than
 * ±1, ±2, ±4, ±8, unknown registers, forms libbpf does not read (x86 `sym(%rip)`, scaled index
 * `(%rax,%rbx,8)`) and more than 12 arguments are errors naming the argument.
 */
export function parseUsdtArgs(args: string, arch: Arch, what = 'USDT'): UsdtArg[] {
  const out: UsdtArg[] = [];
  const regOffset = arch === 'x86_64' ? x86RegisterOffset : arm64RegisterOffset;
  let rest = args;
  while (rest.trim()) {
    if (out.length >= USDT_MAX_ARGS) throw new CoreMatrixError(`${what}: more than ${USDT_MAX_ARGS} arguments in '${args}'`);
    let parsed: { m: RegExpExecArray; r: ReturnType<ArgForm[1]> } | undefined;
    for (const [re, build] of ARG_FORMS[arch]) {
      const m = re.exec(rest);
      if (m) {
        parsed = { m, r: build(m) };
        break;
      }
    }
    const token = rest.trim().split(/\s+/)[0]!;
    if (!parsed) throw new CoreMatrixError(`${what}: argument #${out.length} '${token}' is not a spec libbpf reads on ${arch}`);
    const declared = Number(parsed.m[1]);
    const size = Math.abs(declared);
    if (size !== 1 && size !== 2 && size !== 4 && size !== 8) throw new CoreMatrixError(`${what}: argument #${out.length} '${token}' has size ${declared}; 1, 2, 4 or 8 bytes (negative: signed) are supported`);
    const { type, valOff, register } = parsed.r;
    let regOff = 0;
    if (register !== undefined) {
      const off = regOffset(register);
      if (off === undefined) throw new CoreMatrixError(`${what}: argument #${out.length} '${token}' names register '${register}', which ${arch} pt_regs has not`);
      regOff = off;
    }
    const arg: UsdtArg = { text: parsed.m[0].trim(), type, size, signed: declared < 0, valOff: BigInt.asUintN(64, valOff), regOff };
    if (register !== undefined) arg.register = register;
    out.push(arg);
    rest = rest.slice(parsed.m[0].length);
  }
  return out;
}

/** The bytes of `struct __bpf_usdt_spec` for these arguments and the user's USDT cookie (bpf_usdt_cookie()). */
export function usdtSpecBytes(args: readonly UsdtArg[], usdtCookie: bigint = 0n): Uint8Array {
  if (args.length > USDT_MAX_ARGS) throw new CoreMatrixError(`USDT spec: ${args.length} arguments, at most ${USDT_MAX_ARGS}`);
  const b = new Uint8Array(USDT_SPEC_SIZE);
  const dv = new DataView(b.buffer);
  args.forEach((a, i) => {
    const at = SPEC_LAYOUT.args + i * USDT_ARG_SPEC_SIZE;
    dv.setBigUint64(at + ARG_SPEC_LAYOUT.valOff, a.valOff, true);
    dv.setUint32(at + ARG_SPEC_LAYOUT.argType, a.type, true);
    dv.setInt16(at + ARG_SPEC_LAYOUT.regOff, a.regOff, true);
    dv.setUint8(at + ARG_SPEC_LAYOUT.argSigned, a.signed ? 1 : 0);
    // Bits to shift out (and back, sign-extending when signed) to widen a 1/2/4-byte value.
    dv.setUint8(at + ARG_SPEC_LAYOUT.argBitshift, 64 - a.size * 8);
  });
  dv.setBigUint64(SPEC_LAYOUT.usdtCookie, BigInt.asUintN(64, usdtCookie), true);
  dv.setInt16(SPEC_LAYOUT.argCnt, args.length, true);
  return b;
}

