// Filling `.kconfig` externs: the value each `extern ... __kconfig` variable gets, encoded the
// way its C type wants it. Pure: the caller passes the parsed kernel config and the version.
//
// Encodings (as libbpf documents them): `bool` takes y/n; `char` takes the letter y/m/n;
// `enum libbpf_tristate` takes TRI_NO=0, TRI_YES=1, TRI_MODULE=2; integers take numeric values;
// `char[N]` takes a string. An option that is not set is "n" (zero). A strong (non-weak)
// extern whose option is absent from the config fails the load; a weak one stays zero.

import type { Btf } from './btf/btf.js';
import { INT_BOOL, INT_CHAR, INT_SIGNED, Kind } from './btf/kinds.js';
import { CoreMatrixError, oneLine } from './errors.js';
import type { ExternSpec } from './object/types.js';

export type ConfigValue = 'y' | 'm' | string | number;

export interface KconfigFacts {
  /** CONFIG_X → value, as parsed from the kernel's config (absent = not set). */
  config: ReadonlyMap<string, ConfigValue>;
  /** KERNEL_VERSION(a,b,c) of the running kernel. */
  linuxKernelVersion: number;
  /** Specials libbpf also provides; absent ones are left zero. */
  specials?: Record<string, number>;
}

export interface KconfigResolution {
  name: string;
  /** What was written (null: left zero because the option is absent and the extern is weak). */
  value: string | number | boolean | null;
}

export class KconfigError extends CoreMatrixError {
  override name = 'KconfigError';
  constructor(message: string) {
    super(oneLine(message)); // extern names come from the object's BTF
  }
}

/** Writes a little-endian integer; false for a size no C integer has. */
function writeInt(dv: DataView, off: number, size: number, v: bigint): boolean {
  switch (size) {
    case 1: dv.setUint8(off, Number(BigInt.asUintN(8, v))); return true;
    case 2: dv.setUint16(off, Number(BigInt.asUintN(16, v)), true); return true;
    case 4: dv.setUint32(off, Number(BigInt.asUintN(32, v)), true); return true;
    case 8: dv.setBigUint64(off, BigInt.asUintN(64, v), true); return true;
    default: return false;
  }
}

/**
 * Writes every kconfig extern's value into `data` (the `.kconfig` map value). Errors name the
 * object through its BTF's source (`x.bpf.o: .BTF: extern CONFIG_X (kconfig): ...`).
 */
export function fillKconfig(btf: Btf, externs: readonly ExternSpec[], data: Uint8Array, facts: KconfigFacts): KconfigResolution[] {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const where = btf.source;
  const out: KconfigResolution[] = [];
  for (const e of externs) {
    if (e.kind !== 'kconfig') continue;
    const off = e.offset ?? 0;
    const size = e.size ?? 0;
    if (off + size > data.length) throw new KconfigError(`${where}: extern ${e.name}: offset ${off}+${size} outside .kconfig (${data.length} bytes)`);
    const tid = btf.skipModsAndTypedefs(e.valueTypeId);
    const t = btf.type(tid);
    const fail = (why: string) => new KconfigError(`${where}: extern ${e.name} (kconfig): ${why}`);
    let raw: ConfigValue | undefined;
    if (e.name === 'LINUX_KERNEL_VERSION') raw = facts.linuxKernelVersion;
    else if (facts.specials && e.name in facts.specials) raw = facts.specials[e.name];
    else if (e.name.startsWith('CONFIG_')) raw = facts.config.get(e.name);
    // libbpf: a LINUX_* extern it does not fill stays zero when __weak; anything else is refused.
    else if (!e.name.startsWith('LINUX_') || !e.weak) throw fail('only CONFIG_* options and the LINUX_* externs libbpf fills are known');
    if (raw === undefined) {
      if (!e.weak) throw fail('not set in the kernel config, and the extern is not __weak');
      out.push({ name: e.name, value: null });
      continue;
    }
    let written: string | number | boolean;
    if (t.kind === Kind.INT && (t.encoding & INT_BOOL) !== 0) {
      // y/n, or a number that is 0 or 1 (libbpf's rule; its LINUX_HAS_* externs are bools).
      if (raw !== 'y' && raw !== 'n' && raw !== 0 && raw !== 1) throw fail(`value '${raw}' for a bool`);
      written = raw === 'y' || raw === 1;
      dv.setUint8(off, written ? 1 : 0);
    } else if (t.kind === Kind.INT && (t.encoding & INT_CHAR) !== 0 && t.size === 1 && (raw === 'y' || raw === 'm' || raw === 'n')) {
      dv.setUint8(off, raw.charCodeAt(0));
      written = raw;
    } else if (t.kind === Kind.ENUM && (raw === 'y' || raw === 'm' || raw === 'n')) {
      const v = raw === 'y' ? 1 : raw === 'm' ? 2 : 0;
      if (!writeInt(dv, off, t.size, BigInt(v))) throw fail(`enum of ${t.size} bytes`);
      written = raw;
    } else if (t.kind === Kind.INT || t.kind === Kind.ENUM || t.kind === Kind.ENUM64) {
      if (!/^-?(0x[0-9a-f]+|\d+)$/i.test(String(raw))) throw fail(`value '${raw}' is not an integer`);
      // BigInt() takes "0x10" but not "-0x10": parse the sign apart.
      const text = String(raw);
      const big = text.startsWith('-') ? -BigInt(text.slice(1)) : BigInt(text);
      const signed = t.kind === Kind.INT ? (t.encoding & INT_SIGNED) !== 0 : t.signed;
      const bits = BigInt(t.size * 8);
      const fits = signed ? big >= -(1n << (bits - 1n)) && big < 1n << (bits - 1n) : big >= 0n && big < 1n << bits;
      if (!fits) throw fail(`value ${raw} does not fit ${t.size} bytes`);
      if (!writeInt(dv, off, t.size, big)) throw fail(`integer of ${t.size} bytes`);
      written = Number(big);
    } else if (t.kind === Kind.ARRAY && btf.sizeOf(t.type) === 1) {
      // As libbpf: a string longer than the array is truncated to nelems - 1 bytes, NUL-terminated.
      const s = new TextEncoder().encode(String(raw)).subarray(0, Math.max(0, t.nelems - 1));
      data.set(s, off);
      data[off + s.length] = 0;
      written = new TextDecoder().decode(s);
    } else {
      throw fail(`unsupported type ${btf.typeName(tid)}`);
    }
    out.push({ name: e.name, value: written });
  }
  return out;
}
