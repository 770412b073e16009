// The small languages of spec.yaml, shared by the host (validation at build time) and the guest
// (evaluation): truth expressions, `observe` strings, host-truth keys and trigger outcome keys.
// Pure: no node:* imports, so the guest bundle and the host agree on one grammar.
//
// truth   := source [ ' ?? ' int | ' ? ' int ' : ' int | ' + ' int ]
// source  := 'pid' | 'tid'                         the agent's getpid() / its thread id
//          | 'proc:' ('comm' | 'state' | 'netns')  read from /proc/thread-self after the trigger
//          | 'uname:' ('kernel-version' | 'major' | 'minor' | 'patch')   Debian version in /proc/version
//          | 'config:' CONFIG_X ':' conv           the guest's kernel config (conv: bool|tristate|int|string)
//          | 'host:' key [':' conv]                computed on the host from the kernel's BTF/package (hostTruth)
//          | 'trigger:' key                        what the trigger did (see TRIGGER_KEYS)
//          | 'rodata:' name                        the value this spec wrote into .rodata
//          | 'const:' (int | 'true' | 'false')     an invariant (no drops, ordered), never a measured value
//          | 'var:' global                         another global of the object: for invariants between
//                                                  two BPF-side values (each checked on its own elsewhere)
// observe := global                                a .bss/.data/.rodata variable of the object
//          | 'ringbuf:' map ':' ('marker' | 'tgid' | 'tid' | 'ordered')   decoded open events

import type { TriggerKind } from './types.js';

export type Conv = 'bool' | 'tristate' | 'int' | 'string';
export const CONVS: readonly Conv[] = ['bool', 'tristate', 'int', 'string'];

export type Source =
  | { kind: 'pid' | 'tid' }
  | { kind: 'proc'; key: ProcKey }
  | { kind: 'uname'; key: UnameKey }
  | { kind: 'config'; option: string; conv: Conv }
  | { kind: 'host'; key: string; conv?: Conv }
  | { kind: 'trigger'; key: string }
  | { kind: 'rodata'; name: string }
  | { kind: 'const'; value: number | boolean }
  | { kind: 'var'; name: string };

export type TruthExpr =
  | { op: 'value'; source: Source }
  | { op: 'default'; source: Source; fallback: number }
  | { op: 'cond'; source: Source; then: number; else: number }
  | { op: 'add'; source: Source; add: number };

export const PROC_KEYS = ['comm', 'state', 'netns'] as const;
export type ProcKey = (typeof PROC_KEYS)[number];
export const UNAME_KEYS = ['kernel-version', 'major', 'minor', 'patch'] as const;
export type UnameKey = (typeof UNAME_KEYS)[number];
export const SOURCE_PREFIXES = ['pid', 'tid', 'proc:', 'uname:', 'config:', 'host:', 'trigger:', 'rodata:', 'const:', 'var:'] as const;

/** What each trigger reports about itself (TriggerOutcome keys), per trigger kind. */
export const TRIGGER_KEYS: Record<TriggerKind, readonly string[]> = {
  'prctl-set-name': ['count', 'name', 'oldComm'],
  'loopback-tcp': ['count', 'port', 'family', 'protocol', 'sockType', 'userlocks', 'netRefcnt'],
  'test-run': ['count', 'rejected', 'outside', 'totalLen'],
  syscalls: ['count', 'path'],
  tun: ['count', 'name', 'ifindex', 'flags'],
  'block-io': ['bytes', 'device', 'reads'],
  none: [],
};

