// One typed function per bpf() command. They take plain data, build the attribute in native
// memory (attr.ts), call sys.bpf and return fds/values; handles (map.ts, program.ts, link.ts) sit
// on top. Every fd returned here is registered in fds.ts and must be closed with sys.close.

import koffi from 'koffi';
import { BpfCmd, BTF_INFO, BTF_LOAD, LINK_CREATE, MAP_CREATE, MAP_ELEM, MAP_FREEZE, MAP_NEXT_KEY_OFFSET, OBJ_ID, OBJ_INFO, OBJ_PIN, PROG_LOAD, PROG_TEST_RUN, RAW_TRACEPOINT_OPEN, getU32, writeAttr } from './attr.js';
import { CoreMatrixError } from '../core/errors.js';
import { trackFd } from './fds.js';
import { bpf, bpfRaw, close, errnoNumber, MAP_SHARED, Mapping, NativeMem, PROT_READ, PROT_WRITE, removeMemlockLimit, SyscallError, withScratch } from './sys.js';

/** The kernel rejected a program (or BTF) and explained why in its log. */
export class VerifierError extends SyscallError {
  override name = 'VerifierError';
  /** The whole log, as the kernel wrote it. */
  readonly log: string;
  constructor(call: string, errno: number, log: string, what: string) {
    const reason = verifierReason(log)
      ?? (!log.trim() ? 'rejected with an empty log (bad attributes, not the verifier)'
        : verifierProcessed(log) === 0 ? 'refused before the verifier looked at any instruction (an attach type or flag this kernel lacks)'
          : log.trim().split('\n').at(-1)!.trim());
    super(call, errno, `${what}: ${reason}`);
    this.log = log;
  }
  /** The log split into lines. */
  get lines(): string[] {
    return this.log.split('\n');
  }
}

/**
 * The statistics the verifier ends its log with: "processed N insns", and with BPF_LOG_STATS
 * "verification time", "stack depth" and (7.x) one "subprog N (name) main|global|static
 * insns_self …" line per subprogram.
 */
const VERIFIER_STATS = /^(processed \d+ insns|verification time|stack depth|subprog \d+ \(.*\) (main|global|static) insns_self \d+)/;

/** A source line the verifier quotes from the line info (`; return ctx->x; @ file.c:10`), after the error on 7.x. */
const SOURCE_LINE = /^; .* @ \S+:\d+$/;

/** The verifier's reason for a rejection: the last line of its log that is neither one of its statistics nor a quoted source line. */
export function verifierReason(log: string): string | undefined {
  return log.split('\n').map((l) => l.trim()).filter((l) => l && !VERIFIER_STATS.test(l) && !SOURCE_LINE.test(l)).at(-1);
}

/**
 * How many instructions the verifier says it processed ("processed N insns"), or 0 when it says
 * none: a log of nothing but "processed 0 insns" is a refusal before the first instruction (an
 * attach type or flag this kernel lacks), not a program the verifier accepted.
 */
export function verifierProcessed(log: string): number {
  return Number(/^processed (\d+) insns/m.exec(log)?.[1] ?? 0);
}

/** Object names the kernel accepts: [A-Za-z0-9_.], at most 15 bytes (others fail EINVAL). */
export function objName(name: string | undefined): string {
  return (name ?? '').replace(/[^A-Za-z0-9_.]/g, '_').slice(0, 15);
}

export interface MapCreateAttr {
  mapType: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  mapFlags?: number;
  innerMapFd?: number;
  numaNode?: number;
  name?: string;
  btfFd?: number;
  btfKeyTypeId?: number;
  btfValueTypeId?: number;
  btfVmlinuxValueTypeId?: number;
  mapExtra?: bigint;
}

