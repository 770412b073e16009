// Object configuration: what a BPF tool's user space does between open and load (libbpf's
// skeleton: open → configure → load → attach), written as data in a YAML file beside the object
// (docs/object-config.md). Three steps, each its own part of this module:
//
//   parse    text → ObjectConfig (validated like suite specs: every problem is one line naming
//            `file:line: key`); plain JSON-able data, so it can cross from host to guest.
//   evaluate conditions (`btf-function`, `kallsyms`, `kconfig`, `kernel`, `all`/`any`/`not`)
//            against facts the caller gathers for one kernel (`ObjectConfigFacts`).
//   apply    ObjectSpec → a configured ObjectSpec: autoload, attach targets, max_entries, global
//            variables written into the data maps' initial bytes. No syscalls.
//
// Everything here is pure (no node:*) except `readObjectConfig`, the one function that reads a
// file, so the guest agent and the host's offline check evaluate a config the same way.

import type { LibbpfSettings } from '../reference/libbpf.js';
import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import type { Btf } from '../core/btf/btf.js';
import { FUNC_GLOBAL, Kind } from '../core/btf/kinds.js';
import { CoreMatrixError, FormatError } from '../core/errors.js';
import { yamlErrorMessage } from '../core/yaml-error.js';
import { MapType } from '../core/object/maps.js';
import { classifySection, ProgType } from '../core/object/sections.js';
import type { MapSpec, ObjectSpec, ProgramSpec } from '../core/object/types.js';
import { writeRodata } from '../suites/rodata.js';
import { lineOf } from '../suites/spec.js';

// ───────────────────────────── the parsed form ─────────────────────────────

/** A condition, evaluated per kernel. Plain data: `kind` tells the variants apart. */
export type Condition =
  | { kind: 'const'; value: boolean }
  /** A FUNC of this name in the kernel's BTF (vmlinux or a module's): what fentry/fexit need. */
  | { kind: 'btf-function'; name: string }
  /** A symbol of this name in /proc/kallsyms: what a kprobe needs. */
  | { kind: 'kallsyms'; name: string }
  /** CONFIG_X set (y, m or any value); with `equals`, set to that value ('n': not set). */
  | { kind: 'kconfig'; name: string; equals?: string | number }
  /** Every clause holds: `>= 5.11, < 6.1`. */
  | { kind: 'kernel'; range: string; clauses: VersionClause[] }
  | { kind: 'all' | 'any'; of: Condition[] }
  | { kind: 'not'; of: Condition };

/**
 * One comparison of the kernel's version. Only the components written are compared, so
 * `<= 6.1` holds for every 6.1.y and `== 6.1` means the 6.1 series.
 */
export interface VersionClause {
  op: '<' | '<=' | '>' | '>=' | '==';
  version: number[];
}

/** An attach target, taken when its condition holds (no condition: always). */
export interface AttachCandidate {
  target: string;
  if?: Condition;
}

export interface ProgramConfig {
  autoload?: Condition;
  /** The first candidate whose condition holds is the target; none holding leaves the object's own. */
  attach?: AttachCandidate[];
  /** freplace: the program whose function it replaces (`target-program`): of this object, or of `targetObject`. */
  targetProgram?: string;
  /** freplace across objects (`target-program: <object>:<program>`): the other object of the run, as the run names it. */
  targetObject?: string;
}

export interface MapConfig {
  maxEntries?: number;
}

/** A variable's value as written: numbers, booleans, strings (char arrays, enumerator names, quoted 64-bit integers). */
export type VariableValue = number | string | boolean;

export interface ObjectConfig {
  /** The file as messages name it. */
  file: string;
  programs: Record<string, ProgramConfig>;
  maps: Record<string, MapConfig>;
  /** Variable → value; a struct member is `var.member` (written nested in the file). */
  variables: Record<string, VariableValue>;
  /** Commands the guest runs (`/bin/sh -c`) after the standard workload, to fire the object's hooks. */
  workload?: string[];
  /** Each key's line in the file (`programs.x.attach` → 7), for the errors found when applied to an object. */
  lines: Record<string, number>;
}

// ───────────────────────────── parse and validate ─────────────────────────────

const TOP_KEYS = ['programs', 'maps', 'variables', 'workload'] as const;
const PROGRAM_KEYS = ['autoload', 'attach', 'target-program'] as const;
const MAP_KEYS = ['max_entries'] as const;
const CANDIDATE_KEYS = ['target', 'if'] as const;
const CONDITION_KEYS = ['btf-function', 'kallsyms', 'kconfig', 'kernel', 'all', 'any', 'not'] as const;
const CONDITION_FORM = `a boolean or a condition (a mapping with one of ${CONDITION_KEYS.join(', ')})`;
const IDENT = /^[A-Za-z_]\w*$/;
/** `target-program: <object>:<program>`: the object as the run names it (no spaces), then a program name. */
const OTHER_PROGRAM = /^(\S+):([A-Za-z_]\w*)$/;
/** Kernel symbols: C identifiers, plus the dots of compiler clones (`foo.isra.0`). */
const SYMBOL = /^[A-Za-z_][\w.]*$/;
const KCONFIG = /^CONFIG_[A-Za-z0-9_]+$/;
const U32_MAX = 0xffff_ffff;

