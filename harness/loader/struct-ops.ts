// Struct_ops maps, made and registered as libbpf makes and registers them. A `SEC(".struct_ops")`
// (or `.struct_ops.link`) variable is a kernel ops table (`struct tcp_congestion_ops`) written
// against the object's own, usually partial, copy of the struct. In the running kernel it becomes
// a BPF_MAP_TYPE_STRUCT_OPS map whose value is the kernel's `struct bpf_struct_ops_<name>`: the
// kernel's struct sits in it as one member, each function pointer holds a program fd, each data
// member the object sets (`name`) is copied into the kernel's member of the same name.
//
// Two halves: `planStructOps` (pure: the object's table + the kernel's BTF → the map's definition,
// the value's bytes, where each program's fd goes; the errors name the table and member), and the
// runtime (`createStructOpsMap` at load, `registerStructOps` at attach: BPF_MAP_UPDATE_ELEM key 0
// registers; for `.struct_ops.link` maps, created with BPF_F_LINK, BPF_LINK_CREATE does (6.4+)).
// The Link a registration returns unregisters on close(): it deletes the element, or closes the link.
// For a TCP congestion control, `withDefaultCongestionControl` makes a workload's sockets take it.

import { readFileSync, writeFileSync } from 'node:fs';
import { essentialName, type Btf, type Member } from '../core/btf/btf.js';
import { Kind } from '../core/btf/kinds.js';
import { CoreMatrixError } from '../core/errors.js';
import { AttachType } from '../core/object/sections.js';
import type { StructOpsSpec } from '../core/object/types.js';
import { MapType } from '../core/object/maps.js';
import { linkCreate } from '../runtime/bpf.js';
import { BpfMap, Link, SyscallError, errnoNumber, u32, type Program } from '../runtime/index.js';
import type { AttachVerdict } from './attach.js';

/** BPF_F_LINK (map_flags): the struct_ops map is registered through a bpf_link (6.4+). */
export const BPF_F_LINK = 1 << 13;

/** What one struct_ops table is in a given kernel: the map to create and how to fill its value. */
export interface StructOpsPlan {
  /** The table's variable name: the map's name. */
  name: string;
  /** The kernel struct it fills (`tcp_congestion_ops`). */
  struct: string;
  /** Declared in `.struct_ops.link`: created with BPF_F_LINK, registered by BPF_LINK_CREATE. */
  link: boolean;
  /** The kernel's `struct bpf_struct_ops_<struct>`: btf_vmlinux_value_type_id, and its size is value_size. */
  valueTypeId: number;
  valueSize: number;
  /** The kernel's struct (the id struct_ops programs load with as attach_btf_id). */
  kernelStructId: number;
  /** Where the kernel's struct starts inside the value. */
  dataOffset: number;
  /** The value with the object's data members copied in and every program slot 0. */
  template: Uint8Array;
  /** Where each program's fd goes (byte offset in the value). */
  slots: { member: string; program: string; offset: number }[];
  /** Members of the object's struct the kernel's lacks, left out because they are zero (libbpf's rule). */
  skipped: string[];
  /** The kernel has struct_ops links (its BTF has `struct bpf_struct_ops_link`, 6.4+). */
  kernelHasLinks: boolean;
}

function structByName(btf: Btf, name: string): number | undefined {
  return btf.byName(name).find((i) => btf.kind(i) === Kind.STRUCT);
}

function isZero(b: Uint8Array): boolean {
  return b.every((x) => x === 0);
}

/** A pointer to a function (through typedefs and modifiers on either side of the pointer). */
function isFuncPtr(btf: Btf, id: number): boolean {
  const t = btf.type(btf.skipModsAndTypedefs(id));
  return t.kind === Kind.PTR && btf.kind(btf.skipModsAndTypedefs(t.type)) === Kind.FUNC_PROTO;
}

