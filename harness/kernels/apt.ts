// A private apt state for kernel packages from any Debian suite. The mirror URIs come from the
// machine's own apt configuration (never hard-coded); /etc/apt is only read, never written. The
// private state (lists, caches, its own sources.list) lives under cacheDir('apt'), is refreshed at
// most every `maxAgeHours`, and is guarded by a lock file so concurrent runs do not corrupt it.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreMatrixError } from '../core/errors.js';
import { cacheDir, writeFileAtomic } from '../paths.js';
import { withLock } from '../lock.js';
import { DEFAULT_ARCH, type DebianArch } from './arch.js'; // arm64 (issue 19)

const run = promisify(execFile);

export const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** One `deb` source as apt sees it, from either format. */
export interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
  signedBy?: string;
  enabled: boolean;
  file: string;
  line: number;
}

/** The two Debian archives the kernels come from. */
export interface DebianMirrors {
  archive: string;
  security: string;
  /** Where each URI was found (file:line), for messages. */
  origin: { archive: string; security: string };
}

/** Parses deb822 `.sources` text (stanzas separated by blank lines, `#` comments, folded fields). */
export function parseDeb822Sources(text: string, file = 'sources'): AptSource[] {
  const out: AptSource[] = [];
  let fields = new Map<string, string>();
  let start = 0;
  let last: string | undefined;
  const flush = () => {
    if (fields.size === 0) return;
    const list = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    const src: AptSource = {
      types: list('types'),
      uris: list('uris'),
      suites: list('suites'),
      components: list('components'),
      enabled: !/^(no|false|0)$/i.test((fields.get('enabled') ?? 'yes').trim()),
      file,
      line: start,
    };
    const signed = fields.get('signed-by')?.trim();
    if (signed) src.signedBy = signed;
    out.push(src);
    fields = new Map();
    last = undefined;
  };
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.startsWith('#')) return;
    if (line.trim() === '') return flush();
    if (/^\s/.test(line) && last) {
      // Continuation line (a folded field; " ." stands for an empty line in embedded keys).
      fields.set(last, `${fields.get(last)} ${line.trim()}`);
      return;
    }
    const m = /^([A-Za-z0-9-]+)\s*:\s*(.*)$/.exec(line);
    if (!m) return;
    if (fields.size === 0) start = i + 1;
    last = m[1]!.toLowerCase();
    fields.set(last, m[2]!.trim());
  });
  flush();
  return out;
}

/** Parses one-line `sources.list` text: `deb [opt=val ...] URI suite [component ...]`. */
export function parseOneLineSources(text: string, file = 'sources.list'): AptSource[] {
  const out: AptSource[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    const m = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) return;
    const src: AptSource = { types: [m[1]!], uris: [m[3]!], suites: [m[4]!], components: m[5]!.split(/\s+/).filter(Boolean), enabled: true, file, line: i + 1 };
    for (const opt of (m[2] ?? '').trim().split(/\s+/).filter(Boolean)) {
      const [k, v] = opt.split('=');
      if (k === 'signed-by' && v) src.signedBy = v;
    }
    out.push(src);
  });
  return out;
}

/** Every source apt itself would read under `etcApt` (sources.list, sources.list.d/*.list and *.sources). */
export function readAptSources(etcApt = '/etc/apt'): AptSource[] {
  const out: AptSource[] = [];
  const main = join(etcApt, 'sources.list');
  if (existsSync(main)) out.push(...parseOneLineSources(readFileSync(main, 'utf8'), main));
  const dir = join(etcApt, 'sources.list.d');
  const names = existsSync(dir) ? readdirSync(dir).sort() : [];
  for (const name of names) {
    const path = join(dir, name);
    if (name.endsWith('.list')) out.push(...parseOneLineSources(readFileSync(path, 'utf8'), path));
    else if (name.endsWith('.sources')) out.push(...parseDeb822Sources(readFileSync(path, 'utf8'), path));
  }
  return out;
}

