// The reference loader: libbpf loads the same object in the same kernel, so our loader's verdicts
// and translated instructions can be checked against libbpf's. Two libbpfs can answer: Debian's
// (libbpf.so.1, the same package on the host and in every guest image; the default) and a current
// one built from the newest Debian linux-source's tools/lib/bpf (harness/reference/build.ts), named
// by `ReferenceOptions.library`; every outcome names which one answered. Called through koffi;
// nothing here is copied from libbpf, only its stable public API (libbpf.h of libbpf 1.1) is used.
//
// libbpf loads all autoloaded programs of an object at once and one failure fails the whole load,
// so each program gets its own open + load with only that program autoloaded: one verdict each.

import koffi from 'koffi';
import { CoreMatrixError } from '../core/errors.js';
import { verifierProcessed, verifierReason } from '../runtime/bpf.js';
import { Program } from '../runtime/program.js';
import { NativeMem } from '../runtime/sys.js';

/**
 * `struct bpf_object_open_opts` of libbpf 1.1 (byte offsets on x86-64), checked against
 * /usr/include/bpf/libbpf.h and the current libbpf's header by test/reference/libbpf-layout.test.ts.
 * Newer libbpfs only append fields and read no further than `sz`, so these 80 bytes suit both.
 */
export const OPEN_OPTS = {
  size: 80,
  fields: {
    sz: [0, 8],
    object_name: [8, 8],
    relaxed_maps: [16, 1],
    pin_root_path: [24, 8],
    kconfig: [40, 8],
    btf_custom_path: [48, 8],
    kernel_log_buf: [56, 8],
    kernel_log_size: [64, 8],
    kernel_log_level: [72, 4],
  },
} as const satisfies { size: number; fields: Record<string, readonly [number, number]> };

/** `enum libbpf_print_level`. */
export const PrintLevel = { WARN: 0, INFO: 1, DEBUG: 2 } as const;

/** Verifier log level used for each program: BPF_LOG_STATS ("processed N insns") plus any error line. */
const LOG_STATS = 4;
const VERIFIER_LOG_SIZE = 1 << 20;
const PRINT_BUF_SIZE = 1 << 18;

export interface ReferenceOutcome {
  name: string;
  /** Which libbpf answered, e.g. `libbpf 1.8.0 (linux-source-7.3 7.3.4-1~bpo13+1)` (see libbpfInfo). */
  libbpf: string;
  /** 'not-loaded': autoload is off (`SEC("?...")`, or the object's config), so libbpf does not load it. */
  status: 'loaded' | 'rejected' | 'relocation-failed' | 'error' | 'not-loaded';
  reason?: string;
  /** Kernel-translated instructions (hex) from BPF_OBJ_GET_INFO_BY_FD on libbpf's program fd. */
  xlated?: string;
  insnsProcessed?: number;
  /** libbpf's CO-RE decisions for this program: its `prog '<name>': relo #N: patched insn / substituting insn / ...failed` lines. */
  relocations: string[];
  /** The verifier log (stats level, or the error when rejected), trimmed. */
  verifierLog?: string;
  /** Every line libbpf printed (all levels, "level: text") during this program's open and load. */
  log: string[];
  loadMs: number;
}

export interface ReferenceOptions {
  /** Custom BTF for CO-RE relocations instead of /sys/kernel/btf/vmlinux (`btf_custom_path`). */
  btfCustomPath?: string;
  /** Extra Kconfig text ("CONFIG_X=y\n…") overriding the system's for CONFIG_* externs. */
  kconfig?: string;
  /** Only these programs (default: every program of the object). */
  programs?: string[];
  /** Which libbpf loads the object (default SYSTEM_LIBBPF, Debian's libbpf.so.1). */
  library?: ReferenceLibrary;
  /** What the tool's user space sets between open and load (an object config, as our loader applied it). */
  configure?: LibbpfSettings;
}

/**
 * Settings made between bpf_object__open and bpf_object__load, by libbpf's own setters: the same
 * configuration our loader applied (harness/loader/object-config.ts), expressed as what changed.
 */
export interface LibbpfSettings {
  /** Program → bpf_program__set_autoload. */
  autoload?: Record<string, boolean>;
  /** Program → bpf_program__set_attach_target(prog, 0, name): the BTF target of fentry/fexit/lsm/tp_btf/... */
  attachTarget?: Record<string, string>;
  /**
   * freplace program → the program whose function it replaces. A tool loads the target first and
   * then sets bpf_program__set_attach_target(prog, target's fd, function): libbpf loads these in a
   * second bpf_object of the same file, after the first one loaded. With `object`, the target is a
   * program of another object of the run, loaded by libbpf before this one and still open: the
   * caller gives its fd (`programFd`, bpf_program__fd of that bpf_object's program).
   */
  attachProgram?: Record<string, { program: string; function: string; object?: string; programFd?: number }>;
  /** Map → bpf_map__set_max_entries. */
  maxEntries?: Record<string, number>;
  /** Map (`.rodata`, `.data`, `.bss`, ...) → bpf_map__set_initial_value. */
  initialValue?: Record<string, Uint8Array>;
}

