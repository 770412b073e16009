// `npm run fuzz`: FUZZ_RUNS (default 10000) mutated inputs spread over the six targets (or the
// comma-separated FUZZ_TARGETS), seeded by FUZZ_SEED (printed, so a run reproduces). Inputs run in
// a worker thread under a watchdog: an input that does not finish within FUZZ_TIMEOUT_MS (default
// 2000) is a hang, the worker is terminated and restarted after it; a worker that runs out of heap,
// or a process RSS past the limit, is a memory blow-up. Each crasher is written to
// test/fuzz/crashers/<target>-<hash>.bin with a .txt beside it; the exit code is 1 when there was any.

import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoRoot } from '../paths.js';
import { loadSeeds } from './seeds.js';
import { makeCase, runCase, TARGETS, type Case, type SeedSet, type Status, type TargetName } from './targets.js';

const RSS_LIMIT = 3 * 1024 ** 3;

interface Job {
  seeds: SeedSet;
  runSeed: number;
  start: number;
  end: number;
  timeoutMs: number;
  targets: TargetName[];
}
type Msg = { i: number; target: TargetName; status: Status; detail?: string; ms: number };
const withStack = (d?: string, st?: string) => (st ? `${d}\nstack: ${st}` : d);

function workerMain(): void {
  const job = workerData as Job;
  // FUZZ_SELFTEST_HANG=<index>: spin on that input, to check the watchdog catches a real hang.
  const spin = process.env.FUZZ_SELFTEST_HANG === undefined ? -1 : Number(process.env.FUZZ_SELFTEST_HANG);
  for (let i = job.start; i < job.end; i++) {
    if (i === spin) for (;;);
    const c = makeCase(job.seeds, job.runSeed, i, job.targets);
    const o = runCase(c.target, c.bytes, job.timeoutMs);
    if (o.status !== 'crash' && process.memoryUsage.rss() > RSS_LIMIT) {
      parentPort!.postMessage({ i, target: c.target, status: 'crash', detail: `memory blow-up: RSS ${Math.round(process.memoryUsage.rss() / 2 ** 20)} MiB after the input`, ms: o.ms } satisfies Msg);
      process.exit(0);
    }
    parentPort!.postMessage({ i, target: c.target, status: o.status, detail: o.status === 'crash' ? withStack(o.detail, o.stack) : undefined, ms: o.ms } satisfies Msg);
  }
}

export function writeCrasher(dir: string, c: Case, runSeed: number, detail: string, targets: readonly TargetName[] = TARGETS): string {
  mkdirSync(dir, { recursive: true });
  const h = createHash('sha256').update(c.bytes).digest('hex').slice(0, 12);
  const base = join(dir, `${c.target}-${h}`);
  writeFileSync(`${base}.bin`, c.bytes);
  writeFileSync(`${base}.txt`, [
    `target: ${c.target}`, `run seed: ${runSeed}`, `input index: ${c.index}`, `seed file: ${c.seed}`,
    `mutations:`, ...c.steps.map((s) => `  ${s}`), `error: ${detail}`,
    `reproduce: FUZZ_SEED=${runSeed} FUZZ_RUNS=${c.index + 1}${targets.length < TARGETS.length ? ` FUZZ_TARGETS=${targets.join(',')}` : ''} npm run fuzz  (or replay the .bin: npx vitest run test/fuzz)`, '',
  ].join('\n'));
  return `${base}.bin`;
}