// Debian release names and aliases: how a source is recognised as the Debian archive.
const DEBIAN_SUITES = new Set([
  'buzz', 'rex', 'bo', 'hamm', 'slink', 'potato', 'woody', 'sarge', 'etch', 'lenny', 'squeeze', 'wheezy', 'jessie',
  'stretch', 'buster', 'bullseye', 'bookworm', 'trixie', 'forky', 'duke', 'sid',
  'oldoldstable', 'oldstable', 'stable', 'testing', 'unstable', 'experimental',
]);

function suiteBase(suite: string): { base: string; security: boolean } {
  const s = suite.replace(/\/+$/, '');
  if (s.endsWith('-security')) return { base: s.slice(0, -'-security'.length), security: true };
  if (s.endsWith('/updates')) return { base: s.slice(0, -'/updates'.length), security: true }; // pre-bullseye layout
  return { base: s.replace(/-(updates|backports|backports-sloppy|proposed-updates)$/, ''), security: false };
}

/**
 * Finds the Debian archive URI and the Debian security URI in apt sources. The security URI,
 * when no security source is configured, is derived from the archive's (`…/debian` → `…/debian-security`).
 */
export function findDebianMirrors(sources: AptSource[]): DebianMirrors {
  let archive: { uri: string; at: string } | undefined;
  let security: { uri: string; at: string } | undefined;
  for (const s of sources) {
    if (!s.enabled || !s.types.includes('deb') || !s.components.includes('main')) continue;
    for (const suite of s.suites) {
      const { base, security: isSec } = suiteBase(suite);
      if (!DEBIAN_SUITES.has(base)) continue;
      const uri = s.uris.find((u) => !u.startsWith('cdrom:'));
      if (!uri) continue;
      const at = `${s.file}:${s.line}`;
      if (isSec) security ??= { uri, at };
      else archive ??= { uri, at };
    }
  }
  if (!archive) {
    throw new CoreMatrixError(`no Debian archive found in the machine's apt sources (${[...new Set(sources.map((s) => s.file))].join(', ') || 'none'}): need a 'deb' source for a Debian suite with component main`);
  }
  const strip = (u: string) => u.replace(/\/+$/, '');
  if (!security) {
    const base = strip(archive.uri);
    if (!/\/debian$/.test(base)) throw new CoreMatrixError(`no Debian security source in the machine's apt sources and cannot derive one from ${archive.uri} (${archive.at})`);
    security = { uri: `${base}-security`, at: `derived from ${archive.at}` };
  }
  return { archive: strip(archive.uri), security: strip(security.uri), origin: { archive: archive.at, security: security.at } };
}

/** Mirror discovery from the machine's apt configuration. */
export function discoverMirrors(etcApt = '/etc/apt'): DebianMirrors {
  return findDebianMirrors(readAptSources(etcApt));
}

/** True for suites served from the security archive. */
export function isSecuritySuite(suite: string): boolean {
  return suiteBase(suite).security;
}

/** The private sources.list for these suites (main only, one arch, signed by the Debian archive keyring). */
export function privateSourcesList(mirrors: DebianMirrors, suites: string[], arch: DebianArch = DEFAULT_ARCH): string {
  const lines = ['# Written by corematrix (harness/kernels/apt.ts) for its private apt state. Not the machine\'s apt sources.'];
  for (const suite of [...new Set(suites)].sort()) {
    const uri = isSecuritySuite(suite) ? mirrors.security : mirrors.archive;
    lines.push(`deb [arch=${arch} signed-by=${DEBIAN_KEYRING}] ${uri} ${suite} main`);
  }
  return lines.join('\n') + '\n';
}

/** A row of `apt-cache madison`: a package version and the suite that has it. */
export interface AptCandidate {
  name: string;
  version: string;
  suite: string;
}

export interface AptStateOptions {
  dir?: string;
  etcApt?: string;
  maxAgeHours?: number;
  log?: (line: string) => void;
  /**
   * arm64 (issue 19): the Debian arch whose Packages lists this state reads (default amd64). A
   * state holds one arch (its own dir: cacheDir('apt') for amd64, cacheDir('apt-<arch>') else),
   * so apt-cache and apt-get download answer for that arch as if it were the machine's own.
   */
  arch?: DebianArch;
}