/**
 * The table's map and value in the kernel whose BTF is `kernelBtf`. Member by member of the
 * object's struct, as libbpf matches them: by name; a function pointer that names a program gets a
 * slot (the kernel's member must be a function pointer too); a data member is copied into the
 * kernel's member of the same name, which must be of the same kind and size; a member the kernel's
 * struct lacks is an error unless the object leaves it zero (a program there is then not loaded,
 * see Collection.resolveStructOps); members only the kernel has stay zero. Bitfields are refused.
 */
export function planStructOps(table: StructOpsSpec, objBtf: Btf, kernelBtf: Btf, source: string): StructOpsPlan {
  // The kernel's struct by the local one's essential name: `tcp_congestion_ops___x` is a `tcp_congestion_ops` (libbpf's rule).
  const struct = essentialName(table.type);
  const where = `${source}: struct_ops ${table.name} (struct ${struct})`;
  const kb = kernelBtf;
  const valueName = `bpf_struct_ops_${struct}`;
  const valueTypeId = structByName(kb, valueName);
  if (valueTypeId === undefined) throw new CoreMatrixError(`${where}: struct ${valueName} is not found in the kernel's BTF (the kernel has no struct_ops of this type)`);
  const value = kb.type(valueTypeId);
  if (value.kind !== Kind.STRUCT) throw new CoreMatrixError(`${where}: ${valueName} is not a struct`);
  // The kernel's struct is the value's member of that struct type (after refcnt/state, or `common`).
  const dataMember = value.members.find((m) => {
    const id = kb.skipModsAndTypedefs(m.type);
    return kb.kind(id) === Kind.STRUCT && kb.name(id) === struct;
  });
  if (!dataMember) throw new CoreMatrixError(`${where}: the kernel's ${valueName} has no member of type struct ${struct}`);
  const kernelStructId = kb.skipModsAndTypedefs(dataMember.type);
  const kernelStruct = kb.type(kernelStructId);
  if (kernelStruct.kind !== Kind.STRUCT) throw new CoreMatrixError(`${where}: the kernel's ${struct} is not a struct`);
  const dataOffset = dataMember.bitOffset / 8;

  const local = objBtf.type(objBtf.skipModsAndTypedefs(table.typeId));
  if (local.kind !== Kind.STRUCT) throw new CoreMatrixError(`${where}: the object's type #${table.typeId} is not a struct`);
  const valueSize = kb.sizeOf(valueTypeId);
  const template = new Uint8Array(valueSize);
  const slots: StructOpsPlan['slots'] = [];
  const skipped: string[] = [];
  const bitfield = (m: Member) => m.bitfieldSize !== 0 || m.bitOffset % 8 !== 0;

  for (const m of local.members) {
    const what = `${where}: member '${m.name}'`;
    if (bitfield(m)) throw new CoreMatrixError(`${what}: bitfield members are not supported`);
    const off = m.bitOffset / 8;
    const size = objBtf.sizeOf(m.type);
    if (off + size > table.data.length) throw new CoreMatrixError(`${what}: lies past the end of the table's ${table.data.length} bytes`);
    const bytes = table.data.subarray(off, off + size);
    const program = table.programs.find((p) => p.member === m.name)?.program;
    const km = kernelStruct.members.find((k) => k.name === m.name);
    if (!km) {
      // A function pointer's slot is zero in the ELF (the program is named by a relocation), but
      // libbpf (1.4 on) keeps the program in its copy of the table, so a callback the object sets
      // is "set" there as much as a data member: the kernel lacking it refuses the object.
      if (!isZero(bytes)) throw new CoreMatrixError(`${what}: set in the object, but the kernel's struct ${struct} has no member '${m.name}'`);
      if (program) throw new CoreMatrixError(`${what}: names program '${program}', but the kernel's struct ${struct} has no member '${m.name}'`);
      skipped.push(m.name);
      continue;
    }
    if (bitfield(km)) throw new CoreMatrixError(`${what}: the kernel's member is a bitfield, which is not supported`);
    const kOff = dataOffset + km.bitOffset / 8;
    if (objBtf.kind(objBtf.skipModsAndTypedefs(m.type)) === Kind.PTR) {
      if (program === undefined) continue; // a NULL callback: left zero
      if (!isFuncPtr(kb, km.type)) throw new CoreMatrixError(`${what}: names program '${program}', but the kernel's member is ${kb.typeName(km.type)}, not a function pointer`);
      slots.push({ member: m.name, program, offset: kOff });
      continue;
    }
    const lk = objBtf.kind(objBtf.skipModsAndTypedefs(m.type));
    const kk = kb.kind(kb.skipModsAndTypedefs(km.type));
    const kSize = kb.sizeOf(km.type);
    if (lk !== kk || kSize !== size) {
      throw new CoreMatrixError(`${what}: the object's ${objBtf.typeName(m.type)} (${size} bytes) does not match the kernel's ${kb.typeName(km.type)} (${kSize} bytes)`);
    }
    template.set(bytes, kOff);
  }
  return {
    name: table.name, struct, link: table.section === '.struct_ops.link',
    valueTypeId, valueSize, kernelStructId, dataOffset, template, slots, skipped,
    kernelHasLinks: structByName(kb, 'bpf_struct_ops_link') !== undefined,
  };
}

