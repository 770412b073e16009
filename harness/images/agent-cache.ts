// The guest agent's start-up: the node flags every guest runs it with, and a V8 code cache for
// the agent bundle, produced on the host by the same node binary the image carries (the base
// layer copies process.execPath) with the same flags, so V8 in the guest accepts it.
//
// Why (measured under TCG, see images/README.md): everything node executes in a guest is
// emulated, and code V8 generates at run time must be translated again by QEMU each time it is
// written. `--jitless` (interpreter only: no executable memory allocated at run time) and a code
// cache (V8 deserialises bytecode instead of parsing and compiling the 0.5 MB bundle) cut
// the agent's start.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreMatrixError } from '../core/errors.js';
import { cacheDir, repoRoot, writeFileAtomic } from '../paths.js';
import { fileHash } from './base.js';
import { checkSealedSync, sealOf, writeSeal } from '../seal.js';
import { emptyManifest } from '../agent/manifest.js';

/**
 * The node flags of the guest agent (written to the image as /etc/corematrix/node-flags, read by
 * /init; `cm.node=<flag>,<flag>` on the kernel command line overrides them, `cm.node=` drops them).
 * A 16 MB young generation from the start: deserialising the 0.9 MB code cache and the suite's
 * work then need fewer scavenges (6.1: the cache in 84-88 ms instead of 111-131, the guest off
 * 30-100 ms sooner, 4 boots each).
 */
export const GUEST_NODE_FLAGS: readonly string[] = ['--jitless', '--no-expose-wasm', '--min-semi-space-size=16'];

/** The launcher that compiles the agent with its code cache (installed as /agent-start.js). */
export function agentStartScript(): string {
  return join(repoRoot(), 'images', 'agent-start.cjs');
}

export interface AgentCodeCache {
  path: string;
  bytes: number;
  /** True when this call produced it (false: cache hit). */
  built: boolean;
  /** Why a cached one was produced again (no checksum, corrupt). */
  rebuilt?: string;
}

/**
 * The V8 code cache of `bundle` (a CommonJS agent bundle), for node `process.execPath` run with
 * `flags`. Produced by running the bundle on the host through images/agent-start.cjs in an
 * environment where the agent returns early without effect (results to /dev/null, a manifest
 * with no suites): the cache then holds the start-up's functions, not only the top level.
 * Kept in cacheDir('images', 'codecache') by the hash of the bundle, the launcher, node and flags,
 * sealed: a cached one whose bytes (~1 MB, hashed in about a millisecond) left its seal is made again.
 * Undefined when the bundle cannot be run that way (not CommonJS, say): the image then goes without.
 */
export function agentCodeCache(bundle: string, flags: readonly string[] = GUEST_NODE_FLAGS): AgentCodeCache | undefined {
  if (!existsSync(bundle)) throw new CoreMatrixError(`image: agent bundle ${bundle} not found (run npm run build)`);
  const start = agentStartScript();
  const key = createHash('sha256')
    .update(`agent-code-cache v2 ${process.version} ${process.arch} ${flags.join(' ')}\n`)
    .update(`${fileHash(process.execPath)} ${fileHash(start)} ${fileHash(bundle)}\n`)
    .digest('hex')
    .slice(0, 24);
  const path = join(cacheDir('images', 'codecache'), `agent-${key}.cache`);
  let rebuilt: string | undefined;
  if (existsSync(path)) {
    const problem = checkSealedSync(path);
    if (!problem) return { path, bytes: statSync(path).size, built: false };
    rebuilt = `cached agent code cache ${problem}`;
  }
  const work = mkdtempSync(join(tmpdir(), 'corematrix-codecache-'));
  try {
    const manifest = join(work, 'run.json');
    // A valid manifest with nothing to run: the agent says hello, reads this kernel's facts and
    // finishes, all into /dev/null.
    writeFileSync(manifest, JSON.stringify(emptyManifest({ id: 'code-cache', package: '', version: '', release: '', flavour: '' }, 10_000)));
    const out = join(work, 'agent.cache');
    try {
      execFileSync(process.execPath, [...flags, start, '--produce', bundle, out], {
        cwd: work,
        env: { ...process.env, CM_RESULT_PORT: '/dev/null', CM_MANIFEST: manifest },
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: 120_000,
      });
    } catch {
      // The agent may end non-zero here (this host lacks something the guest has): the cache
      // is written on exit all the same. Only a missing cache is an error.
      if (!existsSync(out)) return undefined;
    }
    const bytes = readFileSync(out);
    writeFileAtomic(path, bytes);
    writeSeal(path, sealOf(bytes));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { path, bytes: statSync(path).size, built: true, ...(rebuilt ? { rebuilt } : {}) };
}
