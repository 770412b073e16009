// One matrix run: kernels × suites. Fetch kernels, compile suites once per arch, build one image
// per kernel (same object bytes on every kernel of an arch), boot the guests in parallel under
// QEMU, collect the agent's cell results, and hand a RunReport to the report writers.
//
// arm64 kernels (an entry's `arch: arm64`, or `<id>-arm64`: docs/arm64.md) get the suites compiled
// for arm64 (harness/images/arm64-objects.ts), an arm64 image (harness/images/arm64-image.ts) and
// qemu-system-aarch64 under TCG; the reference loader (libbpf) is the current libbpf cross-built
// for arm64 (harness/reference/build.ts), at the same guest path as amd64's.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { CoreMatrixError, FormatError, UsageError } from '../core/errors.js';
import { buildImage, type ImageFile } from '../images/initramfs.js';
import { buildArchImage } from '../images/arm64-image.js';
import { buildSuiteForArch } from '../images/arm64-objects.js';
import { KernelStore, type KernelArtifacts } from '../kernels/store.js';
import { findKernel, loadMatrix, type KernelEntry } from '../kernels/matrix.js';
import { archOf, DEFAULT_ARCH, type DebianArch } from '../kernels/arch.js';
import { repoRoot } from '../paths.js';
import { describeStep, type AgentStep, type GuestMessage } from '../protocol.js';
import { RESULT_SCHEMA, WHOLE_OBJECT, type CellResult, type KernelInfo, type KernelRun, type LoaderName, type RunReport } from '../results.js';
import { buildSuites, clangId, DEFAULT_HEADER_KERNEL, hostTruthOf, listSuites, modulesFor, suitesDir, type BuiltSuite } from '../suites/build.js';
import { hostKeysOf } from '../suites/truth.js';
import { kernelBtfIndexFile } from '../kernels/btf-index.js';
import { loadObjectSpec } from '../core/object/load.js';
import type { ObjectSpec } from '../core/object/types.js';
import { checkObjectConfig, configPathFor, readObjectConfig, replacedObjects, type ObjectConfig } from '../loader/object-config.js';
import { kernelLookupNames } from '../loader/kernel-names.js';
import { objectsRootNames } from '../core/relo/patch.js';
import { bpfLsmAppend, runGuest, type Accel } from '../vm/qemu.js';
import { ARCH_MACHINES, kvmCapable } from '../vm/arch.js';
import { attachModules } from '../kernels/modules.js';
import { runPool } from '../vm/pool.js';
import { MANIFEST_SCHEMA, type RunManifest } from '../agent/manifest.js';
import { currentLibbpf, type CurrentLibbpf } from '../reference/build.js';
import { bootOrder, DurationHistory } from './schedule.js';
import { mergeParts, objectWeight, partId, partOf, partsPerKernel } from './parts.js';
import { diedIn, joinFollowUp, MAX_FOLLOW_UPS } from './resume.js';
import { EXEC_OVERHEAD_MS, execImageFiles, netPlan, planExecsOn, SHELL_RC, shellRc, type ExecOptions, type PlannedExec } from './exec.js';
import { describeBuild, listedName, markOtherArchBuild, objectBuiltFor, objectsOnArch, pairArchBuilds, splitArchPrefix, type BuiltFor } from './arch-objects.js';

export interface MatrixOptions {
  /** Matrix ids, globs or `all`; ignored when `entries` is given. */
  kernels: string[];
  /**
   * The exact entries to run (a shard, kernels discovered by --kernels newest), instead of
   * selecting from the matrix; may be empty (an empty, complete report). Entries that are not in
   * kernels/matrix.yaml are synthesised ones (pinned versions).
   */
  entries?: KernelEntry[];
  /** Recorded in the report when this run is one shard of a split. */
  shard?: { index: number; count: number; arch?: DebianArch };
  suites?: string[];
  /** Users' own clang-built objects, loaded and reported as-is (configured by `<object>.yaml` beside each, when there is one). */
  objects?: string[];
  /** Object → config file, for configs that are not `<object>.yaml` beside their object (--object-config). */
  objectConfigs?: ReadonlyMap<string, string>;
  /**
   * Objects of a public corpus (--corpus): loaded like `objects`, but one our reader refuses is a
   * failing cell of its own (the reference still loads it) instead of stopping the run.
   */
  corpusObjects?: string[];
  /**
   * Kernel modules to load in every guest before its BTF is read (for --object files that use a
   * module's types), where the kernel's package has them; kernels without one run without it.
   */
  modules?: string[];
  /** Also run the kernel's CO-RE selftest corpus (from Debian's linux-source-6.12) with both loaders. */
  corpus?: boolean;
  /** Which loaders load the objects in each guest: ours, Debian's libbpf, or both, compared. */
  loader?: 'ours' | 'libbpf' | 'both';
  jobs: number;
  accel: 'auto' | Accel;
  outDir: string;
  runId: string;
  /** Overall per-guest budget (ms); default scales with the number of suites. */
  timeoutMs?: number;
  signal?: AbortSignal;
  log: (line: string) => void;
  /** Root of the suites (default <repo>/suites), passed to buildSuites. */
  suitesDir?: string;
  /** Guest memory in MiB (default 1024). */
  memoryMb?: number;
  /** Guest vCPUs where the matrix entry does not say (`cpus:`); default 1. */
  cpus?: number;
  /**
   * Called as each kernel finishes, with the report so far (incomplete, kernels in matrix order):
   * the CLI writes it, so finished kernels can be read while a slow one (a custom build) goes on.
   */
  onKernelDone?: (partial: RunReport) => void;
  /** BENCH-ONLY: guests start without the agent's start-up mechanisms (ImageSpec.start). */
  guestStart?: 'tuned' | 'plain';
  /** TEST-ONLY (test/faults): faults the agent injects on purpose; the CLI never sets this. */
  faults?: RunManifest['faults'];
  /** Longest silence on the result port before a guest is called hung (default: runGuest's 30 s). */
  heartbeatTimeoutMs?: number;
  /** How long one blocking step (a program's load, a test run) may take in the guest (RunManifest.stepBudgets). */
  stepBudgets?: RunManifest['stepBudgets'];
  /** Per-kernel progress (booting / running suite k of n / verdict). */
  progress?: (kernel: string, state: string) => void;
  /**
   * The user's command (--exec), run in every guest after the agent's work with the --files
   * shipped to /cm/files: one cell per kernel (harness/matrix/exec.ts). It runs after the suites'
   * own commands (spec `exec`).
   */
  exec?: ExecOptions;
  /** `user`: the guests get QEMU's user-mode network (brought up before the command). */
  net?: 'user';
  /**
   * `corematrix shell`: instead of running the agent, each prepared guest is handed to this
   * (booted with `cm.init=shell` and the shell's profile): the same image a matrix run boots.
   */
  shell?: (guest: ShellGuest) => Promise<void>;
}

