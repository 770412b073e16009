// Feature probes of the running kernel, each cached as 'unknown' | 'supported' | 'missing'.
// A probe asks the kernel directly (load a tiny BTF blob, create a tiny map, load a two-insn
// program); a feature error names the first kernel version that has the feature.

import { appendFileSync, existsSync } from 'node:fs';
import { CoreMatrixError } from '../core/errors.js';
import { AttachType } from '../core/uapi.js';
import { BPF_PSEUDO_MAP_VALUE, LD_IMM64 } from '../core/insn.js';
import { INSN_ARRAY_VALUE_SIZE, MAP_TYPE_INSN_ARRAY } from '../core/object/jumptables.js';
import { assemble, call, exit, insn, movImm, R0 } from './asm.js';
import { BpfCmd, LINK_CREATE, LINK_CREATE_UPROBE_MULTI, PERF_EVENT_ATTR, writeAttr } from './attr.js';
import { btfLoad, mapCreate, progLoad, VerifierError, type MapCreateAttr } from './bpf.js';
import { Helper, MapFlag, MapType, Perf, ProgType, type MapTypeName, type ProgTypeName } from './consts.js';
import { linuxKernelVersion, syscallPrefix } from './facts.js';
import { kprobePmu, tracefs } from './link.js';
import { bpfRaw, close, errnoNumber, pageSize, perfEventOpen, SyscallError, withScratch } from './sys.js';

export type FeatureState = 'unknown' | 'supported' | 'missing';

/** A feature the object needs and the running kernel lacks. */
export class FeatureMissingError extends CoreMatrixError {
  override name = 'FeatureMissingError';
  constructor(
    readonly feature: string,
    readonly minVersion?: string,
  ) {
    super(`kernel lacks ${feature}${minVersion ? ` (needs Linux ${minVersion} or later)` : ''}`);
  }
}

// ---- hand-built BTF blobs (header + types + strings) ------------------------------------------

const BTF_KIND = { INT: 1, PTR: 2, VAR: 14, DATASEC: 15, FUNC: 12, FUNC_PROTO: 13, FLOAT: 16, DECL_TAG: 17, TYPE_TAG: 18, ENUM64: 19 } as const;
const info = (kind: number, vlen = 0, kflag = 0) => ((kflag << 31) | (kind << 24) | vlen) >>> 0;

/** Builds a BTF blob from u32 words of types and a string table. Exported for tests. */
export class TinyBtf {
  private words: number[] = [];
  private strs: number[] = [0];
  private strOff = new Map<string, number>();
  /** Offset of `s` in the string section (added once). */
  str(s: string): number {
    const known = this.strOff.get(s);
    if (known !== undefined) return known;
    const off = this.strs.length;
    this.strs.push(...new TextEncoder().encode(s), 0);
    this.strOff.set(s, off);
    return off;
  }
  /** Appends one type record (its u32 words); returns its type id (1-based). */
  type(...words: number[]): number {
    this.words.push(...words);
    return ++this.count;
  }
  private count = 0;
  int(name = 'int'): number {
    return this.type(this.str(name), info(BTF_KIND.INT), 4, 0x01000020 /* signed, 32 bits */);
  }
  /** FUNC_PROTO returning `ret` with unnamed params of the given types. */
  funcProto(ret: number, params: number[] = []): number {
    return this.type(0, info(BTF_KIND.FUNC_PROTO, params.length), ret, ...params.flatMap((t) => [0, t]));
  }
  /** FUNC `name` of prototype `proto`; linkage 0 static, 1 global. */
  func(name: string, proto: number, linkage = 0): number {
    return this.type(this.str(name), info(BTF_KIND.FUNC, linkage), proto);
  }
  bytes(): Uint8Array {
    const typeLen = this.words.length * 4;
    const out = new Uint8Array(24 + typeLen + this.strs.length);
    const dv = new DataView(out.buffer);
    dv.setUint16(0, 0xeb9f, true);
    dv.setUint8(2, 1);
    dv.setUint32(4, 24, true); // hdr_len
    dv.setUint32(8, 0, true); // type_off
    dv.setUint32(12, typeLen, true);
    dv.setUint32(16, typeLen, true); // str_off
    dv.setUint32(20, this.strs.length, true);
    this.words.forEach((w, i) => dv.setUint32(24 + 4 * i, w >>> 0, true));
    out.set(this.strs, 24 + typeLen);
    return out;
  }
}

