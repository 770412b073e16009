// corematrix matrix: the main job.
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../core/errors.js';
import { ensureDir, mkdirFailure, repoRoot, writeFileAtomic } from '../paths.js';
import type { RunReport } from '../results.js';
import type { Command } from './command.js';
import { tryLock } from '../lock.js';

const help = `usage: corematrix matrix [options]

Boots every selected kernel under QEMU, loads the same compiled suite objects in each with our
relocating loader, checks what the programs observed against ground truth measured in the guest,
and writes reports/<run-id>/ (report.json, junit.xml, summary.md, index.html).

  --kernels <ids|globs>  comma-separated matrix ids or globs (default: all of kernels/matrix.yaml)
  --kernels newest       instead of the matrix: the Debian kernels newer than the baseline's
                         (--baseline) or, without one, than the matrix's today, for each entry's
                         series and flavour, searched in the matrix's suites, their -security
                         suites and experimental; ids like 6.12.118 or 6.1.180-rt. Nothing newer:
                         says so and writes an empty report (exit 0)
  --shard <i/n>          run only shard i of n: kernel k (0-based, in matrix order) runs in shard
                         (k mod n)+1; the report records the shard for 'report merge'
  --arch <amd64|arm64>   only the selected kernels of this arch (with --shard: a split of that
                         arch's kernels, merged apart from the other arch's)
  --baseline <report>    a previous report.json (or its directory): after the run, compare with it
                         (kernels outside this run's selection are left out), print the comparison,
                         write comparison.md and comparison.json next to the reports
  --suites <names>       comma-separated suite names (default: all in the suites folder; 'none'
                         for only --object files)
  --suites-dir <dir>     take the suites from this folder instead of suites/: one <name>/ per
                         suite holding prog.bpf.c and spec.yaml; a spec with 'header: joined'
                         compiles against the joined header of the matrix's Debian kernels
                         (corematrix btf join), else against 6.1's vmlinux.h
  --object-config <file.o>=<config.yaml>
                         configure that --object before load as its tool would (autoload,
                         attach targets, map sizes, .rodata/.data/.bss values; conditions on each
                         kernel): docs/object-config.md. Without it, <file>.yaml beside the
                         object (x.bpf.o -> x.bpf.yaml) is used when it exists
  --object <file.o>      also load this clang-built object in every guest (repeatable): each
                         program is reported as loaded, rejected (with the verifier log) or
                         relocation failed (which field); a.o+b.o links the objects first, as
                         bpftool gen object does (corematrix link)
  --object <arch>:<file.o>
                         an object built for that arch's kernels only (amd64, arm64; e.g.
                         arm64:x.arm64.bpf.o, compiled with -D__TARGET_ARCH_arm64). It replaces,
                         on that arch, the plain --object with the same program names, and its
                         cells are that object's row (the report lists both sha256s, each kernel's
                         cells say which ran). A plain object whose BTF shows another arch's build
                         (x86's pt_regs di/si, arm64's user_pt_regs) still runs on that arch, but
                         its cells there fail saying so. docs/arm64.md
  --module <name>        load this kernel module in every guest whose kernel package has it,
                         before the agent reads BTF (repeatable): an --object that uses types
                         only a module has relocates against /sys/kernel/btf/<module> (suites
                         name the modules they need in their spec)
  --loader <ours|libbpf|both>
                         which loader loads the objects in each guest: ours (the suites run
                         their checks), libbpf (the current one, built from the newest Debian
                         linux-source), or both (each object loaded by both, the whole object as
                         its tool would, and the kernel's translated instructions compared per
                         program; a difference fails the cell and names the first differing
                         instruction). Default: both when CI is set, else ours
  --corpus <name>        also run a public corpus, fetched at run time (repeatable):
                           core-reloc  the kernel's CO-RE selftest corpus (test_core_reloc_*
                                       against every btf__core_reloc_* target, from Debian's
                                       linux-source-6.12) with both loaders; a cell per case
                           debian      the BPF objects Debian ships (libxdp1, xdp-tests; newest
                                       version in bookworm, trixie, sid), added as --object files
                           cilium      cilium/ebpf's testdata/*.c (Debian's golang-github-cilium-ebpf-dev,
                                       newest in sid, trixie, bookworm), compiled with clang-19
                           selftests   the kernel's BPF selftests programs (progs/*.c of the newest
                                       linux-source-X.Y, compiled with clang-19), as --object files;
                                       selftests:N/M takes the N-th of M slices (stable by name)
                         debian, cilium and selftests are built for each arch of the run's kernels
                         (arm64: Debian's arm64 packages; -D__TARGET_ARCH_arm64 and an arm64
                         vmlinux.h): each arch's kernels load that arch's build in the object's
                         row, as with --object <arch>:; builds that are the same bytes on every
                         arch ship once. docs/arm64.md
  --exec <command>       after the agent's work, run this command in every guest (/bin/sh -c, as
                         root, PATH /cm/files first): its exit status, duration and output tail
                         are one cell per kernel, suite exec:<command>, passing on exit 0.
                         docs/exec.md
  --files <path>         a host folder or file to ship for --exec (repeatable): it is
                         /cm/files/<basename> in the guest, the command runs in the first folder;
                         the libraries its ELF executables need are shipped with it, and an
                         absolute host path to a shipped program in the command is run from there.
                         <arch>:<path> ships to that arch's kernels only, in place of the plain
                         path of the same base name. An ELF program or library of another arch
                         than a kernel's is refused before boot; on arm64 kernels the libraries
                         of aarch64 files come from Debian's arm64 packages (trixie)
  --exec-packages <pkgs> comma-separated Debian library packages of a foreign arch (arm64) to
                         take the --files' libraries from, beyond those found by a library's name
                         (libcap.so.2 -> libcap2)
  --exec-timeout <s>     the command's limit (default 300): then its processes are killed and its
                         cell fails, saying so; added to the guest's budget
  --net <user|none>      user: the guests get QEMU's user-mode network for the command
                         (10.0.2.15/24; the host is 10.0.2.2, DNS 10.0.2.3). Default none
  --jobs <n>             guests in parallel (default: number of cores); kernels are prepared
                         ahead in as many lanes and boot in the order that, by the last run's
                         guest times, finishes soonest (<cache>/matrix/durations.json)
  --accel <auto|kvm|tcg> acceleration; auto uses KVM only after a probe boot proves it works
  --cpus <n>             vCPUs per guest where the matrix entry sets no \`cpus:\` (default 1)
  --memory <MiB>         guest memory (default 1024)
  --timeout <seconds>    per-guest budget (default: 120 s + 60 s per suite + 5 s per program and
                         loader; --exec adds its --exec-timeout + 30 s to it); a guest silent for
                         30 s is hung, except while the verifier works on one program (up to
                         300 s, the agent's watchdog beats for it)
  --out <dir>            report directory (default: reports/<run-id>, a new folder per run even
                         when two runs start in the same millisecond); a folder another live
                         run is writing is refused
  --list                 print the kernels the run would boot (id, series, flavour, pin) and exit

Progress goes to stderr: one line per kernel redrawn in place on a terminal, plain lines when
piped or when CI is set.

Exit status: 0 when every cell met its expectation, the cross-kernel diff found no broken
invariant and no unexpected difference (and, with --baseline, no regression), 1 otherwise,
2 for bad usage.`;

