// The reference loader: Debian's libbpf (libbpf.so.1, the same package on the host and in every
// guest image) loads the same object in the same kernel, so our loader's verdicts and translated
// instructions can be checked against libbpf's. Called through koffi; nothing here is copied from
// libbpf, only its stable public API (libbpf.h of libbpf 1.1) is used.
//
// libbpf loads all autoloaded programs of an object at once and one failure fails the whole load,
// so each program gets its own open + load with only that program autoloaded: one verdict each.

import koffi from 'koffi';
import { CoreMatrixError } from '../core/errors.js';
import { Program } from '../runtime/program.js';
import { NativeMem } from '../runtime/sys.js';

/**
 * `struct bpf_object_open_opts` of libbpf 1.1 (byte offsets on x86-64), checked against
 * /usr/include/bpf/libbpf.h by test/reference/libbpf-layout.test.ts.
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
  status: 'loaded' | 'rejected' | 'relocation-failed' | 'error';
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
}

export interface ReferenceLoad {
  outcomes: ReferenceOutcome[];
  /** Closes every bpf_object (and so every program and map) libbpf opened. */
  close(): void;
}

interface Lib {
  openMem: (buf: bigint, size: number, opts: bigint) => bigint | null;
  load: (obj: bigint) => number;
  close: (obj: bigint) => void;
  nextProgram: (obj: bigint, prev: bigint | null) => bigint | null;
  programName: (prog: bigint) => string;
  programFd: (prog: bigint) => number;
  setAutoload: (prog: bigint, on: boolean) => number;
  setLogBuf: (prog: bigint, buf: bigint, size: number) => number;
  setLogLevel: (prog: bigint, level: number) => number;
  strerror: (err: number, buf: bigint, size: number) => number;
  version: () => string;
}

let lib: Lib | undefined;
/** Lines printed by libbpf since the last `takeLines()`; filled by the print callback. */
let printed: string[] = [];
let printBuf: NativeMem | undefined;

function takeLines(): string[] {
  const l = printed;
  printed = [];
  return l;
}

/** Opens libbpf.so.1 and installs the print callback (once per process). */
function libbpf(): Lib {
  if (lib) return lib;
  let so: ReturnType<typeof koffi.load>;
  try {
    so = koffi.load('libbpf.so.1');
  } catch (e) {
    throw new CoreMatrixError(`reference: cannot load libbpf.so.1: ${(e as Error).message.split('\n')[0]}`);
  }
  const libc = koffi.load('libc.so.6');
  // va_list on x86-64 is an array type: a callee receives it as a pointer, which vsnprintf takes.
  const vsnprintf = libc.func('int vsnprintf(void *buf, size_t n, void *fmt, void *ap)');
  const printProto = koffi.proto('int corematrix_libbpf_print(int level, void *fmt, void *ap)');
  printBuf = new NativeMem(PRINT_BUF_SIZE);
  const buf = printBuf;
  const cb = koffi.register((level: number, fmt: bigint, ap: bigint) => {
    const n = Number(vsnprintf(buf.addr, PRINT_BUF_SIZE, fmt, ap));
    const len = Math.max(0, Math.min(n, PRINT_BUF_SIZE - 1));
    let text = Buffer.from(buf.bytes.subarray(0, len)).toString('utf8');
    if (n >= PRINT_BUF_SIZE) text += ' <truncated>';
    const name = level === PrintLevel.WARN ? 'warn' : level === PrintLevel.INFO ? 'info' : 'debug';
    for (const line of text.replace(/\n$/, '').split('\n')) printed.push(`${name}: ${line}`);
    return 0;
  }, koffi.pointer(printProto));
  // The callback stays registered for the life of the process (libbpf keeps the pointer).
  so.func('void *libbpf_set_print(corematrix_libbpf_print *fn)')(cb);
  lib = {
    openMem: so.func('void *bpf_object__open_mem(void *buf, size_t size, void *opts)'),
    load: so.func('int bpf_object__load(void *obj)'),
    close: so.func('void bpf_object__close(void *obj)'),
    nextProgram: so.func('void *bpf_object__next_program(void *obj, void *prev)'),
    programName: so.func('const char *bpf_program__name(void *prog)'),
    programFd: so.func('int bpf_program__fd(void *prog)'),
    setAutoload: so.func('int bpf_program__set_autoload(void *prog, bool autoload)'),
    setLogBuf: so.func('int bpf_program__set_log_buf(void *prog, void *buf, size_t size)'),
    setLogLevel: so.func('int bpf_program__set_log_level(void *prog, uint32_t level)'),
    strerror: so.func('int libbpf_strerror(int err, void *buf, size_t size)'),
    version: so.func('const char *libbpf_version_string(void)'),
  };
  return lib;
}

/** libbpf's version string ("v1.1"). */
export function libbpfVersion(): string {
  return libbpf().version();
}