const BTF_PROBES: Record<string, { min: string; build: (b: TinyBtf) => void }> = {
  base: { min: '4.18', build: (b) => void b.int() },
  DATASEC: {
    min: '5.2',
    build: (b) => {
      const i = b.int();
      const v = b.type(b.str('x'), info(BTF_KIND.VAR), i, 1 /* global allocated */);
      b.type(b.str('.data'), info(BTF_KIND.DATASEC, 1), 4, v, 0, 4);
    },
  },
  FUNC_GLOBAL: {
    min: '5.6',
    build: (b) => {
      const i = b.int();
      const proto = b.type(0, info(BTF_KIND.FUNC_PROTO, 1), i, b.str('a'), i);
      b.type(b.str('f'), info(BTF_KIND.FUNC, 1 /* linkage: global */), proto);
    },
  },
  FLOAT: { min: '5.13', build: (b) => void b.type(b.str('float'), info(BTF_KIND.FLOAT), 4) },
  DECL_TAG: {
    min: '5.16',
    build: (b) => {
      const i = b.int();
      const v = b.type(b.str('x'), info(BTF_KIND.VAR), i, 0);
      b.type(b.str('tag'), info(BTF_KIND.DECL_TAG), v, 0xffffffff /* component_idx -1 */);
    },
  },
  TYPE_TAG: {
    min: '5.17',
    build: (b) => {
      const i = b.int();
      const t = b.type(b.str('tag'), info(BTF_KIND.TYPE_TAG), i);
      b.type(0, info(BTF_KIND.PTR), t);
    },
  },
  ENUM64: {
    min: '6.0',
    build: (b) => void b.type(b.str('e'), info(BTF_KIND.ENUM64, 1), 8, b.str('v'), 1, 0),
  },
};

// ---- cache ------------------------------------------------------------------------------------

const cache = new Map<string, FeatureState>();
const minVersions = new Map<string, string>();

function cached(key: string, min: string | undefined, fn: () => boolean): FeatureState {
  const known = cache.get(key);
  if (known && known !== 'unknown') return known;
  if (min) minVersions.set(key, min);
  let state: FeatureState;
  try {
    state = fn() ? 'supported' : 'missing';
  } catch (e) {
    // Could not tell (no privilege, out of memory): stays unknown, the caller sees the error.
    cache.set(key, 'unknown');
    throw e;
  }
  cache.set(key, state);
  return state;
}

const EINVAL = errnoNumber('EINVAL');
const EBADF = errnoNumber('EBADF');
const E2BIG = errnoNumber('E2BIG');
const ENOTSUPP = 524;
const EOPNOTSUPP = errnoNumber('EOPNOTSUPP');
const isAbsent = (e: unknown) => e instanceof SyscallError && [EINVAL, E2BIG, ENOTSUPP, EOPNOTSUPP].includes(e.errno);

/** Does the kernel accept BTF with this kind ('base' = plain INT: BTF at all)? */
export function probeBtfKind(kind: keyof typeof BTF_PROBES): FeatureState {
  const p = BTF_PROBES[kind];
  if (!p) throw new CoreMatrixError(`no BTF probe named ${kind}`);
  return cached(`btf:${kind}`, p.min, () => {
    const b = new TinyBtf();
    p.build(b);
    try {
      close(btfLoad(b.bytes(), { label: `probe ${kind}` }).fd);
      return true;
    } catch (e) {
      if (isAbsent(e)) return false;
      throw e;
    }
  });
}