async function main(): Promise<void> {
  const runs = Number(process.env.FUZZ_RUNS ?? 10000);
  const runSeed = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  const timeoutMs = Number(process.env.FUZZ_TIMEOUT_MS ?? 2000);
  const targets = (process.env.FUZZ_TARGETS?.split(',').map((t) => t.trim()).filter(Boolean) ?? [...TARGETS]) as TargetName[];
  const unknown = targets.filter((t) => !(TARGETS as readonly string[]).includes(t));
  if (unknown.length || !targets.length) throw new Error(`FUZZ_TARGETS: unknown target ${unknown.join(', ')} (targets: ${TARGETS.join(', ')})`);
  const outDir = join(repoRoot(), 'test', 'fuzz', 'crashers');
  console.log(`fuzz: FUZZ_SEED=${runSeed} FUZZ_RUNS=${runs} FUZZ_TARGETS=${targets.join(',')} (budget ${timeoutMs} ms per input)`);
  const seeds = await loadSeeds({ log: (l) => console.log(l) });

  const stats = new Map<TargetName, { inputs: number; ok: number; typed: number; crash: number; maxMs: number; maxAt: number }>();
  for (const t of TARGETS) stats.set(t, { inputs: 0, ok: 0, typed: 0, crash: 0, maxMs: 0, maxAt: -1 });
  const crashers: string[] = [];
  const record = (i: number, status: Status, ms: number, detail?: string) => {
    const c = makeCase(seeds, runSeed, i, targets);
    const s = stats.get(c.target)!;
    s.inputs++;
    if (ms > s.maxMs) {
      s.maxMs = ms;
      s.maxAt = i;
    }
    if (status === 'ok') s.ok++;
    else if (status === 'typed') s.typed++;
    else {
      s.crash++;
      const file = writeCrasher(outDir, c, runSeed, detail ?? 'crash', targets);
      crashers.push(file);
      console.log(`CRASH #${i} ${c.target}: ${detail?.split('\n')[0]} -> ${file}`);
    }
  };

  const t0 = Date.now();
  // FUZZ_START: skip to one input (e.g. the slowest a run reported) without running those before it.
  let next = Number(process.env.FUZZ_START ?? 0);
  while (next < runs) {
    const job: Job = { seeds, runSeed, start: next, end: runs, timeoutMs, targets };
    next = await new Promise<number>((resolve) => {
      let cur = job.start;
      let lastPrint = Date.now();
      const w = new Worker(fileURLToPath(import.meta.url), { workerData: job, resourceLimits: { maxOldGenerationSizeMb: 1536 } });
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      const finish = (resume: number) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        void w.terminate();
        resolve(resume);
      };
      const arm = (ms: number) => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          record(cur, 'crash', ms, `hang: no result within ${ms} ms`);
          finish(cur + 1);
        }, ms);
      };
      arm(timeoutMs * 2 + 10_000); // the worker's first input also pays for module start-up
      w.on('message', (m: Msg) => {
        record(m.i, m.status, m.ms, m.detail);
        cur = m.i + 1;
        if (Date.now() - lastPrint > 10_000) {
          lastPrint = Date.now();
          console.log(`fuzz: ${cur}/${runs} inputs, ${crashers.length} crashers, ${Math.round((Date.now() - t0) / 1000)} s`);
        }
        if (cur >= runs) finish(cur);
        else arm(timeoutMs + 500);
      });
      w.on('error', (e) => {
        record(cur, 'crash', 0, `worker died: ${(e as Error).message.split('\n')[0]} (memory blow-up or fatal error)`);
        finish(cur + 1);
      });
      w.on('exit', () => finish(cur));
    });
  }

  console.log(`\nfuzz: ${runs} inputs in ${((Date.now() - t0) / 1000).toFixed(1)} s, FUZZ_SEED=${runSeed}`);
  console.log('target     inputs      ok   typed  crashers  slowest (input)');
  for (const [t, s] of stats) {
    if (!targets.includes(t)) continue;
    console.log(`${t.padEnd(9)} ${String(s.inputs).padStart(7)} ${String(s.ok).padStart(7)} ${String(s.typed).padStart(7)} ${String(s.crash).padStart(9)}  ${Math.round(s.maxMs)} ms (#${s.maxAt})`);
  }
  if (crashers.length) {
    console.log(`\n${crashers.length} crasher(s) written to ${outDir}`);
    process.exitCode = 1;
  }
}

if (isMainThread) {
  main().catch((e) => {
    console.error(`corematrix fuzz: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  });
} else {
  workerMain();
}
