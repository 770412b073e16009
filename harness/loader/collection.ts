// Loading an object into the running kernel with our own loader: relocate (CO-RE) against the
// kernel's BTF, sanitize and load the object's BTF, create maps (BTF-defined, global data,
// .kconfig), fill and freeze them, link each program (subprograms, map fds, externs), load it,
// attach it. The pure core does the reasoning; the runtime does the syscalls.
//
// Everything opened here is closed by `Collection.close()`.

import type { Btf } from '../core/btf/btf.js';
import { Kind } from '../core/btf/kinds.js';
import { sanitizeBtf, type BtfFeatures } from '../core/btf/sanitize.js';
import { CoreMatrixError } from '../core/errors.js';
import { BPF_PSEUDO_BTF_ID, CALL, LD_IMM64 } from '../core/insn.js';
import { fillKconfig, type KconfigFacts, type KconfigResolution } from '../core/kconfig.js';
import { arenaDataOffset, arenaMmapSize, MAP_TYPE_ARENA } from '../core/object/arena.js';
import { libbpfExternOrder, POISON_CALL_KFUNC_BASE } from '../core/object/externs.js';
import { linkProgram } from '../core/object/link.js';
import { insnArrayValue, jumpTableMapDef, JUMPTABLES_SECTION } from '../core/object/jumptables.js';
import { isMapInMap, MapType, BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, POISON_LDIMM64_MAP_BASE } from '../core/object/maps.js';
import { BPF_F_ALL_CPUS } from '../core/uapi.js';
import { AttachType, ProgType } from '../core/object/sections.js';
import type { LinkedProgram, MapSpec, ObjectSpec, ProgramSpec } from '../core/object/types.js';
import { relocateSpec, type RelocateReport } from '../core/relocate.js';
import type { RelocationRecord } from '../core/relo/report.js';
import { locateRodata, writeRodata } from '../suites/rodata.js';
import { mmapArena, verifierProcessed, verifierReason } from '../runtime/bpf.js';
import { probeInsnArrayMap, probePercpuData } from '../runtime/probe.js';
import type { Mapping } from '../runtime/sys.js';
import { attachProgram, type Attachment } from './attach.js';
import { KernelSymbols, type Ksyms } from './kernel-symbols.js';
import { splitTargetProgram } from './object-config.js';
import { registerStructOps } from './struct-ops.js';
import {
  btfLoad, BpfMap, close as closeFd, ensureBpffs, errnoNumber, FeatureMissingError,
  kconfigSpecial, Link, pageSize, probeUprobeMultiLink, possibleCpuCount, probeBtfKind, probeMapType, probeMmapableArray, probeLdimm64FullRangeOffsets, Program, requireFeature,
  SyscallError, u32, VerifierError, type Ksym,
} from '../runtime/index.js';
import type { MapTypeName } from '../runtime/consts.js';
import { createMaxEntries, pinnedMismatch, pinPath, PIN_BY_NAME, type HostFacts, type MapDef } from './mapdef.js';
import { createStructOpsMap, planStructOps, type StructOpsPlan } from './struct-ops.js';

/** The kernel probe for each BTF feature an object may use. */
/**
 * Map types libbpf creates without the object's BTF key and value types (bpf_object__create_map);
 * every other map, an inner map template too, gets them (a task-storage template or an inner hash
 * of timers needs them: without, the kernel refuses the template or the slot's real map).
 */
const MAPS_WITHOUT_BTF = new Set<number>([
  MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.STACK_TRACE, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS,
  MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP, MapType.SOCKHASH,
  MapType.QUEUE, MapType.STACK, MAP_TYPE_ARENA,
]);

const PROBE_OF: Record<keyof BtfFeatures, Parameters<typeof probeBtfKind>[0]> = {
  float: 'FLOAT', declTag: 'DECL_TAG', typeTag: 'TYPE_TAG', enum64: 'ENUM64', funcGlobal: 'FUNC_GLOBAL', datasec: 'DATASEC',
};

export interface LoadOptions {
  /** The kernel's BTF (/sys/kernel/btf/vmlinux), for CO-RE and for attach/ksym ids. */
  kernelBtf: Btf;
  kernelBtfName: string;
  /** Module BTFs (/sys/kernel/btf/<module>, split on top of kernelBtf): CO-RE candidates when vmlinux has none. */
  moduleBtfs?: Btf[];
  kconfig: KconfigFacts;
  /** kallsyms, read only if an untyped ksym needs an address. */
  kallsyms?: (names: string[]) => Map<string, Ksym>;
  /** `.rodata` variables to set before load: name → value. */
  rodata?: Record<string, number | bigint | string | boolean>;
  /** Only these programs (default: all). */
  programs?: string[];
  /** Object sha256 (reported). */
  sha256?: string;
  /**
   * Wraps each program's load (link, relocate, verifier): the agent names the step to the host
   * and lets its watchdog beat while the verifier holds the thread.
   */
  aroundProgram?: (program: string, load: () => void) => void;
  /** Where maps declared with `pinning = LIBBPF_PIN_BY_NAME` are pinned (libbpf's pin_root_path); default /sys/fs/bpf. */
  pinRoot?: string;
  /** Test-only: edits a program's final instructions just before BPF_PROG_LOAD (differential tests). */
  mutateInsns?: (program: string, insns: Uint8Array) => void;
  /**
   * freplace into another object of the run (`target-program: <object>:<program>`): that object's
   * program, loaded and still open (its fd, and the BTF it was loaded with: the replaced function's
   * id is looked up there), or why it is not there.
   */
  replaceTarget?: (object: string, program: string) => { fd: number; btf: Btf } | { reason: string };
}

export interface ProgramOutcome {
  name: string;
  section: string;
  status: 'loaded' | 'rejected' | 'relocation-failed' | 'error' | 'not-loaded';
  reason?: string;
  verifierLogTail?: string;
  insnsProcessed?: number;
  loadMs: number;
  relocations: RelocationRecord[];
  /** Kernel-translated instructions (hex), for differential comparison. */
  xlated?: string;
}

const PSEUDO_MAP_FD = 1;

function tail(log: string, lines = 30): string {
  const l = log.trimEnd().split('\n');
  return l.slice(-lines).join('\n');
}

/** Parses "processed N insns" from a verifier log (kernels before 5.16 have no verified_insns). */
function processedFromLog(log: string): number | undefined {
  const m = /processed (\d+) insns/.exec(log);
  return m ? Number(m[1]) : undefined;
}

