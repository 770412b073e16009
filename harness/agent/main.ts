// The guest agent: runs inside every QEMU guest as `node /agent.js` (started by images/init).
// It reads the run manifest (/cm/run.json), opens each suite's object with our loader, relocates
// it against this kernel's /sys/kernel/btf/vmlinux, loads and attaches it, lets the suite code
// trigger it and compare what BPF saw with ground truth measured here, and streams results to
// the host as JSON lines on /dev/ttyS1 (harness/protocol.ts).
//
// Suites run as tasks with @vitest/runner: a file per suite, a test per check, so the host gets
// the plain task tree with its results, as it runs.

import { closeSync, existsSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { describe, startTests, test, beforeAll, afterAll, type File, type VitestRunner } from '@vitest/runner';
import { decodeBtfIndex, parseBtf, type Btf } from '../core/btf/btf.js';
import { loadObjectSpec } from '../core/object/load.js';
import type { ObjectSpec } from '../core/object/types.js';
import { objectsRootNames } from '../core/relo/patch.js';
import { moduleKey } from '../kernels/modules.js';
import { attachFailures, type Attachment } from '../loader/attach.js';
import { Collection, type LoadOptions, type ProgramOutcome } from '../loader/collection.js';
import { applyObjectConfig, kernelFacts, libbpfSettingsFor, replacedObjects, type ObjectConfig, type ObjectConfigFacts } from '../loader/object-config.js';
import type { LibbpfSettings } from '../reference/libbpf.js';
import { describeStep, encodeMessage, LOAD_TIMING, PROG_LOAD_TOTAL, PROTOCOL_VERSION, type AgentStep, type GuestMessage, type LoadTiming, type ProgLoadTotal } from '../protocol.js';
import { RESULT_SCHEMA, WHOLE_OBJECT, type AttachResult, type CellResult, type Check, type KernelInfo } from '../results.js';
import { finitModule, ioctlBuffer, powerOff, unameRelease, unameVersion, vmlinuxBtf, kallsymsLookup, linuxKernelVersion, readKernelConfig, RingBufReader } from '../runtime/index.js';
import { progLoadStats } from '../runtime/bpf.js';
import { moduleNeedOn, moduleNeeds, type GuestContext, type LoadedObject, type SuiteRunner, type SuiteSpec } from '../suites/types.js';
import { ManifestSchema, STEP_BUDGETS, type RunManifest } from './manifest.js';
import { Watchdog } from './watchdog.js';
import { collectionMember, runAlone, SharedRun, type RunMember, type RunOutcome, type Workload } from './attach-run.js';
import { HeldTargets, keepingAttachments, replacersOf, replacingMember } from './held-targets.js';
import { mustRunAlone } from './observers.js';
import { runWorkload } from './workload.js';

const PORT = process.env.CM_RESULT_PORT ?? '/dev/ttyS1';
/** The workload's longest wait on the loopback or a child under TCG: what a program under test blocks (XDP_DROP) fails fast. */
const WORKLOAD_WAIT_MS = 1000;
/** At most this many observing objects stay loaded, waiting to share a run of the workload. */
const OBSERVER_BATCH = 16;
let portFd = -1;
function send(m: GuestMessage): void {
  const line = encodeMessage(m);
  if (portFd < 0) {
    process.stdout.write(line);
    return;
  }
  writeSync(portFd, line);
}
const uptimeMs = () => Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000);

function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  const pb = b.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d;
  }
  return 0;
}

interface SuiteState {
  spec: SuiteSpec;
  object: string;
  sha256: string;
  /** The object, opened once (its sections are patched in place when it loads). */
  obj?: ObjectSpec;
  openError?: Error;
  coll?: Collection;
  checks: Check[];
  loadError?: string;
  attachErrors: { program: string; reason: string }[];
  skipped?: string;
  runMs: number;
  /** Position among the guest's units of work (1-based). */
  index: number;
  /** Its cells went to the host. */
  sent?: boolean;
}