/** Map types the probe knows how to create, with minimal attributes. */
const MAP_PROBES: Partial<Record<MapTypeName, { min: string; attr: () => Omit<MapCreateAttr, 'mapType'> }>> = {
  HASH: { min: '3.19', attr: () => ({ keySize: 4, valueSize: 4, maxEntries: 1 }) },
  ARRAY: { min: '3.19', attr: () => ({ keySize: 4, valueSize: 4, maxEntries: 1 }) },
  PROG_ARRAY: { min: '4.2', attr: () => ({ keySize: 4, valueSize: 4, maxEntries: 1 }) },
  PERF_EVENT_ARRAY: { min: '4.3', attr: () => ({ keySize: 4, valueSize: 4, maxEntries: 1 }) },
  PERCPU_HASH: { min: '4.6', attr: () => ({ keySize: 4, valueSize: 4, maxEntries: 1 }) },
  PERCPU_ARRAY: { min: '4.6', attr: () => ({ keySize: 4, valueSize: 4, maxEntries: 1 }) },
  STACK_TRACE: { min: '4.6', attr: () => ({ keySize: 4, valueSize: 8, maxEntries: 1 }) },
  CGROUP_ARRAY: { min: '4.8', attr: () => ({ keySize: 4, valueSize: 4, maxEntries: 1 }) },
  LRU_HASH: { min: '4.10', attr: () => ({ keySize: 4, valueSize: 4, maxEntries: 1 }) },
  LRU_PERCPU_HASH: { min: '4.10', attr: () => ({ keySize: 4, valueSize: 4, maxEntries: 1 }) },
  LPM_TRIE: { min: '4.11', attr: () => ({ keySize: 8, valueSize: 4, maxEntries: 1, mapFlags: MapFlag.NO_PREALLOC }) },
  QUEUE: { min: '4.20', attr: () => ({ keySize: 0, valueSize: 4, maxEntries: 1 }) },
  STACK: { min: '4.20', attr: () => ({ keySize: 0, valueSize: 4, maxEntries: 1 }) },
  RINGBUF: { min: '5.8', attr: () => ({ keySize: 0, valueSize: 0, maxEntries: pageSize() }) },
  BLOOM_FILTER: { min: '5.16', attr: () => ({ keySize: 0, valueSize: 4, maxEntries: 1 }) },
  USER_RINGBUF: { min: '6.1', attr: () => ({ keySize: 0, valueSize: 0, maxEntries: pageSize() }) },
};

function tryMap(a: MapCreateAttr): boolean {
  try {
    close(mapCreate(a));
    return true;
  } catch (e) {
    if (isAbsent(e)) return false;
    throw e;
  }
}

/** Can a map of this type be created? */
export function probeMapType(name: MapTypeName): FeatureState {
  const p = MAP_PROBES[name];
  if (!p) throw new CoreMatrixError(`no map probe for ${name}`);
  return cached(`map:${name}`, p.min, () => tryMap({ mapType: MapType[name], ...p.attr() }));
}

/** Array maps with BPF_F_MMAPABLE (5.5). */
export function probeMmapableArray(): FeatureState {
  return cached('map_flag:MMAPABLE', '5.5', () => tryMap({ mapType: MapType.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1, mapFlags: MapFlag.MMAPABLE }));
}

/**
 * A map-value offset anywhere in an arena (Linux 6.13, "Do not limit maximum direct offset into
 * arena map"), probed as libbpf probes FEAT_LDIMM64_FULL_RANGE_OFF: a program whose ld_imm64
 * points 1 GiB into a one-byte array's value must be refused for the access itself ("invalid
 * access to map value pointer"), not for the offset ("direct value offset of ..."); any other
 * answer counts as missing, as libbpf counts it.
 */
export function probeLdimm64FullRangeOffsets(): FeatureState {
  return cached('ldimm64:full_range_off', '6.13', () => {
    const map = mapCreate({ mapType: MapType.ARRAY, keySize: 4, valueSize: 1, maxEntries: 1, name: 'arr' });
    try {
      const insns = assemble(insn(LD_IMM64, 1, BPF_PSEUDO_MAP_VALUE, 0, map), insn(0, 0, 0, 0, 1 << 30), exit());
      close(progLoad({ progType: ProgType.SOCKET_FILTER, insns, license: 'GPL', name: 'global_reloc', logLevel: 1 }).fd);
      return false; // loaded: not the kernel libbpf's probe expects
    } catch (e) {
      if (!(e instanceof VerifierError)) throw e;
      return !e.log.includes('direct value offset of') && e.log.includes('invalid access to map value pointer');
    } finally {
      close(map);
    }
  });
}

/**
 * Global per-CPU data (libbpf's FEAT_PERCPU_DATA, asked as libbpf asks it): does a socket filter
 * load that takes the address of a one-entry PERCPU_ARRAY's value with ld_imm64
 * (BPF_PSEUDO_MAP_VALUE) and reads 8 bytes there? Without it libbpf creates no `.percpu` map.
 */