/** Host-truth key patterns (see hostTruth in build.ts); each segment is a C identifier. */
const ID = '[A-Za-z_][A-Za-z0-9_]*';
export const HOST_KEY_PATTERNS: readonly { re: RegExp; doc: string }[] = [
  { re: new RegExp(`^enum\\.${ID}\\.${ID}$`), doc: 'enum.<enum>.<enumerator>' },
  { re: new RegExp(`^enumexists\\.${ID}\\.${ID}$`), doc: 'enumexists.<enum>.<enumerator>' },
  { re: new RegExp(`^(size|exists|typeid)\\.(struct|union|enum|typedef|int)\\.${ID}$`), doc: '(size|exists|typeid).<struct|union|enum|typedef|int>.<name>' },
  { re: new RegExp(`^(field|offset|fieldsize)\\.${ID}\\.${ID}$`), doc: '(field|offset|fieldsize).<struct>.<member>' },
  { re: new RegExp(`^func\\.${ID}$`), doc: 'func.<name>' },
  { re: /^kernel\.version$/, doc: 'kernel.version' },
  { re: /^config\.CONFIG_[A-Z0-9_]+$/, doc: 'config.CONFIG_<X>' },
];

export const RINGBUF_VIEWS = ['marker', 'tgid', 'tid', 'ordered'] as const;
export type RingbufView = (typeof RINGBUF_VIEWS)[number];
export type Observe = { kind: 'var'; name: string } | { kind: 'ringbuf'; map: string; view: RingbufView };

function intLit(s: string): number | undefined {
  return /^-?\d+$/.test(s) ? Number(s) : undefined;
}

/** Parses one source; returns an error string (one line, naming the allowed values) when invalid. */
export function parseSource(text: string, trigger: TriggerKind): Source | string {
  if (text === 'pid' || text === 'tid') return { kind: text };
  const colon = text.indexOf(':');
  const prefix = colon < 0 ? text : text.slice(0, colon);
  const rest = colon < 0 ? '' : text.slice(colon + 1);
  switch (prefix) {
    case 'proc':
      return (PROC_KEYS as readonly string[]).includes(rest) ? { kind: 'proc', key: rest as ProcKey } : `unknown proc key '${rest}' (allowed: ${PROC_KEYS.join(', ')})`;
    case 'uname':
      return (UNAME_KEYS as readonly string[]).includes(rest) ? { kind: 'uname', key: rest as UnameKey } : `unknown uname key '${rest}' (allowed: ${UNAME_KEYS.join(', ')})`;
    case 'config': {
      const m = /^(CONFIG_[A-Z0-9_]+):(\w+)$/.exec(rest);
      if (!m) return `config truth '${text}' must be config:CONFIG_<X>:<${CONVS.join('|')}>`;
      if (!(CONVS as readonly string[]).includes(m[2]!)) return `unknown conversion '${m[2]}' (allowed: ${CONVS.join(', ')})`;
      return { kind: 'config', option: m[1]!, conv: m[2] as Conv };
    }
    case 'host': {
      const [key = '', conv, extra] = rest.split(':');
      if (extra !== undefined || !HOST_KEY_PATTERNS.some((p) => p.re.test(key))) return `unknown host key '${rest}' (allowed: ${HOST_KEY_PATTERNS.map((p) => p.doc).join(', ')}, optionally :<${CONVS.join('|')}>)`;
      if (conv !== undefined && !(CONVS as readonly string[]).includes(conv)) return `unknown conversion '${conv}' (allowed: ${CONVS.join(', ')})`;
      return conv === undefined ? { kind: 'host', key } : { kind: 'host', key, conv: conv as Conv };
    }
    case 'trigger': {
      const keys = TRIGGER_KEYS[trigger];
      return keys.includes(rest) ? { kind: 'trigger', key: rest } : `trigger '${trigger}' has no key '${rest}' (allowed: ${keys.join(', ') || 'none'})`;
    }
    case 'rodata':
      return /^[A-Za-z_][\w.]*$/.test(rest) ? { kind: 'rodata', name: rest } : `bad rodata name '${rest}'`;
    case 'const': {
      if (rest === 'true' || rest === 'false') return { kind: 'const', value: rest === 'true' };
      const n = intLit(rest);
      return n === undefined ? `const truth '${rest}' must be an integer, true or false` : { kind: 'const', value: n };
    }
    case 'var':
      return /^[A-Za-z_]\w*$/.test(rest) ? { kind: 'var', name: rest } : `bad global variable name '${rest}'`;
    default:
      return `unknown truth source '${text}' (allowed: ${SOURCE_PREFIXES.join(', ')})`;
  }
}