function funcInfoBytes(recs: { insnOff: number; typeId: number }[]): Uint8Array {
  const b = new Uint8Array(recs.length * 8);
  const dv = new DataView(b.buffer);
  recs.forEach((r, i) => {
    dv.setUint32(i * 8, r.insnOff, true);
    dv.setUint32(i * 8 + 4, r.typeId, true);
  });
  return b;
}

function lineInfoBytes(recs: { insnOff: number; fileNameOff: number; lineOff: number; line: number; col: number }[]): Uint8Array {
  const b = new Uint8Array(recs.length * 16);
  const dv = new DataView(b.buffer);
  recs.forEach((r, i) => {
    dv.setUint32(i * 16, r.insnOff, true);
    dv.setUint32(i * 16 + 4, r.fileNameOff, true);
    dv.setUint32(i * 16 + 8, r.lineOff, true);
    dv.setUint32(i * 16 + 12, ((r.line << 10) | (r.col & 0x3ff)) >>> 0, true);
  });
  return b;
}

const DEFAULT_PIN_ROOT = '/sys/fs/bpf';
const EEXIST = errnoNumber('EEXIST');
const EINVAL = errnoNumber('EINVAL');

export class Collection {
  readonly maps = new Map<string, BpfMap>();
  readonly programs = new Map<string, Program>();
  readonly links: Link[] = [];
  readonly outcomes: ProgramOutcome[] = [];
  relocations: RelocateReport['relocations'] = [];
  /** Wall time of the CO-RE relocation step of the last load (ms). */
  relocateMs = 0;
  externs: KconfigResolution[] = [];
  btfChanges: string[] = [];
  btfLoadError?: string;
  /** Programs named by the object's struct_ops tables, as resolved against the running kernel. */
  private structOps = new Map<string, { attachBtfId: number; member: number } | 'no-member'>();
  /**
   * struct_ops: each table laid out against the running kernel (its map is in `maps` under the
   * table's name); registerStructOps (struct-ops.ts) registers them at attach.
   */
  structOpsPlans: StructOpsPlan[] = [];
  private btfFd = -1;
  private readonly rodataApplied = new Set<string>();
  /** Maps taken over from a pin (left as they are: not filled again). */
  private readonly reusedPins = new Set<string>();
  /** The kernel's and its modules' BTF as the object's ksyms and attach targets find them (module BTF fds, the fd_array). */
  private readonly kernelSymbols: KernelSymbols;
  /** What load() was given (attach finds kernel functions in its BTF). */
  private loadOptions?: LoadOptions;
  /** Where the `__arena` globals start inside the arena map (see core/object/arena.ts). */
  private arenaOffset = 0;
  /** Arena maps stay mapped while the object lives, as libbpf keeps them. */
  private readonly arenaMappings: Mapping[] = [];
  /** Maps this kernel cannot have and libbpf therefore does not create (`.percpu` data): name → why. */
  private readonly skippedMaps = new Map<string, string>();
  /** Each loaded program's jump table maps (gotox), kept open as long as the program, as libbpf keeps them. */
  private readonly jumpTableMaps: BpfMap[] = [];

  constructor(readonly spec: ObjectSpec) {
    this.kernelSymbols = new KernelSymbols(spec);
  }

  /** Reads a global variable from its data map, decoded by its BTF type (CPU 0's copy for `.percpu` data). */
  readVar(name: string): number | bigint | string | boolean {
    const { map, offset, typeId } = this.locateVar(name);
    const m = this.maps.get(map.name);
    if (!m) throw new CoreMatrixError(`${this.spec.source}: map ${map.name} of variable ${name} was not created`);
    const v = m.lookup(new Uint8Array(4));
    if (!v) throw new CoreMatrixError(`${this.spec.source}: map ${map.name} has no value`);
    return decodeValue(this.spec.btf, typeId, v, offset);
  }

  /**
   * Writes a global variable by name (an integer, or a string for a char array) through its data
   * map, keeping the rest of the map's value. Frozen maps (.rodata, .kconfig) refuse it.
   */
  writeVar(name: string, value: number | bigint | string | boolean): void {
    const { map, offset, typeId } = this.locateVar(name);
    const m = this.maps.get(map.name);
    if (!m) throw new CoreMatrixError(`${this.spec.source}: map ${map.name} of variable ${name} was not created`);
    if (map.frozen) throw new CoreMatrixError(`${this.spec.source}: ${name} lives in ${map.name}, which is frozen after load`);
    const key = new Uint8Array(4);
    const cur = m.lookup(key);
    if (!cur) throw new CoreMatrixError(`${this.spec.source}: map ${map.name} has no value`);
    const btf = this.spec.btf;
    const t = btf.type(btf.skipModsAndTypedefs(typeId));
    const size = btf.sizeOf(typeId);
    const dv = new DataView(cur.buffer, cur.byteOffset, cur.byteLength);
    if (typeof value === 'string') {
      if (t.kind !== Kind.ARRAY) throw new CoreMatrixError(`${this.spec.source}: ${name} is not a char array`);
      const bytes = new TextEncoder().encode(value);
      if (bytes.length >= size) throw new CoreMatrixError(`${this.spec.source}: '${value}' does not fit ${name} (${size} bytes)`);
      cur.fill(0, offset, offset + size);
      cur.set(bytes, offset);
    } else {
      if (t.kind !== Kind.INT && t.kind !== Kind.ENUM && t.kind !== Kind.ENUM64) throw new CoreMatrixError(`${this.spec.source}: ${name} is not an integer`);
      const v = BigInt(typeof value === 'boolean' ? Number(value) : value);
      if (size === 1) dv.setUint8(offset, Number(BigInt.asUintN(8, v)));
      else if (size === 2) dv.setUint16(offset, Number(BigInt.asUintN(16, v)), true);
      else if (size === 4) dv.setUint32(offset, Number(BigInt.asUintN(32, v)), true);
      else if (size === 8) dv.setBigUint64(offset, BigInt.asUintN(64, v), true);
      else throw new CoreMatrixError(`${this.spec.source}: ${name} has an integer size of ${size}`);
    }
    // Global per-CPU data (`.percpu`): the value above is CPU 0's; every CPU gets the same.
    if (map.type === MapType.PERCPU_ARRAY) {
      const stride = Math.ceil(map.valueSize / 8) * 8;
      for (let at = stride; at + stride <= cur.length; at += stride) cur.copyWithin(at + offset, offset, offset + size);
    }
    m.update(key, cur);
  }