async function main(): Promise<number> {
  const t0 = performance.now();
  try {
    portFd = openSync(PORT, 'w');
  } catch {
    portFd = -1; // host tests run the agent without a serial port: results go to stdout
  }
  const release = unameRelease();
  send({ t: 'hello', v: PROTOCOL_VERSION, release, machine: process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : process.arch, bootMs: uptimeMs() });
  const dog = new Watchdog(portFd);
  const beat = setInterval(() => {
    dog.alive();
    try {
      send({ t: 'hb', ms: uptimeMs() });
    } catch {
      // Refused for a moment (a BPF LSM program under test denying file access): the next beat, or the host's silence, tells.
    }
  }, 2000);
  try {
    const manifestPath = process.env.CM_MANIFEST ?? '/cm/run.json';
    const manifest: RunManifest = ManifestSchema.parse(JSON.parse(readFileSync(manifestPath, 'utf8')), manifestPath);
    const budgets = { ...STEP_BUDGETS, ...manifest.stepBudgets };
    // Units of work, in the order they run: suites, then the user's objects. Each step is named
    // to the host before it starts, so a hang or a panic says where it was.
    const totalUnits = manifest.suites.length + manifest.objects.length;
    const stepTo = (s: AgentStep) => send({ t: 'step', step: s });
    /** A program's load as a named step the watchdog beats for (the verifier holds the thread). */
    const loadStep = (unit: Omit<AgentStep, 'program' | 'phase'>) => (program: string, load: () => void) => {
      const s: AgentStep = { ...unit, program, phase: 'load' };
      stepTo(s);
      dog.blocking(describeStep(s), budgets.loadMs, () => {
        if (manifest.faults?.blockInLoad?.program === program) blockFor(manifest.faults.blockInLoad.ms);
        load();
      });
    };
    /** A synchronous attach as a named step the watchdog beats for (a kprobe.multi over many functions takes a while under TCG). */
    const attachStep = (s: AgentStep) => (attach: () => void) => {
      stepTo(s);
      dog.blocking(describeStep(s), budgets.loadMs, attach);
    };
    /** The standard workload with an object's config commands, as a named step (async: heartbeats go on by themselves). */
    // Where the workload's time goes, per loader's turn and per step (the phases line says it).
    const turns = { ours: { runs: 0, ms: 0, loadMs: 0 }, reference: { runs: 0, ms: 0, loadMs: 0 } };
    let turn: keyof typeof turns = 'ours';
    const workloadSteps = new Map<string, number>();
    const workloadFor = (s: AgentStep, commands: string[] = []): Workload => async (hooks) => {
      stepTo(s);
      const w = await runWorkload({ commands, timeoutMs: WORKLOAD_WAIT_MS, ...hooks });
      turns[turn].runs++;
      turns[turn].ms += w.ms;
      for (const st of w.steps) workloadSteps.set(st.step, (workloadSteps.get(st.step) ?? 0) + st.ms);
      return `workload ${w.ok ? 'ok' : 'had failures'} in ${w.ms} ms`;
    };
    const kernel: KernelInfo = { ...manifest.kernel, release };
    // The kernel's own BTF, else the file the host made from its DWARF (btf_custom_path style).
    const btfFile = existsSync('/sys/kernel/btf/vmlinux') ? '/sys/kernel/btf/vmlinux' : manifest.btf?.path;
    kernel.btf = btfFile === '/sys/kernel/btf/vmlinux' ? 'kernel' : btfFile ? manifest.btf!.source : 'none';
    if (!btfFile) return noBtf(manifest, kernel, t0);
    const phase: [string, number][] = [['start', performance.now()]];
    const suitePhases: string[] = [];
    const mark = (name: string) => phase.push([name, performance.now()]);
    const states = new Map<string, SuiteState>();
    for (const s of manifest.suites) {
      const st: SuiteState = { spec: s.spec, object: s.object, sha256: s.sha256, checks: [], attachErrors: [], runMs: 0, index: states.size + 1 };
      try {
        st.obj = loadObjectSpec(readFileSync(s.object), s.object.split('/').pop()!);
      } catch (e) {
        st.openError = e as Error; // reported as the suite's error when it runs
      }
      states.set(s.spec.name, st);
    }
    // The root type names of every suite object's CO-RE relocations, found in the same pass that
    // parses the kernel's BTF (each extra walk over its ~100k types is slow under TCG without a JIT).
    const roots = objectsRootNames([...states.values()].flatMap((st) => (st.obj ? [st.obj] : [])));
    mark('objects');
    const { btf: kernelBtf, note: btfNote } = openKernelBtf(btfFile, manifest, roots, mark);
    mark('btf parse');
    const kernelBtfName = btfFile;
    const btfCustomPath = kernel.btf === 'kernel' ? undefined : btfFile;
    // The modules the suites need, loaded before their BTF is read (finit_module, dependencies
    // first). A failure is reported by each suite that needs the module.
    const moduleErrors = new Map<string, string>();
    for (const m of manifest.modules ?? []) {
      try {
        const fd = openSync(m.path, 'r');
        try {
          finitModule(fd, m.name);
        } finally {
          closeSync(fd);
        }
      } catch (e) {
        moduleErrors.set(m.name, (e as Error).message.split('\n')[0]!);
      }
    }
    if (manifest.modules?.length) mark('modules');
    // Loaded modules' BTF, split on top of vmlinux: CO-RE candidates for module types.
    const moduleBtfs = kernel.btf !== 'kernel' ? [] : readdirSync('/sys/kernel/btf').filter((f) => f !== 'vmlinux').map((f) => parseBtf(readFileSync(`/sys/kernel/btf/${f}`), { source: `/sys/kernel/btf/${f}`, base: kernelBtf }));
    const { config } = readKernelConfig(release);
    mark('config');
    // What the objects' kconfig externs are filled from (every loader, every object in this guest).
    // libbpf's LINUX_HAS_* specials are probed by the loader on this kernel, for objects that declare them.
    const kconfig = { config, linuxKernelVersion: linuxKernelVersion() };
    // The suites read a few options as text; the config is parsed only where asked (KernelConfig).
    const configText: GuestContext['config'] = {
      get: (name) => {
        const v = config.get(name);
        return v === undefined ? undefined : String(v);
      },
      get size() {
        return config.size;
      },
    };
    const ctx: GuestContext = { release, config: configText, hostTruth: manifest.hostTruth, ioctl: ioctlBuffer };
    const { guestRunner } = (await import('../suites/guest.js')) as { guestRunner: SuiteRunner };
    mark('suite code');

    const kernelVersion = release.split('-')[0]!;

    const runner: VitestRunner = {
      config: {
        root: '/', setupFiles: [], name: 'corematrix-guest', passWithNoTests: true, testNamePattern: undefined, allowOnly: false,
        sequence: { seed: 0, hooks: 'stack', setupFiles: 'list' }, chaiConfig: undefined, maxConcurrency: 1,
        testTimeout: manifest.suiteTimeoutMs, hookTimeout: manifest.suiteTimeoutMs, retry: 0, includeTaskLocation: false,
        tags: [], tagsFilter: undefined, strictTags: false,
      },
      importFile: (filepath: string) => {
        const st = states.get(filepath.replace(/^suite:/, ''))!;
        defineSuite(st);
      },
      onTaskUpdate: async (packs) => {
        send({ t: 'result', kind: 'task-update', data: packs.map(([id, result]) => [id, result?.state, result?.duration]) });
      },
      onBeforeRunSuite: (s) => {
        if (s.file !== s) return;
        const st = states.get(s.name.replace(/^suite:/, ''))!;
        send({ t: 'suite', name: st.spec.name, index: st.index, total: totalUnits });
        stepTo({ unit: st.spec.name, object: objectName(st.object), index: st.index, total: totalUnits, phase: 'load' });
      },
      // A suite's cells go to the host as soon as its file finished: a later hang or panic keeps them.
      onAfterRunSuite: async (s) => {
        if (s.file !== s) return;
        const st = states.get(s.name.replace(/^suite:/, ''))!;
        for (const cell of cellsFor(st, kernel, s as File)) send({ t: 'result', kind: 'cell', data: cell });
        st.sent = true;
        // TEST-ONLY (manifest.faults, set by test/faults only): crash the kernel mid-run.
        if (manifest.faults?.panicAfterSuite === st.spec.name) await crashKernel(`after suite ${st.spec.name}`);
      },
    };

    function defineSuite(st: SuiteState): void {
      const spec = st.spec;
      describe(spec.name, () => {
        if (spec.minKernel && compareVersions(kernelVersion, spec.minKernel) < 0) {
          st.skipped = `needs kernel ${spec.minKernel}, this is ${kernelVersion}`;
          test.skip(`needs ${spec.minKernel}`, () => {});
          return;
        }
        const unset = (spec.kconfig ?? []).filter((o) => !['y', 'm'].includes(String(configText.get(o) ?? '')));
        if (unset.length) {
          st.skipped = `needs ${unset.join(', ')}, not set in this kernel's config`;
          test.skip(`needs ${unset.join(', ')}`, () => {});
          return;
        }
        // BTF from a file relocates CO-RE, but attaching by BTF id (fentry, kfuncs) needs the
        // kernel's own: without CONFIG_DEBUG_INFO_BTF the kernel cannot do it at all.
        const needs = kernel.btf !== 'kernel' && st.obj ? needsKernelBtf(st.obj) : undefined;
        if (needs) {
          st.skipped = `needs the kernel's own BTF (${needs}); this kernel was built without CONFIG_DEBUG_INFO_BTF (BTF from ${kernel.btf})`;
          test.skip('needs in-kernel BTF', () => {});
          return;
        }
        const noModule = moduleSkip(spec, configText, kernel);
        if (noModule) {
          st.skipped = noModule;
          test.skip('needs module BTF', () => {});
          return;
        }
        beforeAll(async () => {
          const t = performance.now();
          if (!st.obj) throw st.openError;
          for (const need of moduleNeeds(spec)) {
            if (moduleNeedOn(need, (o) => configText.get(o), kernel.btf === 'kernel') !== 'load') continue;
            const { name, option } = need;
            const err = moduleErrors.get(moduleKey(name));
            if (err) throw new Error(`module ${name}: ${err}`);
            if (!manifest.modules?.some((m) => m.name === moduleKey(name))) throw new Error(`module ${name}: ${option}=m but the host did not ship it`);
          }
          const obj = st.obj;
          const rodata: Record<string, number | string | boolean> = {};
          for (const [k, v] of Object.entries(spec.rodata ?? {})) rodata[k] = v === '$pid' ? process.pid : v;
          const coll = new Collection(obj);
          st.coll = coll;
          const unit = { unit: spec.name, object: objectName(st.object), index: st.index, total: totalUnits };
          coll.load({
            kernelBtf, moduleBtfs, kernelBtfName, sha256: st.sha256, rodata, programs: spec.programs,
            kconfig,
            kallsyms: (names) => kallsymsLookup(names),
            aroundProgram: loadStep(unit),
          });
          const tLoaded = performance.now();
          stepTo({ ...unit, phase: 'attach' });
          st.attachErrors = attachFailures(coll.attachAll());
          const tAttached = performance.now();
          stepTo({ ...unit, phase: 'run' });
          const bad = coll.outcomes.find((o) => o.status !== 'loaded');
          if (bad) throw new Error(`${bad.name}: ${bad.status}: ${bad.reason ?? ''}`);
          if (st.attachErrors.length) throw new Error(`attach ${st.attachErrors[0]!.program}: ${st.attachErrors[0]!.reason}`);
          const loaded: LoadedObject = {
            programs: [...coll.programs.keys()],
            readVar: (name) => coll.readVar(name),
            testRun: (program, data, repeat = 1) => {
              const p = coll.programs.get(program);
              if (!p) throw new Error(`program ${program} is not loaded`);
              const s: AgentStep = { ...unit, program, phase: 'run' };
              stepTo(s);
              return dog.blocking(`${describeStep(s)}: BPF_PROG_TEST_RUN`, budgets.runMs, () => p.testRun({ data, repeat }).retval);
            },
            drainRingbuf: (map) => {
              const m = coll.maps.get(map);
              if (!m) throw new Error(`map ${map} does not exist`);
              const r = new RingBufReader(m);
              try {
                return r.read();
              } finally {
                r.close();
              }
            },
          };
          st.checks = await guestRunner.run(spec, loaded, ctx);
          st.runMs = Math.round(performance.now() - t);
          suitePhases.push(`${spec.name}: load ${Math.round(tLoaded - t)} ms (relocate ${coll.relocateMs} ms), attach ${Math.round(tAttached - tLoaded)} ms, run ${Math.round(performance.now() - tAttached)} ms`);
        });
        afterAll(() => {
          st.coll?.close();
        });
        for (const c of spec.checks) {
          test(c.name, () => {
            const got = st.checks.find((x) => x.name === c.name);
            if (!got) throw new Error(`check '${c.name}' was not evaluated`);
            if (!got.ok) throw new Error(`observed ${JSON.stringify(got.observed)}, truth ${JSON.stringify(got.truth)}`);
          });
        }
      });
    }

    // TEST-ONLY (manifest.faults, set by test/faults only): grow until the OOM killer kills us.
    if (manifest.faults?.oom) await allocateUntilKilled();

    const files: File[] = await startTests([...states.keys()].map((n) => `suite:${n}`), runner);
    mark('suites');
    send({ t: 'result', kind: 'tasks', data: files.map(plainTask) });
    // A file whose every test was skipped is not run as a suite (no hook fired): its cells go now.
    for (const st of states.values()) {
      if (st.sent) continue;
      for (const cell of cellsFor(st, kernel, files.find((f) => f.name === `suite:${st.spec.name}`))) send({ t: 'result', kind: 'cell', data: cell });
      st.sent = true;
    }
    // `done ok` says the agent did its work; whether each program passed is its cell's verdict
    // (a program the verifier rejects is a result, not a broken guest).

    // What object configs' conditions ask about this kernel (made once, when a config first asks).
    let facts: ObjectConfigFacts | undefined;
    const configFacts = () => (facts ??= kernelFacts({
      btf: kernelBtf, modules: moduleBtfs, config, version: kernelTriple(release), name: `${kernel.id} (${release})`,
      ksyms: (name) => kallsymsLookup([name]).has(name),
    }));
    // Users' own objects: every program loaded, its cells sent as soon as the object is done.
    const programCounts = new Map<string, number>();
    /** Our attach results per object path, program: what libbpf's attach is held against. */
    const oursAttach = new Map<string, Map<string, AttachResult>>();
    /** Our outcomes per object path: the differential compares libbpf's load with them (ours is not loaded twice). */
    const oursOutcomes = new Map<string, ProgramOutcome[]>();
    // Objects that only observe share one run of the workload, a batch at a time (agent/observers.ts).
    const shared = new SharedRun<Omit<AgentStep, 'phase'>>(OBSERVER_BATCH, (unit) => workloadFor({ ...unit, phase: 'run' }));
    // freplace into another object's program (target-program: <object>:<program>): the object
    // replaced into stays loaded and attached until every object replacing into it is done.
    const replacers = replacersOf(manifest.objects);
    const heldOurs = new HeldTargets(manifest.objects, 'ours', (msg) => send({ t: 'log', level: 'warn', msg }));
    for (const [i, o] of manifest.objects.entries()) {
      const unit = { unit: `object:${o.name}`, object: o.name, index: states.size + i + 1, total: totalUnits };
      stepTo({ ...unit, phase: 'load' });
      // TEST-ONLY (manifest.faults, set by test/faults only): crash the kernel as this object's load begins.
      if (manifest.faults?.panicInObject === o.name) await crashKernel(`loading object ${o.name}`);
      const replaces = o.config ? replacedObjects(o.config) : [];
      const replacedBy = replacers.get(o.name);
      let attachments: ReadonlyMap<string, Attachment> = new Map();
      const attachRun = (coll: Collection) => {
        const around = attachStep({ ...unit, phase: 'attach' });
        // The on-demand runs after the workload (test runs, iterator reads) beat as a step of their own.
        const runStep = attachStep({ ...unit, phase: 'run' });
        const aroundRun = (run: () => void) => runStep(() => {
          if (manifest.faults?.blockInRun?.object === o.name) blockFor(manifest.faults.blockInRun.ms);
          run();
        });
        let member = collectionMember(coll, around, aroundRun);
        if (replacedBy) member = keepingAttachments(member, (a) => (attachments = a));
        if (replaces.length) member = replacingMember(member, heldOurs);
        // The two sides of a cross-object freplace never share a run: each is counted on its own.
        if (replaces.length || replacedBy || mustRunAlone(coll.spec, o.config?.workload)) return runAlone(member, workloadFor({ ...unit, phase: 'run' }, o.config?.workload));
        return shared.join(member, unit);
      };
      // An object others replace into is held (loaded, its links attached) instead of closed.
      const hold = !replacedBy ? undefined : (coll: Collection) => heldOurs.hold(o.name, {
        attachments, waiting: new Set(replacedBy), btf: coll.spec.btf,
        programFd: (p) => coll.programs.get(p)?.fd,
        runCounts: (p) => coll.programs.get(p)?.info(),
        close: () => {
          coll.close();
          for (const why of coll.closeErrors) send({ t: 'log', level: 'warn', msg: `agent: ${o.name}: closing: ${why}` });
        },
      });
      const replaceTarget: LoadOptions['replaceTarget'] = (object, program) => {
        const t = heldOurs.find(object, o.name);
        if ('reason' in t) return t;
        const fd = t.programFd(program);
        return fd === undefined ? { reason: `${object} did not load ${program}` } : { fd, btf: t.btf! };
      };
      const onLoaded = (t: LoadTiming) => {
        turns.ours.loadMs += t.loadMs;
        send({ t: 'result', kind: LOAD_TIMING, data: t });
      };
      await shared.add(() => objectCells(o, kernel, { kernelBtf, moduleBtfs, kernelBtfName, kconfig, kallsyms: (names) => kallsymsLookup(names), aroundProgram: loadStep(unit), ...(replaces.length ? { replaceTarget } : {}) }, configFacts, attachRun, onLoaded, hold, (programs, f) => dog.blocking(describeStep({ ...unit, phase: 'load' }), budgets.loadMs * (programs + 1), f)).then(({ cells, outcomes }) => {
        programCounts.set(o.path, cells.length);
        if (outcomes) oursOutcomes.set(o.path, outcomes);
        oursAttach.set(o.path, new Map(cells.flatMap((c) => (c.attach ? [[c.program, c.attach] as const] : []))));
        for (const cell of cells) send({ t: 'result', kind: 'cell', data: cell });
      }).finally(() => heldOurs.done(o.name, replaces)));
    }
    await shared.flush();
    heldOurs.closeAll();
    // The kernel's selftest corpus: every case relocated against its target BTF by both loaders,
    // run, and compared (verdicts, translated instructions, output bytes).
    if (manifest.corpus?.length) {
      const { runCorpus, corpusCells } = await import('../corpus/guest.js');
      const results = runCorpus(manifest.corpus, {
        kconfig,
        // One case (both loaders, every program of it) is one blocking step.
        onCase: (i, n, name) => {
          const s: AgentStep = { unit: 'corpus', object: name, phase: 'corpus', index: i + 1, total: n };
          stepTo(s);
          dog.begin(describeStep(s), budgets.loadMs * 4);
        },
        vmlinuxBtf: () => kernelBtf,
      });
      dog.end();
      for (const cell of corpusCells(results, kernel)) send({ t: 'result', kind: 'cell', data: cell });
    }
    // Our loader's objects (and the CO-RE corpus) end here; then the reference's turn.
    mark('our objects');
    // The reference loader: the same objects loaded by libbpf in this guest, compared with ours.
    const loader = manifest.loader ?? 'ours';
    turn = 'reference';
    if (loader !== 'ours') {
      const { referenceCells, libbpfAttachRun } = await import('./reference.js');
      const { libbpfProgramFd, libbpfProgramInfo } = await import('../reference/libbpf-attach.js');
      const objs = [
        ...[...states.values()].filter((st) => !st.skipped).map((st) => ({ suite: st.spec.name, path: st.object, name: objectName(st.object), sha256: st.sha256, programs: st.spec.programs, index: st.index, programCount: st.spec.programs?.length ?? st.obj?.programs.length ?? 1, config: undefined as ObjectConfig | undefined })),
        ...manifest.objects.map((o, i) => ({ suite: `object:${o.name}`, path: o.path, name: o.name, sha256: o.sha256, programs: undefined, index: states.size + i + 1, programCount: programCounts.get(o.path) ?? 1, config: o.config })),
      ];
      // Suites below their minimum kernel: the reference loader skips them too, visibly.
      for (const st of [...states.values()].filter((x) => x.skipped)) {
        for (const program of st.spec.programs ?? suitePrograms(st)) {
          send({ t: 'result', kind: 'cell', data: {
            schema: RESULT_SCHEMA, kernel, suite: st.spec.name, program, loader: 'libbpf', object: { name: st.object.split('/').pop()!, sha256: st.sha256 },
            verdict: 'expected-skip', reason: st.skipped, relocations: [], externs: [], checks: [], timings: { loadMs: 0, runMs: 0 },
          } satisfies CellResult });
        }
      }
      // libbpf's loads of observing objects share runs of the workload too, as ours did.
      const sharedRef = new SharedRun<AgentStep>(OBSERVER_BATCH, (s) => workloadFor({ ...s, phase: 'run' }));
      // freplace into another object's program: libbpf's load of that object is held as ours was.
      const heldRef = new HeldTargets(manifest.objects, 'libbpf', (msg) => send({ t: 'log', level: 'warn', msg }));
      for (const o of objs) {
        // Both loaders, every program of the object: one step, budgeted by its program count.
        const s: AgentStep = { unit: o.suite, object: o.name, phase: 'reference', index: o.index, total: totalUnits };
        stepTo(s);
        // Users' objects stay loaded by libbpf, to be attached and run like ours were.
        const user = o.suite.startsWith('object:');
        const ours = oursOutcomes.get(o.path);
        const replaces = user && o.config ? replacedObjects(o.config) : [];
        const replacedBy = user ? replacers.get(o.name) : undefined;
        let configured: ReturnType<typeof configuredFor> | undefined;
        const loadStarted = performance.now();
        const { cells, live, spec } = dog.blocking(describeStep(s), budgets.loadMs * 2 * Math.max(1, o.programCount), () => {
          // Both loaders get the same configuration: ours the configured object, libbpf its setters.
          configured = o.config ? configuredFor(o.path, o.name, o.config, configFacts()) : undefined;
          // A replacement of another object's function: libbpf's set_attach_target gets that object's program, as libbpf loaded it.
          for (const r of Object.values(configured?.settings.attachProgram ?? {})) {
            const t = r.object === undefined ? undefined : heldRef.get(r.object);
            const fd = t?.programFd(r.program);
            if (fd !== undefined) r.programFd = fd;
          }
          return referenceCells(o, kernel, loader, { kernelBtf, moduleBtfs, kernelBtfName, ...(btfCustomPath ? { btfCustomPath } : {}), ...(manifest.libbpf ? { library: manifest.libbpf } : {}), ...(configured ? { configured } : {}), ...(ours ? { oursOutcomes: ours } : {}), kconfig, kallsyms: (names) => kallsymsLookup(names), keepReference: user });
        });
        turns.reference.loadMs += performance.now() - loadStarted;
        await sharedRef.add(async () => {
          if (live) {
            let held = false;
            try {
              // The object as our reader parsed it (and its config set it) for the comparison; libbpf-only runs parse it here.
              const parsed = spec ?? configured?.spec ?? tryParse(o.path, o.name);
              // The two sides of a cross-object freplace never share a run: each is counted on its own.
              const alone = !parsed || replaces.length > 0 || replacedBy !== undefined || mustRunAlone(parsed, o.config?.workload) !== undefined;
              const keepAttached = !replacedBy ? undefined : (attachments: ReadonlyMap<string, Attachment>, detach: () => void) => {
                held = true;
                heldRef.hold(o.name, {
                  attachments, waiting: new Set(replacedBy),
                  programFd: (p) => libbpfProgramFd(live, p),
                  runCounts: (p) => libbpfProgramInfo(live, p),
                  close: () => {
                    try {
                      detach();
                    } finally {
                      live.close();
                    }
                  },
                });
              };
              if (parsed) await libbpfAttachRun(live, parsed, cells, oursAttach.get(o.path), {
                around: attachStep({ ...s, phase: 'attach' }), aroundRun: attachStep({ ...s, phase: 'run' }), workload: workloadFor({ ...s, phase: 'run' }, o.config?.workload),
                ...(alone ? {} : { join: (m: RunMember) => sharedRef.join(m, s) }),
                ...(replaces.length ? { wrap: (m: RunMember) => replacingMember(m, heldRef) } : {}),
                ...(keepAttached ? { keepAttached } : {}),
              });
            } finally {
              if (!held) live.close();
            }
          }
          for (const cell of cells) send({ t: 'result', kind: 'cell', data: cell });
        }).finally(() => heldRef.done(o.name, replaces));
      }
      await sharedRef.flush();
      heldRef.closeAll();
      mark('reference');
    }
    // The commands, last (each suite's own, then --exec): exit status, duration and output tail
    // as one cell each. After everything else so that a command cannot disturb what the suites,
    // objects and the reference measure, and a command that hangs or crashes the guest costs no
    // other cell. They run as child processes, so the heartbeats go on while they do.
    if (manifest.execs?.length) {
      const { runExecs } = await import('./exec.js');
      const execs = manifest.execs;
      await runExecs(execs, manifest.net, kernel, (level, msg) => send({ t: 'log', level, msg }), {
        skipOf: (suite) => states.get(suite)?.skipped,
        onStart: (plan, i) => stepTo({ unit: plan.suite, object: plan.object.name, phase: 'exec', index: totalUnits + i + 1, total: totalUnits + execs.length }),
        onCell: (cell) => send({ t: 'result', kind: 'cell', data: cell }),
      });
      mark('exec');
    }
    // Where the agent's time went (for start-up and matrix benchmarks), one line.
    send({ t: 'result', kind: PROG_LOAD_TOTAL, data: { ms: Math.round(progLoadStats.ms), calls: progLoadStats.calls } satisfies ProgLoadTotal });
    send({ t: 'log', level: 'info', msg: `agent phases: ${phase.slice(1).map(([n, t], i) => `${n} ${Math.round(t - phase[i]![1])} ms`).join(', ')}; before: ${Math.round(phase[0]![1] - t0)} ms; kernel BTF ${btfNote}; ${suitePhases.join('; ')}; loads: ours ${Math.round(turns.ours.loadMs)} ms, reference (both compared) ${Math.round(turns.reference.loadMs)} ms; workload: ours ${turns.ours.runs} run(s) ${Math.round(turns.ours.ms)} ms, reference ${turns.reference.runs} run(s) ${Math.round(turns.reference.ms)} ms (${[...workloadSteps].sort((a, b) => b[1] - a[1]).map(([n, ms]) => `${n} ${Math.round(ms)}`).join(', ')})` });
    send({ t: 'done', ok: true, ms: Math.round(performance.now() - t0) });
    return 0;
  } catch (e) {
    send({ t: 'log', level: 'error', msg: `agent: ${(e as Error).message.split('\n')[0]}` });
    send({ t: 'done', ok: false, ms: Math.round(performance.now() - t0) });
    return 1;
  } finally {
    clearInterval(beat);
    await dog.stop(); // before the port closes: the worker writes to it
    if (portFd >= 0) closeSync(portFd);
  }
}

