// Reading and validating suites/<name>/spec.yaml. Every problem is ONE line naming the file
// (`suites/<name>/spec.yaml:<line>`, or the --suites-dir path), what is wrong, and the allowed values.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import yaml from 'js-yaml';
import { commandProgram } from '../agent/manifest.js';
import { FormatError } from '../core/errors.js';
import { yamlErrorMessage } from '../core/yaml-error.js';
import type { SuiteSpec, TriggerKind } from './types.js';
import { parseObserve, parseTruth } from './truth.js';

const TOP_KEYS = ['name', 'description', 'header', 'programs', 'minKernel', 'kconfig', 'modules', 'rodata', 'trigger', 'checks', 'exec'] as const;
/** Keys of a spec's `exec` (types.ts SuiteExec). */
const EXEC_KEYS = ['command', 'files', 'timeout'] as const;
/** The longest `exec.timeout`, in seconds (as `--exec-timeout`'s). */
const MAX_EXEC_TIMEOUT_S = 86_400;
/** What a suite compiles against: one kernel's vmlinux.h, or the joined header of the whole matrix. */
export const HEADERS = ['vmlinux', 'joined'] as const;
const REQUIRED_TOP = ['name', 'description', 'trigger', 'checks'] as const;
const CHECK_KEYS = ['name', 'observe', 'truth'] as const;
/** Keys each trigger kind takes, with their types ('string', 'int', 'int[]'). */
export const TRIGGER_FIELDS: Record<TriggerKind, Record<string, 'string' | 'int' | 'int[]'>> = {
  'prctl-set-name': { name: 'string' },
  'loopback-tcp': {},
  'test-run': { program: 'string', packetLengths: 'int[]' },
  syscalls: { opens: 'int' },
  tun: { name: 'string' },
  'block-io': { device: 'string', bytes: 'int' },
  none: {},
};
export const TRIGGER_KINDS = Object.keys(TRIGGER_FIELDS) as TriggerKind[];

type PathSeg = string | number;