/** A libbpf shared library to load objects with. */
export interface ReferenceLibrary {
  /** A path (or a soname the dynamic loader finds, such as libbpf.so.1). */
  so: string;
  /** Where it came from, e.g. `linux-source-7.3 7.3.4-1~bpo13+1`: named in every outcome. */
  source?: string;
  /** Its full version (e.g. 1.8.0 from libbpf.map); must agree with what the library says of itself. */
  version?: string;
}

/** Debian's libbpf, as the dynamic loader finds it (libbpf1 on the host and in every guest). */
export const SYSTEM_LIBBPF: ReferenceLibrary = { so: 'libbpf.so.1', source: 'system libbpf.so.1' };

export interface ReferenceLoad {
  /** Which libbpf answered (as in each outcome). */
  libbpf: string;
  /** The library file (or soname) that loaded it, for binding more of its API (attach). */
  so: string;
  outcomes: ReferenceOutcome[];
  /** libbpf's `struct bpf_program *` of every program it loaded, valid until close(). */
  loaded: { name: string; prog: bigint }[];
  /** The object's maps (name, type) as libbpf sees them. */
  maps: { name: string; type: number }[];
  /** The fd of map `map` in the bpf_object that loaded `program` (whole load: one object for all). */
  mapFd(program: string, map: string): number | undefined;
  /** libbpf's `struct bpf_map *` of map `map`, in the object that loaded `program`. */
  mapHandle(program: string, map: string): bigint | undefined;
  /** Closes every bpf_object (and so every program and map) libbpf opened. */
  close(): void;
}

/**
 * The libbpf functions used here, as koffi prototypes (pointers to libbpf's own structs are
 * `void *`). test/reference/libbpf-layout.test.ts compiles a reference to each against the headers.
 */
export const LIBBPF_FUNCTIONS = {
  setPrint: 'void *libbpf_set_print(corematrix_libbpf_print *fn)',
  openMem: 'void *bpf_object__open_mem(void *buf, size_t size, void *opts)',
  load: 'int bpf_object__load(void *obj)',
  close: 'void bpf_object__close(void *obj)',
  nextProgram: 'void *bpf_object__next_program(void *obj, void *prev)',
  programName: 'const char *bpf_program__name(void *prog)',
  programFd: 'int bpf_program__fd(void *prog)',
  setAutoload: 'int bpf_program__set_autoload(void *prog, bool autoload)',
  autoload: 'bool bpf_program__autoload(void *prog)',
  setLogBuf: 'int bpf_program__set_log_buf(void *prog, void *buf, size_t size)',
  setLogLevel: 'int bpf_program__set_log_level(void *prog, uint32_t level)',
  strerror: 'int libbpf_strerror(int err, void *buf, size_t size)',
  setAttachTarget: 'int bpf_program__set_attach_target(void *prog, int attach_prog_fd, const char *attach_func_name)',
  findMap: 'void *bpf_object__find_map_by_name(void *obj, const char *name)',
  mapFd: 'int bpf_map__fd(void *map)',
  nextMap: 'void *bpf_object__next_map(void *obj, void *prev)',
  mapName: 'const char *bpf_map__name(void *map)',
  mapType: 'int bpf_map__type(void *map)',
  setMaxEntries: 'int bpf_map__set_max_entries(void *map, uint32_t max_entries)',
  setInitialValue: 'int bpf_map__set_initial_value(void *map, const void *data, size_t size)',
  version: 'const char *libbpf_version_string(void)',
  major: 'uint32_t libbpf_major_version(void)',
  minor: 'uint32_t libbpf_minor_version(void)',
} as const;

/** What a loaded libbpf says of itself. */
export interface LibbpfInfo {
  /** `libbpf <version> (<source>)`, named in every outcome. */
  label: string;
  major: number;
  minor: number;
  /** libbpf_version_string(), e.g. "v1.8". */
  versionString: string;
  so: string;
}

interface Lib {
  info: Omit<LibbpfInfo, 'label'>;
  openMem: (buf: bigint, size: number, opts: bigint) => bigint | null;
  load: (obj: bigint) => number;
  close: (obj: bigint) => void;
  nextProgram: (obj: bigint, prev: bigint | null) => bigint | null;
  programName: (prog: bigint) => string;
  programFd: (prog: bigint) => number;
  setAutoload: (prog: bigint, on: boolean) => number;
  autoload: (prog: bigint) => boolean;
  setLogBuf: (prog: bigint, buf: bigint, size: number) => number;
  setLogLevel: (prog: bigint, level: number) => number;
  strerror: (err: number, buf: bigint, size: number) => number;
  setAttachTarget: (prog: bigint, fd: number, name: string) => number;
  findMap: (obj: bigint, name: string) => bigint | null;
  mapFd: (map: bigint) => number;
  nextMap: (obj: bigint, prev: bigint | null) => bigint | null;
  mapName: (map: bigint) => string;
  mapType: (map: bigint) => number;
  setMaxEntries: (map: bigint, n: number) => number;
  setInitialValue: (map: bigint, data: bigint, size: number) => number;
}