/** libbpf_strerror: libbpf's own codes (4000+, e.g. "Relocation failed") and errno values. */
export function libbpfStrerror(err: number): string {
  const l = libbpf();
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
    readonly ptr: bigint,
    private readonly mems: NativeMem[],
  ) {}

  static open(bytes: Uint8Array, name: string, o: ReferenceOptions): OpenObject {
    const l = libbpf();
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
      throw new CoreMatrixError(`reference: libbpf cannot open ${name}: ${libbpfStrerror(err)} (${err})${warn ? `: ${warn}` : ''}`);
    }
    return new OpenObject(ptr, mems);
  }

  programs(): { ptr: bigint; name: string }[] {
    const l = libbpf();
    const out: { ptr: bigint; name: string }[] = [];
    for (let p = l.nextProgram(this.ptr, null); p; p = l.nextProgram(this.ptr, p)) out.push({ ptr: p, name: l.programName(p) });
    return out;
  }

  /** Native memory owned by this object (freed on close). */
  alloc(size: number): NativeMem {
    const m = new NativeMem(size);
    this.mems.push(m);
    return m;
  }

  close(): void {
    libbpf().close(this.ptr);
    for (const m of this.mems.splice(0)) m.free();
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
function classify(err: number, log: string[], verifierLog: string, name: string): Pick<ReferenceOutcome, 'status' | 'reason'> {
  const text = log.map((l) => l.replace(/^(warn|info|debug): (libbpf: )?/, ''));
  // libbpf rewrites a poisoned CO-RE instruction's verifier error into this line (libbpf >= 1.0).
  const relo = text.find((l) => /failed to resolve CO-RE relocation/.test(l)) ?? /failed to resolve CO-RE relocation[^\n]*/.exec(verifierLog)?.[0];
  if (relo) return { status: 'relocation-failed', reason: relo.trim() };
  const reloErr = text.find((l) => l.startsWith(`prog '${name}': relo #`) && /(failed|error|-E[A-Z]+|: -\d+)/.test(l) && !/patched insn/.test(l));
  if (reloErr || text.some((l) => /failed to perform CO-RE relocations/.test(l))) {
    return { status: 'relocation-failed', reason: (reloErr ?? text.find((l) => /CO-RE relocations/.test(l)))!.trim() };
  }
  if (verifierLog.trim()) {
    // The last verifier line that is not the stats footer names the reason.
    const lines = verifierLog.trimEnd().split('\n').filter((l) => l && !/^processed \d+ insns|^verification time|^stack depth/.test(l));
    const why = `verifier rejected it: ${lines.at(-1) ?? 'no reason in the log'}`;
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
  return { status: 'error', reason: `${libbpfStrerror(err)} (${err})${cause ? `: ${cause}` : ''}` };
}

/**
 * Loads `objectBytes` with libbpf, one program at a time (that program autoloaded, the others
 * not), and reports per program what libbpf did. Loaded programs stay loaded until `close()`.
 * Throws only when libbpf cannot open the object at all.
 */
export function loadWithLibbpf(objectBytes: Uint8Array, name: string, opts: ReferenceOptions = {}): ReferenceLoad {
  const l = libbpf();
  takeLines();
  const probe = OpenObject.open(objectBytes, name, opts);
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

  const objects: OpenObject[] = [];
  const outcomes: ReferenceOutcome[] = [];
  for (const target of names) {
    const t0 = performance.now();
    const out: ReferenceOutcome = { name: target, status: 'error', relocations: [], log: [], loadMs: 0 };
    outcomes.push(out);
    let obj: OpenObject | undefined;
    try {
      obj = OpenObject.open(objectBytes, name, opts);
      const progs = obj.programs();
      const me = progs.find((p) => p.name === target)!;
      for (const p of progs) l.setAutoload(p.ptr, p === me);
      const vlog = obj.alloc(VERIFIER_LOG_SIZE);
      l.setLogBuf(me.ptr, vlog.addr, VERIFIER_LOG_SIZE);
      l.setLogLevel(me.ptr, LOG_STATS);
      const err = l.load(obj.ptr);
      out.log = takeLines();
      out.relocations = reloLines(out.log, target);
      const verifierLog = cString(vlog);
      if (verifierLog.trim()) out.verifierLog = verifierLog.trimEnd();
      const processed = /processed (\d+) insns/.exec(verifierLog);
      if (err === 0) {
        out.status = 'loaded';
        // A handle over libbpf's fd for BPF_OBJ_GET_INFO_BY_FD only: never closed here (libbpf owns it).
        const info = new Program(l.programFd(me.ptr), 0, target, '').info();
        if (info.xlated.length) out.xlated = Buffer.from(info.xlated).toString('hex');
        out.insnsProcessed = info.verifiedInsns ?? (processed ? Number(processed[1]) : undefined);
        objects.push(obj);
        obj = undefined;
      } else {
        Object.assign(out, classify(err, out.log, verifierLog, target));
        if (processed) out.insnsProcessed = Number(processed[1]);
      }
    } catch (e) {
      if (!(e instanceof CoreMatrixError)) throw e;
      out.log.push(...takeLines());
      out.status = 'error';
      out.reason = e.message.split('\n')[0];
    } finally {
      obj?.close();
      out.loadMs = Math.round(performance.now() - t0);
    }
  }
  return {
    outcomes,
    close() {
      for (const o of objects.splice(0)) o.close();
    },
  };
}
