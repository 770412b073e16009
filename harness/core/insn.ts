// BPF instruction constants, accessors and a small disassembler (kernel UAPI facts). An
// instruction is 8 bytes: code u8, dst:4|src:4 (low nibble dst), off s16, imm s32; `ld_imm64`
// takes two slots, the second holding the upper 32 bits in its imm.

import { FormatError } from './errors.js';

export const INSN_SIZE = 8;

// Classes.
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_JMP32 = 0x06;
export const BPF_ALU64 = 0x07;
// Sizes.
export const BPF_W = 0x00;
export const BPF_H = 0x08;
export const BPF_B = 0x10;
export const BPF_DW = 0x18;
// Modes.
export const BPF_IMM = 0x00;
export const BPF_ABS = 0x20;
export const BPF_IND = 0x40;
export const BPF_MEM = 0x60;
export const BPF_MEMSX = 0x80;
export const BPF_ATOMIC = 0xc0;
// Source operand.
export const BPF_K = 0x00;
export const BPF_X = 0x08;
// ALU ops.
export const BPF_ADD = 0x00;
export const BPF_SUB = 0x10;
export const BPF_MUL = 0x20;
export const BPF_DIV = 0x30;
export const BPF_OR = 0x40;
export const BPF_AND = 0x50;
export const BPF_LSH = 0x60;
export const BPF_RSH = 0x70;
export const BPF_NEG = 0x80;
export const BPF_MOD = 0x90;
export const BPF_XOR = 0xa0;
export const BPF_MOV = 0xb0;
export const BPF_ARSH = 0xc0;
export const BPF_END = 0xd0;
// JMP ops.
export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JGE = 0x30;
export const BPF_JSET = 0x40;
export const BPF_JNE = 0x50;
export const BPF_JSGT = 0x60;
export const BPF_JSGE = 0x70;
export const BPF_CALL = 0x80;
export const BPF_EXIT = 0x90;
export const BPF_JLT = 0xa0;
export const BPF_JLE = 0xb0;
export const BPF_JSLT = 0xc0;
export const BPF_JSLE = 0xd0;

/** src_reg values of ld_imm64. */
export const BPF_PSEUDO_MAP_FD = 1;
export const BPF_PSEUDO_MAP_VALUE = 2;
export const BPF_PSEUDO_BTF_ID = 3;
export const BPF_PSEUDO_FUNC = 4;
export const BPF_PSEUDO_MAP_IDX = 5;
export const BPF_PSEUDO_MAP_IDX_VALUE = 6;
/** src_reg values of call. */
export const BPF_PSEUDO_CALL = 1;
export const BPF_PSEUDO_KFUNC_CALL = 2;

export const LD_IMM64 = BPF_LD | BPF_IMM | BPF_DW; // 0x18
export const CALL = BPF_JMP | BPF_CALL; // 0x85
export const EXIT = BPF_JMP | BPF_EXIT; // 0x95

export interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

export const insnClass = (code: number) => code & 0x07;
export const isLdImm64 = (code: number) => code === LD_IMM64;
export const isCall = (code: number) => code === CALL;

export function insnCount(bytes: Uint8Array): number {
  return Math.floor(bytes.length / INSN_SIZE);
}

function dvOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function check(bytes: Uint8Array, i: number): number {
  const p = i * INSN_SIZE;
  if (!Number.isInteger(i) || i < 0 || p + INSN_SIZE > bytes.length) throw new FormatError(`instruction index ${i} out of range (${insnCount(bytes)} instructions)`);
  return p;
}

export function readInsn(bytes: Uint8Array, i: number): Insn {
  const p = check(bytes, i);
  const dv = dvOf(bytes);
  const regs = bytes[p + 1]!;
  return { code: bytes[p]!, dst: regs & 0xf, src: regs >> 4, off: dv.getInt16(p + 2, true), imm: dv.getInt32(p + 4, true) };
}

export function writeInsn(bytes: Uint8Array, i: number, insn: Insn): void {
  const p = check(bytes, i);
  const dv = dvOf(bytes);
  bytes[p] = insn.code;
  bytes[p + 1] = ((insn.src & 0xf) << 4) | (insn.dst & 0xf);
  dv.setInt16(p + 2, insn.off, true);
  dv.setInt32(p + 4, insn.imm | 0, true);
}

export function setImm(bytes: Uint8Array, i: number, imm: number): void {
  dvOf(bytes).setInt32(check(bytes, i) + 4, imm | 0, true);
}
export function setSrc(bytes: Uint8Array, i: number, src: number): void {
  const p = check(bytes, i);
  bytes[p + 1] = ((src & 0xf) << 4) | (bytes[p + 1]! & 0xf);
}
export function setOff(bytes: Uint8Array, i: number, off: number): void {
  dvOf(bytes).setInt16(check(bytes, i) + 2, off, true);
}

