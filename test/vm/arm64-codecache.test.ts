// The agent's V8 code cache on arm64 guests (issue 19): made on the host by the arm64 node the image
// carries (Debian trixie's, run under qemu-aarch64-static with the image's root as its sysroot),
// with the guest's flags, then read by that node in real arm64 guests (Debian's 6.1 and 7.3 arm64
// kernels under qemu-system-aarch64, TCG), which do real work from it: task-fields, an arm64 CO-RE
// object relocated, loaded and attached by our loader.
//
// Witnesses that are not our code: V8's own verdict on the cache (`script.cachedDataRejected`,
// which the launcher reports on the result port as `start: code cache accepted|rejected`), and the
// kernel's answers in the suite's cell (verified_insns, the kprobe's hits, the pid it read).
//
// `CM_CODECACHE_BENCH=3 npx vitest run --config vitest.local.config.ts test/vm/arm64-codecache.test.ts`
// also boots each kernel that many times with and without the cache and prints the start-up
// (the numbers in docs/arm64-codecache.md).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { objectsRootNames } from '../../harness/core/relo/patch.js';
import { emptyManifest, MANIFEST_SCHEMA, type RunManifest } from '../../harness/agent/manifest.js';
import { type AgentCodeCache, agentCodeCache, agentStartScript, GUEST_NODE_FLAGS, layOutRoot } from '../../harness/images/agent-cache.js';
import { archBaseEntries, buildArchImage } from '../../harness/images/arm64-image.js';
import { buildSuiteForArch, type ArchSuiteObject } from '../../harness/images/arm64-objects.js';
import type { CpioEntry } from '../../harness/images/cpio.js';
import { kernelBtfIndexFile } from '../../harness/kernels/btf-index.js';
import { type KernelArtifacts, KernelStore } from '../../harness/kernels/store.js';
import { repoRoot } from '../../harness/paths.js';
import type { CellResult } from '../../harness/results.js';
import { hostTruthOf } from '../../harness/suites/build.js';
import { hostKeysOf } from '../../harness/suites/truth.js';
import { type BootResult, bootGuest } from '../../harness/vm/arch.js';
import { ensureBuilt } from '../helpers/tools.js';

const SUITE = 'task-fields';
const KERNELS = ['6.1-arm64', '7.3-arm64'] as const;
const tmp = mkdtempSync(join(tmpdir(), 'cm-arm64-cc-'));
// A copy of the bundle: a build during the test (the lead's) must not leave the images with a cache of another bundle.
const agent = join(tmp, 'agent.js');
const store = new KernelStore();
let root: CpioEntry[];
let cache: AgentCodeCache;
let suite: ArchSuiteObject;