/**
 * The cells of one user object loaded by our loader: one per program, or one `(object)` cell when
 * the object could not be opened or has no program at all (it never silently disappears).
 */
async function objectCells(
  o: RunManifest['objects'][number], kernel: KernelInfo, opts: Omit<LoadOptions, 'sha256'>, facts: () => ObjectConfigFacts,
  attachRun: (coll: Collection) => Promise<RunOutcome>,
  onLoaded: (t: LoadTiming) => void,
  /** Takes the collection instead of closing it: later objects replace functions of its programs. */
  hold?: (coll: Collection) => void,
  /**
   * Runs the object's parse or load (given how many programs it has: 0 for the parse) as a step
   * the watchdog beats for: a large object's relocation, BTF and maps take long under TCG before
   * and between its programs' own steps.
   */
  around: <T>(programs: number, f: () => T) => T = (_n, f) => f(),
): Promise<{ cells: CellResult[]; outcomes?: ProgramOutcome[] }> {
  const t = performance.now();
  const verifier0 = { ...progLoadStats };
  const object = { name: o.name, sha256: o.sha256 };
  const whole = (reason: string): { cells: CellResult[] } => ({ cells: [{
    schema: RESULT_SCHEMA, kernel, suite: `object:${o.name}`, program: WHOLE_OBJECT, loader: 'ours', object,
    verdict: 'fail', reason, relocations: [], externs: [], checks: [], timings: { loadMs: Math.round(performance.now() - t), runMs: 0 },
  }] });
  let coll: Collection | undefined;
  let config: string[] | undefined;
  try {
    let spec = around(0, () => loadObjectSpec(readFileSync(o.path), o.name));
    if (!spec.programs.length) return whole(`${o.name} has no BPF programs (no function in a program section)`);
    // Configured before load as its tool's user space would, with this kernel's facts.
    if (o.config) ({ spec, applied: config } = applyObjectConfig(spec, o.config, facts()));
    const loading = new Collection(spec);
    coll = loading;
    const outcomes = around(spec.programs.length, (): ProgramOutcome[] => {
      try {
        loading.load({ ...opts, sha256: o.sha256 });
        return loading.outcomes;
      } catch (e) {
        // Refused as a whole (an extern, a map, its BTF): every program still gets its cell.
        return loading.objectFailed((e as Error).message.split('\n')[0]!);
      }
    });
    for (const note of loading.slotNotes) send({ t: 'log', level: 'warn', msg: `agent: ${o.name}: ${note}` });
    // What the whole load took (as libbpf's open + load) and the verifier's part of it: for the bench.
    onLoaded({ unit: `object:${o.name}`, loadMs: Math.round(performance.now() - t), progLoadMs: Math.round(progLoadStats.ms - verifier0.ms), progLoads: progLoadStats.calls - verifier0.calls });
    // Loaded programs are attached as the object's tool would, the workload runs, the kernel counts.
    let attach: Map<string, AttachResult> | undefined;
    if (outcomes.some((p) => p.status === 'loaded')) {
      const r = await attachRun(coll);
      attach = r.results;
      send({ t: 'log', level: 'info', msg: `agent: ${o.name}: ${r.summary.attached} attached; ${r.summary.workload ?? 'no workload (nothing attached)'}; run statistics ${r.summary.statsVia ?? 'unavailable'}; ${r.summary.ms} ms` });
    }
    const cells = outcomes.map((p) => {
      const cell: CellResult = {
        schema: RESULT_SCHEMA, kernel, suite: `object:${o.name}`, program: p.name, loader: 'ours', object,
        verdict: p.status === 'loaded' ? 'pass' : p.status === 'not-loaded' ? 'expected-skip' : 'fail', relocations: p.relocations,
        externs: coll!.externs.map((e) => ({ name: e.name, kind: 'kconfig' as const, value: e.value })), checks: [],
        timings: { loadMs: p.loadMs, runMs: 0 },
      };
      if (config) cell.config = config;
      if (p.status !== 'loaded') cell.reason = `${p.status}: ${p.reason ?? ''}`;
      const a = attach?.get(p.name);
      if (a) {
        cell.attach = a;
        // A tool whose attach fails does not work on this kernel: the cell fails, saying why.
        if (a.status === 'failed') {
          cell.verdict = 'fail';
          cell.reason = `attach failed: ${a.reason ?? ''}`;
        }
      }
      if (p.insnsProcessed !== undefined || p.verifierLogTail) cell.verifier = { insnsProcessed: p.insnsProcessed, logTail: p.verifierLogTail };
      if (p.xlated) cell.xlated = p.xlated;
      return cell;
    });
    // Copies for the differential: what the cells were made from, before the collection closes.
    return { cells, outcomes: outcomes.map((x) => ({ ...x })) };
  } catch (e) {
    return whole((e as Error).message.split('\n')[0]!);
  } finally {
    if (coll && hold) hold(coll);
    else {
      coll?.close();
      // A detach the kernel refused does not undo the object's results: said, not thrown.
      for (const why of coll?.closeErrors ?? []) send({ t: 'log', level: 'warn', msg: `agent: ${o.name}: closing: ${why}` });
    }
  }
}

