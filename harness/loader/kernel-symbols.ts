// The running kernel's symbols as a BPF object's load needs them, resolved as libbpf resolves
// them: ksym externs (kfuncs and typed variables by BTF id in vmlinux's or a loaded module's BTF,
// typeless ones by their kallsyms address) and BTF attach targets (fentry/fexit/lsm/tp_btf/iter),
// vmlinux first, then each module. Holds what the programs load with: the modules' BTF object
// fds (ld_imm64 of module ksyms, attach_btf_obj_fd) and the fd_array of module kfunc calls.
import { Btf, essentialName, parseBtf } from '../core/btf/btf.js';
import { Kind } from '../core/btf/kinds.js';
import { CoreMatrixError, RelocationError } from '../core/errors.js';
import { libbpfExternOrder } from '../core/object/externs.js';
import type { ExternSpec, ObjectSpec } from '../core/object/types.js';
import { typesCompatible } from '../core/relo/spec.js';
import { btfObjectBytes, moduleBtfObjects } from '../runtime/bpf.js';
import { close as closeFd, type Ksym } from '../runtime/index.js';
import type { LoadOptions } from './collection.js';

/**
 * A ksym as the running kernel resolved it: a typed one (a kfunc or a variable) by its BTF id in
 * vmlinux's or a module's BTF (btfObjFd: that module's BTF object fd, 0 for vmlinux; fdIndex: its
 * slot in the fd_array the programs load with, 0 for vmlinux), a typeless one by its kallsyms
 * address. Undefined in the map: a __weak one the kernel lacks.
 */
export type ResolvedKsym = { btfId: number; btfObjFd: number; fdIndex: number } | { addr: bigint };
export type Ksyms = Map<number, ResolvedKsym | undefined>;

/** A loaded module's kernel BTF object: its fd, its BTF (split on vmlinux's; parsed when first searched) and, once a kfunc of it resolves, its fd_array slot. */
export interface ModuleBtf {
  name: string;
  fd: number;
  btf?: Btf;
  fdIndex?: number;
}

/** libbpf's limit: a kfunc call's `off` (an s16) holds the module's fd_array index. */
const MAX_FD_ARRAY = 0x7fff;

export class KernelSymbols {
  /** The loaded modules' BTFs, read the first time a name is not in vmlinux's (libbpf's order: by BTF object id). */
  private moduleBtfList?: ModuleBtf[];
  /**
   * fd_array for every program of the object, as libbpf builds it: slot 0 unused, then the BTF
   * object fd of each module a kfunc is called from, in the order the kfuncs were resolved.
   */
  readonly fdArray: number[] = [];

  constructor(private readonly spec: ObjectSpec) {}

  /** Closes the module BTF fds and forgets the fd_array (a later load starts again). */
  close(): void {
    for (const m of this.moduleBtfList ?? []) closeFd(m.fd);
    this.moduleBtfList = undefined;
    this.fdArray.length = 0;
  }

  /**
   * Every ksym extern of the object, resolved once before any program loads, as libbpf resolves
   * them: object-wide and in libbpf's extern order, so a strong extern the kernel lacks fails the
   * whole object (even for programs that do not use it), and a __weak one stays unresolved. Typed
   * ones are looked up in vmlinux's BTF, then in each loaded module's (a kfunc by its name
   * without a `___flavour` suffix); typeless ones in /proc/kallsyms.
   */
  resolveKsyms(opts: LoadOptions): Ksyms {
    const out: Ksyms = new Map();
    let syms: Map<string, Ksym> | undefined;
    for (const i of libbpfExternOrder(this.spec.externs)) {
      const e = this.spec.externs[i]!;
      if (e.kind !== 'ksym') continue;
      if (e.func) out.set(i, this.resolveKfunc(e, opts));
      else if (e.typed) out.set(i, this.resolveKsymVar(e, opts));
      else {
        syms ??= opts.kallsyms?.(this.spec.externs.filter((x) => x.kind === 'ksym').map((x) => x.name)) ?? new Map();
        const sym = syms.get(e.name);
        if (!sym && !e.weak) throw new CoreMatrixError(`${this.spec.source}: extern (ksym) '${e.name}': not found in /proc/kallsyms`);
        out.set(i, sym ? { addr: sym.addr } : undefined);
      }
    }
    return out;
  }

  /**
   * A kfunc: its FUNC in the kernel's BTF (vmlinux's, else a module's) whose prototype is
   * compatible with the object's, as bpf_core_types_are_compat judges it. A module's BTF object
   * gets an fd_array slot, which the calls' `off` names (Linux 5.16+ reads it; on older kernels
   * the verifier refuses the call, as it does libbpf's).
   */
  private resolveKfunc(e: ExternSpec, opts: LoadOptions): ResolvedKsym | undefined {
    const where = `${this.spec.source}: extern (func ksym) '${e.name}'`;
    const found = this.findKernelType(essentialName(e.name), Kind.FUNC, opts);
    if (!found) {
      if (e.weak) return undefined;
      throw new CoreMatrixError(`${where}: not found in the kernel's or its modules' BTF`);
    }
    const proto = found.btf.sizeOrType(found.id);
    if (!compatible(this.spec.btf, e.valueTypeId, found.btf, proto)) {
      if (e.weak) return undefined;
      throw new CoreMatrixError(`${where}: its prototype [${e.valueTypeId}] is incompatible with ${found.module?.name ?? 'vmlinux'}'s [${proto}]`);
    }
    return { btfId: found.id, btfObjFd: found.module?.fd ?? 0, fdIndex: found.module ? this.fdArraySlot(found.module, where) : 0 };
  }