/** The 64-bit immediate of an ld_imm64 at i (low imm, then the next slot's imm). */
export function readImm64(bytes: Uint8Array, i: number): bigint {
  check(bytes, i + 1);
  const dv = dvOf(bytes);
  return (BigInt(dv.getUint32((i + 1) * INSN_SIZE + 4, true)) << 32n) | BigInt(dv.getUint32(i * INSN_SIZE + 4, true));
}
export function writeImm64(bytes: Uint8Array, i: number, v: bigint): void {
  check(bytes, i + 1);
  const dv = dvOf(bytes);
  const u = BigInt.asUintN(64, v);
  dv.setUint32(i * INSN_SIZE + 4, Number(u & 0xffffffffn), true);
  dv.setUint32((i + 1) * INSN_SIZE + 4, Number(u >> 32n), true);
}

const ALU_SYM: Record<number, string> = {
  [BPF_ADD]: '+=', [BPF_SUB]: '-=', [BPF_MUL]: '*=', [BPF_DIV]: '/=', [BPF_OR]: '|=', [BPF_AND]: '&=',
  [BPF_LSH]: '<<=', [BPF_RSH]: '>>=', [BPF_MOD]: '%=', [BPF_XOR]: '^=', [BPF_MOV]: '=', [BPF_ARSH]: 's>>=',
};
const JMP_SYM: Record<number, string> = {
  [BPF_JEQ]: '==', [BPF_JGT]: '>', [BPF_JGE]: '>=', [BPF_JSET]: '&', [BPF_JNE]: '!=', [BPF_JSGT]: 's>',
  [BPF_JSGE]: 's>=', [BPF_JLT]: '<', [BPF_JLE]: '<=', [BPF_JSLT]: 's<', [BPF_JSLE]: 's<=',
};
const SIZE_NAME: Record<number, string> = { [BPF_W]: 'u32', [BPF_H]: 'u16', [BPF_B]: 'u8', [BPF_DW]: 'u64' };
const LD_PSEUDO: Record<number, string> = {
  [BPF_PSEUDO_MAP_FD]: 'map_fd', [BPF_PSEUDO_MAP_VALUE]: 'map_value', [BPF_PSEUDO_BTF_ID]: 'btf_id',
  [BPF_PSEUDO_FUNC]: 'func', [BPF_PSEUDO_MAP_IDX]: 'map_idx', [BPF_PSEUDO_MAP_IDX_VALUE]: 'map_idx_value',
};

/** Atomic operations (imm selects the op; BPF_FETCH = 0x01 returns the old value). */
export const BPF_FETCH = 0x01;
export const BPF_XCHG = 0xe0 | BPF_FETCH;
export const BPF_CMPXCHG = 0xf0 | BPF_FETCH;
const ATOMIC_NAME: Record<number, string> = { [BPF_ADD]: 'add', [BPF_OR]: 'or', [BPF_AND]: 'and', [BPF_XOR]: 'xor' };

function formatAtomic(size: number, dst: number, src: number, off: number, imm: number): string {
  const r = size === BPF_DW ? 'r' : 'w';
  const bits = size === BPF_DW ? '64' : '32';
  const addr = `r${dst} ${off < 0 ? '-' : '+'} 0x${Math.abs(off).toString(16)}`;
  if (imm === BPF_XCHG) return `${r}${src} = xchg${bits === '64' ? '' : '32'}_${bits}(${addr}, ${r}${src})`;
  if (imm === BPF_CMPXCHG) return `${r}0 = cmpxchg${bits === '64' ? '' : '32'}_${bits}(${addr}, ${r}0, ${r}${src})`;
  const name = ATOMIC_NAME[imm & ~BPF_FETCH];
  if (!name || (size !== BPF_DW && size !== BPF_W)) return `<atomic 0x${(imm >>> 0).toString(16)}>`;
  if (imm & BPF_FETCH) return `${r}${src} = atomic_fetch_${name}((${SIZE_NAME[size]} *)(${addr}), ${r}${src})`;
  return `lock ${memRef(size, dst, off)} ${ALU_SYM[imm]} ${r}${src}`;
}

