// Host side of the suites: one vmlinux.h (bpftool's C dump of one kernel's BTF) or, for a suite
// whose spec says `header: joined`, the joined header of every matrix kernel (`corematrix btf
// join --kernels all`, cached by the kernels' BTF); one clang-19 compile per suite into the object
// cache, spec validation against the compiled object, and `hostTruth`: values read from a
// kernel's BTF and package with independent tools (bpftool, the kernel store's config and
// version), which the guest compares the BPF side against.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FormatError, UsageError, wrap } from '../core/errors.js';
import { Kind } from '../core/btf/kinds.js';
import { loadObjectSpec } from '../core/object/index.js';
import { parseElf } from '../core/elf.js';
import type { ObjectSpec } from '../core/object/types.js';
import { parseConfigLines } from '../kernels/build.js';
import { KernelStore } from '../kernels/store.js';
import { moduleKey } from '../kernels/modules.js';
import { cacheDir, repoRoot, writeFileAtomic } from '../paths.js';
import { readSpec, lineOf } from './spec.js';
import { hostKeysOf, kernelVersionCode, parseObserve, parseTruth } from './truth.js';
import { moduleNeedOn, moduleNeeds, type SuiteSpec } from './types.js';

const run = promisify(execFile);

import { CLANG } from '../tools.js';
export const BPF_CFLAGS = ['-g', '-O2', '-target', 'bpf', '-D__TARGET_ARCH_x86', '-I/usr/include/x86_64-linux-gnu'];
export const DEFAULT_HEADER_KERNEL = '6.1';

export interface BuiltSuite {
  name: string;
  spec: SuiteSpec;
  /**
   * Path of the compiled object, cacheDir('objects')/<name>-<compile key>.bpf.o: never rewritten
   * with other bytes, so a same-named suite from another folder or an edit compiled by a
   * concurrent run cannot change the object a running matrix ships to its guests.
   */
  object: string;
  sha256: string;
  /** Path of prog.bpf.c. */
  source: string;
}

export interface BuildOptions {
  /** Suites to build (default: every folder of suites/ with a spec.yaml). */
  names?: string[];
  /** Kernel whose BTF vmlinux.h is generated from (default 6.1). */
  headerKernel?: string;
  /** Root of the suites (default <repo>/suites); another folder laid out the same way works too. */
  suitesDir?: string;
  store?: KernelStore;
  log?: (line: string) => void;
}

const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

export function suitesDir(): string {
  return join(repoRoot(), 'suites');
}

/** Every suite folder (one with a spec.yaml), sorted. */
export function listSuites(dir = suitesDir()): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'spec.yaml')))
    .map((d) => d.name)
    .sort();
}

/** Generates (or reuses) vmlinux.h for a kernel's BTF; returns the directory holding it. */
export async function vmlinuxHeader(btfPath: string): Promise<{ dir: string; sha256: string }> {
  const btfSha = sha256(readFileSync(btfPath));
  const dir = cacheDir('vmlinux', btfSha.slice(0, 24));
  const header = join(dir, 'vmlinux.h');
  if (!existsSync(header)) {
    let out: string;
    try {
      out = (await run('bpftool', ['btf', 'dump', 'file', btfPath, 'format', 'c'], { maxBuffer: 1 << 30 })).stdout;
    } catch (e) {
      throw new FormatError(`bpftool btf dump ${btfPath} format c failed: ${String((e as { stderr?: string }).stderr ?? e).trim().split('\n')[0]}`);
    }
    const tmp = `${header}.${process.pid}.tmp`;
    writeFileSync(tmp, out);
    renameSync(tmp, header);
  }
  return { dir, sha256: sha256(readFileSync(header)) };
}

let clangVersion: Promise<string> | undefined;
/** `clang --version`'s first line, asked once per process. */
export function clangId(): Promise<string> {
  clangVersion ??= run(CLANG, ['--version']).then((r) => r.stdout.split('\n')[0]!);
  return clangVersion;
}

