// The shape of a saved RunReport, checked field by field when a report.json is read back. A report
// may come from anywhere (a CI artifact, another machine's shard), and the writers put its values
// into HTML, XML and Markdown: every field must have the type results.ts declares (numbers finite,
// enums one of their values) before anything renders it. The first bad field is one line naming
// the file and its JSON path: `r.json: kernels[0].cells[3].relocations[1].local: expected a number,
// got string`.
//
// The shapes are typed against the interfaces (`Fields<T>`): a field added to CellResult, KernelRun
// or RunReport without a shape here, or optional there but required here, does not compile.

import { FormatError } from '../core/errors.js';
import type { RelocationRecord } from '../core/relo/report.js';
import { RELO_KIND_NAMES } from '../core/relo/spec.js';
import { assertSchema, RESULT_SCHEMA, type BtfOrigin, type CellResult, type CellVerdict, type Check, type ExternValue, type GuestVerdict, type KernelInfo, type KernelRun, type LoaderName, type RunReport } from '../results.js';

type Bad = (at: string, what: string) => never;

interface Shape {
  /** What is expected, as words: `a number`, `one of ok, poisoned, error`. */
  what: string;
  check(v: unknown, at: string, bad: Bad): void;
}

/** A field of an object shape: `Req` when the interface requires it. */
interface Field<Req extends boolean> extends Shape {
  required: Req;
  /**
   * A required field that may still be absent: `allowed` when its type admits `undefined` (which
   * JSON drops), or the value the reader fills in for reports written before it existed.
   */
  absent?: 'allowed' | (() => unknown);
}

/** One shape per key of T, marked required exactly where T requires the key. */
type Fields<T> = { [K in keyof T]-?: {} extends Pick<T, K> ? Field<false> : Field<true> };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What a wrong value is, for the message: its type only (a string from the report may be anything). */
function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return typeof v === 'object' ? 'an object' : typeof v;
}

/** A shape told by one test of the value itself (no members to descend into). */
interface Leaf extends Shape {
  test(v: unknown): boolean;
}

function leaf(what: string, test: (v: unknown) => boolean): Leaf {
  return { what, test, check: (v, at, bad) => void (test(v) || bad(at, `expected ${what}, got ${kindOf(v)}`)) };
}

const str = leaf('a string', (v) => typeof v === 'string');
const num = leaf('a number', (v) => typeof v === 'number' && Number.isFinite(v));
const bool = leaf('a boolean', (v) => typeof v === 'boolean');
/** Any JSON value (a check's observed value and its truth), its numbers finite (JSON reads `1e999` as Infinity). */
const isJson = (v: unknown): boolean =>
  typeof v === 'number' ? Number.isFinite(v) : Array.isArray(v) ? v.every(isJson) : isObj(v) ? Object.values(v).every(isJson) : true;
const json = leaf('a JSON value', isJson);
const nul = leaf('null', (v) => v === null);

/** One of the keys of a table that is exhaustive over a string union (a Record<Union, …>). */
function oneOf(values: readonly (string | number)[]): Shape {
  const what = `one of ${values.join(', ')}`;
  return {
    what,
    check(v, at, bad) {
      if (values.includes(v as string | number)) return;
      // The one place a string from the report is echoed: an unknown enum value (a report from a
      // newer corematrix) is worth naming; shortened, and quoted by JSON (no control character).
      const got = typeof v === 'string' ? JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v) : kindOf(v);
      bad(at, `expected ${what}, got ${got}`);
    },
  };
}
const keys = <K extends string>(table: Record<K, unknown>): K[] => Object.keys(table) as K[];

function anyOf(...leaves: Leaf[]): Leaf {
  return leaf(leaves.map((s) => s.what).join(' or '), (v) => leaves.some((s) => s.test(v)));
}