type PathSeg = string | number;

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`);
/** `programs.x.autoload.all[1].kconfig`: how a message names a key. */
const keyOf = (path: PathSeg[]): string => path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');

/**
 * The line of a key. lineOf (shared with suite specs) finds block-style list items by their `- `;
 * the items of a flow list (`all: [a, b]`) share the list's line, so that line is the answer.
 */
function lineFor(text: string, path: PathSeg[]): number {
  const i = path.findIndex((s) => typeof s === 'number');
  if (i < 0) return lineOf(text, path);
  const listLine = lineOf(text, path.slice(0, i));
  const key = String(path[i - 1]);
  const at = text.split('\n')[listLine - 1] ?? '';
  if (new RegExp(`${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*:\\s*\\[`).test(at)) return listLine;
  return lineOf(text, path);
}

class Checker {
  readonly errors: string[] = [];
  readonly lines: Record<string, number> = {};
  constructor(
    readonly file: string,
    readonly text: string,
  ) {}
  fail(path: PathSeg[], msg: string): void {
    this.errors.push(`${this.file}:${lineFor(this.text, path)}: ${keyOf(path)}: ${msg}`);
  }
  /** Remembers where a key is, for errors found later against the object. */
  note(path: PathSeg[]): void {
    this.lines[keyOf(path)] = lineFor(this.text, path);
  }
  /** Fails on keys outside `allowed`; true when there were none. */
  onlyKeys(path: PathSeg[], v: Record<string, unknown>, allowed: readonly string[], what: string): boolean {
    let ok = true;
    for (const k of Object.keys(v)) {
      if (allowed.includes(k)) continue;
      this.fail([...path, k], `unknown key '${k}' in ${what} (allowed: ${allowed.join(', ')})`);
      ok = false;
    }
    return ok;
  }
}

/** Parses and validates a config's text; throws FormatError naming `file:line: key` for the first problem. */
export function parseObjectConfig(text: string, file: string): ObjectConfig {
  let doc: unknown;
  try {
    // JSON_SCHEMA: `y`, `n`, `yes`, `0x10` stay strings, as a kernel config writes them.
    doc = yaml.load(text, { filename: file, schema: yaml.JSON_SCHEMA });
  } catch (e) {
    throw new FormatError(yamlErrorMessage(file, text, e));
  }
  return validateObjectConfig(doc, file, text);
}

/** Validates a parsed YAML document (an empty file is an empty config). */
export function validateObjectConfig(doc: unknown, file: string, text: string): ObjectConfig {
  const c = new Checker(file, text);
  const out: ObjectConfig = { file, programs: {}, maps: {}, variables: {}, lines: c.lines };
  if (doc === undefined || doc === null) return out;
  if (!isMap(doc)) throw new FormatError(`${file}:1: an object config must be a mapping with keys ${TOP_KEYS.join(', ')}, not ${typeName(doc)}`);
  c.onlyKeys([], doc, TOP_KEYS, 'an object config');

  if ('workload' in doc && doc.workload !== null) {
    c.note(['workload']);
    const w = doc.workload;
    if (Array.isArray(w) && w.every((x) => typeof x === 'string' && x.trim() !== '')) out.workload = w as string[];
    else c.fail(['workload'], `expected a list of shell commands (strings), not ${typeName(w)}`);
  }

  const section = (key: Exclude<(typeof TOP_KEYS)[number], 'workload'>, what: string): [string, unknown][] => {
    const v = doc[key];
    if (v === undefined || v === null) return [];
    if (!isMap(v)) {
      c.fail([key], `expected a mapping of ${what}, not ${typeName(v)}`);
      return [];
    }
    return Object.entries(v);
  };

  for (const [name, v] of section('programs', 'program name → settings')) {
    const path = ['programs', name];
    c.note(path);
    if (!isMap(v)) {
      c.fail(path, `expected a mapping with ${PROGRAM_KEYS.join(', ')}, not ${typeName(v)}`);
      continue;
    }
    c.onlyKeys(path, v, PROGRAM_KEYS, `program '${name}'`);
    const pc: ProgramConfig = {};
    if ('autoload' in v) {
      c.note([...path, 'autoload']);
      const cond = parseCondition(c, [...path, 'autoload'], v.autoload);
      if (cond) pc.autoload = cond;
    }
    if ('attach' in v) {
      c.note([...path, 'attach']);
      const cands = parseAttach(c, [...path, 'attach'], v.attach);
      if (cands) pc.attach = cands;
    }
    if ('target-program' in v) {
      c.note([...path, 'target-program']);
      const t = v['target-program'];
      const other = typeof t === 'string' ? OTHER_PROGRAM.exec(t) : null;
      if (typeof t === 'string' && IDENT.test(t)) pc.targetProgram = t;
      else if (other) Object.assign(pc, { targetObject: other[1]!, targetProgram: other[2]! });
      else c.fail([...path, 'target-program'], `expected the name of a program of this object, not ${typeName(t)} (a program of another object of the run: <object>:<program>, e.g. dispatcher.bpf.o:dispatch)`);
    }
    out.programs[name] = pc;
  }

  for (const [name, v] of section('maps', 'map name → settings')) {
    const path = ['maps', name];
    c.note(path);
    if (!isMap(v)) {
      c.fail(path, `expected a mapping with ${MAP_KEYS.join(', ')}, not ${typeName(v)}`);
      continue;
    }
    c.onlyKeys(path, v, MAP_KEYS, `map '${name}'`);
    const mc: MapConfig = {};
    if ('max_entries' in v) {
      c.note([...path, 'max_entries']);
      const n = v.max_entries;
      if (typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= U32_MAX) mc.maxEntries = n;
      else c.fail([...path, 'max_entries'], `expected a positive integer below 2^32, not ${typeName(n)}`);
    }
    out.maps[name] = mc;
  }

  const variable = (path: string[], v: unknown): void => {
    const name = path[path.length - 1]!;
    if (!IDENT.test(name)) return c.fail(path, `'${name}' is not a C identifier`);
    if (isMap(v)) {
      // A struct: its members, nested.
      if (Object.keys(v).length === 0) return c.fail(path, 'expected a value or a mapping of struct members, not an empty mapping');
      for (const [k, x] of Object.entries(v)) variable([...path, k], x);
      return;
    }
    const key = path.slice(1).join('.');
    c.note(path);
    if (typeof v === 'number') {
      if (!Number.isInteger(v)) return c.fail(path, `${v} is not an integer (floating-point variables are not supported)`);
      if (!Number.isSafeInteger(v)) return c.fail(path, 'an integer beyond 2^53 loses digits as a YAML number: quote it (e.g. "18446744073709551615" or "0xffffffffffffffff")');
    } else if (typeof v !== 'boolean' && typeof v !== 'string') {
      return c.fail(path, `expected an integer, a boolean, a string or a mapping of struct members, not ${typeName(v)}`);
    }
    out.variables[key] = v;
  };
  for (const [name, v] of section('variables', 'variable name → value')) variable(['variables', name], v);

  if (c.errors.length) throw new FormatError(c.errors[0]!);
  return out;
}

function parseAttach(c: Checker, path: PathSeg[], v: unknown): AttachCandidate[] | undefined {
  const target = (p: PathSeg[], t: unknown): t is string => {
    if (typeof t === 'string' && t.length > 0 && !/\s/.test(t)) return true;
    c.fail(p, `expected an attach target (a function, category/name for a tracepoint, ...) without spaces, not ${typeName(t)}`);
    return false;
  };
  if (typeof v === 'string') return target(path, v) ? [{ target: v }] : undefined;
  if (!Array.isArray(v) || v.length === 0) {
    c.fail(path, `expected a target, or a non-empty list of targets and { target, if } candidates (the first that holds wins), not ${typeName(v)}`);
    return undefined;
  }
  const out: AttachCandidate[] = [];
  v.forEach((item: unknown, i) => {
    const p = [...path, i];
    if (typeof item === 'string') {
      if (target(p, item)) out.push({ target: item });
      return;
    }
    if (!isMap(item)) return c.fail(p, `expected a target or { target, if }, not ${typeName(item)}`);
    if (!c.onlyKeys(p, item, CANDIDATE_KEYS, 'an attach candidate')) return;
    if (!('target' in item)) return c.fail(p, "a candidate needs 'target'");
    if (!('if' in item)) return c.fail(p, "a candidate mapping needs 'if' (write an unconditional target as a plain string)");
    const cond = parseCondition(c, [...p, 'if'], item.if);
    if (target([...p, 'target'], item.target) && cond) out.push({ target: item.target, if: cond });
  });
  return out.length === v.length ? out : undefined;
}

function parseCondition(c: Checker, path: PathSeg[], v: unknown): Condition | undefined {
  if (typeof v === 'boolean') return { kind: 'const', value: v };
  if (!isMap(v)) {
    c.fail(path, `expected ${CONDITION_FORM}, not ${typeName(v)}`);
    return undefined;
  }
  const keys = Object.keys(v);
  const head = keys.find((k) => (CONDITION_KEYS as readonly string[]).includes(k));
  if (!head) {
    c.fail(keys.length ? [...path, keys[0]!] : path, keys.length ? `unknown condition '${keys[0]}' (allowed: ${CONDITION_KEYS.join(', ')})` : `expected ${CONDITION_FORM}, not an empty mapping`);
    return undefined;
  }
  const extra = keys.filter((k) => k !== head && !(head === 'kconfig' && k === 'equals'));
  if (extra.length) {
    const known = (CONDITION_KEYS as readonly string[]).includes(extra[0]!);
    c.fail([...path, extra[0]!], known ? `a condition tests one thing: combine '${head}' and '${extra[0]}' with all: [...] or any: [...]` : `unknown key '${extra[0]}' in a '${head}' condition${head === 'kconfig' ? ' (allowed: kconfig, equals)' : ''}`);
    return undefined;
  }
  const p = [...path, head];
  const arg = v[head];
  switch (head) {
    case 'btf-function':
    case 'kallsyms':
      if (typeof arg === 'string' && SYMBOL.test(arg)) return { kind: head, name: arg };
      c.fail(p, `expected a kernel function name, not ${typeName(arg)}`);
      return undefined;
    case 'kconfig': {
      if (typeof arg !== 'string' || !KCONFIG.test(arg)) {
        c.fail(p, `expected a CONFIG_<NAME> option, not ${typeName(arg)}`);
        return undefined;
      }
      if (!('equals' in v)) return { kind: 'kconfig', name: arg };
      const eq = v.equals;
      if ((typeof eq === 'string' && eq.length > 0) || (typeof eq === 'number' && Number.isInteger(eq))) return { kind: 'kconfig', name: arg, equals: eq };
      c.fail([...path, 'equals'], `expected a config value (y, m, n, a number or a string), not ${typeName(eq)}`);
      return undefined;
    }
    case 'kernel': {
      if (typeof arg === 'number') {
        c.fail(p, `quote the version: unquoted, YAML reads it as the number ${arg} (and 5.10 as 5.1)`);
        return undefined;
      }
      const clauses = typeof arg === 'string' ? parseVersionRange(arg) : undefined;
      if (clauses) return { kind: 'kernel', range: arg as string, clauses };
      c.fail(p, `expected version comparisons such as '>= 5.11' or '>= 5.11, < 6.1' (quoted), not ${typeName(arg)}`);
      return undefined;
    }
    case 'all':
    case 'any': {
      if (!Array.isArray(arg) || arg.length === 0) {
        c.fail(p, `expected a non-empty list of conditions, not ${typeName(arg)}`);
        return undefined;
      }
      const of = arg.map((x: unknown, i) => parseCondition(c, [...p, i], x));
      return of.every((x) => x !== undefined) ? { kind: head, of: of as Condition[] } : undefined;
    }
    default: {
      const of = parseCondition(c, p, arg);
      return of ? { kind: 'not', of } : undefined;
    }
  }
}

/** `>= 5.11, < 6.1` → clauses; undefined when any part is not `[op] a[.b[.c]]`. */
export function parseVersionRange(text: string): VersionClause[] | undefined {
  const out: VersionClause[] = [];
  for (const part of text.split(',')) {
    const m = /^\s*(<=|>=|==|=|<|>)?\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*$/.exec(part);
    if (!m) return undefined;
    const op = (m[1] === '=' || m[1] === undefined ? '==' : m[1]) as VersionClause['op'];
    out.push({ op, version: [m[2], m[3], m[4]].filter((x) => x !== undefined).map(Number) });
  }
  return out;
}

/** Reads and parses a config file; `display` is how messages name it. The only file I/O here. */
export function readObjectConfig(path: string, display = path): ObjectConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CoreMatrixError(`${display}: cannot read the object config: ${(e as Error).message.split('\n')[0]}`);
  }
  return parseObjectConfig(text, display);
}

/** The config that goes with an object by default: `x.bpf.o` → `x.bpf.yaml`, beside it. */
export function configPathFor(objectPath: string): string {
  return `${objectPath.replace(/\.o$/, '')}.yaml`;
}

// ───────────────────────────── evaluate ─────────────────────────────

/** What conditions ask about one kernel; the caller gathers it (guest: the running kernel; host: the store's files). */
export interface ObjectConfigFacts {
  /** A FUNC of this name in the kernel's BTF (vmlinux or a loaded module's). */
  hasBtfFunction(name: string): boolean;
  /** A symbol of this name in /proc/kallsyms. */
  hasKsym(name: string): boolean;
  /** The kernel config's value for CONFIG_X: 'y' | 'm' | a string | a number; undefined when not set. */
  kconfig(name: string): 'y' | 'm' | string | number | undefined;
  /** major.minor.patch, the patch level as the kernel's own sublevel (Debian's 5.10.262, not uname's 5.10.0). */
  kernelVersion: readonly [number, number, number];
  /** Page size for ring buffer sizes; 4096 when absent (x86-64, and Debian's arm64 kernels). */
  pageSize?: number;
}

const yesNo = (b: boolean) => (b ? 'yes' : 'no');

/**
 * Evaluates a condition. `all`/`any` stop at the first answer that decides them, so a fact that
 * is not needed is not asked for. `trace`, when given, receives one `test: yes|no` line per fact asked.
 */
export function evaluate(cond: Condition, facts: ObjectConfigFacts, trace?: string[]): boolean {
  switch (cond.kind) {
    case 'const':
      return cond.value;
    case 'btf-function': {
      const ok = facts.hasBtfFunction(cond.name);
      trace?.push(`btf-function ${cond.name}: ${yesNo(ok)}`);
      return ok;
    }
    case 'kallsyms': {
      const ok = facts.hasKsym(cond.name);
      trace?.push(`kallsyms ${cond.name}: ${yesNo(ok)}`);
      return ok;
    }
    case 'kconfig': {
      const v = facts.kconfig(cond.name);
      const set = v !== undefined && v !== 'n';
      const ok = cond.equals === undefined ? set : cond.equals === 'n' ? !set : set && sameConfigValue(v, cond.equals);
      trace?.push(`kconfig ${cond.name}${set ? `=${v}` : ' not set'}${cond.equals === undefined ? '' : ` (equals ${cond.equals})`}: ${yesNo(ok)}`);
      return ok;
    }
    case 'kernel': {
      const ok = cond.clauses.every((c) => versionHolds(facts.kernelVersion, c));
      trace?.push(`kernel ${facts.kernelVersion.join('.')} ${cond.range}: ${yesNo(ok)}`);
      return ok;
    }
    case 'all':
      return cond.of.every((c) => evaluate(c, facts, trace));
    case 'any':
      return cond.of.some((c) => evaluate(c, facts, trace));
    case 'not':
      return !evaluate(cond.of, facts, trace);
  }
}

/** Integers compare as numbers (`250` = `"250"`, `0x1000` = 4096); anything else as text. */
function sameConfigValue(v: string | number, want: string | number): boolean {
  const num = (x: string | number): number | undefined =>
    typeof x === 'number' ? x : /^-?\d+$/.test(x) ? Number(x) : /^0x[0-9a-f]+$/i.test(x) ? Number.parseInt(x.slice(2), 16) : undefined;
  const a = num(v);
  const b = num(want);
  if (a !== undefined && b !== undefined) return a === b;
  return String(v) === String(want);
}

function versionHolds(kernel: readonly number[], c: VersionClause): boolean {
  let cmp = 0;
  for (let i = 0; i < c.version.length && cmp === 0; i++) cmp = Math.sign((kernel[i] ?? 0) - c.version[i]!);
  switch (c.op) {
    case '<': return cmp < 0;
    case '<=': return cmp <= 0;
    case '>': return cmp > 0;
    case '>=': return cmp >= 0;
    case '==': return cmp === 0;
  }
}

/** What `kernelFacts` builds facts from: one kernel's BTF and config. */
export interface KernelFactsSource {
  /** The kernel's vmlinux BTF. */
  btf: Btf;
  /** Module BTFs (split on top of `btf`): their functions count too, as in libbpf-tools' fentry_can_attach(). */
  modules?: readonly Btf[];
  /** CONFIG_X → value, as parsed from the kernel's config (absent = not set). */
  config: ReadonlyMap<string, string | number>;
  version: readonly [number, number, number];
  /** Whether /proc/kallsyms has the symbol; without it a `kallsyms` condition is an error. */
  ksyms?: (name: string) => boolean;
  pageSize?: number;
  /** The kernel as errors name it. */
  name?: string;
}

/** Facts from a kernel's BTF and config: for the guest (its own kernel) and the host (the store's files). */
export function kernelFacts(src: KernelFactsSource): ObjectConfigFacts {
  const btfs = [src.btf, ...(src.modules ?? [])];
  const facts: ObjectConfigFacts = {
    hasBtfFunction: (name) => btfs.some((b) => b.byName(name).some((id) => b.kind(id) === Kind.FUNC)),
    hasKsym: (name) => {
      if (!src.ksyms) throw new CoreMatrixError(`${src.name ?? 'kernel'}: a kallsyms condition (${name}) needs /proc/kallsyms, which this evaluation does not have`);
      return src.ksyms(name);
    },
    kconfig: (name) => src.config.get(name),
    kernelVersion: src.version,
  };
  if (src.pageSize !== undefined) facts.pageSize = src.pageSize;
  return facts;
}

// ───────────────────────────── apply ─────────────────────────────

export interface AppliedConfig {
  /** A new spec; the input is left as it was (see applyObjectConfig). */
  spec: ObjectSpec;
  /** One line per setting (programs, then maps, then variables, each in file order): what it set and, for conditions, the facts that decided it. */
  applied: string[];
}

/**
 * Applies a config to a parsed object, as libbpf's setters do between open and load:
 * bpf_program__set_autoload, bpf_program__set_attach_target, bpf_map__set_max_entries (ring
 * buffers rounded up to a power-of-2 number of pages, as libbpf does) and the skeleton's writes
 * into `.rodata`/`.data`/`.bss`.
 *
 * The input is not modified: the result is a copy whose programs, maps, map data and code
 * sections are its own (the loader fills `.kconfig` and the CO-RE engine patches sections in
 * place), sharing only what nothing writes (BTF, relocations, functions). So one parsed object can
 * be configured for many kernels, and applying a config to its own result changes nothing more.
 *
 * Everything the config names is checked against the object before anything is evaluated, so a
 * misspelt name fails the same way on every kernel. Errors are FormatError naming `file:line: key`.
 */
export function applyObjectConfig(spec: ObjectSpec, config: ObjectConfig, facts: ObjectConfigFacts): AppliedConfig {
  const out = copySpec(spec);
  const applied: string[] = [];
  // Resolve and check every name and value first; evaluate and write afterwards.
  const { programs, maps, vars } = resolveConfig(out, spec, config);

  for (const { name, p, pc, targets } of programs) {
    if (pc.autoload) {
      const trace: string[] = [];
      const was = p.autoload;
      p.autoload = evaluate(pc.autoload, facts, trace);
      applied.push(`program ${name}: autoload ${was === p.autoload ? `stays ${was}` : `${was} → ${p.autoload}`}${because(trace)}`);
    }
    if (targets.length) {
      const trace: string[] = [];
      const i = targets.findIndex((c) => !c.if || evaluate(c.if, facts, trace));
      const which = targets.length > 1 ? `candidate ${i + 1} of ${targets.length}` : '';
      if (i < 0) {
        applied.push(`program ${name}: attach stays ${p.attachTo ?? 'unset'}: no candidate holds${because(trace)}`);
        continue;
      }
      const was = p.attachTo;
      setTarget(p, targets[i]!.parsed);
      const what = was === p.attachTo ? `stays ${was}` : `${was ?? 'unset'} → ${p.attachTo}`;
      applied.push(`program ${name}: attach ${what}${which || trace.length ? ` [${[which, ...trace].filter(Boolean).join('; ')}]` : ''}`);
    }
    if (pc.targetProgram) {
      p.attachProgram = pc.targetObject ? `${pc.targetObject}:${pc.targetProgram}` : pc.targetProgram;
      applied.push(`program ${name}: replaces ${p.attachTo} of program ${p.attachProgram}`);
    }
  }

  for (const { name, m, mc } of maps) {
    if (mc.maxEntries === undefined) continue;
    const was = m.maxEntries;
    const page = facts.pageSize ?? 4096;
    const isRing = m.type === MapType.RINGBUF || m.type === MapType.USER_RINGBUF;
    m.maxEntries = isRing ? ringbufSize(mc.maxEntries, page) : mc.maxEntries;
    const note = m.maxEntries !== mc.maxEntries ? ` (asked ${mc.maxEntries}: a ring buffer is a power-of-2 number of ${page}-byte pages; libbpf rounds up the same way)` : '';
    applied.push(`map ${name}: max_entries ${was === m.maxEntries ? `stays ${was}` : `${was} → ${m.maxEntries}`}${note}`);
  }

  for (const { path, v, value } of vars) {
    writeRodata(out.btf, v.map.valueTypeId, v.map.data!, { [path]: value }, `${config.file}: variables.${path}`);
    const written = config.variables[path];
    const shown = typeof value === 'string' ? JSON.stringify(value) : typeof written === 'string' && IDENT.test(written) ? `${written} (${value})` : String(value);
    const folded = v.map.section.startsWith('.rodata') && !v.volatile
      ? '; not volatile: the compiler may have folded its initial value into the code (declare it const volatile)'
      : '';
    applied.push(`variable ${path} (${v.map.name}+${v.offset}, ${out.btf.typeName(v.typeId)}) = ${shown}${folded}`);
  }
  return { spec: out, applied };
}

/**
 * Checks everything the config names against the object (programs, maps, variables, attach targets,
 * value types) without evaluating any condition: the host does this before any guest boots, so a
 * misspelt name is one line and exit 2 instead of a failure in every guest.
 */
export function checkObjectConfig(spec: ObjectSpec, config: ObjectConfig, run?: RunObjects): void {
  resolveConfig(copySpec(spec), spec, config, run);
}

/**
 * The run's objects around the one whose config is checked, for `target-program: <object>:<program>`
 * (freplace into another object's program). Without it, such targets are left to the guest.
 */
export interface RunObjects {
  /** This object, as the run names it. */
  self: string;
  /** The objects before it on the command line, by name: what it may replace functions of (loaded first). */
  before: ReadonlyMap<string, ObjectSpec>;
  /** The names of the objects after it. */
  after: readonly string[];
}

/** A freplace target as ProgramSpec.attachProgram holds it: `program` (this object's) or `object:program` (another object's of the run). */
export function splitTargetProgram(attachProgram: string): { object?: string; program: string } {
  const m = OTHER_PROGRAM.exec(attachProgram);
  return m ? { object: m[1]!, program: m[2]! } : { program: attachProgram };
}

/** The objects of the run whose programs this config's freplace programs replace functions of (target-program: <object>:<program>). */
export function replacedObjects(config: ObjectConfig): string[] {
  return [...new Set(Object.values(config.programs).flatMap((pc) => (pc.targetObject ? [pc.targetObject] : [])))];
}

/**
 * The checks of `target-program: <object>:<program>`: the object is one of the run's, before this
 * one (its programs are loaded first), it has that program, and that object's BTF has the function
 * as a global FUNC: the replacement loads against the target program's BTF, which is that
 * object's, and the kernel replaces only global functions.
 */
function checkOtherObject(run: RunObjects, pc: ProgramConfig, functions: string[], fail: (msg: string) => never): void {
  const object = pc.targetObject!;
  const program = pc.targetProgram!;
  if (object === run.self) fail(`${object} is this object: name its program alone (target-program: ${program})`);
  const target = run.before.get(object);
  if (!target) {
    if (run.after.includes(object)) fail(`${object} comes after ${run.self} on the command line: give --object ${object} first (the program whose function is replaced is loaded before its replacement)`);
    fail(`no object '${object}' in this run before ${run.self} (objects: ${listSome([...run.before.keys()])})`);
  }
  const t = target!.programs.find((x) => x.name === program);
  if (!t) fail(`no program '${program}' in ${object} (programs: ${listSome(target!.programs.map((x) => x.name))})`);
  if (t!.type === ProgType.EXT) fail(`'${program}' of ${object} is a freplace program itself`);
  for (const fn of functions) {
    const ids = target!.btf.byName(fn).filter((id) => target!.btf.kind(id) === Kind.FUNC);
    if (!ids.length) fail(`no function '${fn}' in ${object}'s BTF to replace (the replacement loads against ${program}'s BTF, which is ${object}'s)`);
    if (!ids.some((id) => target!.btf.vlen(id) === FUNC_GLOBAL)) fail(`'${fn}' is a static function of ${object}: the kernel replaces global functions only (drop 'static')`);
  }
}