  /** A typed ksym variable: its VAR in the kernel's BTF (vmlinux's, else a module's), of a compatible type even when __weak, as libbpf requires. */
  private resolveKsymVar(e: ExternSpec, opts: LoadOptions): ResolvedKsym | undefined {
    const where = `${this.spec.source}: extern (var ksym) '${e.name}'`;
    const found = this.findKernelType(e.name, Kind.VAR, opts);
    if (!found) {
      if (e.weak) return undefined;
      throw new CoreMatrixError(`${where}: not found in the kernel's BTF`);
    }
    const local = this.spec.btf.skipModsAndTypedefs(e.valueTypeId);
    const target = found.btf.skipModsAndTypedefs(found.btf.typeOf(found.id, Kind.VAR).type);
    if (!compatible(this.spec.btf, local, found.btf, target)) {
      throw new CoreMatrixError(`${where}: incompatible types, expected [${local}] ${this.spec.btf.typeName(local)}, but ${found.module?.name ?? 'the kernel'} has [${target}] ${found.btf.typeName(target)}`);
    }
    return { btfId: found.id, btfObjFd: found.module?.fd ?? 0, fdIndex: 0 };
  }

  /**
   * The first type of `kind` named `name` in vmlinux's BTF, else in the loaded modules' own types
   * (by module BTF id, as libbpf searches); only in module `inModule`'s when one is named
   * (`fentry/nf_conntrack:nf_confirm`).
   */
  findKernelType(name: string, kind: Kind, opts: LoadOptions, inModule?: string): { btf: Btf; id: number; module?: ModuleBtf } | undefined {
    const kb = opts.kernelBtf;
    const id = inModule === undefined ? kb.byName(name).find((x) => kb.kind(x) === kind) : undefined;
    if (id !== undefined) return { btf: kb, id };
    for (const m of this.moduleBtfs(opts)) {
      if (inModule !== undefined && m.name !== inModule) continue;
      const btf = (m.btf ??= parseBtf(btfObjectBytes(m.fd), { source: `BTF of module ${m.name}`, base: kb }));
      const own = btf.byName(name).find((x) => x >= btf.startId && btf.kind(x) === kind);
      if (own !== undefined) return { btf, id: own, module: m };
    }
    return undefined;
  }

  /** vmlinux's BTF, or a loaded module's (split on it, parsed the first time it is asked for). */
  btfOf(opts: LoadOptions, module?: string): Btf | undefined {
    if (module === undefined) return opts.kernelBtf;
    const m = this.moduleBtfs(opts).find((x) => x.name === module);
    return m ? (m.btf ??= parseBtf(btfObjectBytes(m.fd), { source: `BTF of module ${m.name}`, base: opts.kernelBtf })) : undefined;
  }

  /**
   * The loaded modules' BTF objects, kept open until close() (their fds go into ld_imm64s and the
   * fd_array), each with the caller's parsed /sys/kernel/btf/<module> where it gave one.
   */
  moduleBtfs(opts: LoadOptions): ModuleBtf[] {
    if (!this.moduleBtfList) {
      const given = new Map((opts.moduleBtfs ?? []).map((b) => [b.source.split('/').pop()!, b]));
      this.moduleBtfList = moduleBtfObjects().map((o) => ({ name: o.name, fd: o.fd, btf: given.get(o.name) }));
    }
    return this.moduleBtfList;
  }

  /** The module's fd_array slot, taken the first time one of its kfuncs resolves (slot 0 stays unused: `off` 0 means vmlinux). */
  private fdArraySlot(m: ModuleBtf, where: string): number {
    if (m.fdIndex !== undefined) return m.fdIndex;
    if (this.fdArray.length === 0) this.fdArray.push(0);
    if (this.fdArray.length >= MAX_FD_ARRAY) throw new CoreMatrixError(`${where}: module BTF fd index ${this.fdArray.length} does not fit a call's offset`);
    m.fdIndex = this.fdArray.length;
    this.fdArray.push(m.fd);
    return m.fdIndex;
  }
}

/** bpf_core_types_are_compat; types nested too deep to compare count as incompatible, as libbpf's error answer does. */
function compatible(lb: Btf, lid: number, tb: Btf, tid: number): boolean {
  try {
    return typesCompatible(lb, lid, tb, tid);
  } catch (e) {
    if (e instanceof RelocationError) return false;
    throw e;
  }
}