/** Loaded libraries by `so`, each with the address of its version string (its identity). */
const libs = new Map<string, { lib: Lib; id: bigint }>();
/** Lines printed by libbpf since the last `takeLines()`; filled by the print callback. */
let printed: string[] = [];
let printCallback: unknown;

function takeLines(): string[] {
  const l = printed;
  printed = [];
  return l;
}

/** The print callback every loaded libbpf is given (made once: koffi keeps it for the process). */
function printer(): unknown {
  if (printCallback) return printCallback;
  const libc = koffi.load('libc.so.6');
  // va_list on x86-64 is an array type: a callee receives it as a pointer, which vsnprintf takes.
  const vsnprintf = libc.func('int vsnprintf(void *buf, size_t n, void *fmt, void *ap)');
  const printProto = koffi.proto('int corematrix_libbpf_print(int level, void *fmt, void *ap)');
  const buf = new NativeMem(PRINT_BUF_SIZE);
  printCallback = koffi.register((level: number, fmt: bigint, ap: bigint) => {
    const n = Number(vsnprintf(buf.addr, PRINT_BUF_SIZE, fmt, ap));
    const len = Math.max(0, Math.min(n, PRINT_BUF_SIZE - 1));
    let text = Buffer.from(buf.bytes.subarray(0, len)).toString('utf8');
    if (n >= PRINT_BUF_SIZE) text += ' <truncated>';
    const name = level === PrintLevel.WARN ? 'warn' : level === PrintLevel.INFO ? 'info' : 'debug';
    for (const line of text.replace(/\n$/, '').split('\n')) printed.push(`${name}: ${line}`);
    return 0;
  }, koffi.pointer(printProto));
  return printCallback;
}

/**
 * Opens a libbpf (once per `so` and process), installs the print callback in it, and checks that it
 * is the version `library` says; `label` names it as outcomes do.
 */
function libbpf(library: ReferenceLibrary = SYSTEM_LIBBPF): Lib & { label: string } {
  const lib = libs.get(library.so)?.lib ?? openLibrary(library.so);
  const { major, minor } = lib.info;
  if (library.version !== undefined && library.version.split('.').slice(0, 2).join('.') !== `${major}.${minor}`) {
    throw new CoreMatrixError(`reference: ${library.so} says it is libbpf ${major}.${minor}, not ${library.version}`);
  }
  return { ...lib, label: `libbpf ${library.version ?? `${major}.${minor}`} (${library.source ?? library.so})` };
}

function openLibrary(path: string): Lib {
  // Both libbpfs have the soname libbpf.so.1, and dlopen("libbpf.so.1") returns any library
  // already loaded under that soname: load the system's first, so that a later request for it
  // cannot get the one loaded by path (the identity check below catches any other way).
  if (path.includes('/') && !libs.has(SYSTEM_LIBBPF.so)) {
    try {
      openLibrary(SYSTEM_LIBBPF.so);
    } catch {
      /* no system libbpf here: nothing to confuse it with */
    }
  }
  let so: ReturnType<typeof koffi.load>;
  try {
    so = koffi.load(path);
  } catch (e) {
    throw new CoreMatrixError(`reference: cannot load ${path}: ${(e as Error).message.split('\n')[0]}`);
  }
  const fn = <K extends keyof typeof LIBBPF_FUNCTIONS>(k: K) => {
    try {
      return so.func(LIBBPF_FUNCTIONS[k]);
    } catch (e) {
      throw new CoreMatrixError(`reference: ${path} lacks ${LIBBPF_FUNCTIONS[k]}: ${(e as Error).message.split('\n')[0]}`);
    }
  };
  const cb = printer();
  // The address of its static version string tells two loaded libraries apart.
  const id = koffi.address(so.func('void *libbpf_version_string(void)')());
  const same = [...libs].find(([, l]) => l.id === id);
  if (same) throw new CoreMatrixError(`reference: ${path} resolved to the libbpf already loaded as ${same[0]} (same file or same soname)`);
  // The callback stays registered for the life of the process (libbpf keeps the pointer).
  fn('setPrint')(cb);
  const lib: Lib = {
    info: { major: Number(fn('major')()), minor: Number(fn('minor')()), versionString: fn('version')(), so: path },
    openMem: fn('openMem'),
    load: fn('load'),
    close: fn('close'),
    nextProgram: fn('nextProgram'),
    programName: fn('programName'),
    programFd: fn('programFd'),
    setAutoload: fn('setAutoload'),
    autoload: fn('autoload'),
    setLogBuf: fn('setLogBuf'),
    setLogLevel: fn('setLogLevel'),
    strerror: fn('strerror'),
    setAttachTarget: fn('setAttachTarget'),
    findMap: fn('findMap'),
    mapFd: fn('mapFd'),
    nextMap: fn('nextMap'),
    mapName: fn('mapName'),
    mapType: fn('mapType'),
    setMaxEntries: fn('setMaxEntries'),
    setInitialValue: fn('setInitialValue'),
  };
  libs.set(path, { lib, id });
  return lib;
}