const objectName = (path: string) => path.split('/').pop()!;

/** The object parsed by our reader, or undefined when it cannot be (its cells already say why). */
function tryParse(path: string, name: string): ObjectSpec | undefined {
  try {
    return loadObjectSpec(readFileSync(path), name);
  } catch {
    return undefined;
  }
}

/** The object as its config makes it on this kernel, and the same settings as libbpf's setters (a fresh parse: loading patches a spec in place). */
function configuredFor(path: string, name: string, config: ObjectConfig, facts: ObjectConfigFacts): { spec: ObjectSpec; settings: LibbpfSettings } {
  const original = loadObjectSpec(readFileSync(path), name);
  const { spec } = applyObjectConfig(original, config, facts);
  return { spec, settings: libbpfSettingsFor(original, spec) };
}

/** major.minor.patch of the running kernel, with Debian's real patch level (`#1 SMP Debian 5.10.262-1`), not uname's 5.10.0. */
function kernelTriple(release: string): [number, number, number] {
  const m = /\bDebian (\d+)\.(\d+)\.(\d+)/.exec(unameVersion()) ?? /^(\d+)\.(\d+)\.(\d+)/.exec(release) ?? /^(\d+)\.(\d+)/.exec(release);
  return [Number(m?.[1] ?? 0), Number(m?.[2] ?? 0), Number(m?.[3] ?? 0)];
}