beforeAll(async () => {
  ensureBuilt();
  copyFileSync(join(repoRoot(), 'dist', 'agent.js'), agent);
  root = (await archBaseEntries('arm64')).entries;
  const made = await agentCodeCache(agent, GUEST_NODE_FLAGS, { arch: 'arm64', root, log: (l) => console.log(l) });
  expect(made, 'qemu-aarch64-static (apt-get install qemu-user-static) makes the arm64 cache').toBeDefined();
  cache = made!;
  suite = await buildSuiteForArch(SUITE, 'arm64', (await store.fetch('6.1-arm64')).btf);
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The image's root laid out on the host, to run its node under qemu-aarch64-static (as the cache was made). */
function hostRoot(): string {
  const dir = join(tmp, 'root');
  layOutRoot(dir, root);
  return dir;
}

describe('the arm64 agent code cache on the host', () => {
  it('is made once per bundle and node (one emulated run for concurrent callers, the event loop free meanwhile), and kept', async () => {
    const cacheRoot = process.env.COREMATRIX_CACHE;
    process.env.COREMATRIX_CACHE = join(tmp, 'cache'); // a fresh cache folder: made here, not found
    try {
      let ticks = 0;
      const tick = setInterval(() => ticks++, 100);
      const t0 = performance.now();
      const both = await Promise.all([1, 2].map(() => agentCodeCache(agent, GUEST_NODE_FLAGS, { arch: 'arm64', root })));
      const ms = performance.now() - t0;
      clearInterval(tick);
      expect(both.map((c) => c!.built).sort()).toEqual([false, true]);
      expect(both[0]!.path).toBe(both[1]!.path);
      expect(ticks).toBeGreaterThan((ms / 100) * 0.5); // a blocked loop would have ticked about once
      expect(await agentCodeCache(agent, GUEST_NODE_FLAGS, { arch: 'arm64', root })).toEqual({ path: both[0]!.path, bytes: both[0]!.bytes, built: false });
      console.log(`[measure] arm64 agent code cache made under qemu-aarch64-static in ${Math.round(ms)} ms: ${both[0]!.bytes} bytes`);
    } finally {
      if (cacheRoot === undefined) delete process.env.COREMATRIX_CACHE;
      else process.env.COREMATRIX_CACHE = cacheRoot;
    }
  }, 300_000);

  it('is accepted by V8 of the arm64 node with the guest flags only (not the amd64 cache)', async () => {
    expect(cache.bytes).toBeGreaterThan(500_000);
    expect((await agentCodeCache(agent))!.path).not.toBe(cache.path);
    // V8's verdict from the arm64 node itself (qemu-user), with and without the guest's flags.
    const dir = hostRoot();
    copyFileSync(agent, join(dir, 'agent.js'));
    copyFileSync(cache.path, join(dir, 'agent.js.cache'));
    writeFileSync(join(tmp, 'run.json'), JSON.stringify(emptyManifest({ id: 'cc', package: '', version: '', release: '', flavour: '' })));
    const launch = (flags: readonly string[]) => {
      const r = spawnSync('qemu-aarch64-static', ['-L', dir, join(dir, 'bin/node'), ...flags, agentStartScript(), join(dir, 'agent.js')], {
        env: { PATH: process.env.PATH, CM_RESULT_PORT: '/dev/stdout', CM_MANIFEST: join(tmp, 'run.json') }, encoding: 'utf8', timeout: 120_000,
      });
      return `${r.stdout}${r.stderr}`;
    };
    const guest = launch(GUEST_NODE_FLAGS);
    expect(guest).toContain(`start: code cache accepted (${cache.bytes} bytes)`);
    expect(guest).toContain('"machine":"aarch64"');
    expect(guest).toContain('"t":"done","ok":true');
    expect(launch([])).toContain(`start: code cache rejected (${cache.bytes} bytes)`);
  }, 300_000);

  it('goes without, saying why in one line, on a host without qemu-aarch64-static', async () => {
    const path = process.env.PATH;
    const said: string[] = [];
    process.env.PATH = join(tmp, 'no-bin');
    try {
      expect(await agentCodeCache(agent, GUEST_NODE_FLAGS, { arch: 'arm64', root, log: (l) => said.push(l) })).toBeUndefined();
    } finally {
      process.env.PATH = path;
    }
    expect(said).toEqual(['agent code cache for arm64: qemu-aarch64-static not found on PATH (apt-get install qemu-user-static); the image goes without (the agent compiles from source)']);
  });
});

interface Run {
  r: BootResult;
  cells: CellResult[];
  logs: string[];
}

/** One arm64 image per kernel: task-fields' manifest and files, the agent, its code cache and launcher. */
async function imageFor(k: KernelArtifacts): Promise<string> {
  const spec = loadObjectSpec(readFileSync(suite.object), `${SUITE}.bpf.o`);
  const index = kernelBtfIndexFile({ path: k.btf, sha256: k.sha256.btf }, objectsRootNames([spec]));
  const manifest: RunManifest = {
    schema: MANIFEST_SCHEMA,
    kernel: { id: k.id, package: k.package, version: k.version, release: k.release, flavour: k.flavour, btf: 'kernel' },
    suites: [{ spec: suite.spec, object: `/cm/objects/${SUITE}.bpf.o`, sha256: suite.sha256 }],
    objects: [], hostTruth: await hostTruthOf(k, hostKeysOf([suite.spec])), suiteTimeoutMs: 120_000, loader: 'ours',
    btfIndex: { btf: '/cm/kernel.btf', index: '/cm/kernel.btf.idx' },
  };
  const image = await buildArchImage({
    arch: 'arm64', kernelConfig: k.config, release: k.release, agent,
    files: [
      // What arm64-image.ts's run layer will carry (see docs/arm64-codecache.md, "Wiring").
      { path: '/agent.js.cache', source: cache.path },
      { path: '/agent-start.js', source: agentStartScript() },
      { path: '/cm/run.json', data: JSON.stringify(manifest) },
      { path: `/cm/objects/${SUITE}.bpf.o`, source: suite.object },
      { path: '/cm/kernel.btf', source: k.btf },
      { path: '/cm/kernel.btf.idx', source: index },
    ],
  });
  return image.path;
}

async function boot(k: KernelArtifacts, initrd: string, append?: string): Promise<Run> {
  const r = await bootGuest({ arch: 'arm64', vmlinuz: k.vmlinuz, initrd, timeoutMs: 400_000, ...(append ? { append } : {}) });
  const cells = r.messages.flatMap((m) => (m.t === 'result' && m.kind === 'cell' ? [m.data as CellResult] : []));
  const logs = r.messages.flatMap((m) => (m.t === 'log' ? [m.msg] : []));
  return { r, cells, logs };
}

function why(run: Run): string {
  return `${run.r.detail ?? ''}\n${run.logs.join('\n')}\n${run.r.console.slice(-30).join('\n')}`;
}

/**
 * Start-up of one boot: /init and hello in guest uptime, and from hello to the first cell: the
 * agent's own phases up to and including `suites` (its cells go out at the end of that phase).
 */
function startOf(run: Run) {
  const phases = run.logs.find((l) => l.startsWith('agent phases:')) ?? '';
  const list = [...phases.matchAll(/(\w[\w ]*?):? (\d+) ms/g)].map((m) => [m[1]!, Number(m[2])] as const);
  const upTo = list.findIndex(([n]) => n === 'suites');
  const before = list.find(([n]) => n === 'before')?.[1] ?? 0;
  const toCell = upTo < 0 ? undefined : before + list.slice(0, upTo + 1).reduce((s, [, ms]) => s + ms, 0);
  const compiled = /compiled in (\d+) ms/.exec(run.logs.find((l) => l.startsWith('start: code cache')) ?? '')?.[1];
  return { init: run.r.initMs!, hello: run.r.helloBootMs!, toCell, compiled: compiled === undefined ? undefined : Number(compiled), wall: run.r.wallMs };
}

describe('arm64 guests start the agent from the cache', () => {
  for (const id of KERNELS) {
    it(`${id}: V8 accepts the cache, and the agent relocates, loads and runs task-fields`, async () => {
      const k = await store.fetch(id);
      const run = await boot(k, await imageFor(k));
      expect(run.r.verdict, why(run)).toBe('ok');
      expect(run.r.machine).toBe('aarch64');
      expect(run.r.release).toBe(k.release);
      // V8's verdict, reported by the launcher before the agent's hello.
      expect(run.logs.find((l) => l.startsWith('start: code cache')), why(run)).toMatch(new RegExp(`^start: code cache accepted \\(${cache.bytes} bytes\\)`));
      // The work, done by code from the cache: one cell, passed, from the kernel's answers.
      expect(run.cells, why(run)).toHaveLength(1);
      const c = run.cells[0]!;
      expect([c.suite, c.program, c.loader, c.verdict, c.reason]).toEqual([SUITE, 'set_task_comm', 'ours', 'pass', undefined]);
      expect(c.verifier?.insnsProcessed).toBeGreaterThan(20);
      for (const x of c.checks) expect([x.name, x.ok, x.observed]).toEqual([x.name, true, x.truth]);
      expect(c.checks.find((x) => x.name === 'kprobe hits')!.observed).toBe(1);
      const s = startOf(run);
      console.log(`[measure] ${id} ${k.version} with cache: /init ${s.init} ms, hello ${s.hello} ms (start ${s.hello - s.init} ms, compiled in ${s.compiled} ms), hello → cell ${s.toCell} ms, off ${s.wall} ms wall`);
    }, 600_000);
  }
});

const BENCH = Number(process.env.CM_CODECACHE_BENCH ?? 0);
describe.skipIf(!BENCH)('start-up with and without the cache (CM_CODECACHE_BENCH=<boots>)', () => {
  for (const id of KERNELS) {
    it(`${id}: ${BENCH} boots each`, async () => {
      const k = await store.fetch(id);
      const initrd = await imageFor(k);
      const rows: string[] = [];
      for (let i = 0; i < BENCH; i++) {
        // Alternating, so load on the shared host falls on both alike; the same image either way.
        for (const mode of ['cache', 'none'] as const) {
          const run = await boot(k, initrd, mode === 'none' ? 'cm.codecache=off' : undefined);
          expect(run.r.verdict, why(run)).toBe('ok');
          expect(run.logs.some((l) => l.startsWith('start: code cache accepted'))).toBe(mode === 'cache');
          const s = startOf(run);
          const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
          rows.push(`| ${id} | ${mode} | ${s.init} | ${s.hello} | ${s.hello - s.init} | ${s.compiled ?? '–'} | ${s.toCell} | ${s.wall} | ${load} |`);
        }
      }
      console.log(`[measure]\n| kernel | cache | /init ms | hello ms | start ms | compile ms | hello → cell ms | wall ms | load |\n${rows.join('\n')}`);
    }, 1_800_000);
  }
});
