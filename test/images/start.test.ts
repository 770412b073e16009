// The guest agent's start-up: its V8 code cache (produced on the host by the same node with the
// guest's flags), the launcher that uses it, the RNG seed, and one real guest that shows V8
// accepting the cache and the kernel's CRNG ready before node starts.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyManifest } from '../../harness/agent/manifest.js';
import { agentCodeCache, agentStartScript, GUEST_NODE_FLAGS } from '../../harness/images/agent-cache.js';
import { readCpio } from '../../harness/images/cpio.js';
import { buildImage } from '../../harness/images/initramfs.js';
import { GUEST_SEED_PATH, GUEST_SEED_TOOL } from '../../harness/images/seed.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { repoRoot } from '../../harness/paths.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { ensureBuilt } from '../helpers/tools.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-start-'));
const agent = join(repoRoot(), 'dist', 'agent.js');
beforeAll(() => ensureBuilt());
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * Runs the launcher on the host with `flags` on a copy of `bundle` next to `cacheFile`; the agent
 * stops at its missing manifest. Both write to /dev/stdout, or (a socket, as here) to stderr and
 * stdout: the two together are returned.
 */
function launch(flags: readonly string[], bundle: string, cacheFile: string): string {
  const dir = mkdtempSync(join(tmp, 'run-'));
  const copy = join(dir, 'agent.js');
  writeFileSync(copy, readFileSync(bundle));
  writeFileSync(`${copy}.cache`, readFileSync(cacheFile));
  const r = spawnSync(process.execPath, [...flags, agentStartScript(), copy], {
    env: { ...process.env, CM_RESULT_PORT: '/dev/stdout', CM_MANIFEST: join(dir, 'missing.json'), NODE_PATH: join(repoRoot(), 'node_modules') },
    encoding: 'utf8',
  });
  return `${r.stderr}${r.stdout}`;
}

describe('agent code cache', () => {
  it('is produced for the CommonJS agent bundle, accepted with the guest flags, rejected with others', async () => {
    const cache = await agentCodeCache(agent);
    expect(cache).toBeDefined();
    expect(cache!.bytes).toBeGreaterThan(50_000);
    const again = (await agentCodeCache(agent))!;
    expect(again.built).toBe(false); // cached by content: not produced a second time
    expect(again.path).toBe(cache!.path);
    const accepted = launch(GUEST_NODE_FLAGS, agent, cache!.path);
    expect(accepted).toMatch(/start: code cache accepted \(\d+ bytes\), compiled in \d+ ms/);
    // The agent ran behind the launcher: hello, then its one-line error about the manifest.
    expect(accepted).toContain('"t":"hello"');
    expect(accepted).toMatch(/"level":"error","msg":"agent: ENOENT: no such file or directory, open '.*missing\.json'"/);
    const rejected = launch([], agent, cache!.path);
    expect(rejected).toMatch(/start: code cache rejected/);
    expect(rejected).toContain('"t":"hello"');
  });

  it('is not produced for a bundle the launcher cannot run (an ES module)', async () => {
    const esm = join(tmp, 'esm-agent.js');
    writeFileSync(esm, "import { readFileSync } from 'node:fs';\nconsole.log(typeof readFileSync);\n");
    expect(await agentCodeCache(esm)).toBeUndefined();
  });
});