  /** Where a global variable lives: its data map, offset and BTF type. */
  locateVar(name: string): { map: MapSpec; offset: number; typeId: number } {
    const btf = this.spec.btf;
    for (const map of this.spec.maps) {
      if ((map.kind !== 'data' && map.kind !== 'kconfig') || !map.valueTypeId) continue;
      const sec = btf.type(map.valueTypeId);
      if (sec.kind !== Kind.DATASEC) continue;
      for (const v of sec.vars) {
        if (btf.name(v.type) === name) return { map, offset: v.offset, typeId: btf.typeOf(v.type, Kind.VAR).type };
      }
    }
    throw new CoreMatrixError(`${this.spec.source}: no global variable named '${name}'`);
  }

  /** What the last close() could not undo (a detach the kernel refused), one line each: for the caller to log, never thrown. */
  closeErrors: string[] = [];
  /** Prog-array slots of `.values` left empty because their program did not load (fillProgramSlots). */
  readonly slotNotes: string[] = [];

  close(): void {
    this.closeErrors = [];
    for (const l of this.links.splice(0)) {
      try {
        l.close();
      } catch (e) {
        this.closeErrors.push((e as Error).message.split('\n')[0]!);
      }
    }
    for (const p of this.programs.values()) p.close();
    this.programs.clear();
    for (const a of this.arenaMappings.splice(0)) a.close();
    for (const m of this.jumpTableMaps.splice(0)) m.close();
    for (const m of this.maps.values()) m.close();
    this.maps.clear();
    if (this.btfFd >= 0) closeFd(this.btfFd);
    this.btfFd = -1;
    this.kernelSymbols.close();
  }

  /**
   * The outcome of every program (of `programs`, default all) when the object as a whole was
   * refused before its programs loaded (an extern, a map, its BTF): as with libbpf, nothing of it
   * loads; a program whose autoload is off is reported as not loaded, the others carry `reason`.
   */
  objectFailed(reason: string, programs?: string[]): ProgramOutcome[] {
    return this.spec.programs
      .filter((p) => !programs || programs.includes(p.name))
      .map((p) => (p.autoload
        ? { name: p.name, section: p.section, status: 'error' as const, reason, loadMs: 0, relocations: [] }
        : { name: p.name, section: p.section, status: 'not-loaded' as const, reason: 'autoload is off', loadMs: 0, relocations: [] }));
  }

  /** Loads the object. Program-level failures are recorded in `outcomes`, not thrown. */
  load(opts: LoadOptions): this {
    this.loadOptions = opts;
    const spec = this.spec;
    // 1. Extern values, then CO-RE relocations against the running kernel (knowing the kconfig
    // values, the reach analysis prunes the branches the verifier will prune too).
    const kcfgMap = spec.maps.find((m) => m.kind === 'kconfig');
    if (kcfgMap?.data) this.externs = fillKconfig(spec.btf, spec.externs, kcfgMap.data, this.kconfigFacts(opts.kconfig));
    // ksyms and kfuncs, object-wide and before anything is created (libbpf's order), then the
    // struct_ops tables against the kernel's.
    const ksyms = this.kernelSymbols.resolveKsyms(opts);
    this.structOps = this.resolveStructOps(opts);
    // struct_ops: each table's value laid out against the kernel's struct (member errors refuse the object, as in libbpf).
    this.structOpsPlans = spec.structOps.map((t) => planStructOps(t, spec.btf, opts.kernelBtf, spec.source));
    const tRelo = performance.now();
    const rel = relocateSpec(spec, opts.sha256 ?? '', { vmlinux: opts.kernelBtf, modules: opts.moduleBtfs }, opts.kernelBtfName, { kconfig: kcfgMap?.data });
    this.relocateMs = Math.round(performance.now() - tRelo);
    this.relocations = rel.report.relocations;

    // 2. The object's BTF, rewritten for what this kernel knows.
    // The kernel is probed (a BTF load each) only for what the object's BTF uses.
    const sanitized = sanitizeBtf(spec.btf, (f) => probeBtfKind(PROBE_OF[f]) !== 'missing', new Set(spec.functions.filter((f) => f.hidden).map((f) => f.name)));
    this.btfChanges = sanitized.changes;
    try {
      this.btfFd = btfLoad(sanitized.bytes, { label: spec.source }).fd;
    } catch (e) {
      // Like libbpf: without kernel BTF for the object, maps and programs still load, just without
      // BTF-typed values and func/line info.
      this.btfLoadError = (e as Error).message.split('\n')[0];
    }

    // 3. Maps.
    const mmapable = probeMmapableArray() === 'supported';
    const facts: HostFacts = { pageSize: pageSize(), possibleCpus: possibleCpuCount };
    if (spec.arena) {
      const m = spec.maps[spec.arena.map]!;
      this.arenaOffset = arenaDataOffset({ name: m.name, maxEntries: m.maxEntries, dataSize: spec.arena.data.length, pageSize: facts.pageSize, fullRangeOffsets: probeLdimm64FullRangeOffsets() === 'supported', source: spec.source });
    }
    for (const m of spec.maps) {
      // Global per-CPU data on a kernel without it: libbpf skips the map (its FEAT_PERCPU_DATA
      // probe) and only the programs that use it fail (loadProgram names the map).
      if (m.kind === 'data' && m.type === MapType.PERCPU_ARRAY && probePercpuData() !== 'supported') {
        this.skippedMaps.set(m.name, `this kernel has no global per-CPU data (a PERCPU_ARRAY value addressed by ld_imm64, libbpf's FEAT_PERCPU_DATA)`);
        continue;
      }
      try {
        this.createMap(m, mmapable, opts, facts);
      } catch (e) {
        // The runtime names the map (`map 'events': bpf(BPF_MAP_CREATE): ...`); say whose map it is.
        if (e instanceof SyscallError) e.message = `${spec.source}: ${e.message}`;
        throw e;
      }
    }
    for (const m of spec.maps) if (m.initValues && isMapInMap(m.type) && !this.reusedPins.has(m.name)) this.fillSlots(m);
    const unknown = Object.keys(opts.rodata ?? {}).filter((k) => !this.rodataApplied.has(k));
    if (unknown.length) throw new CoreMatrixError(`${spec.source}: no .rodata variable named ${unknown.join(', ')}`);

    // 4. Programs; freplace programs after the programs whose functions they replace.
    const want = opts.programs ? new Set(opts.programs) : undefined;
    const replaces = (p: ProgramSpec) => p.type === ProgType.EXT && p.attachProgram !== undefined;
    for (const p of [...spec.programs.filter((x) => !replaces(x)), ...spec.programs.filter(replaces)]) {
      if (want && !want.has(p.name)) continue;
      // Autoload off (`SEC("?...")`, the object's config, or a struct_ops member the kernel lacks):
      // libbpf leaves it unloaded, and so do we.
      if (!p.autoload || this.structOps.get(p.name) === 'no-member') {
        this.outcomes.push({ name: p.name, section: p.section, status: 'not-loaded', reason: 'autoload is off', loadMs: 0, relocations: [] });
        continue;
      }
      if (opts.aroundProgram) opts.aroundProgram(p.name, () => this.loadProgram(p, opts, ksyms));
      else this.loadProgram(p, opts, ksyms);
    }
    // Prog arrays' `.values = { [slot] = &prog }`, once the programs are loaded, as libbpf fills them.
    for (const m of spec.maps) if (m.initValues && m.type === MapType.PROG_ARRAY && !this.reusedPins.has(m.name)) this.fillProgramSlots(m);
    // struct_ops: their maps, after the programs: 5.10 finds its struct_ops types only once it has
    // parsed its own BTF, at the first verifier run (before that, BPF_MAP_CREATE answers ENOTSUPP).
    // Each map is filled with its programs' fds when registered (struct-ops.ts registerStructOps).
    for (const plan of this.structOpsPlans) this.maps.set(plan.name, createStructOpsMap(plan, this.btfFd, spec.source));
    return this;
  }