/** libbpf's version string ("v1.1") of the system's libbpf, or of `library`. */
export function libbpfVersion(library?: ReferenceLibrary): string {
  return libbpf(library).info.versionString;
}

/** What a libbpf says of itself (its public API) and the label its outcomes carry. */
export function libbpfInfo(library?: ReferenceLibrary): LibbpfInfo {
  const l = libbpf(library);
  return { ...l.info, label: l.label };
}

/** libbpf_strerror: libbpf's own codes (4000+, e.g. "Relocation failed") and errno values. */
export function libbpfStrerror(err: number, library?: ReferenceLibrary): string {
  return strerrorOf(libbpf(library), err);
}

function strerrorOf(l: Lib, err: number): string {
  const b = new NativeMem(256);
  try {
    l.strerror(Math.abs(err), b.addr, 256);
    const end = b.bytes.indexOf(0);
    return Buffer.from(b.bytes.subarray(0, end < 0 ? 256 : end)).toString('utf8');
  } finally {
    b.free();
  }
}

/** An opened (not yet loaded) bpf_object with the native memory it references. */
class OpenObject {
  private constructor(
    private readonly lib: Lib,
    readonly ptr: bigint,
    private readonly mems: NativeMem[],
  ) {}

  static open(l: Lib, bytes: Uint8Array, name: string, o: ReferenceOptions): OpenObject {
    const mems: NativeMem[] = [];
    const keep = (m: NativeMem) => (mems.push(m), m);
    // libbpf may keep pointers into the object buffer and the option strings: native memory
    // that lives until bpf_object__close.
    const obj = keep(NativeMem.from(bytes));
    const opts = keep(new NativeMem(OPEN_OPTS.size));
    const f = OPEN_OPTS.fields;
    opts.view.setBigUint64(f.sz[0], BigInt(OPEN_OPTS.size), true);
    opts.view.setBigUint64(f.object_name[0], keep(NativeMem.cstring(name)).addr, true);
    if (o.kconfig !== undefined) opts.view.setBigUint64(f.kconfig[0], keep(NativeMem.cstring(o.kconfig)).addr, true);
    if (o.btfCustomPath !== undefined) opts.view.setBigUint64(f.btf_custom_path[0], keep(NativeMem.cstring(o.btfCustomPath)).addr, true);
    const ptr = l.openMem(obj.addr, bytes.length, opts.addr);
    if (!ptr) {
      const err = koffi.errno();
      for (const m of mems) m.free();
      const warn = takeLines().find((l) => l.startsWith('warn: '))?.replace(/^warn: (libbpf: )?/, '');
      throw new CoreMatrixError(`reference: libbpf cannot open ${name}: ${strerrorOf(l, err)} (${err})${warn ? `: ${warn}` : ''}`);
    }
    return new OpenObject(l, ptr, mems);
  }

  /** Applies `s` with libbpf's setters (before load); a setter's failure is an error naming the setting. */
  configure(s: LibbpfSettings, progs: { ptr: bigint; name: string }[]): void {
    const l = this.lib;
    const check = (rc: number, what: string) => {
      if (rc < 0) throw new CoreMatrixError(`reference: ${what}: ${strerrorOf(l, -rc)} (${-rc})`);
    };
    const prog = (name: string) => {
      const p = progs.find((x) => x.name === name);
      if (!p) throw new CoreMatrixError(`reference: configure: no program '${name}'`);
      return p.ptr;
    };
    const map = (name: string) => {
      const m = l.findMap(this.ptr, name);
      if (!m) throw new CoreMatrixError(`reference: configure: no map '${name}'`);
      return m;
    };
    for (const [p, on] of Object.entries(s.autoload ?? {})) check(l.setAutoload(prog(p), on), `bpf_program__set_autoload(${p}, ${on})`);
    for (const [p, target] of Object.entries(s.attachTarget ?? {})) check(l.setAttachTarget(prog(p), 0, target), `bpf_program__set_attach_target(${p}, ${target})`);
    for (const [m, n] of Object.entries(s.maxEntries ?? {})) check(l.setMaxEntries(map(m), n), `bpf_map__set_max_entries(${m}, ${n})`);
    for (const [m, bytes] of Object.entries(s.initialValue ?? {})) {
      const mem = this.alloc(bytes.length);
      mem.bytes.set(bytes);
      check(l.setInitialValue(map(m), mem.addr, bytes.length), `bpf_map__set_initial_value(${m}, ${bytes.length} bytes)`);
    }
  }

