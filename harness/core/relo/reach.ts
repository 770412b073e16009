// Which instructions of a program can run, given the constants CO-RE relocation wrote into it.
//
// After relocation, `bpf_core_field_exists()` and friends are plain `rX = 0/1` moves followed by
// branches; the kernel verifier follows only the branch a known constant selects, so a poisoned
// instruction behind a false existence check is dead code and the program still loads. This is a
// small abstract interpreter that tracks which registers hold known constants and explores
// every path the verifier could, so `relocate` can say, offline, whether a poisoned relocation
// will make the load fail. It is deliberately conservative: when unsure it explores both ways
// (more "reachable" than the verifier, never less).

const LD = 0x00, LDX = 0x01, ST = 0x02, STX = 0x03, ALU = 0x04, JMP = 0x05, JMP32 = 0x06, ALU64 = 0x07;
const MASK64 = (1n << 64n) - 1n;

/** A pointer into known read-only memory: the ld_imm64 that produced it, and a byte offset. */
interface Ptr {
  mem: number;
  off: number;
}
type Val = bigint | Ptr | undefined;
type Regs = Val[];

/**
 * Read-only memory whose bytes are known before load, keyed by the index of the ld_imm64 that
 * takes its address: the `.kconfig` map once the loader has filled it (frozen, so the verifier
 * reads loads from it as constants and prunes the branches they decide, exactly as it does for
 * CO-RE constants). `offset` is where that instruction points inside `bytes`.
 */
export type KnownMemory = ReadonlyMap<number, { bytes: Uint8Array; offset: number }>;

const isPtr = (v: Val): v is Ptr => typeof v === 'object';
const scalar = (v: Val): bigint | undefined => (typeof v === 'bigint' ? v : undefined);
const show = (v: Val): string => (v === undefined ? '?' : isPtr(v) ? `m${v.mem}+${v.off}` : v.toString(16));
/** Register states per instruction before the walk stops tracking constants there. */
const WIDEN_AFTER = 64;
const UNKNOWN: Regs = new Array(11).fill(undefined);

function alu(op: number, a: bigint, b: bigint, is64: boolean): bigint | undefined {
  const w = is64 ? 64n : 32n;
  const m = is64 ? MASK64 : 0xffffffffn;
  a &= m;
  b &= m;
  let r: bigint;
  switch (op) {
    case 0x00: r = a + b; break; // add
    case 0x10: r = a - b; break; // sub
    case 0x20: r = a * b; break; // mul
    case 0x40: r = a | b; break; // or
    case 0x50: r = a & b; break; // and
    case 0x60: r = a << (b & (w - 1n)); break; // lsh
    case 0x70: r = a >> (b & (w - 1n)); break; // rsh
    case 0xa0: r = a ^ b; break; // xor
    case 0xb0: r = b; break; // mov
    case 0xc0: r = BigInt.asUintN(Number(w), BigInt.asIntN(Number(w), a) >> (b & (w - 1n))); break; // arsh
    default: return undefined;
  }
  return r & m;
}

/** A BPF_MEM load of size code `sz` (W 0x00, H 0x08, B 0x10, DW 0x18) from known bytes, zero-extended. */
function loadKnown(bytes: Uint8Array, at: number, sz: number): bigint | undefined {
  const n = sz === 0x00 ? 4 : sz === 0x08 ? 2 : sz === 0x10 ? 1 : 8;
  if (!Number.isSafeInteger(at) || at < 0 || at + n > bytes.length) return undefined;
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i]!);
  return v;
}

function cond(op: number, a: bigint, b: bigint, is64: boolean): boolean | undefined {
  const m = is64 ? MASK64 : 0xffffffffn;
  const bits = is64 ? 64 : 32;
  a &= m;
  b &= m;
  const sa = BigInt.asIntN(bits, a);
  const sb = BigInt.asIntN(bits, b);
  switch (op) {
    case 0x10: return a === b; // jeq
    case 0x20: return a > b; // jgt
    case 0x30: return a >= b; // jge
    case 0x40: return (a & b) !== 0n; // jset
    case 0x50: return a !== b; // jne
    case 0x60: return sa > sb; // jsgt
    case 0x70: return sa >= sb; // jsge
    case 0xa0: return a < b; // jlt
    case 0xb0: return a <= b; // jle
    case 0xc0: return sa < sb; // jslt
    case 0xd0: return sa <= sb; // jsle
    default: return undefined;
  }
}

/** A step budget shared by several walks (all sections of one object): `left` counts down. */
export interface StepBudget {
  left: number;
}

/**
 * Marks the instructions reachable from `entry` (an index into `insns`, 8 bytes each), or from
 * any of several entries (every function of a section) under ONE budget: a section of many
 * functions must not multiply the work. Pass a StepBudget to share it across sections too.
 * Returns undefined when the budget runs out (caller should assume "reachable").
 */