  /**
   * The program's jump tables as libbpf makes them: one frozen BPF_MAP_TYPE_INSN_ARRAY map per
   * table, entry i = { orig_off: target i }, its fd written into every ld_imm64 of the table. A
   * table that cannot be made fails the program (libbpf fails its load naming the program; the
   * reference loader then loads the object's other programs without it, and so does this).
   */
  private createJumpTables(linked: LinkedProgram, program: string): void {
    const dv = new DataView(linked.insns.buffer, linked.insns.byteOffset, linked.insns.byteLength);
    for (const t of linked.jumpTables) {
      const def = jumpTableMapDef(t);
      let map: BpfMap;
      try {
        map = BpfMap.create({ mapType: def.type, keySize: def.keySize, valueSize: def.valueSize, maxEntries: def.maxEntries, mapFlags: def.flags, name: def.name });
        this.jumpTableMaps.push(map);
        t.targets.forEach((target, i) => map.update(u32(i), insnArrayValue(target)));
        map.freeze();
      } catch (e) {
        if (!(e instanceof SyscallError)) throw e;
        // libbpf fails the same way, naming the program; a kernel without such maps is said so.
        const why = e.errno === EINVAL && probeInsnArrayMap() === 'missing' ? ': this kernel has no BPF_MAP_TYPE_INSN_ARRAY maps, which gotox jump tables need' : '';
        throw new CoreMatrixError(`${this.spec.source}: prog '${program}': jump table '${t.symbol}' (${JUMPTABLES_SECTION}+${t.offset}): ${e.message.split('\n')[0]}${why}`);
      }
      for (const at of t.insns) dv.setInt32(at * 8 + 4, map.fd, true);
    }
  }

  /**
   * The kconfig facts with libbpf's virtual externs that this object declares (LINUX_HAS_*): the
   * caller's value where it gives one, else probed on the running kernel, as libbpf probes them.
   */
  private kconfigFacts(given: KconfigFacts): KconfigFacts {
    const specials: Record<string, number> = {};
    for (const e of this.spec.externs) {
      if (e.kind !== 'kconfig' || !e.name.startsWith('LINUX_')) continue;
      const v = given.specials && e.name in given.specials ? given.specials[e.name] : kconfigSpecial(e.name);
      if (v !== undefined) specials[e.name] = v;
    }
    return { ...given, specials };
  }

  private createMap(m: MapSpec, mmapable: boolean, opts: LoadOptions, facts: HostFacts): void {
    let flags = m.flags;
    const isData = m.kind === 'data' || m.kind === 'kconfig';
    if (isData) {
      if (mmapable && m.type === MapType.ARRAY) flags |= BPF_F_MMAPABLE;
      else flags &= ~BPF_F_MMAPABLE; // the object reader asks for it; kernels before 5.5 refuse it
      if (m.frozen) flags |= BPF_F_RDONLY_PROG;
    }
    if (m.pinning !== 0 && m.pinning !== PIN_BY_NAME) throw new CoreMatrixError(`${this.spec.source}: map '${m.name}': pinning ${m.pinning} is neither LIBBPF_PIN_NONE (0) nor LIBBPF_PIN_BY_NAME (1)`);
    const def = this.definition(m, flags, facts);
    const pinAt = m.pinning === PIN_BY_NAME ? pinPath(opts.pinRoot ?? DEFAULT_PIN_ROOT, m.name) : undefined;
    if (pinAt) {
      try {
        ensureBpffs(opts.pinRoot ?? DEFAULT_PIN_ROOT);
      } catch (e) {
        throw new CoreMatrixError(`${this.spec.source}: map '${m.name}': ${(e as Error).message.split('\n')[0]}`);
      }
      const pinned = this.reusePinned(m, def, pinAt);
      if (pinned) {
        // libbpf's rule: a reused map is taken as it is (not filled, not frozen again).
        this.maps.set(m.name, pinned);
        this.reusedPins.add(m.name);
        return;
      }
    }
    let inner: BpfMap | undefined;
    if (m.inner) inner = this.create(m.inner, this.definition(m.inner, m.inner.flags, facts));
    try {
      const map = this.create(m, def, inner?.fd);
      this.maps.set(m.name, map);
      if (m.type === MAP_TYPE_ARENA) this.mapArena(m, map, def, facts);
      if (m.data) {
        const data = new Uint8Array(m.data);
        if (m.section.startsWith('.rodata') && opts.rodata) this.applyRodata(m, data, opts.rodata);
        // `.percpu`: one image, copied by the kernel to every CPU (as libbpf fills it).
        map.update(new Uint8Array(4), data, m.type === MapType.PERCPU_ARRAY ? BPF_F_ALL_CPUS : 0);
      }
      if (m.frozen) map.freeze();
      if (pinAt) this.pin(m, def, map, pinAt);
    } finally {
      inner?.close();
    }
  }