/**
 * The joined header of the Debian kernels of kernels/matrix.yaml (what `corematrix btf join
 * --kernels <those ids>` writes), generated once per set of kernel BTFs and join code, in a cache
 * folder that holds `vmlinux_joined.h` and a `vmlinux.h` that includes it. Fetches the kernels it
 * lacks. Kernels built from source are left out: a suite must not wait for a kernel build to
 * compile, and their trimmed configs (tinyconfig-based) are not layouts a distribution ships.
 */
export async function joinedHeader(store: KernelStore, log?: (line: string) => void): Promise<{ dir: string; sha256: string; kernels: string[] }> {
  // The amd64 kernels' layouts: suites for arm64 are built against an arm64 vmlinux.h (images/arm64-objects.ts).
  const entries = store.select(['all']).filter((e) => !('build' in e && e.build) && (e.arch ?? 'amd64') === 'amd64');
  const btfs: string[] = [];
  for (const e of entries) btfs.push((await store.fetch(e.id)).sha256.btf);
  const ids = entries.map((e) => e.id);
  const key = sha256(JSON.stringify(['joined', ids, btfs, joinCodeSha()]));
  const dir = cacheDir('joined', key.slice(0, 24));
  const header = join(dir, 'vmlinux_joined.h');
  if (!existsSync(header)) {
    const t0 = performance.now();
    const [{ joinBtf }, { loadKernelBtfs }] = await Promise.all([import('../btfjoin/join.js'), import('../btfjoin/load.js')]);
    const joined = joinBtf(await loadKernelBtfs(ids, store));
    writeFileAtomic(join(dir, 'vmlinux.h'), '/* corematrix: the joined header of every matrix kernel */\n#include "vmlinux_joined.h"\n');
    writeFileAtomic(header, joined.header);
    log?.(`joined header of ${ids.join(', ')}: ${joined.stats.bytes} bytes, ${joined.stats.flavoured} flavoured types, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return { dir, sha256: sha256(readFileSync(header)), kernels: ids };
}

/** Identifies the join code, so a changed join regenerates the cached header. */
function joinCodeSha(): string {
  const src = join(repoRoot(), 'harness', 'btfjoin', 'join.ts');
  return sha256(readFileSync(existsSync(src) ? src : fileURLToPath(import.meta.url)));
}

/**
 * Compiles one source into `<outDir>/<name>-<key>.bpf.o`, unless that file exists: the key hashes
 * everything the bytes depend on (the source, the headers next to it, the header it compiles
 * against, flags, clang). A path's content never changes, so a run that is still copying its
 * object into guest images never gets the bytes of a newer edit compiled by a concurrent run.
 */
async function compile(src: string, name: string, outDir: string, headerDir: string, headerSha: string): Promise<string> {
  const flags = [...BPF_CFLAGS, `-I${headerDir}`];
  // `#include "x.h"` finds headers next to the source first: they are inputs too.
  const dir = resolve(src, '..');
  const local = readdirSync(dir).filter((f) => f.endsWith('.h')).sort().map((f) => [f, sha256(readFileSync(join(dir, f)))]);
  const key = sha256(JSON.stringify([sha256(readFileSync(src)), local, headerSha, BPF_CFLAGS, await clangId()]));
  const out = join(outDir, `${name}-${key.slice(0, 16)}.bpf.o`);
  if (existsSync(out)) return out;
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    await run(CLANG, [...flags, '-c', src, '-o', tmp], { maxBuffer: 64 << 20 });
  } catch (e) {
    rmSync(tmp, { force: true });
    const stderr = String((e as { stderr?: string }).stderr ?? '');
    const first = stderr.split('\n').find((l) => /error:/.test(l)) ?? stderr.split('\n')[0] ?? String(e);
    throw new FormatError(`${CLANG} failed: ${first.trim()}`);
  }
  renameSync(tmp, out);
  return out;
}

/** Global variable names per data section, from the object's BTF DATASECs. */
export function objectGlobals(obj: ObjectSpec): Map<string, string> {
  const out = new Map<string, string>();
  const btf = obj.btf;
  for (let id = 1; id < btf.count; id++) {
    if (btf.kind(id) !== Kind.DATASEC) continue;
    const t = btf.type(id);
    if (t.kind !== Kind.DATASEC) continue;
    for (const v of t.vars) out.set(btf.name(v.type), t.name);
  }
  return out;
}

/** Checks the spec's names against the compiled object: programs, observed globals, maps, rodata. */
export function validateAgainstObject(spec: SuiteSpec, obj: ObjectSpec, display: string, text: string): void {
  const fail = (path: (string | number)[], msg: string): never => {
    throw new FormatError(`${display}:${lineOf(text, path)}: ${msg}`);
  };
  const progs = obj.programs.map((p) => p.name);
  spec.programs?.forEach((p, i) => {
    if (!progs.includes(p)) fail(['programs', i], `no program '${p}' in the object (programs: ${progs.join(', ')})`);
  });
  if (spec.trigger.kind === 'test-run' && !progs.includes(spec.trigger.program)) fail(['trigger', 'program'], `no program '${spec.trigger.program}' in the object (programs: ${progs.join(', ')})`);
  const globals = objectGlobals(obj);
  const visible = [...globals].filter(([, sec]) => !sec.startsWith('.kconfig') && sec !== '.maps' && sec !== 'license').map(([n]) => n);
  spec.checks.forEach((c, i) => {
    const o = parseObserve(c.observe);
    if (typeof o === 'string') return;
    if (o.kind === 'var' && !visible.includes(o.name)) fail(['checks', i, 'observe'], `no global variable '${o.name}' in the object (globals: ${visible.join(', ')})`);
    if (o.kind === 'ringbuf' && !obj.maps.some((m) => m.name === o.map && m.type === 27)) fail(['checks', i, 'observe'], `no BPF_MAP_TYPE_RINGBUF map '${o.map}' in the object`);
    const t = parseTruth(c.truth, spec.trigger.kind);
    if (typeof t !== 'string' && t.source.kind === 'var' && !visible.includes(t.source.name)) fail(['checks', i, 'truth'], `no global variable '${t.source.name}' in the object (globals: ${visible.join(', ')})`);
  });
  for (const k of Object.keys(spec.rodata ?? {})) {
    const base = k.split('.')[0]!;
    if (globals.get(base) !== '.rodata') fail(['rodata', k], `'${base}' is not a .rodata variable of the object (.rodata: ${[...globals].filter(([, s]) => s === '.rodata').map(([n]) => n).join(', ') || 'none'})`);
  }
}

/**
 * How a suite's folder is named in messages: a path to the real files, relative to the working
 * directory when it is inside it (suites/globals, test/btfjoin/suites/renamed-field), else
 * absolute (a --suites-dir elsewhere: /tmp/mine/globals, never a suites/globals that is not there).
 */
function displayDir(dir: string, name: string): string {
  const abs = resolve(dir, name);
  const rel = relative(process.cwd(), abs);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : abs;
}

/** Compiles the suites and validates their specs. */
export async function buildSuites(opts: BuildOptions = {}): Promise<BuiltSuite[]> {
  const dir = opts.suitesDir ?? suitesDir();
  if (!existsSync(dir)) throw new UsageError(`suites folder ${dir} does not exist`);
  const all = listSuites(dir);
  const names = opts.names ?? all;
  const where = resolve(dir) === resolve(suitesDir()) ? '' : ` in ${dir}`;
  for (const n of names) if (!all.includes(n)) throw new UsageError(`unknown suite '${n}' (suites${where}: ${all.join(', ') || 'none, no <name>/spec.yaml'})`);
  const store = opts.store ?? new KernelStore({ log: opts.log });
  const specs = names.map((name) => {
    const display = displayDir(dir, name);
    return { name, display, specFile: join(dir, name, 'spec.yaml'), spec: readSpec(join(dir, name, 'spec.yaml'), `${display}/spec.yaml`, name) };
  });
  // Each header is made only when a suite needs it (the joined one fetches every matrix kernel).
  let vmlinux: Promise<{ dir: string; sha256: string }> | undefined;
  let joined: Promise<{ dir: string; sha256: string }> | undefined;
  const headerFor = (spec: SuiteSpec) =>
    spec.header === 'joined'
      ? (joined ??= joinedHeader(store, opts.log))
      : (vmlinux ??= store.fetch(opts.headerKernel ?? DEFAULT_HEADER_KERNEL).then((k) => vmlinuxHeader(k.btf)));
  const outDir = cacheDir('objects');
  const built: BuiltSuite[] = [];
  for (const { name, display, specFile, spec } of specs) {
    const source = join(dir, name, 'prog.bpf.c');
    if (!existsSync(source)) throw new FormatError(`${display}/prog.bpf.c: missing`);
    let object: string;
    try {
      const header = await headerFor(spec);
      object = await compile(source, name, outDir, header.dir, header.sha256);
    } catch (e) {
      throw wrap(`${display}/prog.bpf.c`, e);
    }
    const bytes = new Uint8Array(readFileSync(object));
    validateAgainstObject(spec, loadObjectSpec(bytes, `${name}.bpf.o`), `${display}/spec.yaml`, readFileSync(specFile, 'utf8'));
    built.push({ name, spec, object, sha256: sha256(bytes), source });
    opts.log?.(`suite ${name}: ${object}`);
  }
  return built;
}

// ---------------------------------------------------------------------------------------------
// Host truth: bpftool's JSON dump of the kernel's BTF, the config file, the package version.

interface BtJson {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number; bitfield_size?: number }[];
  values?: { name: string; val: number | string }[];
}