/** A guest prepared for an interactive shell (MatrixOptions.shell). */
export interface ShellGuest {
  kernel: KernelInfo;
  /** The kernel's arch: which QEMU boots it. */
  arch: DebianArch;
  vmlinuz: string;
  initrd: string;
  /** The kernel command line to add (the shell's init mode and profile, the BPF LSM where needed). */
  append: string;
  cpus: number;
  memoryMb: number;
  accel: 'auto' | Accel;
  net?: 'user';
  signal: AbortSignal;
}

function toolVersion(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).split('\n')[0]!.trim();
  } catch {
    return undefined;
  }
}

function kernelInfo(e: KernelEntry, k?: KernelArtifacts): KernelInfo {
  const arch = archOf(e);
  return { id: e.id, package: k?.package ?? '', version: k?.version ?? '', release: k?.release ?? '', flavour: e.flavour, ...(arch !== DEFAULT_ARCH ? { arch } : {}), btf: e.build ? e.build.btf : 'kernel' };
}

/** Why a kernel of `arch` has no reference (libbpf) cells: the current libbpf could not be built for it (`why`: the build's one line). */
export function noReferenceOn(arch: DebianArch, why: string): string {
  return `the reference loader (libbpf) is not available on ${arch} guests (${why})`;
}

/** Where every image carries the current libbpf: outside the loader's search path, so a bare libbpf.so.1 stays Debian's. */
export function guestLibbpfPath(version: string): string {
  return `/usr/lib/corematrix/libbpf/libbpf.so.${version}`;
}

/** How an object is named in the report's list: amd64's as the cells name them, another arch's with the arch (its bytes differ). */
function objectName(name: string, arch: DebianArch): string {
  return arch === DEFAULT_ARCH ? name : `${name} (${arch})`;
}

/**
 * The suites compiled for `arch` (not amd64: buildSuites compiles those), each against the
 * vmlinux.h of that arch's build of the header kernel (6.1), as amd64's are against 6.1's.
 */
async function buildSuitesForArch(arch: DebianArch, store: KernelStore, names: string[] | undefined, dir = suitesDir()): Promise<BuiltSuite[]> {
  const entry = findKernel(store.matrix(), `${DEFAULT_HEADER_KERNEL}-${arch}`);
  if (!entry) throw new CoreMatrixError(`suites for ${arch}: the matrix has no kernel ${DEFAULT_HEADER_KERNEL} to take the ${arch} header from`);
  const btf = (await store.fetch(entry)).btf;
  const built: BuiltSuite[] = [];
  for (const name of names ?? listSuites(dir)) {
    const s = await buildSuiteForArch(name, arch, btf, dir);
    built.push({ name, spec: s.spec, object: s.object, sha256: s.sha256, source: join(dir, name, 'prog.bpf.c') });
  }
  return built;
}

/** Where a custom kernel's pahole-made BTF sits in the guest. */
const GUEST_BTF = '/cm/vmlinux.btf';
/** The package's vmlinux BTF (a copy, to compare /sys/kernel/btf/vmlinux with) and the host's index of it. */
const GUEST_BTF_COPY = '/cm/kernel.btf';
const GUEST_BTF_INDEX = '/cm/kernel.btf.idx';
/** Guest budget per program and loader (a generous average; one program may take far longer). */
const PROGRAM_BUDGET_MS = 5_000;
/** Attaching one user object's programs and running the workload under them, per loader. */
const OBJECT_RUN_BUDGET_MS = 15_000;