/** Every setting of `config` matched with what it sets in `out` (a copy of `spec`); FormatError naming `file:line: key` for what does not match. */
function resolveConfig(out: ObjectSpec, spec: ObjectSpec, config: ObjectConfig, run?: RunObjects) {
  const fail = (key: string, msg: string): never => {
    throw new FormatError(`${config.file}:${config.lines[key] ?? 1}: ${key}: ${msg}`);
  };
  const programs = Object.entries(config.programs).map(([name, pc]) => {
    const p = out.programs.find((x) => x.name === name);
    if (!p) return fail(`programs.${name}`, `no program '${name}' in ${spec.source} (programs: ${listSome(out.programs.map((x) => x.name))})`);
    const targets = (pc.attach ?? []).map((c, i) => ({ ...c, parsed: attachKind(p, c.target, (msg) => fail(`programs.${name}.attach`, pc.attach!.length > 1 ? `candidate ${i + 1}: ${msg}` : msg)) }));
    if (pc.targetProgram !== undefined) {
      const key = `programs.${name}.target-program`;
      if (p.type !== ProgType.EXT) fail(key, `only freplace programs replace a function of another program ('${name}' is ${p.kind}, section '${p.section}')`);
      if (!p.attachTo && !targets.length) fail(key, `name the function it replaces: SEC("freplace/<function>") or programs.${name}.attach`);
      if (pc.targetObject === undefined) {
        const t = out.programs.find((x) => x.name === pc.targetProgram);
        if (!t) fail(key, `no program '${pc.targetProgram}' in ${spec.source} (programs: ${listSome(out.programs.map((x) => x.name))})`);
        else if (t.type === ProgType.EXT) fail(key, `'${pc.targetProgram}' is a freplace program itself`);
      } else if (run) {
        // Every function the config may pick on some kernel (its candidates), or the section's.
        const functions = targets.length ? targets.map((c) => c.parsed.attachTo ?? c.target) : [p.attachTo!];
        checkOtherObject(run, pc, functions, (msg) => fail(key, msg));
      }
    }
    return { name, p, pc, targets };
  });
  const maps = Object.entries(config.maps).map(([name, mc]) => {
    const m = out.maps.find((x) => x.name === name);
    const named = out.maps.filter((x) => x.kind === 'btf' || x.kind === 'legacy').map((x) => x.name);
    if (!m) return fail(`maps.${name}`, `no map '${name}' in ${spec.source} (maps: ${listSome(named)})`);
    if (m.kind === 'data' || m.kind === 'kconfig') return fail(`maps.${name}`, `${name} is a global data map: its size is its section's; set its variables under 'variables'`);
    return { name, m, mc };
  });
  const vars = Object.entries(config.variables).map(([path, value]) => {
    const key = `variables.${path}`;
    const v = locateVariable(out, path, (msg) => fail(key, msg));
    return { path, v, value: encodeValue(out.btf, v, value, (msg) => fail(key, msg)) };
  });
  return { programs, maps, vars };
}