/** BPF_MAP_CREATE → map fd. */
export function mapCreate(a: MapCreateAttr): number {
  removeMemlockLimit();
  return withScratch((s) => {
    const attr = s.alloc(MAP_CREATE.size);
    writeAttr(MAP_CREATE, attr, {
      map_type: a.mapType,
      key_size: a.keySize,
      value_size: a.valueSize,
      max_entries: a.maxEntries,
      map_flags: a.mapFlags ?? 0,
      inner_map_fd: a.innerMapFd ?? 0,
      numa_node: a.numaNode ?? 0,
      map_name: objName(a.name),
      btf_fd: a.btfFd ?? 0,
      btf_key_type_id: a.btfKeyTypeId ?? 0,
      btf_value_type_id: a.btfValueTypeId ?? 0,
      btf_vmlinux_value_type_id: a.btfVmlinuxValueTypeId ?? 0,
      map_extra: a.mapExtra ?? 0n,
    });
    return trackFd(bpf(BpfCmd.MAP_CREATE, 'BPF_MAP_CREATE', attr, MAP_CREATE.size), 'map', a.name ?? `type ${a.mapType}`);
  });
}

const ENOENT = errnoNumber('ENOENT');

/** BPF_MAP_LOOKUP_ELEM: the value (valueSize bytes), or undefined when the key is absent. */
export function mapLookup(mapFd: number, key: Uint8Array, valueSize: number, flags = 0): Uint8Array | undefined {
  return withScratch((s) => {
    const attr = s.alloc(MAP_ELEM.size);
    const k = s.from(key);
    const v = s.alloc(valueSize);
    writeAttr(MAP_ELEM, attr, { map_fd: mapFd, key: k.addr, value: v.addr, flags });
    const { ret, errno } = bpfRaw(BpfCmd.MAP_LOOKUP_ELEM, attr, MAP_ELEM.size);
    if (ret < 0) {
      if (errno === ENOENT) return undefined;
      throw new SyscallError('bpf(BPF_MAP_LOOKUP_ELEM)', errno);
    }
    return v.copy();
  });
}

/** BPF_MAP_UPDATE_ELEM (flags: BPF_ANY 0, BPF_NOEXIST 1, BPF_EXIST 2, BPF_F_LOCK 4). */
export function mapUpdate(mapFd: number, key: Uint8Array, value: Uint8Array, flags = 0): void {
  withScratch((s) => {
    const attr = s.alloc(MAP_ELEM.size);
    writeAttr(MAP_ELEM, attr, { map_fd: mapFd, key: s.from(key).addr, value: s.from(value).addr, flags });
    bpf(BpfCmd.MAP_UPDATE_ELEM, 'BPF_MAP_UPDATE_ELEM', attr, MAP_ELEM.size);
  });
}

/** BPF_MAP_DELETE_ELEM: false when the key was absent. */
export function mapDelete(mapFd: number, key: Uint8Array): boolean {
  return withScratch((s) => {
    const attr = s.alloc(MAP_ELEM.size);
    writeAttr(MAP_ELEM, attr, { map_fd: mapFd, key: s.from(key).addr });
    const { ret, errno } = bpfRaw(BpfCmd.MAP_DELETE_ELEM, attr, MAP_ELEM.size);
    if (ret < 0) {
      if (errno === ENOENT) return false;
      throw new SyscallError('bpf(BPF_MAP_DELETE_ELEM)', errno);
    }
    return true;
  });
}

/** BPF_MAP_GET_NEXT_KEY: the key after `key` (the first key when `key` is undefined), or undefined at the end. */
export function mapNextKey(mapFd: number, key: Uint8Array | undefined, keySize: number): Uint8Array | undefined {
  return withScratch((s) => {
    const attr = s.alloc(MAP_ELEM.size);
    const next = s.alloc(keySize);
    writeAttr(MAP_ELEM, attr, { map_fd: mapFd, key: key ? s.from(key).addr : 0n });
    attr.view.setBigUint64(MAP_NEXT_KEY_OFFSET, next.addr, true);
    const { ret, errno } = bpfRaw(BpfCmd.MAP_GET_NEXT_KEY, attr, MAP_ELEM.size);
    if (ret < 0) {
      if (errno === ENOENT) return undefined;
      throw new SyscallError('bpf(BPF_MAP_GET_NEXT_KEY)', errno);
    }
    return next.copy();
  });
}

/** BPF_MAP_FREEZE: no more writes from user space. */
export function mapFreeze(mapFd: number): void {
  withScratch((s) => {
    const attr = s.alloc(MAP_FREEZE.size);
    writeAttr(MAP_FREEZE, attr, { map_fd: mapFd });
    bpf(BpfCmd.MAP_FREEZE, 'BPF_MAP_FREEZE', attr, MAP_FREEZE.size);
  });
}