  /** What BPF_MAP_CREATE gets for `m`: sizes as libbpf finalizes them (ring buffers, perf event arrays). */
  private definition(m: MapSpec, flags: number, facts: HostFacts): MapDef {
    return { type: m.type, keySize: m.keySize, valueSize: m.valueSize, maxEntries: createMaxEntries(m, facts), flags, mapExtra: m.mapExtra };
  }

  /**
   * An arena as libbpf sets it up right after creating it: mapped read-write (at its map_extra
   * when that fixes the arena's user address, else where the kernel chooses, which then becomes
   * it), with the object's `__arena` globals copied to their place.
   */
  private mapArena(m: MapSpec, map: BpfMap, def: MapDef, facts: HostFacts): void {
    const mapping = mmapArena(map.fd, arenaMmapSize(def.maxEntries, facts.pageSize), def.mapExtra ?? 0n, `map '${m.name}'`);
    this.arenaMappings.push(mapping);
    const arena = this.spec.arena;
    if (arena && this.spec.maps[arena.map] === m) mapping.bytes.set(arena.data, this.arenaOffset);
  }

  /**
   * The map already pinned at `path`, when there is one and it matches `def` as libbpf requires;
   * undefined when nothing is pinned there. A pinned map that does not match is an error, as in libbpf.
   */
  private reusePinned(m: MapSpec, def: MapDef, path: string): BpfMap | undefined {
    const pinned = BpfMap.fromPin(path, m.name);
    if (!pinned) return undefined;
    let info;
    try {
      info = pinned.info();
    } catch (e) {
      pinned.close();
      throw e;
    }
    const why = pinnedMismatch(def, info);
    if (why) {
      pinned.close();
      throw new CoreMatrixError(`${this.spec.source}: map '${m.name}': the map pinned at ${path} does not match this definition (${why}); remove the pin or change the map`);
    }
    return pinned;
  }

  /** Pins a newly created map; if another loader pinned one meanwhile (EEXIST), reuses that, as libbpf does. */
  private pin(m: MapSpec, def: MapDef, map: BpfMap, path: string): void {
    try {
      map.pin(path);
    } catch (e) {
      if (!(e instanceof SyscallError) || e.errno !== EEXIST) throw e;
      const pinned = this.reusePinned(m, def, path);
      if (!pinned) throw e;
      map.close();
      this.maps.set(m.name, pinned);
      this.reusedPins.add(m.name);
    }
  }

  /**
   * A prog array's `.values = { [slot] = &prog }`: each slot gets its program's fd after the
   * programs loaded (libbpf's init_prog_array_slots), so tail calls through it reach them. A slot
   * whose program did not load (refused, autoload off, or not among the programs asked for) stays
   * empty and is said in `slotNotes`: libbpf fails the whole object there (EBADF), where our
   * cells are per program.
   */
  private fillProgramSlots(m: MapSpec): void {
    const array = this.maps.get(m.name);
    if (!array) return;
    for (const { slot, target } of m.initValues ?? []) {
      const prog = this.programs.get(target);
      if (!prog) {
        this.slotNotes.push(`map '${m.name}': slot ${slot} is left empty: its program '${target}' did not load (libbpf fails the whole object here: EBADF)`);
        continue;
      }
      try {
        array.update(u32(slot), u32(prog.fd));
      } catch (e) {
        if (e instanceof SyscallError) e.message = `${this.spec.source}: ${e.message} (slot ${slot} = program '${target}')`;
        throw e;
      }
    }
  }

  /** A map-in-map's `.values = { [slot] = &inner }`: each slot gets its map, as libbpf fills them. */
  private fillSlots(m: MapSpec): void {
    const outer = this.maps.get(m.name)!;
    for (const { slot, target } of m.initValues ?? []) {
      const inner = this.maps.get(target);
      if (!inner) throw new CoreMatrixError(`${this.spec.source}: map '${m.name}': slot ${slot} holds map '${target}', which was not created`);
      try {
        outer.update(u32(slot), u32(inner.fd));
      } catch (e) {
        if (e instanceof SyscallError) e.message = `${this.spec.source}: ${e.message} (slot ${slot} = map '${target}')`;
        throw e;
      }
    }
  }

  private create(m: MapSpec, def: MapDef, innerMapFd?: number): BpfMap {
    const withBtf = this.btfFd >= 0 && !MAPS_WITHOUT_BTF.has(m.type) && (m.keyTypeId !== 0 || m.valueTypeId !== 0);
    const base = {
      mapType: def.type, keySize: def.keySize, valueSize: def.valueSize, maxEntries: def.maxEntries, mapFlags: def.flags,
      numaNode: m.numaNode, name: m.name, innerMapFd, mapExtra: def.mapExtra,
    };
    if (withBtf) {
      try {
        return BpfMap.create({ ...base, btfFd: this.btfFd, btfKeyTypeId: m.keyTypeId, btfValueTypeId: m.valueTypeId });
      } catch (e) {
        if (!(e instanceof SyscallError)) throw e;
        // Older kernels refuse BTF for some map types: retry without it, as libbpf does.
      }
    }
    try {
      return BpfMap.create(base);
    } catch (e) {
      if (e instanceof SyscallError && e.errno === EINVAL) e.message += missingMapType(m.type);
      throw e;
    }
  }

  /** Writes the values whose variable lives in this `.rodata*` map; `load` checks none is left over. */
  private applyRodata(m: MapSpec, data: Uint8Array, values: NonNullable<LoadOptions['rodata']>): void {
    const mine = Object.fromEntries(Object.entries(values).filter(([k]) => locateRodata(this.spec.btf, m.valueTypeId, k)));
    writeRodata(this.spec.btf, m.valueTypeId, data, mine, this.spec.source);
    for (const k of Object.keys(mine)) this.rodataApplied.add(k);
  }