/** Finds the line (1-based) of a YAML path in the text, by indentation-aware scanning. */
export function lineOf(text: string, path: PathSeg[]): number {
  const lines = text.split('\n');
  let line = 0;
  let end = lines.length;
  for (const seg of path) {
    if (typeof seg === 'number') {
      // A flow list (`key: [a, b]`): its items are on the key's line.
      if (/:\s*\[/.test(lines[line] ?? '')) continue;
      let seen = -1;
      let indent = -1;
      for (let i = line + 1; i < end; i++) {
        const m = /^(\s*)-\s/.exec(lines[i]!);
        if (!m) continue;
        if (indent < 0) indent = m[1]!.length;
        if (m[1]!.length !== indent) continue;
        if (++seen === seg) {
          line = i;
          // the item ends at the next item of the same indentation
          for (let j = i + 1; j < end; j++) {
            const n = /^(\s*)-\s/.exec(lines[j]!);
            if (n && n[1]!.length === indent) {
              end = j;
              break;
            }
          }
          break;
        }
      }
    } else {
      const re = new RegExp(`(^|[\\s{,-])${seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*:`);
      for (let i = path[0] === seg ? 0 : line; i < end; i++) {
        if (re.test(lines[i]!)) {
          line = i;
          break;
        }
      }
    }
  }
  return line + 1;
}

class SpecChecker {
  readonly errors: string[] = [];
  constructor(
    readonly file: string,
    readonly text: string,
  ) {}
  fail(path: PathSeg[], msg: string): void {
    this.errors.push(`${this.file}:${lineOf(this.text, path)}: ${msg}`);
  }
}

const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`);
const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validates a parsed spec document; throws FormatError with the first problem (file:line).
 * `folder`: the suite's folder on disk, where `exec.files` must exist (not looked at without it).
 */
export function validateSpec(doc: unknown, file: string, text: string, dirName?: string, folder?: string): SuiteSpec {
  const c = new SpecChecker(file, text);
  if (!isMap(doc)) throw new FormatError(`${file}:1: a spec must be a mapping with keys ${TOP_KEYS.join(', ')}`);
  for (const k of Object.keys(doc)) if (!(TOP_KEYS as readonly string[]).includes(k)) c.fail([k], `unknown key '${k}' (allowed: ${TOP_KEYS.join(', ')})`);
  for (const k of REQUIRED_TOP) if (!(k in doc)) c.fail([], `missing key '${k}' (required: ${REQUIRED_TOP.join(', ')})`);
  const str = (path: PathSeg[], v: unknown, what: string): v is string => {
    if (typeof v === 'string' && v.length > 0) return true;
    c.fail(path, `${what} must be a non-empty string, not ${typeName(v)}`);
    return false;
  };
  if ('name' in doc && str(['name'], doc.name, 'name') && dirName !== undefined && doc.name !== dirName) c.fail(['name'], `name '${doc.name}' must equal the folder name '${dirName}'`);
  if ('description' in doc) str(['description'], doc.description, 'description');
  if ('header' in doc && !(HEADERS as readonly unknown[]).includes(doc.header)) c.fail(['header'], `unknown header ${JSON.stringify(doc.header)} (allowed: ${HEADERS.join(', ')})`);
  if ('minKernel' in doc && (typeof doc.minKernel !== 'string' || !/^\d+\.\d+$/.test(doc.minKernel)))
    c.fail(['minKernel'], `minKernel must be a quoted "MAJOR.MINOR" string such as "5.8", not ${typeName(doc.minKernel)}`);
  if ('kconfig' in doc) {
    if (!Array.isArray(doc.kconfig) || doc.kconfig.length === 0) c.fail(['kconfig'], `kconfig must be a non-empty list of CONFIG_ options the programs need, not ${typeName(doc.kconfig)}`);
    else doc.kconfig.forEach((o, i) => {
      if (typeof o !== 'string' || !/^CONFIG_[A-Z0-9_]+$/.test(o)) c.fail(['kconfig', i], `kconfig[${i}] must be a CONFIG_ option name such as CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS, not ${typeName(o)}`);
    });
  }
  if ('programs' in doc) {
    if (!Array.isArray(doc.programs) || doc.programs.length === 0) c.fail(['programs'], `programs must be a non-empty list of program names, not ${typeName(doc.programs)}`);
    else doc.programs.forEach((p, i) => str(['programs', i], p, `programs[${i}]`));
  }
  if ('modules' in doc) {
    const form = '(null_blk: CONFIG_BLK_DEV_NULL_BLK, or tun: { option: CONFIG_TUN, btf: true } when the programs relocate against its types)';
    if (!isMap(doc.modules) || Object.keys(doc.modules).length === 0) c.fail(['modules'], `modules must be a mapping of module name → the CONFIG_ option that builds it ${form}, not ${typeName(doc.modules)}`);
    else
      for (const [k, v] of Object.entries(doc.modules)) {
        if (!/^[a-z0-9][a-z0-9_-]*$/.test(k)) c.fail(['modules', k], `module name '${k}' must be a kernel module name (lower case letters, digits, - and _)`);
        const option = isMap(v) ? v.option : v;
        if (isMap(v)) for (const key of Object.keys(v)) if (key !== 'option' && key !== 'btf') c.fail(['modules', k], `unknown key '${key}' for module '${k}' (allowed: option, btf)`);
        if (isMap(v) && 'btf' in v && typeof v.btf !== 'boolean') c.fail(['modules', k], `module '${k}': btf must be true or false, not ${typeName(v.btf)}`);
        if (typeof option !== 'string' || !/^CONFIG_[A-Z0-9_]+$/.test(option)) c.fail(['modules', k], `module '${k}' must name the option that builds it (CONFIG_<X>) ${form}, not ${typeName(option)}`);
      }
  }
  if ('rodata' in doc) {
    if (!isMap(doc.rodata)) c.fail(['rodata'], `rodata must be a mapping of variable → number | string | boolean, not ${typeName(doc.rodata)}`);
    else
      for (const [k, v] of Object.entries(doc.rodata)) {
        if (!/^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$/.test(k)) c.fail(['rodata', k], `rodata key '${k}' must be a variable name, or var.member for a struct member`);
        if (!['number', 'string', 'boolean'].includes(typeof v)) c.fail(['rodata', k], `rodata '${k}' must be a number, string or boolean, not ${typeName(v)}`);
        else if (typeof v === 'string' && v.startsWith('$') && v !== '$pid') c.fail(['rodata', k], `unknown placeholder '${v}' (allowed: $pid)`);
      }
  }
  let triggerKind: TriggerKind = 'none';
  if ('trigger' in doc) {
    const t = doc.trigger;
    if (!isMap(t)) c.fail(['trigger'], `trigger must be a mapping with 'kind' (allowed kinds: ${TRIGGER_KINDS.join(', ')}), not ${typeName(t)}`);
    else if (typeof t.kind !== 'string' || !(TRIGGER_KINDS as string[]).includes(t.kind))
      c.fail(['trigger', 'kind'], `unknown trigger kind ${JSON.stringify(t.kind)} (allowed: ${TRIGGER_KINDS.join(', ')})`);
    else {
      triggerKind = t.kind as TriggerKind;
      const fields = TRIGGER_FIELDS[triggerKind];
      for (const k of Object.keys(t)) if (k !== 'kind' && !(k in fields)) c.fail(['trigger', k], `unknown key '${k}' for trigger '${triggerKind}' (allowed: ${['kind', ...Object.keys(fields)].join(', ')})`);
      for (const [k, type] of Object.entries(fields)) {
        const v = t[k];
        if (v === undefined) c.fail(['trigger'], `trigger '${triggerKind}' needs '${k}' (${type})`);
        else if (type === 'string') str(['trigger', k], v, `trigger.${k}`);
        else if (type === 'int' && !(Number.isInteger(v) && (v as number) > 0)) c.fail(['trigger', k], `trigger.${k} must be a positive integer, not ${typeName(v)}`);
        else if (type === 'int[]' && !(Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x) && x > 0)))
          c.fail(['trigger', k], `trigger.${k} must be a non-empty list of positive integers, not ${typeName(v)}`);
      }
      if (triggerKind === 'prctl-set-name' && typeof t.name === 'string' && Buffer.byteLength(t.name) > 15) c.fail(['trigger', 'name'], `trigger.name '${t.name}' is longer than 15 bytes (TASK_COMM_LEN - 1)`);
      if (triggerKind === 'block-io' && typeof t.device === 'string' && !/^[a-z0-9]+$/.test(t.device)) c.fail(['trigger', 'device'], `trigger.device '${t.device}' must be a block device name under /dev (lower case letters and digits)`);
      if (triggerKind === 'block-io' && Number.isInteger(t.bytes) && (t.bytes as number) % 4096 !== 0) c.fail(['trigger', 'bytes'], `trigger.bytes ${String(t.bytes)} must be a multiple of 4096 (whole pages)`);
      if (triggerKind === 'tun' && typeof t.name === 'string' && !/^[A-Za-z0-9_.-]{1,15}$/.test(t.name)) c.fail(['trigger', 'name'], `trigger.name '${t.name}' is not an interface name (1 to 15 of A-Z a-z 0-9 _ . -: IFNAMSIZ - 1)`);
    }
  }
  if ('checks' in doc) {
    if (!Array.isArray(doc.checks) || doc.checks.length === 0) c.fail(['checks'], `checks must be a non-empty list of {name, observe, truth}, not ${typeName(doc.checks)}`);
    else
      doc.checks.forEach((ch: unknown, i: number) => {
        if (!isMap(ch)) return c.fail(['checks', i], `checks[${i}] must be a mapping {name, observe, truth}, not ${typeName(ch)}`);
        for (const k of Object.keys(ch)) if (!(CHECK_KEYS as readonly string[]).includes(k)) c.fail(['checks', i, k], `unknown key '${k}' in checks[${i}] (allowed: ${CHECK_KEYS.join(', ')})`);
        for (const k of CHECK_KEYS) if (!(k in ch)) c.fail(['checks', i], `checks[${i}] needs '${k}'`);
        if ('name' in ch) str(['checks', i, 'name'], ch.name, `checks[${i}].name`);
        if ('observe' in ch && str(['checks', i, 'observe'], ch.observe, `checks[${i}].observe`)) {
          const o = parseObserve(ch.observe as string);
          if (typeof o === 'string') c.fail(['checks', i, 'observe'], o);
        }
        if ('truth' in ch && str(['checks', i, 'truth'], ch.truth, `checks[${i}].truth`)) {
          const e = parseTruth(ch.truth as string, triggerKind);
          if (typeof e === 'string') c.fail(['checks', i, 'truth'], e);
          else if (e.source.kind === 'rodata' && !(isMap(doc.rodata) && e.source.name in doc.rodata)) c.fail(['checks', i, 'truth'], `truth rodata:${e.source.name} names no key of this spec's rodata`);
        }
      });
  }
  if ('exec' in doc) checkExec(c, doc.exec, folder);
  if (c.errors.length) throw new FormatError(c.errors[0]!);
  return doc as unknown as SuiteSpec;
}

