// The kernel matrix (kernels/matrix.yaml): which Debian kernels the harness boots. Parsed with
// js-yaml's failsafe schema (every scalar stays a string, so `series: 6.10` is not 6.1) and
// validated field by field; every error is one line: file:line: kernel 'id': field: what is wrong.
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import yaml from 'js-yaml';
import { FormatError, UsageError } from '../core/errors.js';
import { repoRoot } from '../paths.js';
import { parseDebVersion } from './debversion.js';

export type Flavour = 'generic' | 'cloud' | 'rt';
export const FLAVOURS: readonly Flavour[] = ['generic', 'cloud', 'rt'];

export interface KernelEntry {
  id: string;
  series: string;
  flavour: Flavour;
  suites: string[];
  version?: string;
}

const FIELDS = ['id', 'series', 'flavour', 'suites', 'version'] as const;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const SERIES_RE = /^\d+\.(\d+|x)$/;
const SUITE_RE = /^[a-z]+(-[a-z]+)*$/;

/** The default matrix file. */
export function defaultMatrixFile(): string {
  return join(repoRoot(), 'kernels', 'matrix.yaml');
}

interface Where {
  line: number;
  keys: Map<string, number>;
}

/** Parses YAML, remembering the (1-based) line where each mapping and each of its keys starts. */
function loadWithLines(text: string, file: string): { doc: unknown; where: WeakMap<object, Where> } {
  const where = new WeakMap<object, Where>();
  interface Frame {
    line: number;
    children: { line: number; result: unknown }[];
  }
  const stack: Frame[] = [];
  let doc: unknown;
  try {
    doc = yaml.load(text, {
      filename: file,
      schema: yaml.FAILSAFE_SCHEMA,
      listener(event, state) {
        if (event === 'open') {
          stack.push({ line: state.line + 1, children: [] });
          return;
        }
        const frame = stack.pop();
        if (!frame) return;
        const result: unknown = state.result;
        if (result && typeof result === 'object' && !Array.isArray(result)) {
          const keys = new Map<string, number>();
          for (let i = 0; i + 1 <= frame.children.length; i += 2) {
            const k = frame.children[i]!;
            if (typeof k.result === 'string') keys.set(k.result, k.line);
          }
          where.set(result, { line: frame.line, keys });
        } else if (Array.isArray(result)) {
          where.set(result, { line: frame.line, keys: new Map() });
        }
        stack[stack.length - 1]?.children.push({ line: frame.line, result });
      },
    });
  } catch (err) {
    if (err instanceof yaml.YAMLException) {
      const line = err.mark ? err.mark.line + 1 : 0;
      throw new FormatError(`${file}:${line}: invalid YAML: ${err.reason}`);
    }
    throw err;
  }
  return { doc, where };
}