  programs(): { ptr: bigint; name: string }[] {
    const l = this.lib;
    const out: { ptr: bigint; name: string }[] = [];
    for (let p = l.nextProgram(this.ptr, null); p; p = l.nextProgram(this.ptr, p)) out.push({ ptr: p, name: l.programName(p) });
    return out;
  }

  maps(): { name: string; type: number }[] {
    const l = this.lib;
    const out: { name: string; type: number }[] = [];
    for (let m = l.nextMap(this.ptr, null); m; m = l.nextMap(this.ptr, m)) out.push({ name: l.mapName(m), type: l.mapType(m) });
    return out;
  }

  /** libbpf's handle of a map, or undefined when the object has no such map. */
  mapHandle(name: string): bigint | undefined {
    return this.lib.findMap(this.ptr, name) ?? undefined;
  }

  /** The fd of a created map, or undefined when the object has no such map. */
  mapFd(name: string): number | undefined {
    const m = this.lib.findMap(this.ptr, name);
    return m ? this.lib.mapFd(m) : undefined;
  }

  /** Native memory owned by this object (freed on close). */
  alloc(size: number): NativeMem {
    const m = new NativeMem(size);
    this.mems.push(m);
    return m;
  }

  close(): void {
    this.lib.close(this.ptr);
    for (const m of this.mems.splice(0)) m.free();
  }
}

/**
 * The verifier log buffers of one loadWithLibbpf call, reused by every load it makes. Attributing
 * failures loads the object again once per failing program, each time with a buffer per program:
 * fresh ones were megabytes zeroed per load and as many external buffers for V8's GC to trace
 * (perf on the host: a third of the time of the selftests' verifier_bounds, 26 failing of 83).
 * libbpf writes a buffer only during bpf_object__load, and each load's log is copied out before
 * the next; each use starts with an empty string.
 */
class VerifierLogs {
  private readonly buffers: NativeMem[] = [];
  /** Buffer `i`, emptied. */
  take(i: number): NativeMem {
    const m = (this.buffers[i] ??= new NativeMem(VERIFIER_LOG_SIZE));
    m.bytes[0] = 0;
    return m;
  }
  free(): void {
    for (const m of this.buffers.splice(0)) m.free();
  }
}

function cString(m: NativeMem): string {
  const end = m.bytes.indexOf(0);
  return Buffer.from(m.bytes.subarray(0, end < 0 ? m.size : end)).toString('utf8');
}

/** Lines of libbpf's log that record CO-RE decisions for program `name`. */
function reloLines(log: string[], name: string): string[] {
  const prefix = `prog '${name}': relo #`;
  return log
    .map((l) => l.replace(/^(warn|info|debug): (libbpf: )?/, ''))
    .filter((l) => l.startsWith(prefix) && /patched insn|substituting insn|no matching targets|fail|error/i.test(l));
}