/** The value to register: the template with each program's fd in its slot (a u64, as the kernel reads it). */
export function structOpsValue(plan: StructOpsPlan, fdOf: (program: string) => number): Uint8Array {
  const v = new Uint8Array(plan.template);
  const dv = new DataView(v.buffer);
  for (const s of plan.slots) dv.setBigUint64(s.offset, BigInt(fdOf(s.program)), true);
  return v;
}

const EINVAL = errnoNumber('EINVAL');
const ENOTSUPP = errnoNumber('ENOTSUPP');

/**
 * BPF_MAP_CREATE of the table's map, as libbpf creates it: key 4 bytes, one entry, the kernel's
 * value type (btf_vmlinux_value_type_id, with the object's BTF as btf_fd), BPF_F_LINK for
 * `.struct_ops.link`. Its value is written when it is registered (the programs' fds go in it).
 */
export function createStructOpsMap(plan: StructOpsPlan, btfFd: number, source: string): BpfMap {
  const where = `${source}: struct_ops ${plan.name} (struct ${plan.struct})`;
  if (btfFd < 0) throw new CoreMatrixError(`${where}: needs the object's BTF in the kernel (btf_fd), which it refused`);
  try {
    return BpfMap.create({
      mapType: MapType.STRUCT_OPS, keySize: 4, valueSize: plan.valueSize, maxEntries: 1, mapFlags: plan.link ? BPF_F_LINK : 0,
      name: plan.name, btfFd, btfVmlinuxValueTypeId: plan.valueTypeId,
    });
  } catch (e) {
    if (e instanceof SyscallError) {
      e.message = `${source}: ${e.message}`;
      if (e.errno === EINVAL && plan.link && !plan.kernelHasLinks) e.message += ': kernel lacks struct_ops links (BPF_F_LINK, needs Linux 6.4 or later) for .struct_ops.link';
      // 5.10 knows its struct_ops types only after it parsed its own BTF, at the first program load.
      else if (e.errno === ENOTSUPP) e.message += `: the kernel knows no struct_ops value type ${plan.valueTypeId} (bpf_struct_ops_${plan.struct}) yet; 5.10 learns them at its first program load`;
    }
    throw e;
  }
}

/** One table's registration: the verdict every program it names gets, and the Link that unregisters it. */
export interface StructOpsRegistration {
  map: string;
  struct: string;
  /** The loaded programs the table names (each gets `verdict`). */
  programs: string[];
  verdict: AttachVerdict;
  link?: Link;
}