/** BPF_OBJ_PIN: pins a map/program/link fd at `path` on a bpffs. */
export function objPin(fd: number, path: string): void {
  withScratch((s) => {
    const attr = s.alloc(OBJ_PIN.size);
    writeAttr(OBJ_PIN, attr, { pathname: s.cstring(path).addr, bpf_fd: fd });
    bpf(BpfCmd.OBJ_PIN, `BPF_OBJ_PIN ${path}`, attr, OBJ_PIN.size);
  });
}

/** BPF_OBJ_GET: an fd for the object pinned at `path` (tracked as a map: only maps are pinned here). */
export function objGet(path: string): number {
  return withScratch((s) => {
    const attr = s.alloc(OBJ_PIN.size);
    writeAttr(OBJ_PIN, attr, { pathname: s.cstring(path).addr });
    return trackFd(bpf(BpfCmd.OBJ_GET, `BPF_OBJ_GET ${path}`, attr, OBJ_PIN.size), 'map', path);
  });
}

export interface ProgLoadAttr {
  progType: number;
  /** Already relocated instructions, 8 bytes each. */
  insns: Uint8Array;
  license: string;
  name?: string;
  expectedAttachType?: number;
  attachBtfId?: number;
  /** attach_prog_fd (freplace) or attach_btf_obj_fd (module BTF). */
  attachProgFd?: number;
  kernVersion?: number;
  progFlags?: number;
  progBtfFd?: number;
  funcInfo?: Uint8Array;
  funcInfoRecSize?: number;
  lineInfo?: Uint8Array;
  lineInfoRecSize?: number;
  /** fd_array (5.14+), for BPF_PSEUDO_MAP_IDX / kfunc module BTF fds. */
  fdArray?: number[];
  /** 0 = no log unless the load fails (then it is retried with level 1), 1 = verifier log, 2 = verbose. */
  logLevel?: number;
  /** Initial log buffer size in bytes (×4 on ENOSPC up to 64 MiB). Default 64 KiB. */
  logSize?: number;
}

export interface ProgLoadResult {
  fd: number;
  /** The verifier log when one was asked for (logLevel > 0), else ''. */
  log: string;
}

const EACCES = errnoNumber('EACCES');
const EINVAL = errnoNumber('EINVAL');
const ENOSPC = errnoNumber('ENOSPC');
/** Largest log buffer we grow to (a level-1 log of a 1M-insn failure fits; guests have 1 GiB). */
const MAX_LOG = 64 << 20;

function logText(mem: NativeMem): string {
  const end = mem.bytes.indexOf(0);
  return new TextDecoder().decode(mem.bytes.subarray(0, end < 0 ? mem.size : end));
}

/**
 * Time this process spent inside bpf(BPF_PROG_LOAD), cumulative (every call: loads, retries for
 * the log, probes): the verifier's share of a load, read as a difference before and after.
 */
export const progLoadStats = { calls: 0, ms: 0 };

/** log_level BPF_LOG_STATS: the verifier's verdict and its statistics, no instruction trace. */
const BPF_LOG_STATS = 4;

/**
 * BPF_PROG_LOAD → prog fd. A refusal throws VerifierError with the full log (a load without log
 * is retried once with log level 1 to obtain it, as libbpf does); ENOSPC grows the log buffer.
 */