/** Sorts a failed load into relocation-failed / rejected / error from libbpf's log and code. */
function classify(l: Lib, err: number, log: string[], verifierLog: string, name: string): Pick<ReferenceOutcome, 'status' | 'reason'> {
  const text = log.map((l) => l.replace(/^(warn|info|debug): (libbpf: )?/, ''));
  // libbpf rewrites a poisoned CO-RE instruction's verifier error into this line (libbpf >= 1.0).
  const relo = text.find((l) => /failed to resolve CO-RE relocation/.test(l)) ?? /failed to resolve CO-RE relocation[^\n]*/.exec(verifierLog)?.[0];
  if (relo) return { status: 'relocation-failed', reason: relo.trim() };
  const reloErr = text.find((l) => l.startsWith(`prog '${name}': relo #`) && /(failed|error|-E[A-Z]+|: -\d+)/.test(l) && !/patched insn/.test(l));
  if (reloErr || text.some((l) => /failed to perform CO-RE relocations/.test(l))) {
    return { status: 'relocation-failed', reason: (reloErr ?? text.find((l) => /CO-RE relocations/.test(l)))!.trim() };
  }
  // Loaded alone, a program of an object whose prog-array initialiser (`.values`) names other
  // programs cannot be loaded by libbpf: filling the slot of a program that is not loaded fails the
  // object after the verifier accepted this one. Say so instead of blaming the verifier.
  const slot = text.find((l) => /failed to initialize slot/.test(l));
  if (slot) return { status: 'error', reason: `libbpf cannot load it alone (per-program attribution after the whole object failed): ${slot.trim()}` };
  // The last verifier line that is not the stats footer names the reason.
  const reason = verifierReason(verifierLog);
  // Only the stats footer, with instructions processed: the verifier accepted it, and libbpf failed
  // the object afterwards (a struct_ops table or map it could not fill without the object's other
  // programs). "processed 0 insns" alone is the kernel refusing it before the first instruction
  // (an attach type it lacks): libbpf's error, below.
  if (reason === undefined && verifierProcessed(verifierLog) > 0) {
    const warn = text.find((l) => log.some((x) => x.startsWith('warn: ') && x.includes(l)));
    return { status: 'error', reason: `libbpf cannot load it alone (per-program attribution after the whole object failed): the verifier accepted it, then: ${warn?.trim() ?? `${strerrorOf(l, err)} (${err})`}` };
  }
  if (reason !== undefined) {
    const why = `verifier rejected it: ${reason}`;
    // A CO-RE relocation libbpf could not resolve was poisoned (call to 0xbad2310 = 195896080) and
    // reached the verifier: still a verifier rejection, as our loader reports it, with the relocation named.
    const poison = text.find((l) => l.startsWith(`prog '${name}': relo #`) && /no matching targets found|substituting insn/.test(l));
    if (poison && /unknown#195896080/.test(verifierLog)) return { status: 'rejected', reason: `${why} (poisoned CO-RE relocation: ${poison.replace(`prog '${name}': `, '')})` };
    return { status: 'rejected', reason: why };
  }
  // libbpf's first warning names the cause ("extern (var ksym) 'x': not found in kernel BTF"); the
  // last one is usually just "failed to load object".
  const warns = log.filter((l) => l.startsWith('warn: ')).map((l) => l.replace(/^warn: (libbpf: )?/, ''));
  const cause = warns.length > 1 ? `${warns[0]}; ${warns.at(-1)}` : warns[0];
  return { status: 'error', reason: `${strerrorOf(l, err)} (${err})${cause ? `: ${cause}` : ''}` };
}

/** A whole-object load that failed: the program libbpf named as failing (when it named one) and its outcome. */
interface FailedLoad {
  culprit?: ReferenceOutcome;
}

/**
 * The object loaded at once, as its tool loads it (every program of `names` whose autoload is on,
 * the configuration applied, `off` switched off): the outcomes of `names` when that load succeeds.
 * When it fails, nothing is left open and the program libbpf says failed (the first `prog '…'`
 * warning naming one of those it loaded) comes back with its outcome, so the caller can switch it
 * off and load the rest.
 */
function loadWhole(l: Lib & { label: string }, bytes: Uint8Array, name: string, opts: ReferenceOptions, names: string[], off: ReadonlySet<string>, buffers: VerifierLogs): { obj: OpenObject; outcomes: ReferenceOutcome[] } | FailedLoad {
  const t0 = performance.now();
  let obj: OpenObject | undefined;
  try {
    obj = OpenObject.open(l, bytes, name, opts);
    const progs = obj.programs();
    obj.configure(opts.configure ?? {}, progs);
    const logs = new Map<string, NativeMem>();
    for (const p of progs) {
      if (!names.includes(p.name) || off.has(p.name)) l.setAutoload(p.ptr, false);
      if (!l.autoload(p.ptr)) continue;
      const vlog = buffers.take(logs.size);
      l.setLogBuf(p.ptr, vlog.addr, VERIFIER_LOG_SIZE);
      l.setLogLevel(p.ptr, LOG_STATS);
      logs.set(p.name, vlog);
    }
    const err = l.load(obj.ptr);
    const log = takeLines();
    const ms = Math.round(performance.now() - t0);
    if (err !== 0) {
      // libbpf stops at the first program that fails: the last failure it pins on a program it loaded names it.
      const named = log.map((x) => /^warn: (?:libbpf: )?prog '([^']+)': .*(?:fail|error)/i.exec(x)?.[1]).reverse().find((n) => n !== undefined && logs.has(n));
      if (!named) return {};
      const verifierLog = cString(logs.get(named)!);
      const culprit: ReferenceOutcome = { name: named, libbpf: l.label, relocations: reloLines(log, named), log, loadMs: ms, ...classify(l, err, log, verifierLog, named) };
      if (verifierLog.trim()) culprit.verifierLog = verifierLog.trimEnd();
      const processed = /processed (\d+) insns/.exec(verifierLog);
      if (processed) culprit.insnsProcessed = Number(processed[1]);
      return { culprit };
    }
    const outcomes = names.map((target): ReferenceOutcome => {
      const me = progs.find((p) => p.name === target)!;
      const vlog = logs.get(target);
      if (!vlog) return { name: target, libbpf: l.label, status: 'not-loaded', reason: 'autoload is off', relocations: [], log: [], loadMs: 0 };
      const verifierLog = cString(vlog).trimEnd();
      const processed = /processed (\d+) insns/.exec(verifierLog);
      const info = new Program(l.programFd(me.ptr), 0, target, '').info();
      const out: ReferenceOutcome = { name: target, libbpf: l.label, status: 'loaded', relocations: reloLines(log, target), log, loadMs: ms };
      if (verifierLog) out.verifierLog = verifierLog;
      if (info.xlated.length) out.xlated = Buffer.from(info.xlated).toString('hex');
      const n = info.verifiedInsns ?? (processed ? Number(processed[1]) : undefined);
      if (n !== undefined) out.insnsProcessed = n;
      return out;
    });
    const kept = obj;
    obj = undefined;
    return { obj: kept, outcomes };
  } catch (e) {
    if (!(e instanceof CoreMatrixError)) throw e;
    takeLines();
    return {};
  } finally {
    obj?.close();
  }
}

