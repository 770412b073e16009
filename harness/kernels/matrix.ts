// The kernel matrix (kernels/matrix.yaml): which Debian kernels the harness boots. Parsed with
// js-yaml's failsafe schema (every scalar stays a string, so `series: 6.10` is not 6.1) and
// validated field by field; every error is one line: file:line: kernel 'id': field: what is wrong.
import { yamlErrorAt } from '../core/yaml-error.js';
import { globToRegExp } from '../core/glob.js';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import yaml from 'js-yaml';
import { FormatError, UsageError } from '../core/errors.js';
import { repoRoot } from '../paths.js';
import { parseDebVersion } from './debversion.js';
import { DEBIAN_ARCHES, DEFAULT_ARCH, isDebianArch, type DebianArch } from './arch.js';

export type Flavour = 'generic' | 'cloud' | 'rt';
export const FLAVOURS: readonly Flavour[] = ['generic', 'cloud', 'rt'];

/** Where a custom kernel's vmlinux BTF comes from, and whether the guest gets it. */
export type BtfMode =
  /** built with CONFIG_DEBUG_INFO_BTF: /sys/kernel/btf/vmlinux in the guest */
  | 'kernel'
  /** built without it; BTF generated on the host from the DWARF with pahole, shipped into the guest */
  | 'pahole'
  /** built without it and nothing shipped: the guest has no BTF at all (a fault case) */
  | 'none';
export const BTF_MODES: readonly BtfMode[] = ['kernel', 'pahole', 'none'];

/** A kernel built from a Debian linux-source-* package plus a config fragment. */
export interface CustomBuild {
  /** Debian source package, e.g. linux-source-6.12. */
  source: string;
  /** The fragment as written in the matrix (relative to the matrix file's folder). */
  config: string;
  /** Absolute path of the fragment. */
  configPath: string;
  btf: BtfMode;
}

export interface KernelEntry {
  id: string;
  series: string;
  /** Debian flavour; `custom` for kernels built from source (see `build`). */
  flavour: Flavour | 'custom';
  suites: string[];
  version?: string;
  build?: CustomBuild;
  /** vCPUs of this kernel's guest (default: the run's --cpus, else 1). */
  cpus?: number;
  /** The Debian arch of the kernel (default amd64): arm64 kernels boot under qemu-system-aarch64 (docs/arm64.md). */
  arch?: DebianArch;
}

const FIELDS = ['id', 'series', 'flavour', 'suites', 'version', 'source', 'config', 'btf', 'cpus', 'arch'] as const;
const SOURCE_RE = /^linux-source-(\d+\.\d+)$/;
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
      // The line of the mistake (an unclosed bracket or quote), not where js-yaml noticed it.
      const at = yamlErrorAt(text, err);
      throw new FormatError(`${file}:${at.line}: invalid YAML: ${at.reason}`);
    }
    throw err;
  }
  return { doc, where };
}