export function progLoad(a: ProgLoadAttr): ProgLoadResult {
  if (a.insns.length % 8 !== 0 || a.insns.length === 0) throw new SyscallError('bpf(BPF_PROG_LOAD)', EINVAL, `${a.insns.length} instruction bytes is not a positive multiple of 8`);
  removeMemlockLimit();
  const what = `program '${a.name ?? ''}'`;
  let level = a.logLevel ?? 0;
  let size = a.logSize ?? 64 * 1024;
  for (;;) {
    const r = withScratch((s) => {
      const attr = s.alloc(PROG_LOAD.size);
      const log = level > 0 ? s.alloc(size) : undefined;
      const fdArr = a.fdArray?.length ? s.alloc(4 * a.fdArray.length) : undefined;
      a.fdArray?.forEach((fd, i) => fdArr!.view.setInt32(4 * i, fd, true));
      writeAttr(PROG_LOAD, attr, {
        prog_type: a.progType,
        insn_cnt: a.insns.length / 8,
        insns: s.from(a.insns).addr,
        license: s.cstring(a.license).addr,
        log_level: level,
        log_size: log ? size : 0,
        log_buf: log ? log.addr : 0n,
        kern_version: a.kernVersion ?? 0,
        prog_flags: a.progFlags ?? 0,
        prog_name: objName(a.name),
        expected_attach_type: a.expectedAttachType ?? 0,
        prog_btf_fd: a.progBtfFd ?? 0,
        func_info_rec_size: a.funcInfo ? (a.funcInfoRecSize ?? 8) : 0,
        func_info: a.funcInfo ? s.from(a.funcInfo).addr : 0n,
        func_info_cnt: a.funcInfo ? a.funcInfo.length / (a.funcInfoRecSize ?? 8) : 0,
        line_info_rec_size: a.lineInfo ? (a.lineInfoRecSize ?? 16) : 0,
        line_info: a.lineInfo ? s.from(a.lineInfo).addr : 0n,
        line_info_cnt: a.lineInfo ? a.lineInfo.length / (a.lineInfoRecSize ?? 16) : 0,
        attach_btf_id: a.attachBtfId ?? 0,
        attach_prog_fd: a.attachProgFd ?? 0,
        fd_array: fdArr ? fdArr.addr : 0n,
      });
      const t0 = performance.now();
      const { ret, errno } = bpfRaw(BpfCmd.PROG_LOAD, attr, PROG_LOAD.size);
      progLoadStats.ms += performance.now() - t0;
      progLoadStats.calls++;
      return { ret, errno, log: log ? logText(log) : '' };
    });
    if (r.ret >= 0) return { fd: trackFd(r.ret, 'prog', a.name ?? `type ${a.progType}`), log: r.log };
    if (r.errno === ENOSPC && level > 0 && size < MAX_LOG) {
      size = Math.min(size * 4, MAX_LOG);
      continue;
    }
    if ((r.errno === EACCES || r.errno === EINVAL) && level === 0) {
      level = 1;
      continue;
    }
    // A load without a log that fails otherwise is tried again too, as libbpf does, for the
    // verifier's reason: E2BIG after a million instructions and ENOENT for a bad global function
    // argument are its verdicts, with a log saying so. At BPF_LOG_STATS only: a level-1 trace of a
    // million instructions took minutes under TCG (loop3.bpf.o: 5 s to 211 s).
    if (level === 0) {
      level = BPF_LOG_STATS;
      continue;
    }
    if (r.errno === EACCES || r.errno === EINVAL || r.log) throw new VerifierError('bpf(BPF_PROG_LOAD)', r.errno, r.log, what);
    throw new SyscallError('bpf(BPF_PROG_LOAD)', r.errno, what);
  }
}

export interface BtfLoadResult {
  fd: number;
  log: string;
}

/** BPF_BTF_LOAD → btf fd. Failures carry the kernel's BTF log (retried with a log to get it). */
export function btfLoad(btf: Uint8Array, opts: { logLevel?: number; logSize?: number; label?: string } = {}): BtfLoadResult {
  removeMemlockLimit();
  let level = opts.logLevel ?? 0;
  let size = opts.logSize ?? 64 * 1024;
  for (;;) {
    const r = withScratch((s) => {
      const attr = s.alloc(BTF_LOAD.size);
      const log = level > 0 ? s.alloc(size) : undefined;
      writeAttr(BTF_LOAD, attr, {
        btf: s.from(btf).addr,
        btf_size: btf.length,
        btf_log_buf: log ? log.addr : 0n,
        btf_log_size: log ? size : 0,
        btf_log_level: level,
      });
      const { ret, errno } = bpfRaw(BpfCmd.BTF_LOAD, attr, BTF_LOAD.size);
      return { ret, errno, log: log ? logText(log) : '' };
    });
    if (r.ret >= 0) return { fd: trackFd(r.ret, 'btf', opts.label ?? 'btf'), log: r.log };
    if (r.errno === ENOSPC && level > 0 && size < MAX_LOG) {
      size = Math.min(size * 4, MAX_LOG);
      continue;
    }
    if (r.errno === EINVAL && level === 0) {
      level = 1;
      continue;
    }
    if (r.log) throw new VerifierError('bpf(BPF_BTF_LOAD)', r.errno, r.log, opts.label ?? 'BTF');
    throw new SyscallError('bpf(BPF_BTF_LOAD)', r.errno, opts.label);
  }
}

