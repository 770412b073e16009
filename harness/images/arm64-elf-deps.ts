// What the dynamic loader needs to start an ELF executable or load a shared library, read from the
// file itself: its interpreter (PT_INTERP), the libraries it names (DT_NEEDED), its own soname and
// its search path (DT_RUNPATH / DT_RPATH). `ldd` runs the target's own loader, so it cannot answer
// for another arch's binaries (an arm64 node on an x86-64 host); these bytes can. Pure: bytes in.
import { FormatError } from '../core/errors.js';
import { parseBinary, PT_LOAD } from '../core/binary.js';

const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;

export interface DynamicDeps {
  /** e_machine (183: aarch64, 62: x86-64). */
  machine: number;
  /** PT_INTERP's path (executables), e.g. /lib/ld-linux-aarch64.so.1. */
  interpreter?: string;
  /** DT_NEEDED, in order. */
  needed: string[];
  soname?: string;
  /** DT_RUNPATH, else DT_RPATH, split at ':' (may hold $ORIGIN). */
  runpath: string[];
}

/** Reads a 64-bit little-endian ELF's dynamic dependencies (none for a static file). */
export function dynamicDeps(bytes: Uint8Array, source: string): DynamicDeps {
  const elf = parseBinary(bytes, source);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: DynamicDeps = { machine: elf.machine, needed: [], runpath: [] };
  const cstr = (start: number, end: number, what: string): string => {
    const nul = bytes.subarray(start, end).indexOf(0);
    if (start >= end || nul < 0) throw new FormatError(`${source}: ${what} is not a NUL-terminated string inside the file`);
    return new TextDecoder().decode(bytes.subarray(start, start + nul));
  };
  const interp = elf.segments.find((s) => s.type === PT_INTERP);
  if (interp) out.interpreter = cstr(interp.offset, Math.min(bytes.length, interp.offset + interp.filesz), 'PT_INTERP');
  const dyn = elf.segments.find((s) => s.type === PT_DYNAMIC);
  if (!dyn) return out;
  if (dyn.offset + dyn.filesz > bytes.length) throw new FormatError(`${source}: PT_DYNAMIC extends past the end of the file`);
  const entries: [number, bigint][] = [];
  for (let p = dyn.offset; p + 16 <= dyn.offset + dyn.filesz; p += 16) {
    const tag = Number(dv.getBigInt64(p, true));
    if (tag === DT_NULL) break;
    entries.push([tag, dv.getBigUint64(p + 8, true)]);
  }
  const strtabAddr = entries.find(([t]) => t === DT_STRTAB)?.[1];
  const strsz = Number(entries.find(([t]) => t === DT_STRSZ)?.[1] ?? 0n);
  if (strtabAddr === undefined) {
    if (entries.some(([t]) => t === DT_NEEDED || t === DT_SONAME)) throw new FormatError(`${source}: dynamic section names libraries but has no DT_STRTAB`);
    return out;
  }
  // DT_STRTAB is a virtual address: where the PT_LOAD segment holding it puts it in the file.
  const strtab = elf.fileOffset(Number(strtabAddr));
  if (strtab === undefined || !elf.segments.some((s) => s.type === PT_LOAD)) throw new FormatError(`${source}: DT_STRTAB 0x${strtabAddr.toString(16)} lies in no PT_LOAD segment`);
  const end = Math.min(bytes.length, strtab + (strsz || bytes.length));
  const str = (v: bigint, what: string) => cstr(strtab + Number(v), end, what);
  let rpath: string | undefined;
  let runpath: string | undefined;
  for (const [tag, v] of entries) {
    if (tag === DT_NEEDED) out.needed.push(str(v, 'a DT_NEEDED name'));
    else if (tag === DT_SONAME) out.soname = str(v, 'DT_SONAME');
    else if (tag === DT_RUNPATH) runpath = str(v, 'DT_RUNPATH');
    else if (tag === DT_RPATH) rpath = str(v, 'DT_RPATH');
  }
  // The loader ignores DT_RPATH when DT_RUNPATH is present.
  out.runpath = (runpath ?? rpath ?? '').split(':').filter(Boolean);
  return out;
}
