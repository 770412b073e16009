// A tiny eBPF instruction encoder for feature probes and runtime self-tests (hand-assembled
// programs of a few instructions). Real programs come from clang via the object loader.
// Encoding: u8 opcode, u8 dst:4|src:4 (dst in the low nibble), s16 off, s32 imm, little endian.

export type Insn = Uint8Array;

export function insn(op: number, dst: number, src: number, off: number, imm: number): Insn {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint8(0, op);
  dv.setUint8(1, ((src & 0xf) << 4) | (dst & 0xf));
  dv.setInt16(2, off, true);
  dv.setInt32(4, imm | 0, true);
  return b;
}

/** Concatenates instructions (some helpers return two) into program bytes. */
export function assemble(...parts: (Insn | Insn[])[]): Uint8Array {
  const flat = parts.flat();
  const out = new Uint8Array(flat.length * 8);
  flat.forEach((p, i) => out.set(p, i * 8));
  return out;
}

export const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R5 = 5, R6 = 6, R10 = 10;

/** dst = imm (64-bit move, sign-extended). */
export const movImm = (dst: number, imm: number) => insn(0xb7, dst, 0, 0, imm);
/** dst = src. */
export const movReg = (dst: number, src: number) => insn(0xbf, dst, src, 0, 0);
/** dst += imm. */
export const addImm = (dst: number, imm: number) => insn(0x07, dst, 0, 0, imm);
/** *(u32 *)(dst + off) = imm. */
export const stW = (dst: number, off: number, imm: number) => insn(0x62, dst, 0, off, imm);
/** *(u64 *)(dst + off) = imm (sign-extended). */
export const stDW = (dst: number, off: number, imm: number) => insn(0x7a, dst, 0, off, imm);
/** *(u64 *)(dst + off) = src. */
export const stxDW = (dst: number, off: number, src: number) => insn(0x7b, dst, src, off, 0);
/** dst = *(u32 *)(src + off). */
export const ldxW = (dst: number, src: number, off: number) => insn(0x61, dst, src, off, 0);
/** dst = *(u64 *)(src + off). */
export const ldxDW = (dst: number, src: number, off: number) => insn(0x79, dst, src, off, 0);
/** if dst == imm goto +off. */
export const jeqImm = (dst: number, imm: number, off: number) => insn(0x15, dst, 0, off, imm);
/** goto +off. */
export const ja = (off: number) => insn(0x05, 0, 0, off, 0);
/** call helper `id`. */
export const call = (id: number) => insn(0x85, 0, 0, 0, id);
/** exit. */
export const exit = () => insn(0x95, 0, 0, 0, 0);
/** dst = map (BPF_LD_IMM64 with src = BPF_PSEUDO_MAP_FD): two instructions. */
export const ldMapFd = (dst: number, fd: number): Insn[] => [insn(0x18, dst, 1, 0, fd), insn(0, 0, 0, 0, 0)];
/** dst = imm64: two instructions. */
export const ldImm64 = (dst: number, v: bigint): Insn[] => [
  insn(0x18, dst, 0, 0, Number(BigInt.asIntN(32, v))),
  insn(0, 0, 0, 0, Number(BigInt.asIntN(32, v >> 32n))),
];