export function probePercpuData(): FeatureState {
  return cached('percpu_data', undefined, () => {
    let map: number;
    try {
      map = mapCreate({ mapType: MapType.PERCPU_ARRAY, keySize: 4, valueSize: 8, maxEntries: 1, name: 'percpu_probe' });
    } catch (e) {
      if (isAbsent(e)) return false;
      throw e;
    }
    try {
      const BPF_LDX_DW = 0x79; // BPF_LDX | BPF_MEM | BPF_DW
      const insns = assemble(insn(LD_IMM64, 1, BPF_PSEUDO_MAP_VALUE, 0, map), insn(0, 0, 0, 0, 0), insn(BPF_LDX_DW, 0, 1, 0, 0), exit());
      close(progLoad({ progType: ProgType.SOCKET_FILTER, insns, license: 'GPL', name: 'percpu_probe', logLevel: 0 }).fd);
      return true;
    } catch (e) {
      if (e instanceof VerifierError || isAbsent(e)) return false;
      throw e;
    } finally {
      close(map);
    }
  });
}

/** Can an instruction array map (gotox jump tables) be created? (key u32, value struct bpf_insn_array_value.) */
export function probeInsnArrayMap(): FeatureState {
  return cached('map:INSN_ARRAY', undefined, () => tryMap({ mapType: MAP_TYPE_INSN_ARRAY, keySize: 4, valueSize: INSN_ARRAY_VALUE_SIZE, maxEntries: 1 }));
}

/** Extra load attributes some program types need for a trivial program. */
const PROG_PROBES: Partial<Record<ProgTypeName, { min: string; expectedAttachType?: number; progFlags?: number }>> = {
  SOCKET_FILTER: { min: '3.19' },
  KPROBE: { min: '4.1' },
  SCHED_CLS: { min: '4.1' },
  SCHED_ACT: { min: '4.1' },
  TRACEPOINT: { min: '4.7' },
  XDP: { min: '4.8' },
  PERF_EVENT: { min: '4.9' },
  CGROUP_SKB: { min: '4.10' },
  CGROUP_SOCK: { min: '4.10' },
  LWT_IN: { min: '4.10' },
  LWT_OUT: { min: '4.10' },
  LWT_XMIT: { min: '4.10' },
  SOCK_OPS: { min: '4.13' },
  SK_SKB: { min: '4.14' },
  CGROUP_DEVICE: { min: '4.15' },
  SK_MSG: { min: '4.17' },
  RAW_TRACEPOINT: { min: '4.17' },
  CGROUP_SOCK_ADDR: { min: '4.17', expectedAttachType: 8 /* BPF_CGROUP_INET4_BIND */ },
  SK_REUSEPORT: { min: '4.19' },
  FLOW_DISSECTOR: { min: '4.20' },
  CGROUP_SYSCTL: { min: '5.2' },
  RAW_TRACEPOINT_WRITABLE: { min: '5.2' },
  CGROUP_SOCKOPT: { min: '5.3', expectedAttachType: 21 /* BPF_CGROUP_GETSOCKOPT */ },
  SK_LOOKUP: { min: '5.9', expectedAttachType: 36 /* BPF_SK_LOOKUP */ },
  SYSCALL: { min: '5.14', progFlags: 1 << 4 /* BPF_F_SLEEPABLE */ },
};

let kernVersion: number | undefined;
function kv(): number {
  return (kernVersion ??= linuxKernelVersion());
}

/** Does the kernel load a trivial program (r0 = 0; exit) of this type? */
export function probeProgType(name: ProgTypeName): FeatureState {
  const p = PROG_PROBES[name];
  if (!p) throw new CoreMatrixError(`no program probe for ${name}`);
  return cached(`prog:${name}`, p.min, () => {
    try {
      const r = progLoad({
        progType: ProgType[name],
        insns: assemble(movImm(R0, 0), exit()),
        license: 'GPL',
        kernVersion: kv(),
        expectedAttachType: p.expectedAttachType,
        progFlags: p.progFlags,
        logLevel: 0,
      });
      close(r.fd);
      return true;
    } catch (e) {
      if (isAbsent(e)) return false;
      throw e;
    }
  });
}

/**
 * Can a program of `progType` call helper `helper` (name from consts.Helper or a number)? Loads
 * "call helper; r0 = 0; exit" and reads the verifier's verdict: "invalid func", "unknown func"
 * or "cannot use helper" means missing; anything else (even an argument complaint) means the
 * helper exists for this program type.
 */
export function probeHelper(helper: keyof typeof Helper | number, progType: ProgTypeName = 'SOCKET_FILTER'): FeatureState {
  const id = typeof helper === 'number' ? helper : Helper[helper];
  const label = typeof helper === 'number' ? `#${helper}` : helper;
  return cached(`helper:${progType}:${label}`, undefined, () => {
    try {
      const r = progLoad({ progType: ProgType[progType], insns: assemble(call(id), movImm(R0, 0), exit()), license: 'GPL', kernVersion: kv(), logLevel: 1, logSize: 4096 });
      close(r.fd);
      return true;
    } catch (e) {
      if (e instanceof VerifierError) return !/invalid func|unknown func|cannot use helper|cannot call/i.test(e.log);
      throw e;
    }
  });
}