const dumpCache = new Map<string, Promise<BtJson[]>>();

/** bpftool btf dump file <btf> [-B <base>] -j, parsed (memoised per file and base): a module's types number on from its base's. */
export function bpftoolTypes(btf: string, base?: string): Promise<BtJson[]> {
  const key = `${btf}\0${base ?? ''}`;
  let p = dumpCache.get(key);
  if (!p) {
    p = run('bpftool', ['btf', 'dump', 'file', btf, ...(base ? ['-B', base] : []), '-j'], { maxBuffer: 1 << 30 }).then((r) => (JSON.parse(r.stdout) as { types: BtJson[] }).types);
    dumpCache.set(key, p);
  }
  return p;
}

/**
 * The modules these suites need shipped to a kernel (moduleNeedOn: its config builds them as
 * modules, and a suite that relocates against a module's types can get its BTF there).
 */
export function modulesFor(specs: SuiteSpec[], configFile: string, kernelBtf = true): string[] {
  const want = specs.flatMap(moduleNeeds);
  if (want.length === 0) return [];
  const config = parseConfigLines(readFileSync(configFile, 'utf8'));
  return [...new Set(want.filter((m) => moduleNeedOn(m, (o) => config.get(o), kernelBtf) === 'load').map((m) => moduleKey(m.name)))];
}