/**
 * A new report folder under `root` named after the run id; when another run made that folder in
 * the same millisecond, `<id>-2`, `<id>-3`… (mkdir without `recursive` is the atomic claim).
 */
export function claimRunDir(root: string, runId: string): { dir: string; runId: string } {
  mkdirSync(root, { recursive: true });
  for (let i = 1; ; i++) {
    const id = i === 1 ? runId : `${runId}-${i}`;
    const dir = join(root, id);
    try {
      mkdirSync(dir);
      return { dir, runId: id };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || i >= 1000) throw err;
    }
  }
}

/** Removes a report folder a run made but never wrote to (it failed before any guest): only the lock and empty folders in it. */
export function removeUnusedRunDir(dir: string): void {
  const unused = (d: string): boolean =>
    readdirSync(d, { withFileTypes: true }).every((e) => (e.isDirectory() ? unused(join(d, e.name)) : d === dir && e.name === OUT_LOCK));
  try {
    if (unused(dir)) rmSync(dir, { recursive: true });
  } catch {
    /* leave it: nothing is lost either way */
  }
}

/** The lock a run holds on its report folder, so two runs never write one folder (a mixed report). */
export const OUT_LOCK = '.corematrix-run.lock';

/**
 * Takes `<dir>/.corematrix-run.lock` (our pid inside) or throws naming the live run holding it;
 * a dead holder's lock is taken over. Returns the release function.
 */