/** BPF_LINK_CREATE exists (5.7): a call with prog_fd -1 fails EBADF when it does, EINVAL when not. */
export function probeBpfLink(): FeatureState {
  return cached('bpf_link', '5.7', () =>
    withScratch((s) => {
      const attr = s.alloc(LINK_CREATE.size);
      writeAttr(LINK_CREATE, attr, { prog_fd: 0xffffffff, target_fd: 0xffffffff });
      const { ret, errno } = bpfRaw(BpfCmd.LINK_CREATE, attr, LINK_CREATE.size);
      if (ret >= 0) close(ret);
      return errno !== EINVAL;
    }),
  );
}

/** The kprobe PMU (perf_event_open kprobes without tracefs, 4.17). */
export function probeKprobePmu(): FeatureState {
  return cached('kprobe_pmu', '4.17', () => existsSync('/sys/bus/event_source/devices/kprobe/type'));
}

/**
 * Does the kernel enter syscalls through arch wrappers (`__x64_sys_bpf` and the like)? Asked as
 * libbpf asks it (LINUX_HAS_SYSCALL_WRAPPER): can a kprobe be created on the wrapper of bpf(2),
 * through the kprobe PMU, else as a tracefs kprobe event that is removed again. Any failure, or an
 * architecture libbpf names no prefix for, means no.
 */
export function probeSyscallWrapper(): FeatureState {
  return cached('syscall_wrapper', undefined, () => {
    const prefix = syscallPrefix();
    if (!prefix) return false;
    const func = `__${prefix}_sys_bpf`;
    const pmu = kprobePmu();
    if (pmu) {
      return withScratch((s) => {
        const attr = s.alloc(PERF_EVENT_ATTR.size);
        writeAttr(PERF_EVENT_ATTR, attr, { type: pmu.type, size: PERF_EVENT_ATTR.size, config1: s.cstring(func).addr });
        try {
          // This process only, any CPU: the probe attaches nothing, it only asks.
          close(perfEventOpen(attr, process.pid, -1, -1, Perf.FLAG_FD_CLOEXEC, `kprobe ${func}`));
          return true;
        } catch (e) {
          if (e instanceof SyscallError) return false;
          throw e;
        }
      });
    }
    let root: string;
    try {
      root = tracefs();
    } catch {
      return false; // no kprobe PMU and no tracefs: no kprobe can be placed, on the wrapper or elsewhere
    }
    const event = `corematrix/cm_probe_${process.pid}`;
    try {
      appendFileSync(`${root}/kprobe_events`, `p:${event} ${func}\n`);
    } catch {
      return false;
    }
    try {
      appendFileSync(`${root}/kprobe_events`, `-:${event}\n`);
    } catch {
      // Best effort, as for attached legacy kprobes: the name carries our pid.
    }
    return true;
  });
}

/** BPF_TRACE_UPROBE_MULTI (include/uapi/linux/bpf.h). */
const TRACE_UPROBE_MULTI = AttachType.TRACE_UPROBE_MULTI;

/**
 * Multi-uprobe links that filter by process (libbpf's FEAT_UPROBE_MULTI_LINK, asked as libbpf asks
 * it): a kprobe program loaded for BPF_TRACE_UPROBE_MULTI, then a link on the directory "/" must
 * fail EBADF (the link type exists), and with pid -1 fail EINVAL (the PID filter checks its pid:
 * the first kernels with multi-uprobes filtered by thread, and libbpf treats those as lacking it).
 * libbpf loads USDT programs for BPF_TRACE_UPROBE_MULTI where this holds.
 */