/** Type id → type, in one BTF (a module's answers its own ids, then vmlinux's). */
type IdLookup = Pick<Map<number, BtJson>, 'get'>;

function sizeOf(byId: IdLookup, id: number, depth = 0): number {
  const t = byId.get(id);
  if (!t || depth > 64) return 0;
  switch (t.kind) {
    case 'PTR':
      return 8;
    case 'ARRAY':
      return (t.nr_elems ?? 0) * sizeOf(byId, t.type_id!, depth + 1);
    case 'TYPEDEF':
    case 'CONST':
    case 'VOLATILE':
    case 'RESTRICT':
    case 'TYPE_TAG':
      return sizeOf(byId, t.type_id!, depth + 1);
    default:
      return t.size ?? 0;
  }
}

/** LINUX_VERSION_CODE of a Debian package version (6.1.158-1 → KERNEL_VERSION(6,1,158)). */
export function versionCodeOfPackage(version: string): number {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(version);
  if (!m) throw new FormatError(`package version '${version}' has no MAJOR.MINOR.PATCH`);
  return kernelVersionCode(Number(m[1]), Number(m[2]), Number(m[3] ?? 0));
}

/**
 * The host's independent view of one kernel, for the truth keys the specs use (default: every
 * suite's spec). Keys a kernel lacks (a type, an enumerator, a config option) are left out, so
 * `host:k ?? -1` and existence checks see them as absent.
 */