function lastErrorLine(out: string): string {
  const lines = out.split('\n').map((l) => l.trim().replace(/\s+\[IP: [^\]]*\]$/, '')).filter(Boolean);
  const pick = (re: RegExp) => lines.filter((l) => re.test(l)).pop();
  return (pick(/^E:/) ?? pick(/^(W|Err):/) ?? lines.pop() ?? 'no output').replace(/\s{2,}/g, ' ');
}

/** The private apt state. Construct, then `ensure(suites)` before queries and downloads. */
export class AptState {
  readonly dir: string;
  readonly maxAgeHours: number;
  readonly arch: DebianArch; // arm64 (issue 19)
  private readonly etcApt: string;
  private readonly log: (line: string) => void;
  private mirrors?: DebianMirrors;
  private fresh = new Set<string>();

  constructor(opts: AptStateOptions = {}) {
    this.arch = opts.arch ?? DEFAULT_ARCH; // arm64 (issue 19)
    this.dir = opts.dir ?? (this.arch === DEFAULT_ARCH ? cacheDir('apt') : cacheDir(`apt-${this.arch}`));
    this.etcApt = opts.etcApt ?? '/etc/apt';
    this.maxAgeHours = opts.maxAgeHours ?? Number(process.env.COREMATRIX_APT_MAX_AGE_HOURS ?? 12);
    this.log = opts.log ?? (() => {});
    for (const d of ['etc/sources.list.d', 'etc/preferences.d', 'state/lists/partial', 'cache/archives/partial']) mkdirSync(join(this.dir, d), { recursive: true });
    if (!existsSync(join(this.dir, 'state/status'))) writeFileSync(join(this.dir, 'state/status'), '');
  }

  /** The apt options that make apt-get/apt-cache use only this private state. */
  options(): string[] {
    const d = this.dir;
    const o = [
      `Dir::State=${d}/state`,
      `Dir::State::status=${d}/state/status`,
      `Dir::Cache=${d}/cache`,
      // Some machines (Debian container images) turn the binary caches off; without them every
      // apt-cache call re-reads all the lists (about 2 s), so turn them back on for our state.
      'Dir::Cache::pkgcache=pkgcache.bin',
      'Dir::Cache::srcpkgcache=srcpkgcache.bin',
      `Dir::Etc::SourceList=${d}/etc/sources.list`,
      `Dir::Etc::SourceParts=${d}/etc/sources.list.d`,
      `Dir::Etc::Preferences=${d}/etc/preferences`,
      `Dir::Etc::PreferencesParts=${d}/etc/preferences.d`,
      'APT::Sandbox::User=root',
      'Acquire::Languages=none',
      'Acquire::PDiffs=false',
      'APT::Get::List-Cleanup=true',
      // arm64 (issue 19): this state's one arch is its native one, whatever the machine's is.
      `APT::Architecture=${this.arch}`,
      `APT::Architectures=${this.arch}`,
    ];
    return o.flatMap((x) => ['-o', x]);
  }

  getMirrors(): DebianMirrors {
    this.mirrors ??= discoverMirrors(this.etcApt);
    return this.mirrors;
  }