/** TEST-ONLY fault: holds the thread as a syscall would (no timer, no heartbeat), for `ms` or for ever. */
function blockFor(ms?: number): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  if (ms === undefined) for (;;) Atomics.wait(cell, 0, 0);
  Atomics.wait(cell, 0, 0, ms);
}

/** TEST-ONLY fault: sysrq c, after giving the serial port time to drain what was sent. */
async function crashKernel(where: string): Promise<void> {
  send({ t: 'log', level: 'info', msg: `agent: test fault: crashing the kernel ${where}` });
  await new Promise((r) => setTimeout(r, 1500));
  try {
    writeFileSync('/proc/sys/kernel/sysrq', '1');
  } catch {
    /* /proc/sysrq-trigger works for root regardless */
  }
  writeFileSync('/proc/sysrq-trigger', 'c');
  await new Promise((r) => setTimeout(r, 10_000));
}

/** TEST-ONLY fault: allocates and touches 16 MiB blocks, yielding between them (heartbeats go on), until killed. */
async function allocateUntilKilled(): Promise<void> {
  send({ t: 'log', level: 'info', msg: 'agent: test fault: allocating until the OOM killer ends this agent' });
  const hold: Buffer[] = [];
  for (;;) {
    hold.push(Buffer.allocUnsafe(16 << 20).fill(0xa5));
    await new Promise((r) => setImmediate(r));
  }
}