export async function hostTruth(kernelId: string, opts: { specs?: SuiteSpec[]; keys?: string[]; modules?: string[]; store?: KernelStore } = {}): Promise<Record<string, number | string | boolean>> {
  const store = opts.store ?? new KernelStore();
  const k = await store.fetch(kernelId, { use: ['btf', 'config'] });
  const specs = opts.specs ?? (opts.keys ? [] : listSuites().map((n) => readSpec(join(suitesDir(), n, 'spec.yaml'), `${displayDir(suitesDir(), n)}/spec.yaml`, n)));
  const keys = opts.keys ?? hostKeysOf(specs);
  // Module types are looked up in the modules' own BTF (split on the kernel's), as the guest sees them.
  const names = [...new Set([...(opts.modules ?? []).map(moduleKey), ...modulesFor(specs, k.config)])];
  const modules = names.length ? (await store.modules(k, names)).map((m) => m.path) : [];
  return hostTruthOf({ ...k, modules }, keys);
}

/** Kernel artefacts hostTruthOf reads: raw BTF, config, Debian version, and module files (ELF with .BTF) whose types count too. */
export interface TruthInputs {
  btf: string;
  config: string;
  version: string;
  modules?: string[];
}

/**
 * hostTruth for kernel artefacts given as files: raw BTF, config file, Debian package version.
 * Kept on disk (cacheDir('truth')) by the bytes of BTF and config, the version, the keys, bpftool's
 * version and this code's own text: the answer is a pure function of those, and working it out
 * means reading bpftool's JSON dump of the whole BTF (0.3 s per kernel, in every guest slot).
 */
export async function hostTruthOf(k: TruthInputs, keys: string[]): Promise<Record<string, number | string | boolean>> {
  const file = await hostTruthFile(k, keys);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, number | string | boolean>;
  } catch {
    /* not computed yet (or a torn file): compute */
  }
  const out = await computeHostTruth(k, keys);
  try {
    writeFileAtomic(file, JSON.stringify(out));
  } catch {
    /* not kept: computed again next time */
  }
  return out;
}

/** Where hostTruthOf keeps its answer for these inputs. */
export async function hostTruthFile(k: TruthInputs, keys: string[]): Promise<string> {
  const h = createHash('sha256')
    .update(`host-truth v1\0${await bpftoolVersion()}\0${computeHostTruth.toString()}\0${sizeOf.toString()}\0${parseConfigLines.toString()}\0${versionCodeOfPackage.toString()}\0`)
    .update(readFileSync(k.btf))
    .update('\0')
    .update(readFileSync(k.config));
  for (const m of k.modules ?? []) h.update('\0module\0').update(readFileSync(m));
  const key = h
    .update(`\0${k.version}\0${[...new Set(keys)].sort().join('\n')}`)
    .digest('hex')
    .slice(0, 32);
  return join(cacheDir('truth'), `${key}.json`);
}

let bpftoolVersionP: Promise<string> | undefined;
function bpftoolVersion(): Promise<string> {
  bpftoolVersionP ??= run('bpftool', ['version']).then((r) => r.stdout.trim(), (e: Error) => `unknown: ${e.message.split('\n')[0]}`);
  return bpftoolVersionP;
}