const because = (trace: string[]) => (trace.length ? ` [${trace.join('; ')}]` : '');

function listSome(names: string[]): string {
  if (names.length === 0) return 'none';
  return names.length <= 8 ? names.join(', ') : `${names.slice(0, 8).join(', ')}, … ${names.length - 8} more`;
}

/** A copy that the loader and the CO-RE engine may write into without touching `spec`. */
function copySpec(spec: ObjectSpec): ObjectSpec {
  const copyMap = (m: MapSpec): MapSpec => {
    const c: MapSpec = { ...m };
    if (m.data) c.data = m.data.slice();
    if (m.inner) c.inner = copyMap(m.inner);
    if (m.initValues) c.initValues = m.initValues.map((x) => ({ ...x }));
    return c;
  };
  return {
    ...spec,
    programs: spec.programs.map((p) => ({ ...p })),
    maps: spec.maps.map(copyMap),
    sections: new Map([...spec.sections].map(([k, v]) => [k, v.slice()])),
  };
}

/**
 * What the program's section row makes of `target`: classified as `kind/target` would be, by the
 * same table the loader and the attacher read (so a target here is exactly a target in SEC()).
 */
function attachKind(p: ProgramSpec, target: string, fail: (msg: string) => never): ReturnType<typeof classifySection> {
  if (p.kind === 'unknown') return fail(`program '${p.name}' is in section '${p.section}', which is no program type; it has nothing to attach`);
  const k = classifySection(`${p.kind}/${target}`);
  if (k.kind !== p.kind || k.attachTo !== target) return fail(`a '${p.kind}' program takes no attach target (section '${p.section}')`);
  if (k.targetError) return fail(k.targetError);
  return k;
}