function arrayOf(item: Shape): Shape {
  return {
    what: 'an array',
    check(v, at, bad) {
      if (!Array.isArray(v)) bad(at, `expected an array, got ${kindOf(v)}`);
      (v as unknown[]).forEach((x, i) => item.check(x, `${at}[${i}]`, bad));
    },
  };
}

function req(s: Shape): Field<true> {
  return { ...s, required: true };
}
function opt(s: Shape): Field<false> {
  return { ...s, required: false };
}
/** Required by the interface, but reports written before it was filled in may omit it. */
function orElse(s: Shape, fallback: () => unknown): Field<true> {
  return { ...s, required: true, absent: fallback };
}
/** Required, of a type that includes `undefined`: JSON.stringify drops such a value. */
function maybe(s: Shape): Field<true> {
  return { ...s, required: true, absent: 'allowed' };
}

function obj<T>(fields: Fields<T>): Shape {
  const entries = Object.entries(fields) as [string, Field<boolean>][];
  return {
    what: 'an object',
    check(v, at, bad) {
      if (!isObj(v)) bad(at || 'top level', at ? `expected an object, got ${kindOf(v)}` : 'not a JSON object');
      const o = v as Record<string, unknown>;
      for (const [k, f] of entries) {
        const path = at ? `${at}.${k}` : k;
        if (o[k] === undefined) {
          if (typeof f.absent === 'function') o[k] = f.absent();
          else if (f.required && f.absent !== 'allowed') bad(path, `missing or not ${f.what}`);
          continue;
        }
        f.check(o[k], path, bad);
      }
    },
  };
}

// ---- the enums, as exhaustive tables (a value added to a union without one here does not compile)

const VERDICTS: Record<CellVerdict, true> = { pass: true, fail: true, 'expected-skip': true, skip: true, error: true };
const LOADERS: Record<LoaderName, true> = { ours: true, libbpf: true };
const BTF_ORIGINS: Record<BtfOrigin, true> = { kernel: true, pahole: true, none: true };
const EXTERN_KINDS: Record<ExternValue['kind'], true> = { kconfig: true, ksym: true };
const RELO_STATUS: Record<RelocationRecord['status'], true> = { ok: true, poisoned: true, error: true };
const ACCELS: Record<KernelRun['accel'], true> = { kvm: true, tcg: true, none: true };
const GUESTS: Record<GuestVerdict, true> = {
  ok: true, 'no-btf': true, panic: true, oops: true, 'hung-task': true, 'agent-oom': true, 'agent-hang': true, 'no-agent': true,
  'qemu-died': true, timeout: true, 'agent-failed': true, 'no-kernel': true, 'harness-error': true, aborted: true,
};

// ---- the report, outermost last

const kernelInfo = obj<KernelInfo>({
  id: req(str), package: req(str), version: req(str), release: req(str), flavour: req(str), arch: opt(str), btf: opt(oneOf(keys(BTF_ORIGINS))),
});

const objectRef = obj<{ name: string; sha256: string }>({ name: req(str), sha256: req(str) });

/** `reachable` is set by the loader on poisoned relocations (relocate --json, the agent). */
const relocation = obj<RelocationRecord & { reachable?: boolean }>({
  section: req(str), insn: req(num), kind: req(oneOf(RELO_KIND_NAMES)), type: req(str), access: req(str), spec: req(str),
  local: req(num), target: req(anyOf(num, nul)), status: req(oneOf(keys(RELO_STATUS))), error: opt(str),
  targetType: opt(str), targetAccess: opt(str), targetTypeId: opt(num), reachable: opt(bool),
});

const externValue = obj<ExternValue>({ name: req(str), kind: req(oneOf(keys(EXTERN_KINDS))), value: req(anyOf(str, num, bool, nul)) });

// A check's values are whatever the guest measured (`unknown`); one that was never observed is
// `undefined`, which JSON drops: absent.
const check = obj<Check>({ name: req(str), observed: maybe(json), truth: maybe(json), ok: req(bool), source: opt(str) });