const hex = (v: number) => (v < 0 ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`);
const rel = (v: number) => (v < 0 ? `-0x${(-v).toString(16)}` : `+0x${v.toString(16)}`);
const memRef = (size: number, reg: number, off: number) => `*(${SIZE_NAME[size]} *)(r${reg} ${off < 0 ? '-' : '+'} 0x${Math.abs(off).toString(16)})`;

/**
 * One instruction as text, in llvm-objdump's BPF syntax where it has one (`r1 = *(u32 *)(r2 + 0x8)`,
 * `if r1 == 0x0 goto +0x6`, `r1 = 0x0 ll`); pseudo sources are annotated (`call pc+18`,
 * `r1 = map_fd[3] ll`). Good enough for error messages and diffs, not a full assembler syntax.
 */
export function formatInsn(bytes: Uint8Array, i: number): string {
  const { code, dst, src, off, imm } = readInsn(bytes, i);
  const cls = insnClass(code);
  const op = code & 0xf0;
  const size = code & 0x18;
  const mode = code & 0xe0;
  switch (cls) {
    case BPF_ALU:
    case BPF_ALU64: {
      const r = cls === BPF_ALU64 ? 'r' : 'w';
      const srcOp = code & BPF_X ? `${r}${src}` : hex(imm);
      if (op === BPF_NEG) return `${r}${dst} = -${r}${dst}`;
      if (op === BPF_END) {
        const kind = cls === BPF_ALU64 ? 'bswap' : code & BPF_X ? 'be' : 'le';
        return `r${dst} = ${kind}${imm} r${dst}`;
      }
      if ((op === BPF_DIV || op === BPF_MOD) && off === 1) return `${r}${dst} s${ALU_SYM[op]} ${srcOp}`;
      if (op === BPF_MOV && code & BPF_X && off > 0) return `${r}${dst} = (s${off})${r}${src}`;
      const sym = ALU_SYM[op];
      return sym ? `${r}${dst} ${sym} ${srcOp}` : `<alu op 0x${code.toString(16)}>`;
    }
    case BPF_JMP:
    case BPF_JMP32: {
      if (cls === BPF_JMP && op === BPF_CALL) {
        if (src === BPF_PSEUDO_CALL) return `call pc${imm < 0 ? '' : '+'}${imm}`;
        if (src === BPF_PSEUDO_KFUNC_CALL) return `call kfunc#${imm}`;
        return `call ${hex(imm)}`;
      }
      if (cls === BPF_JMP && op === BPF_EXIT) return 'exit';
      // gotox: an indirect jump to the instruction a register holds (read from a jump table).
      if (op === BPF_JA && cls === BPF_JMP && code & BPF_X) return `gotox r${dst}`;
      if (op === BPF_JA) return cls === BPF_JMP32 ? `gotol ${rel(imm)}` : `goto ${rel(off)}`;
      const r = cls === BPF_JMP ? 'r' : 'w';
      const sym = JMP_SYM[op];
      if (!sym) return `<jmp op 0x${code.toString(16)}>`;
      return `if ${r}${dst} ${sym} ${code & BPF_X ? `${r}${src}` : hex(imm)} goto ${rel(off)}`;
    }
    case BPF_LD: {
      if (code === LD_IMM64) {
        if (i + 1 >= insnCount(bytes)) return `r${dst} = ${hex(imm)} ll <truncated>`;
        const hi = readInsn(bytes, i + 1).imm;
        const pseudo = LD_PSEUDO[src];
        if (pseudo) return `r${dst} = ${pseudo}[${imm}]${hi ? `+${hex(hi)}` : ''} ll`;
        const v = BigInt.asIntN(64, readImm64(bytes, i));
        return `r${dst} = ${v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`} ll`;
      }
      if (mode === BPF_ABS) return `r0 = *(${SIZE_NAME[size]} *)skb[${hex(imm)}]`;
      if (mode === BPF_IND) return `r0 = *(${SIZE_NAME[size]} *)skb[r${src}${imm ? ` + ${hex(imm)}` : ''}]`;
      return `<ld 0x${code.toString(16)}>`;
    }
    case BPF_LDX:
      if (mode === BPF_MEMSX) return `r${dst} = *(s${SIZE_NAME[size]!.slice(1)} *)(r${src} ${off < 0 ? '-' : '+'} 0x${Math.abs(off).toString(16)})`;
      return `r${dst} = ${memRef(size, src, off)}`;
    case BPF_ST:
      return `${memRef(size, dst, off)} = ${hex(imm)}`;
    case BPF_STX:
      if (mode === BPF_ATOMIC) return formatAtomic(size, dst, src, off, imm);
      return `${memRef(size, dst, off)} = r${src}`;
    default:
      return `<0x${code.toString(16)}>`;
  }
}

/** A whole instruction stream, one `index: text` line per instruction (ld_imm64 takes two slots). */
export function disassemble(bytes: Uint8Array): string[] {
  const out: string[] = [];
  const n = insnCount(bytes);
  for (let i = 0; i < n; i++) {
    out.push(`${String(i).padStart(5)}: ${formatInsn(bytes, i)}`);
    if (bytes[i * INSN_SIZE] === LD_IMM64) i++;
  }
  return out;
}