  /** Makes sure the private lists cover `suites` and are younger than maxAgeHours (updating once, under the lock). */
  async ensure(suites: string[], force = false): Promise<void> {
    const key = [...new Set(suites)].sort().join(' ');
    if (!force && this.fresh.has(key)) return;
    const sourcesFile = join(this.dir, 'etc/sources.list');
    const stampFile = join(this.dir, 'stamp.json');
    await withLock(join(this.dir, 'lock'), async () => {
      // Keep suites asked for before (by other runs too), so ids sharing this state do not thrash it.
      let previous: string[] = [];
      let stamp: { time: number; sources: string; suites: string[] } | undefined;
      try {
        stamp = JSON.parse(readFileSync(stampFile, 'utf8')) as { time: number; sources: string; suites: string[] };
        previous = stamp.suites ?? [];
      } catch {
        stamp = undefined;
      }
      const all = [...new Set([...previous, ...suites])].sort();
      const text = privateSourcesList(this.getMirrors(), all, this.arch);
      const hash = createHash('sha256').update(text).digest('hex');
      const ageH = stamp ? (Date.now() - stamp.time) / 3_600_000 : Infinity;
      if (!force && stamp && stamp.sources === hash && ageH < this.maxAgeHours) return;
      writeFileSync(sourcesFile, text);
      const t0 = Date.now();
      this.log(`apt: updating the private lists for ${all.join(', ')} (${stamp ? `${ageH.toFixed(1)} h old` : 'first run'})`);
      try {
        await run('apt-get', [...this.options(), '-q', 'update'], { maxBuffer: 64 << 20 });
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; message: string };
        const why = lastErrorLine(`${e.stdout ?? ''}\n${e.stderr ?? ''}`);
        if (stamp && stamp.sources === hash) {
          this.log(`apt: update failed, using lists from ${new Date(stamp.time).toISOString()}: ${why}`);
          return;
        }
        throw new CoreMatrixError(`apt-get update of the private state ${this.dir} failed: ${why}`);
      }
      writeFileSync(stampFile, JSON.stringify({ time: Date.now(), sources: hash, suites: all }) + '\n');
      this.log(`apt: lists updated in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    });
    this.fresh.add(key);
  }

  /**
   * What the private lists are now: every list file's name, size and mtime, plus the sources,
   * the status file and the preferences.
   * apt-cache's answers are a function of these, so they key the query memo.
   */
  private listsFingerprint(): string {
    const h = createHash('sha256');
    try {
      h.update(readFileSync(join(this.dir, 'etc/sources.list')));
    } catch {
      h.update('no sources');
    }
    for (const f of ['state/status', 'etc/preferences']) {
      try {
        const st = statSync(join(this.dir, f));
        h.update(`${f} ${st.size} ${st.mtimeMs}\n`);
      } catch {
        h.update(`${f} none\n`);
      }
    }
    const lists = join(this.dir, 'state/lists');
    for (const f of readdirSync(lists).sort()) {
      const st = statSync(join(lists, f));
      if (st.isFile()) h.update(`${f} ${st.size} ${st.mtimeMs}\n`);
    }
    return h.digest('hex').slice(0, 24);
  }

  /**
   * apt-cache with this state's options. Answers are kept on disk (query-memo.json) for as long
   * as the lists do not change: each apt-cache run re-reads its binary cache (~0.1–0.3 s of CPU),
   * which a matrix run used to pay in every guest slot before the guest could boot.
   */
  private async aptCache(args: string[]): Promise<string> {
    const memoFile = join(this.dir, 'query-memo.json');
    const key = JSON.stringify(args);
    const fp = this.listsFingerprint();
    let memo: { lists: string; answers: Record<string, string> } = { lists: fp, answers: {} };
    try {
      const m = JSON.parse(readFileSync(memoFile, 'utf8')) as typeof memo;
      if (m.lists === fp && m.answers && typeof m.answers === 'object') memo = m;
    } catch {
      /* no memo yet, or a torn one: start afresh */
    }
    const hit = memo.answers[key];
    if (typeof hit === 'string') return hit;
    const out = await this.aptCacheUncached(args);
    // Re-read before writing: another query (this process or another) may have added answers.
    try {
      const m = JSON.parse(readFileSync(memoFile, 'utf8')) as typeof memo;
      if (m.lists === fp && m.answers && typeof m.answers === 'object') memo = m;
    } catch {
      /* keep ours */
    }
    memo.answers[key] = out;
    try {
      writeFileAtomic(memoFile, JSON.stringify(memo));
    } catch {
      /* a memo that cannot be written costs time, never correctness */
    }
    return out;
  }

  private async aptCacheUncached(args: string[]): Promise<string> {
    try {
      const { stdout } = await run('apt-cache', [...this.options(), ...args], { maxBuffer: 256 << 20 });
      return stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      throw new CoreMatrixError(`apt-cache ${args[0]} failed: ${lastErrorLine(`${e.stderr ?? ''}\n${e.stdout ?? ''}`)}`);
    }
  }

  /** Package names matching a POSIX regex (apt-cache search --names-only). */
  async search(regex: string): Promise<string[]> {
    const out = await this.aptCache(['search', '--names-only', regex]);
    return out.split('\n').map((l) => l.split(' - ')[0]!.trim()).filter(Boolean);
  }

  /** Every version of these packages in the configured suites (apt-cache madison). */
  async madison(names: string[]): Promise<AptCandidate[]> {
    if (names.length === 0) return [];
    const rows: AptCandidate[] = [];
    for (let i = 0; i < names.length; i += 200) {
      const out = await this.aptCache(['madison', ...names.slice(i, i + 200)]);
      for (const line of out.split('\n')) {
        const cols = line.split('|').map((c) => c.trim());
        if (cols.length < 3 || !cols[2]!.endsWith('Packages')) continue;
        // "<uri> <suite>/<component> <arch> Packages"
        const parts = cols[2]!.split(/\s+/);
        const suite = parts[1]?.split('/')[0];
        if (suite) rows.push({ name: cols[0]!, version: cols[1]!, suite });
      }
    }
    return rows;
  }

  /** The control record of one exact package version (apt-cache show name=version). */
  async show(name: string, version: string): Promise<Record<string, string>> {
    const out = await this.aptCache(['show', `${name}=${version}`]);
    const rec: Record<string, string> = {};
    let last = '';
    for (const line of out.split('\n')) {
      if (line === '') break; // first record only
      if (/^\s/.test(line) && last) {
        rec[last] += `\n${line}`;
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s?(.*)$/.exec(line);
      if (m) rec[(last = m[1]!)] = m[2]!;
    }
    return rec;
  }

  /** `apt-cache policy` text for these packages (for diagnostics). */
  async policy(names: string[]): Promise<string> {
    return this.aptCache(['policy', ...names]);
  }

  /**
   * One exact package version kept in this state's debs/ folder (downloaded once, under a lock;
   * older versions of the same package are removed): for packages read again and again, such as
   * linux-source-*, which the custom kernel builds and the selftest corpus both unpack.
   */
  async keptDownload(name: string, version: string): Promise<string> {
    const dir = join(this.dir, 'debs');
    mkdirSync(dir, { recursive: true });
    const mine = (f: string) => f.startsWith(`${name}_`) && f.endsWith('.deb');
    const target = join(dir, `${name}_${version.replace(/:/g, '%3a')}_kept.deb`);
    return withLock(join(dir, `${name}.lock`), async () => {
      if (existsSync(target) && statSync(target).size > 0) return target;
      const tmp = join(dir, `tmp.${process.pid}`);
      try {
        renameSync(await this.download(name, version, tmp), target);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
      for (const f of readdirSync(dir)) if (mine(f) && join(dir, f) !== target) rmSync(join(dir, f), { force: true });
      return target;
    });
  }

  /** Downloads one exact package version into `destDir`; returns the .deb path. */
  async download(name: string, version: string, destDir: string): Promise<string> {
    mkdirSync(destDir, { recursive: true });
    try {
      await run('apt-get', [...this.options(), '-q', 'download', `${name}=${version}`], { cwd: destDir, maxBuffer: 64 << 20 });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      throw new CoreMatrixError(`cannot download ${name}=${version}: ${lastErrorLine(`${e.stderr ?? ''}\n${e.stdout ?? ''}`)}`);
    }
    const deb = readdirSync(destDir).find((f) => f.startsWith(`${name}_`) && f.endsWith('.deb'));
    if (!deb || statSync(join(destDir, deb)).size === 0) throw new CoreMatrixError(`cannot download ${name}=${version}: apt-get reported success but no .deb appeared in ${destDir}`);
    return join(destDir, deb);
  }
}