export function reachable(insns: Uint8Array, entry: number | readonly number[] = 0, budget: number | StepBudget = 200_000, known?: KnownMemory): Uint8Array | undefined {
  if (typeof budget === 'number') return reachable(insns, entry, { left: budget }, known);
  const n = insns.length >> 3;
  const dv = new DataView(insns.buffer, insns.byteOffset, insns.byteLength);
  const seen = new Uint8Array(n);
  const visited = new Set<string>();
  const states = new Uint16Array(n);
  const entries = typeof entry === 'number' ? [entry] : entry;
  const work: [number, Regs][] = entries.map((e): [number, Regs] => [e, new Array(11).fill(undefined)]).reverse();
  while (work.length) {
    let [pc, regs] = work.pop()!;
    for (;;) {
      if (pc < 0 || pc >= n) break;
      if (--budget.left < 0) return undefined;
      // Widening: once an instruction has been reached with WIDEN_AFTER different register states
      // (a loop counting a known register), forget what is known there. Unknown explores both
      // ways, so this only ever adds reachable instructions, and every loop ends in a few steps.
      if (states[pc]! >= WIDEN_AFTER && regs.some((r) => r !== undefined)) regs = UNKNOWN;
      const key = pc + ':' + regs.map(show).join(',');
      if (visited.has(key)) break;
      visited.add(key);
      states[pc]!++;
      seen[pc] = 1;
      const at = pc * 8;
      const code = dv.getUint8(at);
      const dst = dv.getUint8(at + 1) & 0x0f;
      const src = dv.getUint8(at + 1) >> 4;
      const off = dv.getInt16(at + 2, true);
      const imm = dv.getInt32(at + 4, true);
      const cls = code & 0x07;
      const op = code & 0xf0;
      const useX = (code & 0x08) !== 0;
      if (cls === LD) {
        if (code === 0x18) {
          if (pc + 1 >= n) break; // a truncated ld_imm64 in the last slot: the verifier rejects it, nothing runs after
          seen[pc + 1] = 1;
          const hi = BigInt(dv.getUint32(at + 12, true));
          regs = regs.slice();
          const mem = known?.get(pc);
          regs[dst] = mem ? { mem: pc, off: mem.offset } : src === 0 ? ((hi << 32n) | BigInt(dv.getUint32(at + 4, true))) : undefined;
          pc += 2;
          continue;
        }
        regs = regs.slice();
        regs[0] = undefined; // legacy packet loads
        pc++;
        continue;
      }
      if (cls === LDX) {
        const base = regs[src];
        regs = regs.slice();
        regs[dst] = isPtr(base) && (code & 0xe0) === 0x60 ? loadKnown(known!.get(base.mem)!.bytes, base.off + off, code & 0x18) : undefined;
        pc++;
        continue;
      }
      if (cls === ST || cls === STX) {
        if (cls === STX && (code & 0xe0) === 0xc0) {
          // atomic ops may write a register (fetch variants, cmpxchg r0)
          regs = regs.slice();
          regs[src] = undefined;
          regs[0] = undefined;
        }
        pc++;
        continue;
      }
      if (cls === ALU || cls === ALU64) {
        regs = regs.slice();
        const is64 = cls === ALU64;
        const bv = useX ? regs[src] : BigInt.asUintN(64, BigInt(imm));
        const b = scalar(bv);
        const a = regs[dst];
        if (op === 0x80) regs[dst] = undefined; // neg
        else if (op === 0xd0) regs[dst] = undefined; // endianness conversions
        else if (op === 0xb0) regs[dst] = isPtr(bv) ? (is64 ? bv : undefined) : b === undefined ? undefined : is64 ? b : b & 0xffffffffn;
        else if (isPtr(a)) {
          // pointer arithmetic the verifier tracks: add/sub of a known scalar, 64-bit only
          const d = b === undefined ? undefined : BigInt.asIntN(64, b);
          regs[dst] = is64 && d !== undefined && (op === 0x00 || op === 0x10) ? { mem: a.mem, off: a.off + Number(op === 0x00 ? d : -d) } : undefined;
        } else {
          const av = scalar(a);
          regs[dst] = av === undefined || b === undefined ? undefined : alu(op, av, b, is64);
        }
        pc++;
        continue;
      }
      if (cls === JMP || cls === JMP32) {
        if (cls === JMP && op === 0x90) break; // exit
        if (cls === JMP && op === 0x80) {
          // call: helper, kfunc, or bpf-to-bpf (src=1: explore the callee with unknown args)
          if (src === 1) work.push([pc + 1 + imm, new Array(11).fill(undefined)]);
          regs = regs.slice();
          for (let r = 0; r <= 5; r++) regs[r] = undefined;
          pc++;
          continue;
        }
        // gotox (an indirect jump through a jump table, BPF_JA | BPF_X): its targets are in an
        // instruction-array map, not in the code; give up, which the caller reads as "reachable".
        if (cls === JMP && op === 0x00 && useX) return undefined;
        if (op === 0x00) {
          // ja (JMP32 ja uses imm)
          pc += 1 + (cls === JMP32 ? imm : off);
          continue;
        }
        const a = scalar(regs[dst]);
        const b = useX ? scalar(regs[src]) : BigInt.asUintN(64, BigInt(imm));
        const taken = a === undefined || b === undefined ? undefined : cond(op, a, b, cls === JMP);
        if (taken === undefined) {
          work.push([pc + 1 + off, regs]);
          pc++;
        } else {
          pc = taken ? pc + 1 + off : pc + 1;
        }
        continue;
      }
      pc++;
    }
  }
  return seen;
}