export async function runMatrix(o: MatrixOptions): Promise<RunReport> {
  const startedAt = new Date().toISOString();
  // The store knows the matrix plus any synthesised entries, so every id resolves (host truth too).
  const fromFile = o.entries ? loadMatrix() : undefined;
  const store = new KernelStore({ log: o.log, matrix: fromFile && [...fromFile, ...o.entries!.filter((e) => !fromFile.some((f) => f.id === e.id))] });
  const entries = o.entries ?? store.select(o.kernels);
  if (entries.length === 0 && !o.entries) throw new CoreMatrixError(`no kernel in the matrix matches ${o.kernels.join(', ')}`);
  const agent = join(repoRoot(), 'dist', 'agent.js');
  if (!existsSync(agent)) throw new CoreMatrixError(`${agent} is missing: run npm run build`);

  o.log(`matrix: ${entries.length} kernel(s)${o.shard ? ` (shard ${o.shard.arch ? `${o.shard.arch} ` : ''}${o.shard.index}/${o.shard.count})` : ''}: ${entries.map((e) => e.id).join(' ')}`);
  // The arches of the run's kernels, in matrix order: the suites are compiled once for each.
  const arches = [...new Set(entries.map(archOf))];
  // No kernel to boot (an empty shard, nothing newer): no suite to compile either.
  const suitesByArch = new Map<DebianArch, BuiltSuite[]>();
  for (const arch of o.suites?.length === 0 ? [] : arches) {
    suitesByArch.set(arch, arch === DEFAULT_ARCH
      ? await buildSuites({ names: o.suites, ...(o.suitesDir ? { suitesDir: o.suitesDir } : {}) })
      : await buildSuitesForArch(arch, store, o.suites, o.suitesDir));
  }
  // Names, specs and programs are the same on every arch (one source, one spec); the bytes are not.
  const suites: BuiltSuite[] = suitesByArch.get(arches[0]!) ?? [];
  const userObjects = [...readUserObjects(o.objects ?? [], o.objectConfigs), ...readUserObjects(o.corpusObjects ?? [], new Map(), { lenient: true, first: o.objects?.length ?? 0 })];
  for (const [arch, list] of suitesByArch) o.log(`matrix: ${list.length} suite(s) compiled once${arches.length > 1 || arch !== DEFAULT_ARCH ? ` for ${arch}` : ''}: ${list.map((s) => `${s.name} (${s.sha256.slice(0, 12)})`).join(' ')}`);
  if (suitesByArch.size === 0) o.log('matrix: 0 suite(s) compiled once: ');
  const truthKeys = hostKeysOf(suites.map((s) => s.spec));
  // The cells every guest owes: one per unit (suite or object), program and loader. A guest that
  // ends early gets a 'not run' cell for each one it never sent, saying where it stopped.
  const loaders: LoaderName[] = o.loader === 'both' ? ['ours', 'libbpf'] : [o.loader ?? 'ours'];
  // Each arch's kernels load that arch's builds (--object arm64:x.o) and the plain objects without one.
  const objectsOn = (arch: DebianArch) => objectsOnArch(userObjects, arch);
  const userOwedOn = (arch: DebianArch) => objectsOn(arch).map((u) => ({ unit: `object:${u.name}`, object: u.name, sha256: u.sha256, programs: u.programs.length ? u.programs : [WHOLE_OBJECT] }));
  for (const u of userObjects) {
    // A plain object that shows another arch's build runs there as it is; its cells will say so.
    const on = u.arch || !u.builtFor ? [] : entries.filter((e) => archOf(e) !== u.builtFor!.arch && objectsOn(archOf(e)).includes(u));
    if (on.length) o.log(`matrix: --object ${u.host} is ${describeBuild(u.builtFor!)}: on ${on.map((e) => e.id).join(', ')} it runs as it is and its cells fail saying so; give the ${archOf(on[0]!)} build with --object ${archOf(on[0]!)}:<file>`);
  }
  // What the user objects look up in a kernel's BTF, answered by the index shipped with it too.
  const userNames = new Set(userObjects.flatMap((u) => u.kernelNames ?? []));
  /** Per arch: the suites' objects, the root type names of their CO-RE relocations (the kernel BTF index answers them, so the agent has them without a walk over the kernel's types), the cells owed. */
  const perArch = new Map([...suitesByArch].map(([arch, list]) => {
    const specs = list.map((s) => loadObjectSpec(readFileSync(s.object), `${s.name}.bpf.o`));
    const owed = [...list.map((s, i) => ({ unit: s.name, object: `${s.name}.bpf.o`, sha256: s.sha256, programs: s.spec.programs ?? specs[i]!.programs.map((p) => p.name) })), ...userOwedOn(arch)];
    return [arch, { suites: list, roots: new Set([...objectsRootNames(specs), ...userNames]), owed }] as const;
  }));
  const forArch = (arch: DebianArch) => perArch.get(arch) ?? { suites: [] as BuiltSuite[], roots: userNames, owed: userOwedOn(arch) };
  const programCount = forArch(arches[0] ?? DEFAULT_ARCH).owed.reduce((n, u) => n + u.programs.length, 0);

  // The reference loader: the current libbpf, built from the newest linux-source (Debian's 1.1 is
  // older than the objects people build today), once per arch of the run's kernels (cross-built
  // for arm64), shipped beside Debian's libbpf.so.1 in every image of that arch. The host's arch
  // must build (a failure stops the run, as before arm64); another arch whose build fails runs
  // ours only, and its libbpf cells are errors saying why.
  const references = new Map<DebianArch, CurrentLibbpf>();
  const noReference = new Map<DebianArch, string>();
  for (const arch of loaders.includes('libbpf') ? arches : []) {
    if (arch === DEFAULT_ARCH) {
      references.set(arch, await currentLibbpf(o.log));
      continue;
    }
    try {
      references.set(arch, await currentLibbpf(o.log, { arch }));
    } catch (err) {
      if (o.signal?.aborted) throw err;
      noReference.set(arch, (err as Error).message.split('\n')[0]!);
    }
  }
  // Which loaders a guest of each arch runs: the reference (libbpf) only where it is built.
  const loadersOn = (arch: DebianArch): LoaderName[] => (noReference.has(arch) ? loaders.filter((l) => l !== 'libbpf') : loaders);
  for (const [arch, why] of noReference) {
    const ids = entries.filter((e) => archOf(e) === arch).map((e) => e.id);
    o.log(`matrix: ${noReferenceOn(arch, why)}: ${ids.join(', ')} ${loadersOn(arch).length ? 'run ours only, their libbpf cells are errors' : 'are not booted (--loader libbpf)'}`);
  }
  // KVM runs only the host's own arch: a kernel of another arch runs under TCG even with --accel kvm.
  const accelOf = (arch: DebianArch): 'auto' | Accel => (o.accel === 'kvm' && !kvmCapable(arch) ? 'tcg' : o.accel);
  const tcgOnly = entries.filter((e) => accelOf(archOf(e)) !== o.accel);
  if (tcgOnly.length) o.log(`matrix: KVM runs only the host's arch (${process.arch}): ${tcgOnly.map((e) => e.id).join(', ')} run under TCG`);
  // The commands: each suite's own (spec `exec`), then the user's (--exec); their files and
  // libraries found once, the same in every guest of an arch. Per arch: an arch's --files (and
  // their libraries, from that arch's Debian packages on arm64).
  const execs = new Map<DebianArch, PlannedExec[]>();
  for (const arch of arches) {
    const ids = entries.filter((e) => archOf(e) === arch).map((e) => e.id);
    const plans = await planExecsOn(arch, suitesByArch.get(arch) ?? [], o.exec, { log: o.log, kernels: ids });
    if (plans.length) execs.set(arch, plans);
  }
  const execList = execs.get(arches[0] ?? DEFAULT_ARCH) ?? [];

  // The corpus: fetched and compiled once on the host, the same objects in every guest.
  let corpus: { cases: NonNullable<RunManifest['corpus']>; files: { path: string; source: string }[] } | undefined;
  if (o.corpus) {
    const { loadCorpus } = await import('../corpus/selftests.js');
    const c = await loadCorpus(o.log);
    const files = new Map<string, string>();
    const guest = (host: string) => {
      const p = `/cm/corpus/${basename(host)}`;
      files.set(p, host);
      return p;
    };
    const cases = c.cases.map((x) => ({ name: x.name, target: guest(x.target), programs: x.programs.map(guest), expectFail: x.expectFail }));
    corpus = { cases, files: [...files].map(([path, source]) => ({ path, source })) };
    o.log(`matrix: corpus ${c.package} ${c.version}: ${cases.length} cases, ${files.size} objects`);
  }

  const libbpfLabel = [...references].map(([arch, l]) => `${arch === DEFAULT_ARCH ? '' : `${arch}: `}libbpf ${l.version} (${l.source})`).join('; ');
  const report: RunReport = {
    schema: RESULT_SCHEMA, runId: o.runId, startedAt, finishedAt: startedAt, complete: false,
    host: { node: process.version, qemu: toolVersion(ARCH_MACHINES[arches[0] ?? DEFAULT_ARCH].qemu, ['--version']), clang: await clangId(), ...(libbpfLabel ? { libbpf: libbpfLabel } : {}) },
    suites: suites.map((s) => s.name),
    // The command's program too: a baseline comparison names a tool that changed.
    objects: [
      ...[...suitesByArch].flatMap(([arch, list]) => list.map((s) => ({ name: objectName(`${s.name}.bpf.o`, arch), sha256: s.sha256 }))),
      // Users' objects that some kernel of the run loads; another arch's build named with its arch.
      ...userObjects.filter((u) => arches.some((a) => objectsOn(a).includes(u))).map((u) => ({ name: listedName({ name: u.name, given: u.host, ...(u.arch ? { arch: u.arch } : {}) }), sha256: u.sha256 })),
      ...[...new Map([...execs.values()].flat().map((x) => [`${x.plan.object.name}\0${x.plan.object.sha256}`, x.plan.object])).values()],
    ],
    kernels: [],
    ...(o.shard ? { shard: { index: o.shard.index, count: o.shard.count, ...(o.shard.arch ? { arch: o.shard.arch } : {}) } } : {}),
  };
  const logDir = join(o.outDir, 'guests');
  mkdirSync(logDir, { recursive: true });
  const suiteTimeoutMs = 120_000;
  // The guest's budget grows with its work: a suite's trigger and checks, and each program's load
  // by each loader (the verifier dominates under TCG: ~50 ms a program on 7.3, seconds for large ones).
  // Each user object is also attached and run under the workload (a few seconds under TCG), by each loader.
  // Each command's own limit comes on top (also of a --timeout, which budgets the agent's work).
  const timeoutMs = (o.timeoutMs ?? 120_000 + suites.length * 60_000 + programCount * loaders.length * PROGRAM_BUDGET_MS + Math.max(0, ...arches.map((a) => objectsOn(a).length)) * loaders.length * OBJECT_RUN_BUDGET_MS + (corpus?.files.length ?? 0) * 2 * PROGRAM_BUDGET_MS) +
    execList.reduce((n, x) => n + x.plan.timeoutMs + EXEC_OVERHEAD_MS, 0);

  // What ran in the guests, for the boot-order history (guest times depend on it).
  const selection = createHash('sha256')
    .update(JSON.stringify({ suites: [...suitesByArch.values()].flat().map((s) => s.sha256), objects: userObjects.map((u) => u.sha256), modules: o.modules ?? [], corpus: !!corpus, loader: o.loader ?? 'ours', start: o.guestStart ?? 'tuned', ...(execList.length ? { exec: execList.map((x) => x.plan.command).join('\n'), program: [...execs.values()].flat().map((x) => x.plan.object.sha256) } : {}), ...(o.net ? { net: o.net } : {}) }))
    .digest('hex')
    .slice(0, 16);
  const history = new DurationHistory();
  const slots = Math.max(1, Math.floor(o.jobs) || 1);
  const order = bootOrder(entries, (e) => e.id, history.lookup(selection), slots);
  // With more guest slots than kernels, each kernel's objects are spread over several guests of
  // it (matrix/parts.ts): the suites, commands and CO-RE corpus go with the first.
  const parts = o.shell ? 1 : partsPerKernel(entries.length, slots, Math.max(0, ...arches.map((a) => objectsOn(a).length)));
  if (parts > 1) o.log(`matrix: each kernel's ${Math.max(0, ...arches.map((a) => objectsOn(a).length))} objects are shared by ${parts} guests of it, side by side`);
  /** The object a freplace of this one replaces into (the first, when several): its guest is this one's too. */
  const replacedFirst = (x: UserObject): UserObject | undefined => {
    const target = x.config ? replacedObjects(x.config)[0] : undefined;
    return target === undefined ? undefined : userObjects.find((y) => y.name === target);
  };
  /**
   * One guest: part `part` of kernel `e`'s work; or, after a guest of that part died inside an
   * object (matrix/resume.ts), a follow-up guest that redoes only the units in `only`.
   */
  interface GuestUnit { e: KernelEntry; part: number; id: string; only?: ReadonlySet<string> }
  const units: GuestUnit[] = order.flatMap((e) => Array.from({ length: parts }, (_, part) => ({ e, part, id: partId(e.id, part, parts) })));
  /** The guest that runs the kernel's suites, CO-RE corpus and commands (a follow-up redoes suites only). */
  const first = (u: GuestUnit) => u.part === 0 && !u.only;
  /** This guest's share of the kernel's objects. */
  const objectsOf = (u: GuestUnit, arch: DebianArch) => (u.only ? objectsOn(arch).filter((x) => u.only!.has(`object:${x.name}`)) : partOf(objectsOn(arch), u.part, parts, replacedFirst, (x) => objectWeight(x.programs.length)));
  /** This guest's suites: all of them in the first part's guest, those to redo in a follow-up. */
  const suitesOf = (u: GuestUnit, all: BuiltSuite[]) => (u.only ? all.filter((s) => u.only!.has(s.name)) : first(u) ? all : []);

  /** The --module names this kernel's package has (a kernel without one says so once and runs without it). */
  const userModules = async (k: KernelArtifacts): Promise<string[]> => {
    const have: string[] = [];
    for (const name of o.modules ?? []) {
      try {
        await store.modules(k, [name]);
        have.push(name);
      } catch (err) {
        o.log(`[${k.id}] module ${name} not loaded: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    return have;
  };
  type Prepared = { k: KernelArtifacts; kernel: KernelInfo; image: string } | { run: KernelRun };
  /** A kernel whose guest would have nothing to do: only the reference was asked for, and its arch has none. */
  const nothingToRun = (e: KernelEntry, kernel: KernelInfo): KernelRun | undefined =>
    loadersOn(archOf(e)).length === 0
      ? { kernel, guest: 'harness-error', detail: `${noReferenceOn(archOf(e), noReference.get(archOf(e)) ?? 'not built')}: not booted (--loader libbpf)`, accel: 'none', durationMs: 0, cells: [] }
      : undefined;
  /** Everything a guest needs before it boots: the kernel, its host truth and manifest, its image. */
  const prepare = async (u: GuestUnit, signal: AbortSignal): Promise<Prepared> => {
    const { e } = u;
    const t0 = performance.now();
    let k: KernelArtifacts | undefined;
    try {
      o.progress?.(u.id, 'fetching');
      k = await store.fetch(e, { signal, onStep: (step) => o.progress?.(u.id, step) });
    } catch (err) {
      if (signal.aborted) throw err;
      const detail = (err as Error).message.split('\n')[0]!;
      o.progress?.(u.id, `no kernel: ${detail}`);
      return { run: { kernel: kernelInfo(e), guest: 'no-kernel', detail, accel: 'none', durationMs: Math.round(performance.now() - t0), cells: [] } };
    }
    const kernel = kernelInfo(e, k);
    const arch = archOf(e);
    const skipped = nothingToRun(e, kernel);
    if (skipped) return { run: skipped };
    const { suites: allSuites, roots } = forArch(arch);
    // This guest's share: the suites go with the first part, the objects every parts-th one.
    const archSuites = suitesOf(u, allSuites);
    // The current libbpf built for this kernel's arch, at the same guest path on every arch.
    const reference = references.get(arch);
    const guestLibbpf = reference && { so: guestLibbpfPath(reference.version), version: reference.version, source: reference.source };
    try {
      // Modules the suites need where this kernel builds them as modules (spec `modules`).
      // Users' objects are attached and run under the workload: tc on lo and null_blk need theirs.
      const archObjects = objectsOf(u, arch);
      const archExecs = first(u) ? execs.get(arch) ?? [] : [];
      // The --exec command's plan (the shell's profile goes to its folder).
      const userExec = archExecs.find((x) => !x.plan.ofSuite);
      const forAttach = archObjects.length ? attachModules(readFileSync(k.config, 'utf8')) : [];
      const wanted = [...new Set([...modulesFor(suites.map((s) => s.spec), k.config, kernel.btf === 'kernel'), ...(await userModules(k)), ...forAttach])];
      const modules = wanted.length ? (await store.modules(k, wanted)).map((m) => ({ name: m.name, path: `/cm/modules/${m.name}.ko`, source: m.path })) : [];
      const net = o.net === 'user' ? await netPlan(store, k, o.log) : undefined;
      // The BTF the agent relocates against, indexed here: the package's (compared in the guest
      // with /sys/kernel/btf/vmlinux), or the pahole-made file it is given.
      const shipBtf = e.build?.btf !== 'none';
      const indexFile = shipBtf ? kernelBtfIndexFile({ path: k.btf, sha256: k.sha256.btf }, roots) : undefined;
      const btfIndex = indexFile ? { btf: e.build?.btf === 'pahole' ? GUEST_BTF : GUEST_BTF_COPY, index: GUEST_BTF_INDEX } : undefined;
      const manifest: RunManifest = {
        schema: MANIFEST_SCHEMA,
        kernel,
        suites: archSuites.map((s) => ({ spec: s.spec, object: `/cm/objects/${s.name}.bpf.o`, sha256: s.sha256 })),
        objects: archObjects.map((u) => ({ name: u.name, path: u.path, sha256: u.sha256, ...(u.config ? { config: u.config } : {}) })),
        // The truth keys of the suites this run compiled (also those of another --suites-dir),
        // module types read from the modules shipped to this guest.
        hostTruth: await hostTruthOf({ ...k, modules: modules.map((m) => m.source) }, truthKeys),
        suiteTimeoutMs,
        ...(e.build?.btf === 'pahole' ? { btf: { path: GUEST_BTF, source: 'pahole' as const } } : {}),
        // Where the reference could not be built, `both` runs ours only (the libbpf cells are the host's errors).
        loader: o.loader === 'both' && !reference ? 'ours' : (o.loader ?? 'ours'),
        ...(guestLibbpf ? { libbpf: guestLibbpf } : {}),
        ...(modules.length ? { modules: modules.map((m) => ({ name: m.name, path: m.path })) } : {}),
        ...(btfIndex ? { btfIndex } : {}),
        ...(corpus && first(u) ? { corpus: corpus.cases } : {}),
        ...(o.faults ? { faults: o.faults } : {}),
        ...(o.stepBudgets ? { stepBudgets: o.stepBudgets } : {}),
        ...(archExecs.length ? { execs: archExecs.map((x) => x.plan) } : {}),
        ...(net ? { net: net.plan } : {}),
      };
      const files: ImageFile[] = [
        { path: '/cm/run.json', data: JSON.stringify(manifest) },
        ...archSuites.map((s) => ({ path: `/cm/objects/${s.name}.bpf.o`, source: s.object })),
        ...archObjects.map((u) => ({ path: u.path, source: u.host })),
        ...(reference && guestLibbpf ? [{ path: guestLibbpf.so, source: reference.so }] : []),
        ...(first(u) ? corpus?.files ?? [] : []),
        ...modules.map((m) => ({ path: m.path, source: m.source })),
        ...(indexFile ? [{ path: GUEST_BTF_INDEX, source: indexFile }, ...(btfIndex!.btf === GUEST_BTF_COPY ? [{ path: GUEST_BTF_COPY, source: k.btf }] : [])] : []),
        ...(e.build?.btf === 'pahole' ? [{ path: GUEST_BTF, source: k.btf }] : []),
        ...execImageFiles(archExecs),
        ...(net?.files ?? []),
        ...(o.shell ? [{ path: SHELL_RC, data: shellRc({ kernelId: e.id, ...(userExec ? { exec: userExec.plan } : {}), ...(net ? { net: net.plan } : {}) }) }] : []),
      ];
      const image = arch === DEFAULT_ARCH
        ? await buildImage({ onStep: (step) => o.progress?.(u.id, step), files, kernelConfig: k.config, release: k.release, ...(o.guestStart ? { start: o.guestStart } : {}) })
        : await buildArchImage({ arch, files, kernelConfig: k.config, release: k.release, ...(guestLibbpf ? { sharedObjects: [guestLibbpf.so] } : {}), log: (line) => o.log(`[${u.id}] ${line}`) });
      if (signal.aborted) throw signal.reason;
      o.progress?.(u.id, 'ready, waiting for a guest slot');
      return { k, kernel, image: image.path };
    } catch (err) {
      if (signal.aborted) throw err;
      const detail = (err as Error).message.split('\n')[0]!;
      o.progress?.(u.id, `not booted: ${detail}`);
      return { run: { kernel, guest: 'harness-error', detail, accel: 'none', durationMs: Math.round(performance.now() - t0), cells: [] } };
    }
  };

  /** What one guest owes: the suites (first part only, or those a follow-up redoes) and its share of the objects. */
  const owedOf = (u: GuestUnit) => {
    const arch = archOf(u.e);
    const mine = new Set(objectsOf(u, arch).map((x) => `object:${x.name}`));
    const suitesHere = new Set(suitesOf(u, forArch(arch).suites).map((s) => s.name));
    return forArch(arch).owed.filter((w) => (w.unit.startsWith('object:') ? mine.has(w.unit) : suitesHere.has(w.unit)));
  };
  /**
   * The cells a guest owed and never sent: every loader's (of its arch) for the objects, ours for
   * the commands (held against the command cells sent only: a suite that failed whole still owes
   * its command's cell).
   */
  const owedCells = (u: GuestUnit, kernel: KernelInfo, sent: CellResult[], reason: string): CellResult[] => {
    const arch = archOf(u.e);
    const commands = first(u) ? execs.get(arch) ?? [] : [];
    const commandCell = (c: CellResult) => commands.some((x) => x.plan.suite === c.suite && x.plan.program === c.program);
    return [
      ...notRunCells(kernel, owedOf(u), loadersOn(arch), sent, reason),
      ...notRunCells(kernel, commands.map((x) => x.owed), ['ours'], sent.filter(commandCell), reason),
    ];
  };
  /** The libbpf cells of a kernel whose arch has no reference (its build failed): errors saying why. */
  const noReferenceCells = (u: GuestUnit, kernel: KernelInfo): CellResult[] => {
    const arch = archOf(u.e);
    const why = noReference.get(arch);
    return loaders.includes('libbpf') && why !== undefined ? notRunCells(kernel, owedOf(u), ['libbpf'], [], noReferenceOn(arch, why)) : [];
  };

  /** Where a guest that did not finish was, and the cells it had sent by then. */
  const endings = new WeakMap<KernelRun, { lastStep: AgentStep; sent: CellResult[] }>();
  const boot = async (u: GuestUnit, p: Prepared, signal: AbortSignal): Promise<KernelRun> => {
    if ('run' in p) return p.run;
    const { e } = u;
    const { k, kernel } = p;
    const arch = archOf(e);
    const accel = accelOf(arch);
    if (o.shell) {
      const t0 = performance.now();
      const lsm = bpfLsmAppend(readFileSync(k.config, 'utf8'));
      const cpus = e.cpus ?? o.cpus ?? 1;
      o.progress?.(u.id, 'shell');
      await o.shell({
        kernel, vmlinuz: k.vmlinuz, initrd: p.image, append: [lsm, 'cm.init=shell', `ENV=${SHELL_RC}`].filter(Boolean).join(' '),
        cpus, memoryMb: o.memoryMb ?? 1024, accel, arch, ...(o.net ? { net: o.net } : {}), signal,
      });
      return { kernel, guest: 'ok', accel: accel === 'auto' ? 'none' : accel, durationMs: Math.round(performance.now() - t0), cells: [] };
    }
    o.progress?.(u.id, 'booting');
    const cells: CellResult[] = [];
    const onMessage = (m: GuestMessage) => {
      if (m.t === 'hello') o.progress?.(u.id, `agent up at ${(m.bootMs / 1000).toFixed(1)} s`);
      else if (m.t === 'step') o.progress?.(u.id, `${m.step.unit === 'corpus' ? 'corpus case' : m.step.unit.startsWith('object:') ? 'object' : 'suite'} ${m.step.index}/${m.step.total} ${m.step.unit === 'corpus' || m.step.unit.startsWith('object:') ? m.step.object : m.step.unit}${m.step.program ? `: ${m.step.program}` : ''} (${m.step.phase})`);
      else if (m.t === 'result' && m.kind === 'cell') cells.push(m.data as CellResult);
      else if (m.t === 'log' && m.level !== 'info') o.log(`[${u.id}] ${m.msg}`);
    };
    const t0 = performance.now();
    let g: Awaited<ReturnType<typeof runGuest>>;
    let cpus = 1;
    try {
      // The BPF LSM is switched on where the kernel has it built but not in its default list (5.10).
      const lsm = bpfLsmAppend(readFileSync(k.config, 'utf8'));
      cpus = e.cpus ?? o.cpus ?? 1;
      g = await runGuest({
        kernelId: u.id, arch, vmlinuz: k.vmlinuz, initrd: p.image, accel, logDir, onMessage, signal, timeoutMs,
        memoryMb: o.memoryMb ?? 1024, cpus, ...(lsm ? { append: lsm } : {}), ...(o.net ? { net: o.net } : {}),
        ...(o.heartbeatTimeoutMs ? { heartbeatTimeoutMs: o.heartbeatTimeoutMs } : {}),
      });
    } catch (err) {
      if (!signal.aborted) throw err;
      // Interrupted while this guest ran: what it sent stays in the partial report, the rest is not run.
      const detail = 'the run was interrupted while this guest ran';
      o.progress?.(u.id, `aborted: ${cells.length} cell(s) received`);
      return { kernel, guest: 'aborted', detail, accel: accel === 'auto' ? 'none' : accel, durationMs: Math.round(performance.now() - t0), cells: [...cells, ...owedCells(u, kernel, cells, `not run: ${detail}`), ...noReferenceCells(u, kernel)] };
    }
    const sent = [...cells];
    if (g.verdict !== 'ok' && g.verdict !== 'no-btf') cells.push(...owedCells(u, kernel, cells, `not run: the guest ended (${g.verdict}) ${g.lastStep ? `after the agent's last step: ${describeStep(g.lastStep)}` : 'before the agent started any work'}`));
    cells.push(...noReferenceCells(u, kernel));
    // Another arch's build of a plain object: its cells on this kernel say so.
    for (const x of objectsOn(arch)) if (x.builtFor && x.builtFor.arch !== arch) markOtherArchBuild(cells, `object:${x.name}`, x.builtFor, arch);
    // What the guest actually relocated against (the agent looks before trusting the matrix).
    if (cells[0]?.kernel.btf) kernel.btf = cells[0].kernel.btf;
    const run: KernelRun = { kernel, guest: g.verdict, accel: g.accel, ...(cpus > 1 ? { cpus } : {}), bootMs: g.bootMs, durationMs: Math.round(g.durationMs), cells };
    if (g.verdict !== 'ok') {
      run.detail = g.detail;
      run.consoleTail = g.consoleTail;
    }
    if (g.lastStep) endings.set(run, { lastStep: g.lastStep, sent });
    const pass = cells.filter((c) => c.verdict === 'pass').length;
    o.progress?.(u.id, `${run.guest === 'ok' ? 'done' : run.guest} in ${(g.durationMs / 1000).toFixed(1)} s: ${pass}/${cells.length} cells pass${run.detail ? ` (${run.detail})` : ''}`);
    return run;
  };

  /**
   * A guest that died inside an object: the object is named in its cells, and the units it had
   * not finished go to a follow-up guest of the same kernel, in the same slot (matrix/resume.ts),
   * until one finishes or MAX_FOLLOW_UPS have run.
   */
  const followUps = async (u: GuestUnit, run: KernelRun, signal: AbortSignal): Promise<KernelRun> => {
    const killers = new Set<string>();
    let guest = u;
    let last = run;
    for (let round = 1; round <= MAX_FOLLOW_UPS && !signal.aborted; round++) {
      const ending = endings.get(last);
      const killer = ending && diedIn(last, ending.lastStep);
      if (!ending || !killer) break;
      killers.add(killer);
      // Every unit some loader did not finish (what notRunCells would list), but the objects guests died in.
      const redo = owedOf(guest).filter((w) => !killers.has(w.unit) && notRunCells(last.kernel, [w], loadersOn(archOf(u.e)), ending.sent, '').length > 0).map((w) => w.unit);
      if (!redo.length) break;
      o.log(`[${u.id}] the guest died (${last.guest}) in ${describeStep(ending.lastStep)}: its ${redo.length} unfinished unit(s) go to follow-up guest ${round}`);
      const death = { unit: killer, step: ending.lastStep, guest: last.guest };
      guest = { ...u, id: `${u.id}-again${round}`, only: new Set(redo) };
      last = await boot(guest, await prepare(guest, signal), signal);
      run = joinFollowUp(run, last, redo, death);
    }
    return run;
  };

  // Preparation runs ahead of the guests, `jobs` kernels at a time in boot order, so a guest slot
  // that frees up finds its next image ready instead of spending its time (and a core) on apt,
  // host truth and image building while the other slot's guest runs. A custom kernel's build
  // holds one lane; the others go on.
  const prepCtl = new AbortController();
  const onAbort = () => prepCtl.abort(o.signal?.reason);
  if (o.signal?.aborted) prepCtl.abort(o.signal.reason);
  else o.signal?.addEventListener('abort', onAbort, { once: true });
  const prepared = new Map(units.map((u) => {
    let settle!: { resolve: (p: Prepared) => void; reject: (err: unknown) => void };
    const promise = new Promise<Prepared>((resolve, reject) => (settle = { resolve, reject }));
    promise.catch(() => {}); // its slot sees the rejection; an abort must not leave it unhandled
    return [u.id, { promise, ...settle }] as const;
  }));
  let queue = 0;
  const lane = async (): Promise<void> => {
    while (queue < units.length) {
      const u = units[queue++]!;
      const slot = prepared.get(u.id)!;
      if (prepCtl.signal.aborted) {
        slot.reject(prepCtl.signal.reason);
        continue;
      }
      await prepare(u, prepCtl.signal).then(slot.resolve, slot.reject);
    }
  };
  const lanesDone = Promise.all(Array.from({ length: Math.min(slots, units.length) }, lane));

  // Guests land here as they finish (a kernel's parts by index), so an interrupted run still
  // reports what it saw; a kernel is whole when all its parts are in.
  const finished = new Map<string, KernelRun[]>();
  const kernelRun = (e: KernelEntry): KernelRun | undefined => {
    const got = finished.get(e.id)?.filter((r): r is KernelRun => r !== undefined);
    return got?.length ? mergeParts(got[0]!.kernel, got) : undefined;
  };
  const whole = (e: KernelEntry) => (finished.get(e.id)?.filter(Boolean).length ?? 0) === parts;
  try {
    await runPool(units, slots, async (u, signal) => {
      const r = await followUps(u, await boot(u, await prepared.get(u.id)!.promise, signal), signal);
      const runs = finished.get(u.e.id) ?? new Array<KernelRun>(parts);
      runs[u.part] = r;
      finished.set(u.e.id, runs);
      const done = entries.filter(whole);
      if (whole(u.e) && done.length < order.length) o.onKernelDone?.({ ...report, complete: false, finishedAt: new Date().toISOString(), kernels: done.map((x) => kernelRun(x)!) });
      return r;
    }, o.signal);
    report.complete = true;
  } catch (err) {
    if (!o.signal?.aborted) throw err;
    report.complete = false;
  } finally {
    // Nothing keeps working after the run: stop preparations nobody will boot, and wait for them.
    prepCtl.abort(new Error('matrix run finished'));
    o.signal?.removeEventListener('abort', onAbort);
    await lanesDone;
  }
  const runs = new Map(entries.flatMap((e) => {
    const r = kernelRun(e);
    return r ? [[e.id, r] as const] : [];
  }));
  if (!o.shell) history.record(selection, new Map([...runs].filter(([id, r]) => r.guest === 'ok' && whole(entries.find((e) => e.id === id)!)).map(([id, r]) => [id, r.durationMs])));
  report.kernels = entries.filter((e) => runs.has(e.id)).map((e) => runs.get(e.id)!);
  report.finishedAt = new Date().toISOString();
  return report;
}

/** A user's object as the guests get it: its bytes' sha256, where the guest finds it, its programs. */
export interface UserObject {
  /** Its cells' row (`object:<name>`): its own file name, or the plain object's it is another arch's build of (arch-objects.ts). */
  name: string;
  /** The file as given, without an arch qualifier. */
  host: string;
  path: string;
  sha256: string;
  programs: string[];
  /** `--object <arch>:<file>`: only that arch's kernels load it. */
  arch?: DebianArch;
  /** The arch its BTF shows it was compiled for (bpf_tracing.h's register types), when it shows one. */
  builtFor?: BuiltFor;
  /** Its config (`<object>.yaml` beside it, or the one --object-config names), checked against it. */
  config?: ObjectConfig;
  /** What loading it looks up in a kernel's BTF (loader/kernel-names.ts): the kernel BTF index the host ships answers these. */
  kernelNames?: string[];
}

/**
 * Reads every --object as `relocate` reads it, before anything boots: a missing or malformed one
 * is one line naming the file and exit 2, not a failure found again inside every guest. A path may
 * carry an arch (`arm64:x.bpf.o`: that arch's kernels only; arch-objects.ts pairs it with the
 * plain object of the same programs, whose config it takes when it has none of its own).
 * Corpus objects (`lenient`) may carry one too: a corpus's builds for each arch have the same file
 * names (harness/corpus/per-arch.ts), and share a row by that name (names are unique per arch, a
 * plain one's on every arch), not by their programs (a corpus has objects with the same programs).
 */
export function readUserObjects(paths: string[], configs: ReadonlyMap<string, string> = new Map(), opts: { lenient?: boolean; first?: number } = {}): UserObject[] {
  const names = new Map<string, Set<string>>();
  const nameKey = (arch?: DebianArch) => (opts.lenient && arch ? arch : '');
  const clashes = (n: string, arch?: DebianArch) => (nameKey(arch) ? [names.get(''), names.get(nameKey(arch))] : [...names.values()]).some((s) => s?.has(n));
  for (const [object, file] of configs) {
    if (!paths.includes(object)) throw new UsageError(`--object-config ${object}=${file}: ${object} is not one of the --object files`);
    if (!existsSync(file)) throw new UsageError(`--object-config ${object}=${file}: no such file`);
  }
  const specs = new Map<UserObject, ObjectSpec>();
  const read = paths.map((given, i): UserObject => {
    const { arch, path } = splitArchPrefix(given, opts.lenient ? 'corpus object' : '--object');
    const label = arch ? `${arch}:${path}` : path;
    if (!existsSync(path)) throw new UsageError(`${label}: no such object file`);
    const bytes = readFileSync(path);
    // Cells are keyed by the object's name: a second file of the same name is told apart by its folder.
    let name = basename(path);
    if (clashes(name, arch)) name = `${basename(dirname(path))}/${name}`;
    if (clashes(name, arch)) name = `${name}#${i + 1}`;
    names.set(nameKey(arch), (names.get(nameKey(arch)) ?? new Set<string>()).add(name));
    const guestPath = `/cm/user/${(opts.first ?? 0) + i}-${basename(path)}`;
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    let spec: ObjectSpec;
    try {
      spec = loadObjectSpec(bytes, path);
    } catch (err) {
      const line = (err as Error).message.split('\n')[0]!;
      // A corpus object our reader refuses still goes to the guests: its (object) cell says why.
      if (opts.lenient) return { name, host: path, path: guestPath, sha256, programs: [WHOLE_OBJECT], ...(arch ? { arch } : {}) };
      throw new FormatError(line.startsWith(path) ? line : `${path}: ${line}`);
    }
    const builtFor = objectBuiltFor(spec.btf);
    // (A corpus object's cells say so instead: markOtherArchBuild.)
    if (arch && builtFor && builtFor.arch !== arch && !opts.lenient) throw new UsageError(`--object ${label}: the object is ${describeBuild(builtFor)}, not an ${arch} one`);
    // Its config: named on the command line, or `<object>.yaml` beside it; every name it uses is
    // checked against the object here (conditions are evaluated in each guest).
    const file = configs.get(given) ?? (existsSync(configPathFor(path)) ? configPathFor(path) : undefined);
    const config = file ? readObjectConfig(file) : undefined;
    // A freplace program may replace a function of another object's program (target-program:
    // <object>:<program>): that object must be one of those before this one, which load first.
    const before = new Map([...specs].map(([x, s]) => [x.name, s]));
    if (config) checkObjectConfig(spec, config, { self: name, before, after: paths.slice(i + 1).map((x) => basename(x)) });
    const programs = spec.programs.map((p) => p.name);
    const u: UserObject = { name, host: path, path: guestPath, sha256, programs, ...(arch ? { arch } : {}), ...(builtFor ? { builtFor } : {}), ...(config ? { config } : {}), kernelNames: [...kernelLookupNames(spec)] };
    specs.set(u, spec);
    return u;
  });
  if (opts.lenient || !read.some((u) => u.arch)) return read;
  // Another arch's build of an object: its row, and its counterpart's config when it has none.
  const pairable = read.map((u) => ({ u, p: { name: u.name, given: u.host, programs: u.programs, ...(u.arch ? { arch: u.arch } : {}) } }));
  const rows = pairArchBuilds(pairable.map((x) => x.p));
  return pairable.map(({ u, p }) => {
    const row = rows.get(p)!;
    if (row === u.name) return u;
    const counterpart = read.find((x) => x.name === row);
    const config = u.config ?? counterpart?.config;
    if (config && !u.config) checkObjectConfig(specs.get(u)!, config);
    return { ...u, name: row, ...(config ? { config } : {}) };
  });
}

/**
 * A cell for every (unit, program, loader) the guest owed and never sent, carrying why: a hung,
 * crashed or timed-out guest keeps the cells it sent, and the rest are listed, not lost
 * (`error`). Also the cells a guest could not owe (`error`: no reference built for its arch).
 */
export function notRunCells(kernel: KernelInfo, owed: { unit: string; object: string; sha256: string; programs: string[] }[], loaders: LoaderName[], sent: CellResult[], reason: string, verdict: 'error' | 'expected-skip' = 'error'): CellResult[] {
  const have = new Set(sent.map((c) => `${c.loader}\u0000${c.suite}\u0000${c.program}`));
  // A unit that failed whole sends one WHOLE_OBJECT cell instead of its programs.
  const whole = new Set(sent.filter((c) => c.program === WHOLE_OBJECT).map((c) => `${c.loader}\u0000${c.suite}`));
  const out: CellResult[] = [];
  for (const loader of loaders) {
    for (const u of owed) {
      if (whole.has(`${loader}\u0000${u.unit}`)) continue;
      for (const program of u.programs) {
        if (have.has(`${loader}\u0000${u.unit}\u0000${program}`)) continue;
        out.push({
          schema: RESULT_SCHEMA, kernel, suite: u.unit, program, loader, object: { name: u.object, sha256: u.sha256 },
          verdict, reason, relocations: [], externs: [], checks: [], timings: { loadMs: 0, runMs: 0 },
        });
      }
    }
  }
  return out;
}

/** A cell counts against the run when it failed, errored, or skipped where it should have run. */
export function runPassed(r: RunReport): boolean {
  if (!r.complete) return false;
  return r.kernels.every((k) => k.guest === 'ok' && k.cells.length > 0 && k.cells.every((c) => c.verdict === 'pass' || c.verdict === 'expected-skip'));
}

export function readReport(file: string): RunReport {
  return JSON.parse(readFileSync(file, 'utf8')) as RunReport;
}