/**
 * Loads `objectBytes` with libbpf as its tool would: the whole object at once; when that fails,
 * again one program at a time (that program autoloaded, the others not) to attribute the failure.
 * Reports per program what libbpf did. Loaded programs stay loaded until `close()`. Throws only
 * when libbpf cannot open the object at all.
 */
export function loadWithLibbpf(objectBytes: Uint8Array, name: string, opts: ReferenceOptions = {}): ReferenceLoad {
  const l = libbpf(opts.library);
  takeLines();
  const probe = OpenObject.open(l, objectBytes, name, opts);
  let names: string[];
  try {
    names = probe.programs().map((p) => p.name);
  } finally {
    probe.close();
  }
  takeLines();
  if (opts.programs) {
    const missing = opts.programs.filter((p) => !names.includes(p));
    if (missing.length) throw new CoreMatrixError(`reference: ${name} has no program named ${missing.map((m) => `'${m}'`).join(', ')}`);
    names = names.filter((n) => opts.programs!.includes(n));
  }
  // freplace programs (whose target is a program of this object, or of another object of the run):
  // loaded after the rest, each in a bpf_object of its own.
  const replacing = opts.configure?.attachProgram ?? {};
  const buffers = new VerifierLogs();
  try {
    return loadReplacersAfter(l, objectBytes, name, opts, names, replacing, buffers);
  } finally {
    buffers.free();
  }
}

/** The programs that replace none first, then each replacer in a bpf_object of its own (see loadWithLibbpf). */
function loadReplacersAfter(l: Lib & { label: string }, objectBytes: Uint8Array, name: string, opts: ReferenceOptions, names: string[], replacing: NonNullable<NonNullable<ReferenceOptions['configure']>['attachProgram']>, buffers: VerifierLogs): ReferenceLoad {
  const first = loadPrograms(l, objectBytes, name, opts, names.filter((n) => !(n in replacing)), buffers);
  const second = names.filter((n) => n in replacing);
  if (second.length === 0) return first;
  const objects = new Map<string, OpenObject>();
  const outcomes = [...first.outcomes];
  const loaded = [...first.loaded];
  for (const ext of second) {
    const { program, function: fn, object, programFd } = replacing[ext]!;
    // The target: a program of this object (the first load's), or of another object of the run (its fd given).
    const targetName = object ? `${object}:${program}` : program;
    const local = object ? undefined : first.loaded.find((x) => x.name === program);
    const targetFd = object ? programFd : local && l.programFd(local.prog);
    const r = loadOne(l, objectBytes, name, opts, ext, buffers, (me) => {
      if (targetFd === undefined || targetFd < 0) throw new CoreMatrixError(`reference: program '${ext}': the program it replaces a function of, '${targetName}', did not load`);
      const rc = l.setAttachTarget(me, targetFd, fn);
      if (rc < 0) throw new CoreMatrixError(`reference: bpf_program__set_attach_target(${ext}, ${targetName}'s fd, ${fn}): ${strerrorOf(l, -rc)} (${-rc})`);
    });
    outcomes.push(r.out);
    if (r.obj) {
      objects.set(ext, r.obj);
      loaded.push(r.obj.loaded);
    }
  }
  return {
    ...first,
    outcomes: names.map((n) => outcomes.find((o) => o.name === n)!),
    loaded,
    // A replacement's maps are its own bpf_object's (a tool would share them with bpf_map__reuse_fd).
    mapFd: (program, map) => (objects.has(program) ? objects.get(program)!.mapFd(map) : first.mapFd(program, map)),
    mapHandle: (program, map) => (objects.has(program) ? objects.get(program)!.mapHandle(map) : first.mapHandle(program, map)),
    close() {
      for (const o of objects.values()) o.close();
      objects.clear();
      first.close();
    },
  };
}

/**
 * One libbpf load of `object` with only `target` autoloaded (the rest of the configuration as
 * given); `beforeLoad` may set more on the program. The object stays open when the program loaded.
 */