/** Validates a parsed matrix document; `file` is only used in messages. */
export function parseMatrix(text: string, file = 'matrix.yaml', baseDir = join(repoRoot(), 'kernels')): KernelEntry[] {
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
    const source = str('source', false);
    if (!ID_RE.test(id)) fail(at('id'), `${name}: id '${id}' must match ${ID_RE.source} (letters, digits, . _ + -)`);
    if (seen.has(id)) fail(at('id'), `${name}: duplicate id (first at line ${seen.get(id)})`);
    seen.set(id, at('id') ?? 0);
    const series = str('series', source === undefined) ?? SOURCE_RE.exec(source ?? '')?.[1] ?? '';
    if (source !== undefined) {
      const m = SOURCE_RE.exec(source);
      if (!m) fail(at('source'), `${name}: source '${source}' must be a Debian kernel source package such as linux-source-6.12`);
      if (series !== m![1]) fail(at('series'), `${name}: series '${series}' does not match source ${source}`);
    } else {
      for (const f of ['config', 'btf']) if (e[f] !== undefined) fail(at(f), `${name}: '${f}' is only for kernels built from source (add source: linux-source-X.Y)`);
    }
    if (!SERIES_RE.test(series)) fail(at('series'), `${name}: series '${series}' must be MAJOR.MINOR (e.g. 6.1) or MAJOR.x (newest of that major)`);
    const flavour = str('flavour', false) ?? (source !== undefined ? 'custom' : 'generic');
    if (source !== undefined && flavour !== 'custom') fail(at('flavour'), `${name}: a kernel built from source has flavour 'custom', not '${flavour}'`);
    if (source === undefined && !(FLAVOURS as readonly string[]).includes(flavour)) fail(at('flavour'), `${name}: flavour '${flavour}' is not one of ${FLAVOURS.join(', ')}`);
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
    const entry: KernelEntry = { id, series, flavour: flavour as Flavour | 'custom', suites: [...(suites as string[])] };
    if (version !== undefined) entry.version = version;
    const arch = str('arch', false);
    if (arch !== undefined) {
      if (!isDebianArch(arch)) fail(at('arch'), `${name}: arch '${arch}' is not one of ${DEBIAN_ARCHES.join(', ')}`);
      entry.arch = arch as DebianArch;
    }
    if (e['cpus'] !== undefined) {
      // Scalars arrive as the YAML text (the loader keeps every scalar a string).
      const cpus = Number(e['cpus']);
      if (!/^\d+$/.test(String(e['cpus'])) || cpus < 1 || cpus > 64) fail(at('cpus'), `${name}: cpus must be an integer from 1 to 64, not ${JSON.stringify(e['cpus'])}`);
      entry.cpus = cpus;
    }
    if (source !== undefined) {
      const config = str('config', true)!;
      const configPath = isAbsolute(config) ? config : resolve(baseDir, config);
      if (!existsSync(configPath)) fail(at('config'), `${name}: config fragment ${config} does not exist (looked for ${configPath})`);
      const btf = str('btf', false) ?? 'kernel';
      if (!(BTF_MODES as readonly string[]).includes(btf)) fail(at('btf'), `${name}: btf '${btf}' is not one of ${BTF_MODES.join(', ')}`);
      entry.build = { source, config, configPath, btf: btf as BtfMode };
    }
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
  return parseMatrix(text, shown && !shown.startsWith('..') ? shown : path, dirname(path));
}


/**
 * The entry `e` (a Debian kernel of the default arch) built for `arch`: the same series, flavour,
 * suites, pin and vCPUs, id `<id>-<arch>` (`6.1-arm64`). What `--kernels 6.1-arm64` boots when the
 * matrix has no entry of that id. Undefined for a kernel built from source (its entry names its arch) or one that
 * already names an arch.
 */
export function archVariant(e: KernelEntry, arch: DebianArch): KernelEntry | undefined {
  if (e.build || e.arch !== undefined || arch === DEFAULT_ARCH) return undefined;
  return { ...e, id: `${e.id}-${arch}`, suites: [...e.suites], arch };
}

/** The entry of this id: the matrix's own, else the arch variant `<id>-<arch>` of one of its entries. */
export function findKernel(entries: KernelEntry[], id: string): KernelEntry | undefined {
  const exact = entries.find((e) => e.id === id);
  if (exact) return exact;
  for (const arch of DEBIAN_ARCHES) {
    if (!id.endsWith(`-${arch}`)) continue;
    const base = entries.find((e) => e.id === id.slice(0, -arch.length - 1));
    const variant = base && archVariant(base, arch);
    if (variant) return variant;
  }
  return undefined;
}

/**
 * Selects entries by exact ids, globs (`6.1*`, matrix entries only), `all`, or an arch variant of
 * an entry (`6.1-arm64`, see archVariant); unknown selectors are a UsageError. Matrix order, each
 * variant right after its entry.
 */
export function selectKernels(entries: KernelEntry[], selectors: string[]): KernelEntry[] {
  if (selectors.length === 0 || selectors.includes('all')) return entries;
  const chosen = new Set<KernelEntry>();
  const variants = new Map<string, KernelEntry[]>();
  for (const sel of selectors.flatMap((s) => s.split(',')).filter(Boolean)) {
    const found = /[*?]/.test(sel) ? undefined : findKernel(entries, sel);
    const hits = found ? [found] : /[*?]/.test(sel) ? entries.filter((e) => globToRegExp(sel).test(e.id)) : [];
    if (hits.length === 0) throw new UsageError(`no kernel matches '${sel}' (known: ${entries.map((e) => e.id).join(', ')}; an entry on another arch: <id>-${DEBIAN_ARCHES.filter((a) => a !== DEFAULT_ARCH).join('|')})`);
    for (const h of hits) {
      if (entries.includes(h)) chosen.add(h);
      else {
        const base = h.id.slice(0, -h.arch!.length - 1);
        const list = variants.get(base) ?? [];
        if (!list.some((v) => v.id === h.id)) variants.set(base, [...list, h]);
      }
    }
  }
  return entries.flatMap((e) => [...(chosen.has(e) ? [e] : []), ...(variants.get(e.id) ?? [])]);
}