/** What bpf_program__set_attach_target does to our spec: the target and what follows from it. */
function setTarget(p: ProgramSpec, k: ReturnType<typeof classifySection>): void {
  p.attachTo = k.attachTo;
  p.autoAttach = k.autoAttach;
  if (k.target) p.target = k.target;
  else delete p.target;
  delete p.targetError;
}

/** libbpf's ring buffer size: a power-of-2 multiple of the page size, rounded up; left alone if none fits in 32 bits. */
export function ringbufSize(asked: number, page: number): number {
  for (let size = page; size <= U32_MAX; size *= 2) if (size >= asked) return size;
  return asked;
}

interface VariableLocation {
  map: MapSpec;
  offset: number;
  /** The leaf's BTF type (for `var.member`, the member's), modifiers included. */
  typeId: number;
  /** Declared volatile (what keeps a `.rodata` value out of the compiler's constant folding). */
  volatile: boolean;
}

/**
 * Finds `var` or `var.member...` in the object's global data (.rodata*, .data*, .bss*), by its
 * DATASEC. `.kconfig` externs are not variables: the loader fills them from the kernel's config.
 */
function locateVariable(spec: ObjectSpec, path: string, fail: (msg: string) => never): VariableLocation {
  const btf = spec.btf;
  const [head, ...members] = path.split('.');
  const found: { map: MapSpec; offset: number; varType: number }[] = [];
  for (const map of spec.maps) {
    if (map.kind !== 'data' || !map.data || !map.valueTypeId || btf.kind(map.valueTypeId) !== Kind.DATASEC) continue;
    for (const v of btf.typeOf(map.valueTypeId, Kind.DATASEC).vars) {
      if (btf.name(v.type) === head) found.push({ map, offset: v.offset, varType: btf.typeOf(v.type, Kind.VAR).type });
    }
  }
  if (found.length === 0) {
    if (spec.externs.some((e) => e.name === head)) return fail(`'${head}' is an extern (${spec.externs.find((e) => e.name === head)!.kind}): the loader resolves it from the kernel`);
    const names = spec.maps.filter((m) => m.kind === 'data' && m.valueTypeId && btf.kind(m.valueTypeId) === Kind.DATASEC)
      .flatMap((m) => btf.typeOf(m.valueTypeId, Kind.DATASEC).vars.map((v) => btf.name(v.type)));
    return fail(`no global variable '${head}' in ${spec.source} (variables: ${listSome(names)})`);
  }
  if (found.length > 1) return fail(`'${head}' is a variable of ${found.map((f) => f.map.name).join(' and ')}: ambiguous`);
  const { map } = found[0]!;
  let { offset, varType: typeId } = found[0]!;
  let volatile = hasVolatile(btf, typeId);
  let where = head!;
  for (const name of members) {
    const t = btf.type(btf.skipModsAndTypedefs(typeId));
    if (t.kind !== Kind.STRUCT && t.kind !== Kind.UNION) return fail(`${where} is ${btf.typeName(typeId)}, not a struct or union: it has no member '${name}'`);
    const m = t.members.find((x) => x.name === name);
    if (!m) return fail(`${btf.typeName(btf.skipModsAndTypedefs(typeId))} has no member '${name}' (members: ${listSome(t.members.map((x) => x.name || '(anon)'))})`);
    if (m.bitfieldSize) return fail(`${where}.${name} is a bitfield, which cannot be set`);
    offset += m.bitOffset / 8;
    typeId = m.type;
    volatile ||= hasVolatile(btf, typeId);
    where += `.${name}`;
  }
  return { map, offset, typeId, volatile };
}