export function lockOutDir(dir: string): () => void {
  const got = tryLock(join(dir, OUT_LOCK));
  if ('holder' in got) throw new UsageError(`${dir}: another corematrix run (pid ${got.holder}) is writing its report there; use another --out`);
  return got.release;
}

/** Lines per section of comparison.md (and the terminal): CI appends it to step summaries, capped at 1 MiB. */
const COMPARISON_LINES = 200;

/** A `--corpus` value the matrix knows. */
export function isCorpusName(c: string): boolean {
  return c === 'core-reloc' || c === 'debian' || c === 'cilium' || /^selftests(:\d+\/\d+)?$/.test(c);
}

export const matrixCommand: Command = {
  name: 'matrix',
  summary: 'boot the kernel matrix and run every suite in each guest',
  help,
  async run(args) {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        options: {
          kernels: { type: 'string' }, suites: { type: 'string' }, jobs: { type: 'string' }, accel: { type: 'string' },
          timeout: { type: 'string' }, out: { type: 'string' }, object: { type: 'string', multiple: true }, 'object-config': { type: 'string', multiple: true }, module: { type: 'string', multiple: true }, 'suites-dir': { type: 'string' },
          shard: { type: 'string' }, arch: { type: 'string' }, baseline: { type: 'string' }, list: { type: 'boolean' }, loader: { type: 'string' }, corpus: { type: 'string', multiple: true },
          cpus: { type: 'string' }, memory: { type: 'string' },
          exec: { type: 'string' }, files: { type: 'string', multiple: true }, 'exec-timeout': { type: 'string' }, net: { type: 'string' }, 'exec-packages': { type: 'string' },
        },
      });
    } catch (err) {
      throw new UsageError(`matrix: ${(err as Error).message.split('\n')[0]}`);
    }
    const { values } = parsed;
    const accel = (values.accel ?? 'auto') as 'auto' | 'kvm' | 'tcg';
    if (!['auto', 'kvm', 'tcg'].includes(accel)) throw new UsageError(`--accel must be auto, kvm or tcg, not '${values.accel}'`);
    const loader = (values.loader ?? (process.env.CI ? 'both' : 'ours')) as 'ours' | 'libbpf' | 'both';
    if (!['ours', 'libbpf', 'both'].includes(loader)) throw new UsageError(`--loader must be ours, libbpf or both, not '${values.loader}'`);
    const jobs = values.jobs ? Number(values.jobs) : undefined;
    if (jobs !== undefined && (!Number.isInteger(jobs) || jobs < 1)) throw new UsageError(`--jobs must be a positive integer, not '${values.jobs}'`);
    for (const m of values.module ?? []) if (!/^[a-z0-9][a-z0-9_-]*$/.test(m)) throw new UsageError(`--module '${m}' is not a kernel module name (lower case letters, digits, - and _)`);
    const cpus = values.cpus !== undefined ? Number(values.cpus) : undefined;
    if (cpus !== undefined && (!Number.isInteger(cpus) || cpus < 1 || cpus > 64)) throw new UsageError(`--cpus must be an integer from 1 to 64, not '${values.cpus}'`);
    const memoryMb = values.memory !== undefined ? Number(values.memory) : undefined;
    if (memoryMb !== undefined && (!Number.isInteger(memoryMb) || memoryMb < 256 || memoryMb > 65536)) throw new UsageError(`--memory must be MiB from 256 to 65536, not '${values.memory}'`);
    const timeout = values.timeout ? Number(values.timeout) : undefined;
    if (timeout !== undefined && !(timeout > 0)) throw new UsageError(`--timeout must be a number of seconds, not '${values.timeout}'`);
    const { checkExecOptions } = await import('../matrix/exec.js');
    const { exec, net } = checkExecOptions({ exec: values.exec, files: values.files, execTimeout: values['exec-timeout'], net: values.net, packages: values['exec-packages'] });
    const { parseShard, shardOf } = await import('../matrix/shard.js');
    const { archOf, isDebianArch } = await import('../kernels/arch.js');
    if (values.arch !== undefined && !isDebianArch(values.arch)) throw new UsageError(`--arch must be amd64 or arm64, not '${values.arch}'`);
    const onlyArch = values.arch as import('../kernels/arch.js').DebianArch | undefined;
    const shard = values.shard !== undefined ? { ...parseShard(values.shard), ...(onlyArch ? { arch: onlyArch } : {}) } : undefined;
    const selectors = values.kernels ? values.kernels.split(',').map((s) => s.trim()).filter(Boolean) : ['all'];
    const newest = selectors.includes('newest');
    if (newest && selectors.length > 1) throw new UsageError(`--kernels newest cannot be combined with other kernels ('${values.kernels}')`);

    const suitesDirOpt = values['suites-dir'] !== undefined ? resolve(values['suites-dir']) : undefined;
    if (suitesDirOpt !== undefined) {
      // Before anything is fetched or a report folder is made.
      const { listSuites } = await import('../suites/build.js');
      if (!existsSync(suitesDirOpt) || !statSync(suitesDirOpt).isDirectory()) throw new UsageError(`--suites-dir ${values['suites-dir']}: no such folder`);
      if (listSuites(suitesDirOpt).length === 0 && values.suites !== 'none') throw new UsageError(`--suites-dir ${values['suites-dir']}: no suite in it (a suite is a folder <name>/ holding prog.bpf.c and spec.yaml)`);
    }
    const { readRunReport } = await import('../report/merge.js');
    // Read the baseline first: a bad one fails in a second, not after the run.
    const baseline = values.baseline !== undefined ? await readRunReport(values.baseline) : undefined;
    const { progressSink, liveTerminal } = await import('../matrix/progress.js');
    const sink = progressSink({ write: (s) => process.stderr.write(s), live: !values.list && liveTerminal(process.stderr), columns: () => process.stderr.columns || 80 });

    const { loadMatrix, selectKernels } = await import('../kernels/matrix.js');
    let entries = newest ? [] : selectKernels(loadMatrix(), selectors);
    let found: import('../matrix/newest.js').NewKernel[] = [];
    if (newest) {
      const { KernelStore } = await import('../kernels/store.js');
      const { discoverNewest, newestSuites } = await import('../matrix/newest.js');
      const store = new KernelStore({ log: sink.log });
      found = await discoverNewest({ store, baseline, log: sink.log });
      const than = baseline ? `the baseline ${values.baseline}` : 'the matrix';
      if (found.length === 0) process.stdout.write(`newest: no Debian kernel newer than ${than} in ${newestSuites(store.matrix()).join(', ')}\n`);
      for (const n of found)
        process.stdout.write(`newest: ${n.entry.id}: ${n.package} ${n.entry.version} (${n.entry.suites[0]}) is newer than ${n.supersedes} ${n.was} (${n.wasFrom === 'baseline' ? 'baseline' : 'matrix'})\n`);
      entries = found.map((n) => n.entry);
    }
    if (onlyArch) entries = entries.filter((e) => archOf(e) === onlyArch);
    if (shard) entries = shardOf(entries, shard);
    if (exec) {
      // An ELF file of another arch than a kernel's is refused here, before a kernel is fetched.
      const { checkExecArches } = await import('../matrix/exec.js');
      checkExecArches(exec, entries.map((e) => ({ id: e.id, arch: archOf(e) })));
    }
    if (values.list) {
      for (const e of entries) process.stdout.write(`${e.id}\t${e.series}\t${e.flavour}\t${e.version ?? ''}\t${e.suites.join(',')}\n`);
      return 0;
    }

    const corpora = values.corpus ?? [];
    for (const c of corpora) if (!isCorpusName(c)) throw new UsageError(`--corpus must be core-reloc, debian, cilium, selftests or selftests:N/M, not '${c}'`);
    const { runMatrix, runPassed, readUserObjects } = await import('../matrix/run.js');
    // Bad objects and configs are found here, before a kernel is fetched or a report folder is made.
    const objectConfigs = new Map<string, string>();
    for (const pair of values['object-config'] ?? []) {
      const eq = pair.indexOf('=');
      if (eq <= 0 || eq === pair.length - 1) throw new UsageError(`--object-config takes <object.o>=<config.yaml>, not '${pair}'`);
      objectConfigs.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    // `--object a.o+b.o`: linked here first (its config, if given, is keyed by what was written).
    const { isLinkSpec, linkedObject } = await import('../matrix/linked-objects.js');
    const { splitArchPrefix } = await import('../matrix/arch-objects.js');
    const objects = (values.object ?? []).map((given) => {
      // `arm64:a.o+b.o`: the link of that arch's objects, for that arch.
      const { arch, path: o } = splitArchPrefix(given, '--object');
      if (!isLinkSpec(o)) return given;
      const linked = `${arch ? `${arch}:` : ''}${linkedObject(o)}`;
      const config = objectConfigs.get(given);
      if (config !== undefined) {
        objectConfigs.delete(given);
        objectConfigs.set(linked, config);
      }
      sink.log(`--object ${o}: linked into ${linked}`);
      return linked;
    });
    readUserObjects(objects, objectConfigs);
    // The corpora built for each arch of the run's kernels: each arch's kernels load that arch's
    // build in the object's row, as with --object <arch>:<file> (harness/corpus/per-arch.ts).
    const { corpusObjects: corpusObjectsFor } = await import('../corpus/per-arch.js');
    const corpusArches = entries.length ? [...new Set(entries.map(archOf))] : [archOf({})];
    const { objects: corpusObjects } = await corpusObjectsFor(corpora.filter((c) => c !== 'core-reloc'), corpusArches, sink.log);
    const { defaultJobs } = await import('../vm/pool.js');
    const { writeReports, compareRuns, formatComparison } = await import('../report/index.js');
    let runId = new Date().toISOString().replace(/[:.]/g, '-').replace('Z', '');
    let outDir: string;
    let made = true;
    try {
      if (values.out !== undefined) {
        outDir = resolve(values.out);
        // Node's recursive mkdir never returns under /proc (it spins at 100 % CPU): refuse both
        // kernel file systems before touching them.
        if (/^\/(proc|sys)(\/|$)/.test(outDir)) throw new UsageError(`--out ${values.out}: ${outDir.split('/')[1]} is a kernel file system, not a place for reports`);
        made = ensureDir(outDir, `--out ${values.out}`) !== undefined;
      } else ({ dir: outDir, runId } = claimRunDir(join(repoRoot(), 'reports'), runId));
    } catch (err) {
      throw mkdirFailure(err, 'reports folder', join(repoRoot(), 'reports'));
    }
    // Held until the process exits (also after an error or a signal); a killed run's lock is stale.
    process.on('exit', lockOutDir(outDir));
    const ctl = new AbortController();
    const stop = (sig: string) => {
      if (ctl.signal.aborted) return;
      sink.log(`corematrix: ${sig}: stopping guests, writing a partial report`);
      ctl.abort(new Error(sig));
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    const t0 = performance.now();
    let report: RunReport;
    let early: Promise<void> = Promise.resolve();
    try {
      report = await runMatrix({
        kernels: selectors,
        entries,
        ...(shard ? { shard } : {}),
        suites: values.suites === 'none' ? [] : values.suites ? values.suites.split(',').map((s) => s.trim()).filter(Boolean) : undefined,
        objects,
        objectConfigs,
        corpusObjects,
        ...(values.module?.length ? { modules: values.module } : {}),
        ...(suitesDirOpt !== undefined ? { suitesDir: suitesDirOpt } : {}),
        loader,
        corpus: corpora.includes('core-reloc'),
        jobs: jobs ?? defaultJobs(),
        accel,
        ...(cpus !== undefined ? { cpus } : {}),
        ...(memoryMb !== undefined ? { memoryMb } : {}),
        ...(exec ? { exec } : {}),
        ...(net ? { net } : {}),
        outDir,
        runId,
        timeoutMs: timeout ? timeout * 1000 : undefined,
        signal: ctl.signal,
        log: sink.log,
        progress: sink.progress,
        // The finished kernels' report is written as each one ends (marked incomplete), one write at a time.
        onKernelDone: (partial) => {
          early = early.then(() => writeReports(partial, outDir)).then(
            () => sink.log(`matrix: ${partial.kernels.length} kernel(s) done, report so far: ${join(outDir, 'index.html')}`),
            (err) => sink.log(`matrix: writing the report so far failed: ${(err as Error).message.split('\n')[0]}`),
          );
        },
      });
      await early;
    } catch (err) {
      if (made) removeUnusedRunDir(outDir);
      throw err;
    } finally {
      sink.done();
    }
    const { files } = await writeReports(report, outDir);
    const cells = report.kernels.flatMap((k) => k.cells);
    const count = (v: string) => cells.filter((c) => c.verdict === v).length;
    // A kernel that could not be fetched has no cells: its reason is said here, or the counts
    // alone ("0 fail, 0 error") would read as a clean run.
    const unfetched = report.kernels.filter((k) => k.guest === 'no-kernel');
    const notFetched = unfetched.length
      ? `${unfetched.length === report.kernels.length ? 'no kernel could be fetched' : `${unfetched.length} of ${report.kernels.length} kernels could not be fetched`}: ` +
        `${unfetched.map((k) => `${k.kernel.id}: ${k.detail ?? 'no reason recorded'}`).join('; ')}\n`
      : '';
    process.stdout.write(
      `${report.complete ? '' : 'INCOMPLETE '}run ${runId}${shard ? ` (shard ${shard.index}/${shard.count})` : ''}: ${report.kernels.length} kernels, ${cells.length} cells: ` +
        `${count('pass')} pass, ${count('fail')} fail, ${count('error')} error, ${count('skip')} skip, ${count('expected-skip')} expected skip ` +
        `in ${((performance.now() - t0) / 1000).toFixed(1)} s\n${notFetched}${files.map((f) => `  ${f}`).join('\n')}\n`,
    );
    // The cross-kernel diff is part of the verdict: a broken invariant (one object, one truth) or
    // an unexpected difference fails the run like a failed cell does.
    const { diffKernels } = await import('../report/diff.js');
    const diff = diffKernels(report);
    if (!diff.ok) process.stdout.write(`cross-kernel diff: ${diff.invariants.held}/${diff.invariants.checked} invariants held, ${diff.violations.length} violation(s), ${diff.unexpected.length} unexpected difference(s) (see summary.md)\n`);
    let regression = false;
    if (baseline) {
      const { baselineFor, baselineForNew } = await import('../matrix/newest.js');
      const base = newest ? baselineForNew(baseline, shard ? found.filter((n) => entries.includes(n.entry)) : found) : baselineFor(baseline, entries.map((e) => e.id));
      const cmp = compareRuns(base, report);
      const text = formatComparison(cmp, { limit: COMPARISON_LINES });
      writeFileAtomic(join(outDir, 'comparison.md'), `# Comparison with ${values.baseline}\n\n\`\`\`\n${text}\n\`\`\`\n`);
      writeFileAtomic(join(outDir, 'comparison.json'), JSON.stringify(cmp, null, 2) + '\n');
      process.stdout.write(`${text}\n  ${join(outDir, 'comparison.md')}\n  ${join(outDir, 'comparison.json')}\n`);
      regression = cmp.regression;
    }
    return runPassed(report) && diff.ok && !regression ? 0 : 1;
  },
};