/** The task tree as plain data (no functions, no parent cycles). */
function plainTask(t: File | import('@vitest/runner').Task): unknown {
  const base = { id: t.id, type: t.type, name: t.name, mode: t.mode, state: t.result?.state, durationMs: t.result?.duration, errors: t.result?.errors?.map((e) => String(e.message ?? e).split('\n')[0]) };
  return 'tasks' in t ? { ...base, tasks: t.tasks.map(plainTask) } : base;
}

/**
 * The kernel's BTF to relocate against, and a note on how it was opened. Its bytes come from
 * one bpf() call where the kernel names its BTF objects (vmlinuxBtf), else from the file. When
 * they are the package's BTF the host indexed, they are opened from that index (a memcmp
 * instead of a walk over every type, slow under TCG without a JIT); otherwise parsed in full,
 * with a warning. Marks the 'btf read' phase; the caller marks the parse.
 */
function openKernelBtf(btfFile: string, manifest: RunManifest, roots: Set<string>, mark: (phase: string) => void): { btf: Btf; note: string } {
  let viaBpf: Uint8Array | undefined;
  if (btfFile === '/sys/kernel/btf/vmlinux') {
    try {
      viaBpf = vmlinuxBtf();
    } catch (e) {
      send({ t: 'log', level: 'warn', msg: `agent: reading the kernel's BTF with bpf() failed (${(e as Error).message.split('\n')[0]}); reading ${btfFile}` });
    }
  }
  const bytes = viaBpf ? Buffer.from(viaBpf.buffer, viaBpf.byteOffset, viaBpf.byteLength) : readFileSync(btfFile);
  mark('btf read');
  const read = viaBpf ? 'read with bpf(BPF_OBJ_GET_INFO_BY_FD)' : `read from ${btfFile}`;
  const full = (why: string) => ({ btf: parseBtf(bytes, { source: btfFile, findNames: roots }), note: `${why}; parsed in full (${read})` });
  if (!manifest.btfIndex) return full('no index from the host');
  let why: string;
  try {
    if (btfFile === manifest.btfIndex.btf || bytes.equals(readFileSync(manifest.btfIndex.btf))) {
      const index = decodeBtfIndex(readFileSync(manifest.btfIndex.index), manifest.btfIndex.index);
      return { btf: parseBtf(bytes, { source: btfFile, findNames: roots, index }), note: `opened from the host's index (${read})` };
    }
    why = `differs from the package's BTF the host indexed (${manifest.btfIndex.btf})`;
  } catch (e) {
    why = `index not usable (${(e as Error).message.split('\n')[0]})`;
  }
  send({ t: 'log', level: 'warn', msg: `agent: ${btfFile} ${why}; parsed in full` });
  return full(why);
}