export function probeUprobeMultiLink(): FeatureState {
  return cached('uprobe_multi_link', '6.6', () => {
    let prog: number;
    try {
      prog = progLoad({ progType: ProgType.KPROBE, insns: assemble(movImm(R0, 0), exit()), license: 'GPL', logLevel: 0, expectedAttachType: TRACE_UPROBE_MULTI }).fd;
    } catch (e) {
      if (e instanceof VerifierError || isAbsent(e)) return false;
      throw e;
    }
    try {
      return withScratch((s) => {
        const offset = s.alloc(8);
        const link = (pid: number) => {
          const attr = s.alloc(LINK_CREATE_UPROBE_MULTI.size);
          writeAttr(LINK_CREATE_UPROBE_MULTI, attr, {
            prog_fd: prog, target_fd: 0xffffffff, attach_type: TRACE_UPROBE_MULTI,
            'uprobe_multi.path': s.cstring('/').addr, 'uprobe_multi.offsets': offset.addr, 'uprobe_multi.cnt': 1, 'uprobe_multi.pid': pid >>> 0,
          });
          const { ret, errno } = bpfRaw(BpfCmd.LINK_CREATE, attr, LINK_CREATE_UPROBE_MULTI.size);
          if (ret >= 0) close(ret);
          return ret >= 0 ? 0 : errno;
        };
        return link(0) === EBADF && link(-1) === EINVAL;
      });
    } finally {
      close(prog);
    }
  });
}

/** BPF_FUNC_get_attach_cookie (include/uapi/linux/bpf.h). */
const FUNC_GET_ATTACH_COOKIE = 174;

/**
 * bpf_get_attach_cookie() (5.15), asked as libbpf asks it (LINUX_HAS_BPF_COOKIE): does a
 * tracepoint program that calls it and returns load?
 */
export function probeBpfCookie(): FeatureState {
  return cached('bpf_cookie', '5.15', () => {
    try {
      close(progLoad({ progType: ProgType.TRACEPOINT, insns: assemble(call(FUNC_GET_ATTACH_COOKIE), exit()), license: 'GPL', logLevel: 0 }).fd);
      return true;
    } catch (e) {
      if (e instanceof VerifierError || isAbsent(e)) return false;
      throw e;
    }
  });
}

/** libbpf's virtual kconfig externs other than LINUX_KERNEL_VERSION, each from its probe. */
const KCONFIG_PROBES: Readonly<Record<string, () => FeatureState>> = {
  LINUX_HAS_SYSCALL_WRAPPER: probeSyscallWrapper,
  LINUX_HAS_BPF_COOKIE: probeBpfCookie,
};

/** The names kconfigSpecial knows (LINUX_KERNEL_VERSION is a fact, facts.ts linuxKernelVersion). */
export const KCONFIG_SPECIAL_NAMES: readonly string[] = Object.keys(KCONFIG_PROBES);

/**
 * The value libbpf gives virtual kconfig extern `name` on the running kernel (1 or 0), probed on
 * first use; undefined for a name libbpf does not fill this way.
 */
export function kconfigSpecial(name: string): number | undefined {
  const probe = KCONFIG_PROBES[name];
  return probe ? (probe() === 'supported' ? 1 : 0) : undefined;
}

/**
 * Every virtual kconfig extern of the running kernel, as getters that probe when first read (an
 * object without such externs probes nothing). For KconfigFacts.specials.
 */
export function kconfigSpecials(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of KCONFIG_SPECIAL_NAMES) Object.defineProperty(out, name, { enumerable: true, get: () => kconfigSpecial(name) });
  return out;
}

/** A probe's cached state without probing. */
export function featureState(key: string): FeatureState {
  return cache.get(key) ?? 'unknown';
}

/** Throws FeatureMissingError (naming the minimum version) if a probed feature is missing. */
export function requireFeature(key: string, state: FeatureState): void {
  if (state === 'missing') throw new FeatureMissingError(key, minVersions.get(key));
}

/** Forgets every cached result (tests). */
export function resetProbes(): void {
  cache.clear();
}

/** Runs every probe this module knows; returns key → state. */
export function probeAll(): Record<string, FeatureState> {
  for (const k of Object.keys(BTF_PROBES)) probeBtfKind(k);
  for (const k of Object.keys(MAP_PROBES) as MapTypeName[]) probeMapType(k);
  for (const k of Object.keys(PROG_PROBES) as ProgTypeName[]) probeProgType(k);
  probeMmapableArray();
  probeBpfLink();
  probeKprobePmu();
  probeSyscallWrapper();
  probeBpfCookie();
  for (const h of ['map_lookup_elem', 'ktime_get_ns', 'ringbuf_output', 'loop'] as const) probeHelper(h, 'SOCKET_FILTER');
  for (const h of ['get_current_pid_tgid', 'perf_event_output', 'probe_read_kernel', 'get_current_task_btf'] as const) probeHelper(h, 'KPROBE');
  return Object.fromEntries([...cache.entries()].sort(([a], [b]) => a.localeCompare(b)));
}