const count = leaf('a non-negative integer', (v) => Number.isSafeInteger(v) && (v as number) >= 0);

/** A command's exit status, or null when a signal ended it. */
const exitStatus = anyOf(leaf('an integer', (v) => Number.isSafeInteger(v)), nul);

const cell = obj<CellResult>({
  schema: req(oneOf([RESULT_SCHEMA])),
  kernel: req(kernelInfo),
  suite: req(str),
  program: req(str),
  loader: req(oneOf(keys(LOADERS))),
  object: req(objectRef),
  verdict: req(oneOf(keys(VERDICTS))),
  reason: opt(str),
  relocations: req(arrayOf(relocation)),
  externs: req(arrayOf(externValue)),
  checks: req(arrayOf(check)),
  verifier: opt(obj<NonNullable<CellResult['verifier']>>({ insnsProcessed: opt(num), logTail: opt(str) })),
  config: opt(arrayOf(str)),
  xlated: opt(str),
  attach: opt(obj<NonNullable<CellResult['attach']>>({
    status: req(oneOf(['attached', 'failed', 'not-attachable'])), via: opt(str), target: opt(str), reason: opt(str),
    runCount: opt(count), runTimeNs: opt(count), note: opt(str),
  })),
  output: opt(obj<NonNullable<CellResult['output']>>({ exitCode: req(exitStatus), signal: opt(str), tail: req(str) })),
  timings: req(obj<CellResult['timings']>({ loadMs: req(num), runMs: req(num) })),
});

const kernelRun = obj<KernelRun>({
  kernel: req(kernelInfo),
  guest: req(oneOf(keys(GUESTS))),
  detail: opt(str),
  accel: req(oneOf(keys(ACCELS))),
  cpus: opt(count),
  guests: opt(count),
  followUps: opt(count),
  bootMs: opt(num),
  durationMs: req(num),
  consoleTail: opt(str),
  cells: req(arrayOf(cell)),
});

const int = leaf('an integer', (v) => Number.isSafeInteger(v));
const shardFields = obj<NonNullable<RunReport['shard']>>({ index: req(int), count: req(int), arch: opt(str) });
/** `--shard index/count`: integers, and the index within the split. */
const shard: Shape = {
  what: 'an object',
  check(v, at, bad) {
    shardFields.check(v, at, bad);
    const s = v as { index: number; count: number };
    if (s.index < 1 || s.index > s.count) bad(at, 'not {index, count} with 1 ≤ index ≤ count');
  },
};

const runReport = obj<RunReport>({
  schema: req(oneOf([RESULT_SCHEMA])),
  runId: req(str),
  startedAt: req(str),
  finishedAt: req(str),
  complete: req(bool),
  host: orElse(obj<RunReport['host']>({ node: req(str), qemu: opt(str), clang: opt(str), libbpf: opt(str) }), () => ({ node: '' })),
  suites: orElse(arrayOf(str), () => []),
  objects: orElse(arrayOf(objectRef), () => []),
  kernels: req(arrayOf(kernelRun)),
  shard: opt(shard),
});

/**
 * Checks every field of a parsed report.json against results.ts (fills in `host`, `suites` and
 * `objects` when an older report lacks them); throws FormatError naming the file and the JSON path
 * of the first bad field. A report of another result schema is refused as such first.
 */
export function validateRunReport(doc: unknown, file: string): RunReport {
  const bad: Bad = (at, what) => {
    throw new FormatError(`${file}: ${at}: ${what}`);
  };
  if (!isObj(doc)) bad('top level', 'not a JSON object');
  // A schema that is not even a number is a bad field (and is not echoed back); another number is
  // another corematrix version.
  if (doc.schema !== undefined && typeof doc.schema !== 'number') bad('schema', `expected ${RESULT_SCHEMA}, got ${kindOf(doc.schema)}`);
  assertSchema(doc, file);
  runReport.check(doc, '', bad);
  return doc as unknown as RunReport;
}