/** Why a suite's modules cannot serve it on this kernel (an expected skip), or undefined. */
function moduleSkip(spec: SuiteSpec, config: GuestContext['config'], kernel: KernelInfo): string | undefined {
  for (const need of moduleNeeds(spec)) {
    const on = moduleNeedOn(need, (o) => config.get(o), kernel.btf === 'kernel');
    if (typeof on === 'object') return on.skip;
  }
  return undefined;
}

/** Why an object cannot work on a kernel without BTF of its own, or undefined when it can. */
function needsKernelBtf(obj: ObjectSpec): string | undefined {
  const byId = obj.programs.find((p) => /^(fentry|fexit|fmod_ret|lsm|tp_btf|iter|struct_ops)/.test(p.kind));
  if (byId) return `${byId.kind} program ${byId.name} attaches by BTF id`;
  const kfunc = Object.values(obj.externs).find((e) => e.kind === 'ksym' && (e.func || e.typed));
  if (kfunc) return `${kfunc.func ? 'kfunc' : 'typed ksym'} ${kfunc.name} is resolved in the kernel's BTF`;
  return undefined;
}

/**
 * No BTF at all (a kernel built without CONFIG_DEBUG_INFO_BTF and no file supplied): nothing with
 * CO-RE relocations can be relocated. Every suite cell is a skip (which counts as a failure) with
 * the reason, and `done` says `no-btf`, which the host makes the guest verdict.
 */