function loadOne(l: Lib & { label: string }, objectBytes: Uint8Array, name: string, opts: ReferenceOptions, target: string, buffers: VerifierLogs, beforeLoad?: (prog: bigint) => void): { out: ReferenceOutcome; obj?: OpenObject & { loaded: { name: string; prog: bigint } } } {
  const t0 = performance.now();
  const out: ReferenceOutcome = { name: target, libbpf: l.label, status: 'error', relocations: [], log: [], loadMs: 0 };
  let obj: OpenObject | undefined;
  try {
    obj = OpenObject.open(l, objectBytes, name, opts);
    const progs = obj.programs();
    const me = progs.find((p) => p.name === target)!;
    obj.configure(opts.configure ?? {}, progs);
    // A program whose autoload is off (its SEC's `?`, or the config) is not loaded, as libbpf does.
    if (!l.autoload(me.ptr)) {
      out.status = 'not-loaded';
      out.reason = 'autoload is off';
      return { out };
    }
    for (const p of progs) l.setAutoload(p.ptr, p === me);
    beforeLoad?.(me.ptr);
    const vlog = buffers.take(0);
    l.setLogBuf(me.ptr, vlog.addr, VERIFIER_LOG_SIZE);
    l.setLogLevel(me.ptr, LOG_STATS);
    const err = l.load(obj.ptr);
    out.log = takeLines();
    out.relocations = reloLines(out.log, target);
    const verifierLog = cString(vlog);
    if (verifierLog.trim()) out.verifierLog = verifierLog.trimEnd();
    const processed = /processed (\d+) insns/.exec(verifierLog);
    if (err !== 0) {
      Object.assign(out, classify(l, err, out.log, verifierLog, target));
      if (processed) out.insnsProcessed = Number(processed[1]);
      return { out };
    }
    out.status = 'loaded';
    // A handle over libbpf's fd for BPF_OBJ_GET_INFO_BY_FD only: never closed here (libbpf owns it).
    const info = new Program(l.programFd(me.ptr), 0, target, '').info();
    if (info.xlated.length) out.xlated = Buffer.from(info.xlated).toString('hex');
    out.insnsProcessed = info.verifiedInsns ?? (processed ? Number(processed[1]) : undefined);
    const kept = Object.assign(obj, { loaded: { name: target, prog: me.ptr } });
    obj = undefined;
    return { out, obj: kept };
  } catch (e) {
    if (!(e instanceof CoreMatrixError)) throw e;
    out.log.push(...takeLines());
    out.status = 'error';
    out.reason = e.message.split('\n')[0];
    return { out };
  } finally {
    obj?.close();
    out.loadMs = Math.round(performance.now() - t0);
  }
}

/**
 * The whole object (`names` autoloaded) as its tool loads it. When that fails, the failure is
 * attributed as a tool's author would find it: the program libbpf names as failing is switched
 * off and the rest loaded again, until the rest loads (one bpf_object with every program that
 * loads, as the tool would ship it with the failing ones switched off). libbpf stops at the first
 * program that fails, so this takes one load per failing program; each load parses the kernel's
 * BTF again (a third of a second under TCG), which one load per program (the attribution before
 * this) paid for every program of the object. A failure libbpf pins on no program (a map, a
 * slot of a prog array) is attributed one program at a time, each alone.
 */
function loadPrograms(l: Lib & { label: string }, objectBytes: Uint8Array, name: string, opts: ReferenceOptions, names: string[], buffers: VerifierLogs): ReferenceLoad {
  const failed = new Map<string, ReferenceOutcome>();
  for (;;) {
    const whole = loadWhole(l, objectBytes, name, opts, names, new Set(failed.keys()), buffers);
    if ('obj' in whole) {
      const obj = whole.obj;
      const progs = obj.programs();
      const outcomes = whole.outcomes.map((o) => failed.get(o.name) ?? o);
      const loaded = outcomes.filter((o) => o.status === 'loaded').map((o) => ({ name: o.name, prog: progs.find((p) => p.name === o.name)!.ptr }));
      return { libbpf: l.label, so: l.info.so, outcomes, loaded, maps: obj.maps(), mapFd: (_p, m) => obj.mapFd(m), mapHandle: (_p, m) => obj.mapHandle(m), close: () => obj.close() };
    }
    if (!whole.culprit || failed.has(whole.culprit.name)) break;
    failed.set(whole.culprit.name, whole.culprit);
  }
  return loadEach(l, objectBytes, name, opts, names, failed, buffers);
}

/** One program at a time (that program autoloaded, the others not), except those already attributed. */
function loadEach(l: Lib & { label: string }, objectBytes: Uint8Array, name: string, opts: ReferenceOptions, names: string[], attributed: ReadonlyMap<string, ReferenceOutcome>, buffers: VerifierLogs): ReferenceLoad {
  const objects: OpenObject[] = [];
  const loaded: ReferenceLoad['loaded'] = [];
  const outcomes: ReferenceOutcome[] = [];
  const byProgram = new Map<string, OpenObject>();
  for (const target of names) {
    const known = attributed.get(target);
    if (known) {
      outcomes.push(known);
      continue;
    }
    const r = loadOne(l, objectBytes, name, opts, target, buffers);
    outcomes.push(r.out);
    if (r.obj) {
      loaded.push(r.obj.loaded);
      byProgram.set(target, r.obj);
      objects.push(r.obj);
    }
  }
  return {
    libbpf: l.label,
    so: l.info.so,
    outcomes,
    loaded,
    maps: objects[0]?.maps() ?? [],
    mapFd: (program, map) => byProgram.get(program)?.mapFd(map),
    mapHandle: (program, map) => byProgram.get(program)?.mapHandle(map),
    close() {
      for (const o of objects.splice(0)) o.close();
    },
  };
}