describe('full image', () => {
  it('carries the cache, the launcher, the node flags, the seed tool and a fresh seed per new image', async () => {
    const a = await buildImage({ files: [{ path: '/cm/x', data: `a ${Date.now()} ${Math.random()}` }] });
    const b = await buildImage({ files: [{ path: '/cm/x', data: `b ${Date.now()} ${Math.random()}` }] });
    const entries = (p: string) => readCpio(readFileSync(p));
    const get = (list: ReturnType<typeof readCpio>, path: string) => list.filter((e) => e.path === path).at(-1);
    const la = entries(a.path);
    expect(get(la, 'agent.js.cache')!.data.length).toBe((await agentCodeCache(agent))!.bytes);
    expect(Buffer.from(get(la, 'agent-start.js')!.data).toString()).toBe(readFileSync(agentStartScript(), 'utf8'));
    expect(Buffer.from(get(la, 'etc/corematrix/node-flags')!.data).toString()).toBe(`${GUEST_NODE_FLAGS.join(' ')}\n`);
    expect(get(la, GUEST_SEED_TOOL)!.mode & 0o111).not.toBe(0);
    const seedA = Buffer.from(get(la, GUEST_SEED_PATH)!.data);
    const seedB = Buffer.from(get(entries(b.path), GUEST_SEED_PATH)!.data);
    expect(seedA.length).toBe(64);
    expect(seedA.equals(seedB)).toBe(false);
    // A caller's own agent is never run on the host, so it gets no cache.
    const own = join(tmp, 'own.js');
    writeFileSync(own, 'console.log(1)\n');
    const c = await buildImage({ files: [], agent: own });
    expect(get(entries(c.path), 'agent.js.cache')).toBeUndefined();
    // start: 'plain' (the bench's "before"): no cache, no flags, no seed.
    const p = entries((await buildImage({ files: [{ path: '/cm/x', data: `p ${Math.random()}` }], start: 'plain' })).path);
    expect(get(p, 'agent.js.cache')).toBeUndefined();
    expect(get(p, GUEST_SEED_PATH)).toBeUndefined();
    expect(Buffer.from(get(p, 'etc/corematrix/node-flags')!.data).toString()).toBe('\n');
  }, 120_000);
});

describe('the agent bundle', () => {
  it('loads no builtin a guest would compile from source, nor koffi as a file of its own', () => {
    // Under --jitless node's code cache for its own modules is rejected: each builtin loaded is
    // compiled in the guest (node:os, perf_hooks behind a bare `performance`: ~40 ms each), and
    // koffi's JavaScript is in the bundle (its code cache) rather than a file resolved at start.
    const src = readFileSync(agent, 'utf8');
    expect(src.match(/require\("(node:)?(os|perf_hooks|koffi)"\)/g) ?? []).toEqual([]);
    expect(src.match(/(?<![\w$.])performance\b/g) ?? []).toEqual([]);
  });
});

describe('a real guest (6.1-cloud, TCG)', () => {
  it('seeds the RNG before node starts and V8 accepts the code cache', async () => {
    const k = await new KernelStore().fetch('6.1-cloud');
    const manifest = emptyManifest({ id: k.id, package: k.package, version: k.version, release: k.release, flavour: k.flavour });
    const image = await buildImage({ files: [{ path: '/cm/run.json', data: JSON.stringify(manifest) }], kernelConfig: k.config, release: k.release });
    const r = await runGuest({ kernelId: 'start', vmlinuz: k.vmlinuz, initrd: image.path, accel: 'tcg', logDir: join(tmp, 'logs') });
    expect(r.verdict, r.detail + '\n' + r.consoleTail).toBe('ok');
    const logs = r.messages.flatMap((m) => (m.t === 'log' ? [m.msg] : []));
    expect(logs[0]).toMatch(new RegExp(`node flags: ${GUEST_NODE_FLAGS.join(' ')}$`));
    expect(logs.find((l) => l.startsWith('start: code cache'))).toMatch(/^start: code cache accepted/);
    // The kernel says "crng init done" once seeded: before node's hello, within 1 s of /init.
    const crng = /\[\s*([\d.]+)\] random: crng init done/.exec(readFileSync(r.consoleLog, 'utf8'));
    expect(crng).not.toBeNull();
    const crngMs = Number(crng![1]) * 1000;
    expect(crngMs).toBeLessThan(r.bootMs!);
    expect(crngMs - r.initMs!).toBeLessThan(1000);
    console.log(`[measure] init at ${r.initMs} ms, crng ready at ${Math.round(crngMs)} ms, agent hello at ${r.bootMs} ms → start ${r.bootMs! - r.initMs!} ms`);
  }, 180_000);
});