/**
 * A spec's `exec`: a non-empty command; files that are paths inside the suite's folder (relative,
 * not leaving it, none inside another), each there when the folder is known; a timeout in seconds.
 * A command whose program is a path in the folder (`./check.sh`) must be among the files, and
 * executable.
 */
function checkExec(c: SpecChecker, e: unknown, folder: string | undefined): void {
  const form = `{ command, files: [paths in the suite's folder], timeout: seconds }`;
  if (!isMap(e)) return c.fail(['exec'], `exec must be a mapping ${form}, not ${typeName(e)}`);
  for (const k of Object.keys(e)) if (!(EXEC_KEYS as readonly string[]).includes(k)) c.fail(['exec', k], `unknown key '${k}' in exec (allowed: ${EXEC_KEYS.join(', ')})`);
  if (!('command' in e)) c.fail(['exec'], `exec needs 'command' (run as /bin/sh -c in the suite's shipped folder)`);
  else if (typeof e.command !== 'string' || e.command.trim() === '') c.fail(['exec', 'command'], `exec.command must be a non-empty string, not ${typeName(e.command)}`);
  if ('timeout' in e && !(typeof e.timeout === 'number' && e.timeout > 0 && e.timeout <= MAX_EXEC_TIMEOUT_S))
    c.fail(['exec', 'timeout'], `exec.timeout must be seconds from 0 to ${MAX_EXEC_TIMEOUT_S} (default 300), not ${typeName(e.timeout)}`);
  const files: string[] = [];
  if ('files' in e) {
    if (!Array.isArray(e.files) || e.files.length === 0) c.fail(['exec', 'files'], `exec.files must be a non-empty list of paths in the suite's folder, not ${typeName(e.files)}`);
    else
      e.files.forEach((f: unknown, i: number) => {
        const at = ['exec', 'files', i];
        if (typeof f !== 'string' || f === '') return c.fail(at, `exec.files[${i}] must be a path in the suite's folder, not ${typeName(f)}`);
        const norm = posix.normalize(f).replace(/\/+$/, '') || '.';
        if (posix.isAbsolute(f) || norm === '..' || norm.startsWith('../')) return c.fail(at, `exec.files[${i}] '${f}' must be a path inside the suite's folder, relative to it`);
        const other = files.findIndex((g) => g === '.' || norm === g || norm.startsWith(`${g}/`) || g.startsWith(`${norm}/`) || norm === '.');
        if (other >= 0) return c.fail(at, `exec.files[${i}] '${f}' and exec.files[${other}] '${String((e.files as unknown[])[other])}' overlap: each file is shipped once`);
        files.push(norm);
        if (folder !== undefined && !existsSync(join(folder, norm))) c.fail(at, `exec.files[${i}] '${f}': no such file or folder in ${dirname(c.file)}/`);
      });
  }
  // `./check.sh`, `tools/x`: a path in the suite's folder, which the command runs in.
  const word = typeof e.command === 'string' ? commandProgram(e.command)?.word : undefined;
  if (word !== undefined && word.includes('/') && !posix.isAbsolute(word)) {
    const norm = posix.normalize(word);
    if (!files.some((g) => g === '.' || norm === g || norm.startsWith(`${g}/`))) c.fail(['exec', 'command'], `exec.command runs '${word}', which exec.files does not ship (files: ${files.join(', ') || 'none'})`);
    else if (folder !== undefined && existsSync(join(folder, norm)) && statSync(join(folder, norm)).isFile() && (statSync(join(folder, norm)).mode & 0o111) === 0)
      c.fail(['exec', 'command'], `exec.command runs '${word}', which is not executable (chmod +x ${norm}, or run it as sh ${norm})`);
  }
}

/** Reads and validates one spec file. `display` is the path used in messages (suites/<name>/spec.yaml, or where the file is). */
export function readSpec(file: string, display = file, dirName?: string): SuiteSpec {
  const text = readFileSync(file, 'utf8');
  let doc: unknown;
  try {
    doc = yaml.load(text, { filename: display, schema: yaml.JSON_SCHEMA });
  } catch (e) {
    throw new FormatError(yamlErrorMessage(display, text, e));
  }
  return validateSpec(doc, display, text, dirName, dirname(file));
}