function noBtf(manifest: RunManifest, kernel: KernelInfo, t0: number): number {
  const why = '/sys/kernel/btf/vmlinux is missing (kernel built without CONFIG_DEBUG_INFO_BTF) and no BTF file was supplied (matrix entry btf: pahole)';
  send({ t: 'log', level: 'error', msg: why });
  for (const s of manifest.suites) {
    for (const program of s.spec.programs ?? programNames(s.object)) {
      send({ t: 'result', kind: 'cell', data: {
        schema: RESULT_SCHEMA, kernel, suite: s.spec.name, program, loader: 'ours', object: { name: s.object.split('/').pop()!, sha256: s.sha256 },
        verdict: 'skip', reason: why, relocations: [], externs: [], checks: [], timings: { loadMs: 0, runMs: 0 },
      } satisfies CellResult });
    }
  }
  send({ t: 'done', ok: false, ms: Math.round(performance.now() - t0), verdict: 'no-btf' });
  // Exit 0: the agent did its job (it reported); a non-zero exit would make init send a second,
  // plain 'done' that hides the verdict.
  return 0;
}

function cellsFor(st: SuiteState, kernel: KernelInfo, file: File | undefined): CellResult[] {
  const name = st.spec.name;
  const object = { name: st.object.split('/').pop()!, sha256: st.sha256 };
  const fileError = file?.result?.errors?.[0]?.message?.split('\n')[0];
  const coll = st.coll;
  // A suite that did not load (skipped below its minimum kernel) still reports one cell per
  // program, named as on the kernels where it ran: the object says which programs it has.
  // A load that threw before any program was tried (an unresolvable extern, say) has no outcomes:
  // its programs still get a cell each, carrying the error, so nothing disappears from the report.
  const programs = coll?.outcomes.length ? coll.outcomes : (st.spec.programs ?? suitePrograms(st)).map((p) => ({ name: p }));
  return programs.map((o): CellResult => {
    const outcome = coll?.outcomes.find((x) => x.name === o.name);
    const cell: CellResult = {
      schema: RESULT_SCHEMA, kernel, suite: name, program: o.name, loader: 'ours', object, verdict: 'pass',
      relocations: outcome?.relocations ?? [], externs: (coll?.externs ?? []).map((e) => ({ name: e.name, kind: 'kconfig' as const, value: e.value })),
      checks: st.checks, timings: { loadMs: outcome?.loadMs ?? 0, runMs: st.runMs },
    };
    if (outcome?.insnsProcessed !== undefined || outcome?.verifierLogTail) cell.verifier = { insnsProcessed: outcome.insnsProcessed, logTail: outcome.verifierLogTail };
    // A load specialised by .rodata values (the suite's own tgid filter, say) translates to other
    // code than a plain load; only plain loads' instructions are comparable across loaders (the
    // libbpf cells carry that comparison, made on plain loads of both).
    if (outcome?.xlated && !Object.keys(st.spec.rodata ?? {}).length) cell.xlated = outcome.xlated;
    if (st.skipped) {
      cell.verdict = 'expected-skip';
      cell.reason = st.skipped;
    } else if (coll && !coll.outcomes.length) {
      // The object was refused before any program load (extern, map or BTF problem): the
      // object's fault, as a failed relocation is.
      cell.verdict = 'fail';
      cell.reason = `not loaded: ${fileError ?? firstError(file) ?? 'the object did not load'}`;
    } else if (outcome && outcome.status !== 'loaded') {
      cell.verdict = 'fail';
      cell.reason = `${outcome.status}: ${outcome.reason ?? ''}`;
    } else if (st.attachErrors.find((a) => a.program === o.name)) {
      cell.verdict = 'fail';
      cell.reason = `attach failed: ${st.attachErrors.find((a) => a.program === o.name)!.reason}`;
    } else if (st.checks.some((c) => !c.ok)) {
      const c = st.checks.find((x) => !x.ok)!;
      cell.verdict = 'fail';
      cell.reason = `check '${c.name}': observed ${JSON.stringify(c.observed)}, truth ${JSON.stringify(c.truth)}`;
    } else if (fileError || !file || file.result?.state === 'fail' || st.checks.length < st.spec.checks.length) {
      cell.verdict = 'error';
      cell.reason = fileError ?? firstError(file) ?? 'suite did not complete';
    }
    return cell;
  });
}

/** A suite's program names, from the object opened once (or read again if that failed). */
function suitePrograms(st: SuiteState): string[] {
  return st.obj ? st.obj.programs.map((p) => p.name) : programNames(st.object);
}

function programNames(object: string): string[] {
  try {
    return loadObjectSpec(readFileSync(object), object).programs.map((p) => p.name);
  } catch {
    return [WHOLE_OBJECT];
  }
}

function firstError(t: File | import('@vitest/runner').Task | undefined): string | undefined {
  if (!t) return undefined;
  const e = t.result?.errors?.[0];
  if (e) return String(e.message ?? e).split('\n')[0];
  if ('tasks' in t) for (const c of t.tasks) {
    const x = firstError(c);
    if (x) return x;
  }
  return undefined;
}

main().then(
  (code) => {
    // A finished agent in a guest whose init asks for it (CM_POWER_OFF=1, never set on a host)
    // powers the machine off itself once the result port is closed (close drains it): node's own
    // teardown (~50 ms under TCG) and init's last steps are skipped. (The syscall module is
    // always up by now: this file imports the runtime statically.)
    if (code === 0 && process.env.CM_POWER_OFF === '1') {
      try {
        powerOff();
      } catch {
        /* init powers off */
      }
    }
    process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`agent: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