export interface TestRunOptions {
  /** Packet/input data (skb programs need at least 14 bytes: an Ethernet header). */
  data?: Uint8Array;
  /** Size of the data_out buffer (default: data length, 0 for no output). */
  dataOutSize?: number;
  ctx?: Uint8Array;
  ctxOutSize?: number;
  repeat?: number;
  flags?: number;
  cpu?: number;
}
export interface TestRunResult {
  retval: number;
  /** Average run time in ns as reported by the kernel. */
  duration: number;
  dataOut?: Uint8Array;
  ctxOut?: Uint8Array;
}

/** BPF_PROG_TEST_RUN. */
export function progTestRun(progFd: number, o: TestRunOptions = {}): TestRunResult {
  return withScratch((s) => {
    const attr = s.alloc(PROG_TEST_RUN.size);
    const outSize = o.dataOutSize ?? o.data?.length ?? 0;
    const dataOut = outSize > 0 ? s.alloc(outSize) : undefined;
    const ctxOut = o.ctxOutSize ? s.alloc(o.ctxOutSize) : undefined;
    writeAttr(PROG_TEST_RUN, attr, {
      prog_fd: progFd,
      data_size_in: o.data?.length ?? 0,
      data_in: o.data ? s.from(o.data).addr : 0n,
      data_size_out: outSize,
      data_out: dataOut ? dataOut.addr : 0n,
      repeat: o.repeat ?? 0,
      ctx_size_in: o.ctx?.length ?? 0,
      ctx_in: o.ctx ? s.from(o.ctx).addr : 0n,
      ctx_size_out: o.ctxOutSize ?? 0,
      ctx_out: ctxOut ? ctxOut.addr : 0n,
      flags: o.flags ?? 0,
      cpu: o.cpu ?? 0,
    });
    bpf(BpfCmd.PROG_TEST_RUN, 'BPF_PROG_TEST_RUN', attr, PROG_TEST_RUN.size);
    const retval = getU32(PROG_TEST_RUN, attr, 'retval');
    const r: TestRunResult = { retval, duration: getU32(PROG_TEST_RUN, attr, 'duration') };
    if (dataOut) r.dataOut = dataOut.copy(Math.min(outSize, getU32(PROG_TEST_RUN, attr, 'data_size_out')));
    if (ctxOut) r.ctxOut = ctxOut.copy(Math.min(o.ctxOutSize!, getU32(PROG_TEST_RUN, attr, 'ctx_size_out')));
    return r;
  });
}

/**
 * BPF_OBJ_GET_INFO_BY_FD: fills `info` (a zeroed native buffer whose pointer fields the caller
 * set) and returns the info_len the kernel reports (shorter on older kernels).
 */
export function objGetInfo(fd: number, info: NativeMem): number {
  return withScratch((s) => {
    const attr = s.alloc(OBJ_INFO.size);
    writeAttr(OBJ_INFO, attr, { bpf_fd: fd, info_len: info.size, info: info.addr });
    bpf(BpfCmd.OBJ_GET_INFO_BY_FD, 'BPF_OBJ_GET_INFO_BY_FD', attr, OBJ_INFO.size);
    return getU32(OBJ_INFO, attr, 'info_len');
  });
}

/**
 * For BTF object `id`: the next id (BPF_BTF_GET_NEXT_ID) or an fd (BPF_BTF_GET_FD_BY_ID);
 * undefined on ENOENT (no next id, or the object has gone meanwhile).
 */
function btfById(want: 'next' | 'fd', id: number): number | undefined {
  const [cmd, what] = want === 'next' ? [BpfCmd.BTF_GET_NEXT_ID, 'BPF_BTF_GET_NEXT_ID'] : [BpfCmd.BTF_GET_FD_BY_ID, 'BPF_BTF_GET_FD_BY_ID'];
  return withScratch((s) => {
    const attr = s.alloc(OBJ_ID.size);
    writeAttr(OBJ_ID, attr, { id });
    const { ret, errno } = bpfRaw(cmd, attr, OBJ_ID.size);
    if (ret < 0) {
      if (errno === ENOENT) return undefined;
      throw new SyscallError(`bpf(${what} ${id})`, errno);
    }
    return want === 'next' ? getU32(OBJ_ID, attr, 'next_id') : trackFd(ret, 'btf', `id ${id}`);
  });
}