  /**
   * What each program a struct_ops table names loads with, as libbpf finds it: attach_btf_id = the
   * kernel's struct, expected_attach_type = the member's index in it. A kernel without the table's
   * `bpf_struct_ops_<type>` refuses the whole object; a program whose member the kernel's struct
   * lacks is not loaded (libbpf turns its autoload off).
   */
  private resolveStructOps(opts: LoadOptions): Map<string, { attachBtfId: number; member: number } | 'no-member'> {
    const kb = opts.kernelBtf;
    const out = new Map<string, { attachBtfId: number; member: number } | 'no-member'>();
    const struct = (name: string) => kb.byName(name).find((i) => kb.kind(i) === Kind.STRUCT);
    for (const so of this.spec.structOps) {
      // A local flavour (tcp_congestion_ops___x) names the kernel's struct by its base name, as libbpf reads it.
      const type = so.type.replace(/___.*$/, '');
      if (struct(`bpf_struct_ops_${type}`) === undefined) throw new CoreMatrixError(`${this.spec.source}: struct_ops ${so.name}: struct bpf_struct_ops_${type} is not found in the kernel's BTF`);
      const id = struct(type);
      if (id === undefined) throw new CoreMatrixError(`${this.spec.source}: struct_ops ${so.name}: struct ${type} is not found in the kernel's BTF`);
      const t = kb.type(id);
      const members = t.kind === Kind.STRUCT ? t.members : [];
      for (const { member, program } of so.programs) {
        const i = members.findIndex((m) => m.name === member);
        if (!out.has(program) || out.get(program) === 'no-member') out.set(program, i < 0 ? 'no-member' : { attachBtfId: id, member: i });
      }
    }
    return out;
  }

  /**
   * Writes the object's resolved ksyms into one linked program's instructions, as libbpf does:
   * a kfunc call gets the FUNC's BTF id and its module's fd_array slot; a ld_imm64 of a typed
   * ksym (a variable, or a kfunc's address) becomes BPF_PSEUDO_BTF_ID with the module's BTF fd
   * in its second half; a typeless one gets its address. A call to a __weak kfunc the kernel
   * lacks becomes an invalid helper call, #(2002000000 + the extern's position in libbpf's
   * order), which the verifier names if the call is reached and bpf_ksym_exists() guards never
   * reach; other __weak ones the kernel lacks stay 0.
   */
  private resolveExterns(linked: LinkedProgram, ksyms: Ksyms): void {
    const dv = new DataView(linked.insns.buffer, linked.insns.byteOffset, linked.insns.byteLength);
    let order: number[] | undefined;
    for (const ref of linked.externRefs) {
      const e = this.spec.externs[ref.extern]!;
      if (e.kind !== 'ksym') continue;
      const at = ref.insn * 8;
      const r = ksyms.get(ref.extern);
      if (dv.getUint8(at) === CALL) {
        if (r && 'btfId' in r) {
          dv.setInt32(at + 4, r.btfId, true);
          dv.setInt16(at + 2, r.fdIndex, true);
        } else {
          order ??= libbpfExternOrder(this.spec.externs);
          dv.setUint8(at + 1, 0);
          dv.setInt16(at + 2, 0, true);
          dv.setInt32(at + 4, POISON_CALL_KFUNC_BASE + order.indexOf(ref.extern), true);
        }
        continue;
      }
      if (!r) continue;
      if ('addr' in r) {
        dv.setUint32(at + 4, Number(r.addr & 0xffffffffn), true);
        dv.setUint32(at + 12, Number(r.addr >> 32n), true);
      } else {
        dv.setUint8(at + 1, (dv.getUint8(at + 1) & 0x0f) | (BPF_PSEUDO_BTF_ID << 4));
        dv.setInt32(at + 4, r.btfId, true);
        dv.setInt32(at + 12, r.btfObjFd, true);
      }
    }
  }

  /**
   * What a freplace program replaces: its target program's fd and the BTF id of the function in
   * that program's BTF: this object's for a program of this object, the other object's for one of
   * another object of the run (`object:program`), as loaded (sanitizing keeps type ids).
   */
  private replacedFunction(p: ProgramSpec, opts: LoadOptions): { progFd: number; btfId: number } {
    if (!p.attachProgram) throw new CoreMatrixError(`program '${p.name}': freplace needs the program whose function it replaces, which its tool sets at run time (an object config names it: programs.${p.name}.target-program)`);
    const { object, program } = splitTargetProgram(p.attachProgram);
    let target: { fd: number; btf: Btf; source: string };
    if (object === undefined) {
      const prog = this.programs.get(program);
      if (!prog) throw new CoreMatrixError(`program '${p.name}': the program it replaces a function of, '${program}', did not load`);
      target = { fd: prog.fd, btf: this.spec.btf, source: this.spec.source };
    } else {
      const other = opts.replaceTarget?.(object, program) ?? { reason: 'no other object is loaded beside this one' };
      if ('reason' in other) throw new CoreMatrixError(`program '${p.name}': the program it replaces a function of, '${p.attachProgram}', is not loaded: ${other.reason}`);
      target = { ...other, source: object };
    }
    const fn = p.attachTo ?? '';
    const btfId = target.btf.byName(fn).find((i) => target.btf.kind(i) === Kind.FUNC);
    if (!fn || btfId === undefined) throw new CoreMatrixError(`program '${p.name}': no function '${fn}' in ${target.source}'s BTF to replace`);
    return { progFd: target.fd, btfId };
  }