/** A volatile qualifier anywhere along the type's modifiers and typedefs (or on an array's elements). */
function hasVolatile(btf: Btf, id: number): boolean {
  for (let depth = 0; depth < 64; depth++) {
    const t = btf.type(id);
    if (t.kind === Kind.VOLATILE) return true;
    if (t.kind === Kind.CONST || t.kind === Kind.TYPEDEF || t.kind === Kind.RESTRICT || t.kind === Kind.TYPE_TAG || t.kind === Kind.ARRAY) id = t.type;
    else return false;
  }
  return false;
}

const BTF_INT_SIGNED = 1;
const BTF_INT_BOOL = 4;

/**
 * Checks a value against the variable's BTF type and turns it into what writeRodata encodes:
 * integers within the type's range (signed or not, as declared), booleans for `bool`, an
 * enumerator's name or number for enums, a string that fits (with its NUL) for char arrays.
 */
function encodeValue(btf: Btf, v: VariableLocation, value: VariableValue, fail: (msg: string) => never): number | bigint | string | boolean {
  const leaf = btf.skipModsAndTypedefs(v.typeId);
  const t = btf.type(leaf);
  const typeText = btf.typeName(v.typeId);
  const integer = (size: number, signed: boolean, what: string): bigint => {
    let n: bigint;
    if (typeof value === 'number') n = BigInt(value);
    else if (typeof value === 'string' && /^-?(\d+|0x[0-9a-f]+)$/i.test(value)) n = value.startsWith('-') ? -BigInt(value.slice(1)) : BigInt(value);
    else return fail(`${typeText} is ${what}: expected an integer, not ${typeName(value)}`);
    const bits = size * 8;
    const [lo, hi] = signed ? [-(1n << BigInt(bits - 1)), (1n << BigInt(bits - 1)) - 1n] : [0n, (1n << BigInt(bits)) - 1n];
    if (n < lo || n > hi) return fail(`${value} is outside ${typeText} (${lo}..${hi})`);
    return n;
  };
  const plain = (n: bigint): number | bigint => (n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n);

  if (t.kind === Kind.INT) {
    if (![1, 2, 4, 8].includes(t.size)) return fail(`${typeText} is a ${t.size}-byte integer: only 1, 2, 4 and 8 bytes can be set`);
    if (t.encoding & BTF_INT_BOOL) {
      if (typeof value !== 'boolean') return fail(`${typeText} is a bool: expected true or false, not ${typeName(value)}`);
      return value;
    }
    return plain(integer(t.size, (t.encoding & BTF_INT_SIGNED) !== 0, 'an integer'));
  }
  if (t.kind === Kind.ENUM || t.kind === Kind.ENUM64) {
    if (typeof value === 'string' && IDENT.test(value)) {
      const e = t.values.find((x) => x.name === value);
      if (!e) return fail(`${typeText} has no enumerator '${value}' (enumerators: ${listSome(t.values.map((x) => x.name))})`);
      return plain(e.value);
    }
    return plain(integer(t.size, t.signed, 'an enum'));
  }
  if (t.kind === Kind.ARRAY) {
    const elem = btf.type(btf.skipModsAndTypedefs(t.type));
    if (elem.kind !== Kind.INT || elem.size !== 1) return fail(`${typeText} is an array: only char arrays can be set (from a string)`);
    if (typeof value !== 'string') return fail(`${typeText} is a char array: expected a string, not ${typeName(value)}`);
    const bytes = new TextEncoder().encode(value).length;
    if (bytes >= t.nelems) return fail(`"${value}" is ${bytes} bytes; ${typeText} holds ${t.nelems - 1} and a NUL`);
    return value;
  }
  return fail(`${typeText} cannot be set: only integers, bool, enums and char arrays can`);
}