const BTF_NAME_LEN = 64;

/**
 * A kernel BTF object's name ('vmlinux' or a module's) when it is the kernel's own, undefined for
 * one a program loaded, null when the kernel's bpf_btf_info has no name (before 5.11: no module BTF).
 */
function kernelBtfName(fd: number): string | undefined | null {
  return withScratch((s) => {
    const info = s.alloc(BTF_INFO.size);
    // First with every pointer zero: a kernel before 5.11 knows 16 bytes of bpf_btf_info,
    // accepts a longer tail only when it is zero (E2BIG otherwise), and says so in info_len.
    if (objGetInfo(fd, info) < BTF_INFO.size) return null;
    if (getU32(BTF_INFO, info, 'kernel_btf') !== 1) return undefined;
    const name = s.alloc(BTF_NAME_LEN);
    info.bytes.fill(0);
    writeAttr(BTF_INFO, info, { name: name.addr, name_len: BTF_NAME_LEN });
    objGetInfo(fd, info);
    return new TextDecoder().decode(name.bytes.subarray(0, name.bytes.indexOf(0)));
  });
}

/** A kernel module's BTF object, with an fd the caller closes. */
export interface ModuleBtfObject {
  id: number;
  /** The module's name (`nf_conntrack`). */
  name: string;
  fd: number;
}

const EPERM = errnoNumber('EPERM');

/** The next BTF object id, as btfById('next'), or undefined where walking them is not allowed (EPERM): libbpf then goes on without module BTF. */
function nextBtfIdIfAllowed(id: number): number | undefined {
  try {
    return btfById('next', id);
  } catch (e) {
    if (e instanceof SyscallError && e.errno === EPERM) return undefined;
    throw e;
  }
}

/**
 * The loaded modules' BTF objects in id order, as libbpf walks them (BPF_BTF_GET_NEXT_ID, then
 * each one's name). Empty on a kernel whose bpf_btf_info has no name (before 5.11, which has no
 * module BTF: libbpf's FEAT_MODULE_BTF probe), and without the privilege to walk them.
 */
export function moduleBtfObjects(): ModuleBtfObject[] {
  const out: ModuleBtfObject[] = [];
  for (let id: number | undefined = 0, seen = 0; (id = nextBtfIdIfAllowed(id)) !== undefined && seen < 65536; seen++) {
    const fd = btfById('fd', id);
    if (fd === undefined) continue; // unloaded meanwhile
    let keep = false;
    try {
      const name = kernelBtfName(fd);
      if (name === null) return out;
      if (name !== undefined && name !== 'vmlinux') {
        out.push({ id, name, fd });
        keep = true;
      }
    } catch (e) {
      for (const o of out) close(o.fd);
      throw e;
    } finally {
      if (!keep) close(fd);
    }
  }
  return out;
}

/** The raw bytes of a BTF object (BPF_OBJ_GET_INFO_BY_FD with a buffer): a module's split BTF, as /sys/kernel/btf/<module> holds it. */
export function btfObjectBytes(fd: number): Uint8Array {
  return withScratch((s) => {
    const info = s.alloc(BTF_INFO.size);
    objGetInfo(fd, info);
    const size = getU32(BTF_INFO, info, 'btf_size');
    const data = s.alloc(size);
    info.bytes.fill(0);
    writeAttr(BTF_INFO, info, { btf: data.addr, btf_size: size });
    objGetInfo(fd, info);
    return data.copy();
  });
}

// mmap with an address: an arena whose map_extra fixed its user address must be mapped exactly
// there. (sys.ts's mmap always passes NULL; this belongs beside it once it takes an address.)
const cMmapAt = koffi.load('libc.so.6').func('void *mmap(uintptr_t addr, size_t length, int prot, int flags, int fd, int64_t offset)');
const MAP_FIXED = 0x10;

/**
 * mmap()s an arena map read-write, as libbpf does right after creating it: at `userAddr` (the
 * map's map_extra, which fixed where user space sees it) with MAP_FIXED, or where the kernel
 * chooses when 0 (the kernel then takes that address as the arena's user start). `length` is one
 * page per max_entries.
 */