  private loadProgram(p: ProgramSpec, opts: LoadOptions, ksyms: Ksyms): void {
    const t0 = performance.now();
    const out: ProgramOutcome = { name: p.name, section: p.section, status: 'error', loadMs: 0, relocations: [] };
    this.outcomes.push(out);
    try {
      // A section libbpf knows no row for: it refuses the program at load, naming the section.
      if (p.kind === 'unknown') throw new CoreMatrixError(`program '${p.name}': ${p.reason ?? `unknown section '${p.section}'`}`);
      // freplace replaces a function of another loaded program (of this object or another one),
      // which its tool names at run time (bpf_program__set_attach_target with that program's fd);
      // without it libbpf refuses the load.
      const replaced = p.type === ProgType.EXT ? this.replacedFunction(p, opts) : undefined;
      const linked = linkProgram(this.spec, p, { arenaDataOffset: this.arenaOffset, exceptionCallbacks: probeBtfKind('DECL_TAG') !== 'missing' });
      const mine = new Set(linked.layout.map((l) => `${l.section}\u0000${l.name}`));
      const ranges = this.spec.functions.filter((f) => mine.has(`${f.section}\u0000${f.name}`));
      out.relocations = this.relocations.filter((r) => ranges.some((f) => f.section === r.section && r.insn >= f.sectionOffset && r.insn < f.sectionOffset + f.insnCount));
      const failed = out.relocations.filter((r) => r.status === 'error');
      if (failed.length) {
        out.status = 'relocation-failed';
        out.reason = `relocation ${failed[0]!.kind} ${failed[0]!.type} ${failed[0]!.spec}: ${failed[0]!.error ?? 'error'}`;
        return;
      }
      const dv = new DataView(linked.insns.buffer, linked.insns.byteOffset, linked.insns.byteLength);
      for (const ref of linked.mapRefs) {
        const m = this.spec.maps[ref.map]!;
        const map = this.maps.get(m.name);
        const at = ref.insn * 8;
        if (this.skippedMaps.has(m.name)) {
          // Not created on this kernel: both halves become libbpf's invalid call #(2001000000 + map
          // index), which the verifier refuses only where the program can reach it.
          for (const half of [at, at + 8]) {
            linked.insns.fill(0, half, half + 8);
            dv.setUint8(half, CALL);
            dv.setInt32(half + 4, POISON_LDIMM64_MAP_BASE + ref.map, true);
          }
          continue;
        }
        if (!map) throw new CoreMatrixError(`map ${m.name} was not created`);
        if (dv.getUint8(at) !== LD_IMM64) throw new CoreMatrixError(`map reference at insn ${ref.insn} is not ld_imm64`);
        dv.setInt32(at + 4, map.fd, true);
        if (ref.offset === undefined && (dv.getUint8(at + 1) >> 4) !== PSEUDO_MAP_FD) {
          dv.setUint8(at + 1, (dv.getUint8(at + 1) & 0x0f) | (PSEUDO_MAP_FD << 4));
        }
      }
      this.resolveExterns(linked, ksyms);
      this.createJumpTables(linked, p.name);
      opts.mutateInsns?.(p.name, linked.insns);
      // Rows that load against a BTF target (fentry, fexit, fmod_ret, lsm, tp_btf, iter): the
      // kernel's type id of the target, as the section table names it (bpf_lsm_x, btf_trace_x, bpf_iter_x).
      let attachBtfId: number | undefined;
      let attachBtfObjFd: number | undefined;
      if (p.flags.attachBtf && p.type !== ProgType.EXT) {
        if (p.targetError || p.target?.kind !== 'btf') throw new CoreMatrixError(`program '${p.name}': ${p.targetError ?? `section '${p.section}' names no BTF attach target`}`);
        const t = p.target;
        const found = this.kernelSymbols.findKernelType(t.btfName, t.btfKind === 'typedef' ? Kind.TYPEDEF : Kind.FUNC, opts, t.module);
        if (!found) {
          const where = t.module ? `BTF of module ${t.module}` : "kernel's or its loaded modules' BTF";
          const why = this.kernelSymbols.moduleBtfs(opts).length === 0 ? ' (this kernel exposes no module BTF)' : '';
          throw new CoreMatrixError(`program '${p.name}': attach target ${t.module ? `${t.module}:` : ''}${t.btfName} is not in the ${where}${why}`);
        }
        attachBtfId = found.id;
        // A module's function: the kernel finds the id in that module's BTF object (attach_btf_obj_fd).
        if (found.module) attachBtfObjFd = found.module.fd;
      }
      // USDT programs are loaded for multi-uprobe links where the kernel has them (as libbpf does:
      // it changes which bpf_get_attach_cookie the verifier picks, so the translated code too).
      const ops = this.structOps.get(p.name);
      if (p.type === ProgType.STRUCT_OPS && typeof ops === 'object') attachBtfId = ops.attachBtfId;
      // A struct_ops program no struct_ops map names has no type to attach to: libbpf refuses it
      // before the kernel sees it (EINVAL), in these words.
      if (p.type === ProgType.STRUCT_OPS && !attachBtfId) throw new CoreMatrixError(`program '${p.name}': SEC("struct_ops") program isn't referenced anywhere (no struct_ops map names it)`);
      const expectedAttachType = typeof ops === 'object' && p.type === ProgType.STRUCT_OPS ? ops.member
        : p.flags.usdt && probeUprobeMultiLink() === 'supported' ? AttachType.TRACE_UPROBE_MULTI : p.expectedAttachType;
      const useBtf = this.btfFd >= 0;
      const prog = Program.load({
        progType: p.type,
        insns: linked.insns,
        license: this.spec.license,
        name: p.name.slice(0, 15),
        expectedAttachType,
        attachBtfId: replaced?.btfId ?? attachBtfId,
        ...(replaced ? { attachProgFd: replaced.progFd } : attachBtfObjFd !== undefined ? { attachProgFd: attachBtfObjFd } : {}),
        kernVersion: this.spec.kernVersion || opts.kconfig.linuxKernelVersion,
        progFlags: p.progFlags,
        progBtfFd: useBtf ? this.btfFd : undefined,
        fdArray: this.kernelSymbols.fdArray.length ? this.kernelSymbols.fdArray : undefined,
        funcInfo: useBtf && linked.funcInfo.length ? funcInfoBytes(linked.funcInfo) : undefined,
        funcInfoRecSize: 8,
        lineInfo: useBtf && linked.lineInfo.length ? lineInfoBytes(linked.lineInfo) : undefined,
        lineInfoRecSize: 16,
        logLevel: 0,
      });
      this.programs.set(p.name, prog);
      out.status = 'loaded';
      const info = prog.info();
      out.insnsProcessed = info.verifiedInsns;
      if (info.xlated.length) out.xlated = Buffer.from(info.xlated).toString('hex');
      if (out.insnsProcessed === undefined) {
        // Before 5.16 the count is only in the verifier log: load once more with a log, to report it.
        try {
          const again = Program.load({ progType: p.type, insns: linked.insns, license: this.spec.license, name: p.name.slice(0, 15), expectedAttachType, attachBtfId: replaced?.btfId ?? attachBtfId, ...(replaced ? { attachProgFd: replaced.progFd } : attachBtfObjFd !== undefined ? { attachProgFd: attachBtfObjFd } : {}), progFlags: p.progFlags, kernVersion: this.spec.kernVersion || opts.kconfig.linuxKernelVersion, logLevel: 1, logSize: 1 << 20, progBtfFd: useBtf ? this.btfFd : undefined, funcInfo: useBtf && linked.funcInfo.length ? funcInfoBytes(linked.funcInfo) : undefined, lineInfo: useBtf && linked.lineInfo.length ? lineInfoBytes(linked.lineInfo) : undefined });
          out.insnsProcessed = processedFromLog(again.verifierLog);
          again.close();
        } catch {
          // The count is a nice-to-have; the program itself loaded.
        }
      }
    } catch (e) {
      if (e instanceof VerifierError && !verifierReason(e.log) && !verifierProcessed(e.log)) {
        // Refused before the verifier said anything, or with only "processed 0 insns" (bad
        // attributes: a flag or attach type this kernel lacks): an error, as libbpf reports it,
        // not a verifier verdict.
        out.status = 'error';
        out.reason = e.message.split('\n')[0];
      } else if (e instanceof VerifierError) {
        out.status = 'rejected';
        out.verifierLogTail = tail(e.log);
        out.insnsProcessed = processedFromLog(e.log);
        out.reason = `verifier rejected it: ${this.uncreatedMap(e.log) ?? this.unresolvedKfunc(e.log) ?? verifierReason(e.log) ?? e.message}`;
      } else if (e instanceof CoreMatrixError) {
        out.status = 'error';
        out.reason = e.message.split('\n')[0];
      } else throw e;
    } finally {
      out.loadMs = Math.round(performance.now() - t0);
    }
  }