/**
 * The same configuration as libbpf's setters would make it (bpf_program__set_autoload,
 * bpf_program__set_attach_target, bpf_map__set_max_entries, bpf_map__set_initial_value): what
 * `configured` (applyObjectConfig's result) changed from `original`, so the reference loader gets
 * exactly what ours got.
 */
export function libbpfSettingsFor(original: ObjectSpec, configured: ObjectSpec): LibbpfSettings {
  const s: Required<LibbpfSettings> = { autoload: {}, attachTarget: {}, attachProgram: {}, maxEntries: {}, initialValue: {} };
  for (const p of configured.programs) {
    const was = original.programs.find((x) => x.name === p.name)!;
    if (p.autoload !== was.autoload) s.autoload[p.name] = p.autoload;
    // Only BTF targets are a load-time setting (attach_btf_id); other targets matter at attach.
    if (p.attachProgram) s.attachProgram[p.name] = { ...splitTargetProgram(p.attachProgram), function: p.attachTo ?? '' };
    else if (p.attachTo !== was.attachTo && p.target?.kind === 'btf') s.attachTarget[p.name] = p.target.name;
  }
  for (const m of configured.maps) {
    const was = original.maps.find((x) => x.name === m.name)!;
    if (m.maxEntries !== was.maxEntries) s.maxEntries[m.name] = m.maxEntries;
    if (m.data && was.data && m.kind === 'data' && !Buffer.from(m.data).equals(Buffer.from(was.data))) s.initialValue[m.name] = m.data.slice();
  }
  return s;
}