export function mmapArena(mapFd: number, length: number, userAddr: bigint, what: string): Mapping {
  const p = cMmapAt(userAddr, length, PROT_READ | PROT_WRITE, userAddr ? MAP_SHARED | MAP_FIXED : MAP_SHARED, mapFd, 0) as unknown;
  const addr = p === null ? 0n : BigInt(koffi.address(p));
  if (addr === 0xffffffffffffffffn || addr === 0n) throw new SyscallError(`mmap(${what})`, koffi.errno());
  return new Mapping(addr, length);
}

/**
 * The running kernel's own BTF (vmlinux), which the kernel copies out in one
 * bpf(BPF_OBJ_GET_INFO_BY_FD) call. /sys/kernel/btf/vmlinux holds the same bytes but hands them
 * out 4 KiB per read(2): ~1,300 calls for 5 MB, ~60 ms in a TCG guest. The bytes live in native
 * memory that is never freed. Undefined when the kernel does not say which BTF object is
 * vmlinux's (bpf_btf_info.name and kernel_btf came in 5.11) or has not given it an id yet (it
 * does when it first parses it: at boot on 6.x, at the first program load on some 5.1x): read
 * the file then.
 */
export function vmlinuxBtf(): Uint8Array | undefined {
  for (let id: number | undefined = 0, seen = 0; (id = btfById('next', id)) !== undefined && seen < 65536; seen++) {
    const fd = btfById('fd', id);
    if (fd === undefined) continue;
    try {
      const found = withScratch((s) => {
        const name = kernelBtfName(fd);
        if (name === null) return null;
        if (name !== 'vmlinux') return undefined;
        const info = s.alloc(BTF_INFO.size);
        objGetInfo(fd, info);
        const size = getU32(BTF_INFO, info, 'btf_size');
        // Native memory the caller keeps (never freed: the kernel's BTF is used to the end); a
        // copy into the JS heap would cost another pass over 5 MB under TCG.
        const data = new NativeMem(size);
        try {
          info.bytes.fill(0);
          writeAttr(BTF_INFO, info, { btf: data.addr, btf_size: size });
          objGetInfo(fd, info);
          const now = getU32(BTF_INFO, info, 'btf_size');
          if (now !== size) throw new CoreMatrixError(`bpf(BPF_OBJ_GET_INFO_BY_FD): the kernel's vmlinux BTF was ${size} bytes, then ${now}`);
        } catch (e) {
          data.free();
          throw e;
        }
        return data.bytes;
      });
      if (found === null) return undefined;
      if (found) return found;
    } finally {
      close(fd);
    }
  }
  return undefined;
}

/** BPF_RAW_TRACEPOINT_OPEN → link fd. `name` undefined attaches a tracing (fentry/fexit/lsm) program. */
export function rawTracepointOpen(progFd: number, name: string | undefined): number {
  return withScratch((s) => {
    const attr = s.alloc(RAW_TRACEPOINT_OPEN.size);
    writeAttr(RAW_TRACEPOINT_OPEN, attr, { name: name === undefined ? 0n : s.cstring(name).addr, prog_fd: progFd });
    return trackFd(bpf(BpfCmd.RAW_TRACEPOINT_OPEN, 'BPF_RAW_TRACEPOINT_OPEN', attr, RAW_TRACEPOINT_OPEN.size), 'link', name ?? 'tracing');
  });
}

export interface LinkCreateAttr {
  progFd: number;
  targetFd?: number;
  attachType: number;
  flags?: number;
  targetBtfId?: number;
}

/** BPF_LINK_CREATE → link fd. */
export function linkCreate(a: LinkCreateAttr, label = 'link'): number {
  return withScratch((s) => {
    const attr = s.alloc(LINK_CREATE.size);
    writeAttr(LINK_CREATE, attr, {
      prog_fd: a.progFd,
      target_fd: a.targetFd ?? 0,
      attach_type: a.attachType,
      flags: a.flags ?? 0,
      target_btf_id: a.targetBtfId ?? 0,
    });
    return trackFd(bpf(BpfCmd.LINK_CREATE, 'BPF_LINK_CREATE', attr, LINK_CREATE.size), 'link', label);
  });
}