async function computeHostTruth(k: TruthInputs, keys: string[]): Promise<Record<string, number | string | boolean>> {
  // vmlinux's types first: a name both have resolves to the kernel's, as CO-RE candidates do.
  const base = await bpftoolTypes(k.btf);
  const baseById = new Map(base.map((t) => [t.id, t]));
  const spaces: { types: BtJson[]; byId: IdLookup }[] = [{ types: base, byId: baseById }];
  // Every module's ids number on from vmlinux's, so two modules reuse the same ids: a module's
  // types resolve references in that module, then in vmlinux. A module without a .BTF section
  // (kernels before CONFIG_DEBUG_INFO_BTF_MODULES, 5.10) adds no types.
  for (const m of k.modules ?? []) {
    if (!parseElf(readFileSync(m), m).section('.BTF')) continue;
    const own = await bpftoolTypes(m, k.btf);
    const ownById = new Map(own.map((t) => [t.id, t]));
    spaces.push({ types: own, byId: { get: (id) => ownById.get(id) ?? baseById.get(id) } });
  }
  const byName = new Map<string, { t: BtJson; byId: IdLookup }[]>();
  for (const { types, byId } of spaces)
    for (const t of types) {
      if (t.name === '(anon)') continue;
      const l = byName.get(t.name);
      if (l) l.push({ t, byId });
      else byName.set(t.name, [{ t, byId }]);
    }
  const KIND_OF: Record<string, string[]> = { struct: ['STRUCT'], union: ['UNION'], enum: ['ENUM', 'ENUM64'], typedef: ['TYPEDEF'], int: ['INT'] };
  const find = (kinds: string[], name: string) => byName.get(name)?.find((x) => kinds.includes(x.t.kind));
  const config = parseConfigLines(readFileSync(k.config, 'utf8'));
  const out: Record<string, number | string | boolean> = {};
  for (const key of keys) {
    const parts = key.split('.');
    const [what, a = '', b = ''] = parts;
    switch (what) {
      case 'enum':
      case 'enumexists': {
        const e = find(KIND_OF.enum!, a)?.t;
        const v = e?.values?.find((x) => x.name === b);
        if (what === 'enumexists') out[key] = v !== undefined;
        else if (v !== undefined) out[key] = Number(v.val);
        break;
      }
      case 'size':
      case 'exists':
      case 'typeid': {
        const hit = find(KIND_OF[a] ?? [], b);
        if (what === 'exists') out[key] = hit !== undefined;
        else if (hit) out[key] = what === 'typeid' ? hit.t.id : sizeOf(hit.byId, hit.t.id);
        break;
      }
      case 'field':
      case 'offset':
      case 'fieldsize': {
        const s = find(['STRUCT', 'UNION'], a);
        const m = s?.t.members?.find((x) => x.name === b);
        if (what === 'field') out[key] = m !== undefined;
        else if (m && what === 'offset') out[key] = Math.floor(m.bits_offset / 8);
        else if (m) out[key] = sizeOf(s!.byId, m.type_id);
        break;
      }
      case 'func':
        out[key] = find(['FUNC'], a) !== undefined;
        break;
      case 'kernel':
        out[key] = versionCodeOfPackage(k.version);
        break;
      case 'config': {
        // `# CONFIG_X is not set` (n) and options absent altogether: no value.
        const v = config.get(parts.slice(1).join('.'));
        if (v !== undefined && v !== 'n') out[key] = v;
        break;
      }
      default:
        throw new UsageError(`unknown host truth key '${key}'`);
    }
  }
  return out;
}

/** Every truth expression of a spec parses (used by tests and by the CLI before a run). */
export function truthsOf(spec: SuiteSpec): ReturnType<typeof parseTruth>[] {
  return spec.checks.map((c) => parseTruth(c.truth, spec.trigger.kind));
}