  /**
   * A reached reference to a map this kernel could not have (libbpf's poisoned ld_imm64, which it
   * names "BPF map 'x' is referenced but wasn't created"), with why, naming the object.
   */
  private uncreatedMap(log: string): string | undefined {
    const m = /invalid func unknown#(\d+)/.exec(log);
    const idx = m ? Number(m[1]) - POISON_LDIMM64_MAP_BASE : -1;
    const map = idx >= 0 && idx < POISON_CALL_KFUNC_BASE - POISON_LDIMM64_MAP_BASE ? this.spec.maps[idx] : undefined;
    if (!map) return undefined;
    return `${this.spec.source}: map '${map.name}' is referenced but wasn't created: ${this.skippedMaps.get(map.name) ?? 'not created'} (invalid func unknown#${m![1]})`;
  }

  /**
   * A reached call to a __weak kfunc the kernel lacks, named as libbpf names it in its log
   * ("kfunc 'x' is referenced but wasn't resolved"), from the poisoned call the verifier quotes.
   */
  private unresolvedKfunc(log: string): string | undefined {
    const m = /invalid func unknown#(\d+)/.exec(log);
    if (!m) return undefined;
    const order = libbpfExternOrder(this.spec.externs);
    const e = this.spec.externs[order[Number(m[1]) - POISON_CALL_KFUNC_BASE] ?? -1];
    return e ? `kfunc '${e.name}' is referenced but wasn't resolved (invalid func unknown#${m[1]})` : undefined;
  }

  /** Attaches every loaded program that has an attach point; returns what failed. */
  /** Attaches every loaded program (loader/attach.ts); the links stay open until close(). Returns each program's verdict. */
  attachAll(): Map<string, Attachment> {
    const verdicts = new Map<string, Attachment>();
    const opts = this.loadOptions;
    const env = {
      maps: this.maps, cookies: this.externs.some((e) => e.name === 'LINUX_HAS_BPF_COOKIE' && (e.value === 1 || e.value === true)), exclusive: new Map<string, string>(),
      kernelBtf: (module?: string) => (opts ? this.kernelSymbols.btfOf(opts, module) : undefined),
    };
    // struct_ops: registered per map (struct-ops.ts); every program of a table gets its map's verdict.
    for (const r of registerStructOps(this.structOpsPlans, this.maps, this.programs)) {
      if (r.link) this.links.push(r.link);
      for (const p of r.programs) verdicts.set(p, { verdict: { ...r.verdict } });
    }
    for (const p of this.spec.programs) {
      const prog = this.programs.get(p.name);
      if (!prog || verdicts.has(p.name)) continue;
      const a = attachProgram(p, prog, env);
      if (a.link) this.links.push(a.link);
      verdicts.set(p.name, a);
    }
    return verdicts;
  }
}

/** Decodes a variable's bytes by its BTF type: ints → number (bigint above 2^53), char[] → string. */
export function decodeValue(btf: Btf, typeId: number, bytes: Uint8Array, offset: number): number | bigint | string | boolean {
  const id = btf.skipModsAndTypedefs(typeId);
  const t = btf.type(id);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const int = (size: number, signed: boolean): number | bigint => {
    switch (size) {
      case 1: return signed ? dv.getInt8(offset) : dv.getUint8(offset);
      case 2: return signed ? dv.getInt16(offset, true) : dv.getUint16(offset, true);
      case 4: return signed ? dv.getInt32(offset, true) : dv.getUint32(offset, true);
      case 8: {
        const v = signed ? dv.getBigInt64(offset, true) : dv.getBigUint64(offset, true);
        return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      default: throw new CoreMatrixError(`cannot decode a ${size}-byte integer`);
    }
  };
  if (t.kind === Kind.INT) {
    if ((t.encoding & 4) !== 0) return dv.getUint8(offset) !== 0;
    return int(t.size, (t.encoding & 1) !== 0);
  }
  if (t.kind === Kind.ENUM || t.kind === Kind.ENUM64) return int(t.size, t.signed);
  if (t.kind === Kind.PTR) return int(8, false);
  if (t.kind === Kind.ARRAY && btf.sizeOf(t.type) === 1) {
    const raw = bytes.subarray(offset, offset + t.nelems);
    const end = raw.indexOf(0);
    return new TextDecoder().decode(end < 0 ? raw : raw.subarray(0, end));
  }
  const size = btf.sizeOf(id);
  return Buffer.from(bytes.subarray(offset, offset + size)).toString('hex');
}

/** ': kernel lacks map:BLOOM_FILTER (needs Linux 5.16 or later)' when the running kernel has no such map type, else ''. */
function missingMapType(type: number): string {
  const name = (Object.keys(MapType) as MapTypeName[]).find((k) => MapType[k] === type);
  if (!name) return '';
  try {
    requireFeature(`map:${name}`, probeMapType(name));
  } catch (e) {
    if (e instanceof FeatureMissingError) return `: ${e.message}`;
    // No probe for this type, or the probe itself failed: the kernel's errno says enough.
  }
  return '';
}
