// libbpf itself, through koffi, for the link tests: its static linker (bpf_linker__*, what
// `bpftool gen object` runs) and bpf_object__open_mem (a parse, no bpf() call), with programs
// and maps listed. Debian's libbpf.so.1 is loaded before any libbpf by path: both carry the soname
// libbpf.so.1, and a later dlopen("libbpf.so.1") would otherwise get the one loaded by path.
import koffi from 'koffi';
import { OPEN_OPTS } from '../../harness/reference/libbpf.js';
import { NativeMem } from '../../harness/runtime/sys.js';

interface Lib {
  linkerNew: (out: string, opts: null) => unknown;
  linkerAdd: (linker: unknown, file: string, opts: null) => number;
  linkerFinalize: (linker: unknown) => number;
  linkerFree: (linker: unknown) => void;
  openMem: (buf: bigint, size: number, opts: bigint) => unknown;
  close: (obj: unknown) => void;
  nextProgram: (obj: unknown, prev: unknown) => unknown;
  programName: (prog: unknown) => string;
  nextMap: (obj: unknown, prev: unknown) => unknown;
  mapName: (map: unknown) => string;
  strerror: (err: number, buf: Buffer, size: number) => number;
  version: () => string;
}

const SYSTEM = 'libbpf.so.1';
const libs = new Map<string, Lib>();

function lib(so: string): Lib {
  let l = libs.get(so);
  if (l) return l;
  if (so !== SYSTEM && !libs.has(SYSTEM)) lib(SYSTEM);
  const h = koffi.load(so);
  // No printing: the callers look at return codes (a null print function silences libbpf).
  h.func('void *libbpf_set_print(void *fn)')(null);
  l = {
    linkerNew: h.func('void *bpf_linker__new(const char *filename, void *opts)'),
    linkerAdd: h.func('int bpf_linker__add_file(void *linker, const char *filename, void *opts)'),
    linkerFinalize: h.func('int bpf_linker__finalize(void *linker)'),
    linkerFree: h.func('void bpf_linker__free(void *linker)'),
    openMem: h.func('void *bpf_object__open_mem(void *buf, size_t size, void *opts)'),
    close: h.func('void bpf_object__close(void *obj)'),
    nextProgram: h.func('void *bpf_object__next_program(void *obj, void *prev)'),
    programName: h.func('const char *bpf_program__name(void *prog)'),
    nextMap: h.func('void *bpf_object__next_map(void *obj, void *prev)'),
    mapName: h.func('const char *bpf_map__name(void *map)'),
    strerror: h.func('int libbpf_strerror(int err, void *buf, size_t size)'),
    version: h.func('const char *libbpf_version_string(void)'),
  };
  libs.set(so, l);
  return l;
}

function strerror(l: Lib, err: number): string {
  const b = Buffer.alloc(256);
  l.strerror(Math.abs(err), b, 256);
  return b.subarray(0, b.indexOf(0)).toString();
}

export function libbpfVersionOf(so: string): string {
  return lib(so).version();
}

/** Links `inputs` into `out` with libbpf's static linker; undefined when it worked, else what failed. */
export function libbpfLink(so: string, out: string, inputs: string[]): string | undefined {
  const l = lib(so);
  const linker = l.linkerNew(out, null);
  if (!linker) return `bpf_linker__new(${out}): ${strerror(l, koffi.errno())}`;
  try {
    for (const f of inputs) {
      const rc = l.linkerAdd(linker, f, null);
      if (rc < 0) return `bpf_linker__add_file(${f}): ${strerror(l, rc)} (${-rc})`;
    }
    const rc = l.linkerFinalize(linker);
    return rc < 0 ? `bpf_linker__finalize: ${strerror(l, rc)} (${-rc})` : undefined;
  } finally {
    l.linkerFree(linker);
  }
}

export type Opened = { programs: string[]; maps: string[] } | { error: string };

/**
 * What libbpf's bpf_object__open_mem makes of an object named `name` (its global data maps are
 * `<name>.data`, ...): its programs and maps, or why it refuses it.
 */
export function libbpfOpen(so: string, bytes: Uint8Array, name = 'linked'): Opened {
  const l = lib(so);
  // libbpf keeps pointers into the buffer and the name until close: native memory that outlives the call.
  const buf = NativeMem.from(bytes);
  const objName = NativeMem.cstring(name);
  const opts = new NativeMem(OPEN_OPTS.size);
  opts.view.setBigUint64(OPEN_OPTS.fields.sz[0], BigInt(OPEN_OPTS.size), true);
  opts.view.setBigUint64(OPEN_OPTS.fields.object_name[0], objName.addr, true);
  const free = () => [buf, objName, opts].forEach((m) => m.free());
  const obj = l.openMem(buf.addr, bytes.length, opts.addr);
  if (!obj) {
    const err = koffi.errno();
    free();
    return { error: strerror(l, err) };
  }
  try {
    const programs: string[] = [];
    for (let p = l.nextProgram(obj, null); p; p = l.nextProgram(obj, p)) programs.push(l.programName(p));
    const maps: string[] = [];
    for (let m = l.nextMap(obj, null); m; m = l.nextMap(obj, m)) maps.push(l.mapName(m));
    return { programs, maps };
  } finally {
    l.close(obj);
    free();
  }
}