/** Validates a parsed matrix document; `file` is only used in messages. */
export function parseMatrix(text: string, file = 'matrix.yaml'): KernelEntry[] {
  const { doc, where } = loadWithLines(text, file);
  const fail = (line: number | undefined, msg: string): never => {
    throw new FormatError(`${file}:${line ?? 1}: ${msg}`);
  };
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) fail(1, "top level must be a mapping with a 'kernels' list");
  const top = doc as Record<string, unknown>;
  const topWhere = where.get(top as object);
  for (const k of Object.keys(top)) if (k !== 'kernels') fail(topWhere?.keys.get(k), `unknown top-level field '${k}' (allowed: kernels)`);
  const list = top['kernels'];
  if (!Array.isArray(list)) fail(topWhere?.keys.get('kernels') ?? 1, "'kernels' must be a list of kernel entries");
  const entries: KernelEntry[] = [];
  const seen = new Map<string, number>();
  for (const [i, raw] of (list as unknown[]).entries()) {
    const w = raw && typeof raw === 'object' ? where.get(raw as object) : undefined;
    const line = w?.line ?? where.get(list as object)?.line;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) fail(line, `kernels[${i}]: must be a mapping with fields ${FIELDS.join(', ')}`);
    const e = raw as Record<string, unknown>;
    const name = typeof e['id'] === 'string' ? `kernel '${e['id']}'` : `kernels[${i}]`;
    const at = (field: string) => w?.keys.get(field) ?? line;
    for (const k of Object.keys(e)) {
      if (!(FIELDS as readonly string[]).includes(k)) fail(at(k), `${name}: unknown field '${k}' (allowed: ${FIELDS.join(', ')})`);
    }
    const str = (field: string, required: boolean): string | undefined => {
      const v = e[field];
      if (v === undefined || v === null) {
        if (required) fail(line, `${name}: missing field '${field}'`);
        return undefined;
      }
      if (typeof v !== 'string' || v === '') fail(at(field), `${name}: ${field} must be a non-empty string`);
      return v as string;
    };
    const id = str('id', true)!;
    if (!ID_RE.test(id)) fail(at('id'), `${name}: id '${id}' must match ${ID_RE.source} (letters, digits, . _ + -)`);
    if (seen.has(id)) fail(at('id'), `${name}: duplicate id (first at line ${seen.get(id)})`);
    seen.set(id, at('id') ?? 0);
    const series = str('series', true)!;
    if (!SERIES_RE.test(series)) fail(at('series'), `${name}: series '${series}' must be MAJOR.MINOR (e.g. 6.1) or MAJOR.x (newest of that major)`);
    const flavour = str('flavour', false) ?? 'generic';
    if (!(FLAVOURS as readonly string[]).includes(flavour)) fail(at('flavour'), `${name}: flavour '${flavour}' is not one of ${FLAVOURS.join(', ')}`);
    const rawSuites = e['suites'];
    if (rawSuites === undefined || rawSuites === null) fail(line, `${name}: missing field 'suites' (a Debian suite or a list of them, e.g. [bookworm])`);
    const suites = typeof rawSuites === 'string' ? [rawSuites] : rawSuites;
    if (!Array.isArray(suites) || suites.length === 0) fail(at('suites'), `${name}: suites must be a suite name or a non-empty list of suite names`);
    for (const s of suites as unknown[]) {
      if (typeof s !== 'string' || !SUITE_RE.test(s)) fail(at('suites'), `${name}: suites: '${String(s)}' is not a Debian suite name (e.g. bookworm, bullseye-security, trixie-backports, sid)`);
    }
    const version = str('version', false);
    if (version !== undefined && !parseDebVersion(version)) fail(at('version'), `${name}: version '${version}' is not a Debian version (e.g. 6.1.176-1 or 6.1.176)`);
    if (version !== undefined && series.endsWith('.x')) fail(at('version'), `${name}: a pinned version needs an exact series, not '${series}'`);
    const entry: KernelEntry = { id, series, flavour: flavour as Flavour, suites: [...(suites as string[])] };
    if (version !== undefined) entry.version = version;
    entries.push(entry);
  }
  if (entries.length === 0) fail(topWhere?.keys.get('kernels'), "'kernels' is empty");
  return entries;
}

/** Loads and validates a matrix file (default kernels/matrix.yaml). */
export function loadMatrix(file?: string): KernelEntry[] {
  const path = file ?? defaultMatrixFile();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`${path}: cannot read the kernel matrix (${code ?? String(err)})`);
  }
  const shown = relative(process.cwd(), path);
  return parseMatrix(text, shown && !shown.startsWith('..') ? shown : path);
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/** Selects entries by exact ids, globs (`6.1*`) or `all`; unknown selectors are a UsageError. */
export function selectKernels(entries: KernelEntry[], selectors: string[]): KernelEntry[] {
  if (selectors.length === 0 || selectors.includes('all')) return entries;
  const chosen = new Set<KernelEntry>();
  for (const sel of selectors.flatMap((s) => s.split(',')).filter(Boolean)) {
    const exact = entries.find((e) => e.id === sel);
    const hits = exact ? [exact] : /[*?]/.test(sel) ? entries.filter((e) => globToRegExp(sel).test(e.id)) : [];
    if (hits.length === 0) throw new UsageError(`no kernel matches '${sel}' (known: ${entries.map((e) => e.id).join(', ')})`);
    for (const h of hits) chosen.add(h);
  }
  return entries.filter((e) => chosen.has(e));
}