/**
 * Registers every struct_ops map: fills its value with the programs' fds, then
 * BPF_MAP_UPDATE_ELEM key 0 (registers the ops), or for a BPF_F_LINK map the update then
 * BPF_LINK_CREATE(map fd, BPF_STRUCT_OPS). Never throws for a kernel's refusal: that is a
 * `failed` verdict naming the table.
 */
export function registerStructOps(plans: readonly StructOpsPlan[], maps: ReadonlyMap<string, BpfMap>, programs: ReadonlyMap<string, Program>): StructOpsRegistration[] {
  return plans.map((plan) => {
    const target = `struct_ops ${plan.name} (${plan.struct})`;
    const names = [...new Set(plan.slots.map((s) => s.program))].filter((p) => programs.has(p));
    const out = (verdict: AttachVerdict, link?: Link): StructOpsRegistration => ({ map: plan.name, struct: plan.struct, programs: names, verdict, ...(link ? { link } : {}) });
    const via = plan.link ? 'BPF_LINK_CREATE struct_ops' : 'BPF_MAP_UPDATE_ELEM struct_ops';
    const map = maps.get(plan.name);
    if (!map) return out({ status: 'failed', via, target, reason: `${target}: its map was not created` });
    const missing = plan.slots.filter((s) => !programs.has(s.program));
    if (missing.length) {
      return out({ status: 'failed', via, target, reason: `${target}: ${missing.map((s) => `program '${s.program}' (.${s.member})`).join(', ')} not loaded` });
    }
    try {
      return out({ status: 'attached', via, target }, register(plan, map, programs, target, via));
    } catch (e) {
      if (!(e instanceof CoreMatrixError)) throw e;
      return out({ status: 'failed', via, target, reason: `${target}: ${e.message.split('\n')[0]}` });
    }
  });
}

function register(plan: StructOpsPlan, map: BpfMap, programs: ReadonlyMap<string, Program>, target: string, via: string): Link {
  const key = u32(0);
  map.update(key, structOpsValue(plan, (p) => programs.get(p)!.fd));
  if (!plan.link) {
    // The map itself holds the registration: deleting its element unregisters the ops.
    return new Link(-1, 'legacy', target, via, () => {
      map.delete(key);
    });
  }
  // BPF_LINK_CREATE takes the map's fd where other links take a program's.
  return new Link(linkCreate({ progFd: map.fd, attachType: AttachType.STRUCT_OPS }, target), 'bpf_link', target, via);
}

const DEFAULT_CONGESTION_CONTROL = '/proc/sys/net/ipv4/tcp_congestion_control';

const AVAILABLE_CONGESTION_CONTROL = '/proc/sys/net/ipv4/tcp_available_congestion_control';

/** The TCP congestion controls the kernel has registered (what TCP_CONGESTION can select). */
export function availableCongestionControls(): string[] {
  try {
    return readFileSync(AVAILABLE_CONGESTION_CONTROL, 'utf8').trim().split(/\s+/);
  } catch {
    return [];
  }
}

/** Congestion controls registered since `before` was read: the kernel's own word on what an attach registered. */
export function registeredCongestionControls(before: readonly string[]): string[] {
  return availableCongestionControls().filter((c) => !before.includes(c));
}

/**
 * Runs `run` with `name` as the default TCP congestion control (net.ipv4.tcp_congestion_control),
 * so the TCP sockets it creates take the registered one; the previous default is restored after,
 * before anything unregisters it.
 */
export async function withDefaultCongestionControl<T>(name: string, run: () => Promise<T>): Promise<T> {
  const saved = readFileSync(DEFAULT_CONGESTION_CONTROL, 'utf8').trim();
  try {
    writeFileSync(DEFAULT_CONGESTION_CONTROL, name);
  } catch (e) {
    throw new CoreMatrixError(`cannot make ${name} the default TCP congestion control: ${(e as Error).message.split('\n')[0]}`);
  }
  try {
    return await run();
  } finally {
    writeFileSync(DEFAULT_CONGESTION_CONTROL, saved);
  }
}