/** Parses a truth expression; returns an error string when invalid. */
export function parseTruth(text: string, trigger: TriggerKind): TruthExpr | string {
  const t = text.trim();
  let m = /^(\S+) \?\? (-?\d+)$/.exec(t);
  if (m) {
    const s = parseSource(m[1]!, trigger);
    return typeof s === 'string' ? s : { op: 'default', source: s, fallback: Number(m[2]) };
  }
  m = /^(\S+) \? (-?\d+) : (-?\d+)$/.exec(t);
  if (m) {
    const s = parseSource(m[1]!, trigger);
    return typeof s === 'string' ? s : { op: 'cond', source: s, then: Number(m[2]), else: Number(m[3]) };
  }
  m = /^(\S+) \+ (-?\d+)$/.exec(t);
  if (m) {
    const s = parseSource(m[1]!, trigger);
    return typeof s === 'string' ? s : { op: 'add', source: s, add: Number(m[2]) };
  }
  if (/\s/.test(t)) return `bad truth expression '${t}' (forms: <source>, <source> ?? <int>, <source> ? <int> : <int>, <source> + <int>)`;
  const s = parseSource(t, trigger);
  return typeof s === 'string' ? s : { op: 'value', source: s };
}

export function parseObserve(text: string): Observe | string {
  if (text.startsWith('ringbuf:')) {
    const [, map = '', view = ''] = text.split(':');
    if (!/^[A-Za-z_]\w*$/.test(map)) return `bad ring buffer map name in '${text}'`;
    if (!(RINGBUF_VIEWS as readonly string[]).includes(view)) return `unknown ring buffer view '${view}' (allowed: ${RINGBUF_VIEWS.join(', ')})`;
    return { kind: 'ringbuf', map, view: view as RingbufView };
  }
  return /^[A-Za-z_]\w*$/.test(text) ? { kind: 'var', name: text } : `observe '${text}' must be a global variable name or ringbuf:<map>:<${RINGBUF_VIEWS.join('|')}>`;
}

/** Every host key the truth expressions of these specs reference (what hostTruth must compute). */
export function hostKeysOf(specs: { trigger: { kind: TriggerKind }; checks: { truth: string }[] }[]): string[] {
  const keys = new Set<string>();
  for (const s of specs)
    for (const c of s.checks) {
      const e = parseTruth(c.truth, s.trigger.kind);
      if (typeof e !== 'string' && e.source.kind === 'host') keys.add(e.source.key);
    }
  return [...keys].sort();
}

/** Converts a kconfig-style value ('y', 'm', 'n', undefined, '250', '"str"') as libbpf fills externs. */
export function convertConfig(value: string | undefined, conv: Conv): number | string | boolean {
  switch (conv) {
    case 'bool':
      return value === 'y' ? 1 : 0;
    case 'tristate':
      return value === 'y' ? 1 : value === 'm' ? 2 : 0;
    case 'int':
      return value === undefined ? 0 : Number(value);
    case 'string':
      return value === undefined ? '' : value.replace(/^"(.*)"$/, '$1');
  }
}

/** Equality for checks: booleans equal 1/0, bigints equal numbers of the same value. */
export function sameValue(a: unknown, b: unknown): boolean {
  const norm = (v: unknown): unknown => (typeof v === 'boolean' ? (v ? 1 : 0) : typeof v === 'bigint' && Number.isSafeInteger(Number(v)) ? Number(v) : v);
  return norm(a) === norm(b);
}

/** KERNEL_VERSION(a, b, c) with c capped at 255, as the kernel computes LINUX_VERSION_CODE. */
export function kernelVersionCode(a: number, b: number, c: number): number {
  return (a << 16) + (b << 8) + Math.min(c, 255);
}
