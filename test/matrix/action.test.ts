// action.yml (the composite GitHub action) cannot run here, so, as for the nightly workflow: it
// parses and its steps fit together (ids, outputs, cache keys); every input reaches a step, and
// every input that is a `corematrix matrix` option becomes one the BUILT CLI's --help lists; the
// steps' own commands (scripts/action.sh, run the way the steps run it, with the env they set)
// print in a dry run the exact commands for several input combinations, and those command lines
// are accepted by the CLI (--list appended); the KVM commands are the ones a user without access
// to the device would run. Then for real: `setup` in a fresh copy of the repository (npm ci there),
// and `run` on 7.3 (TCG) from a workspace, once passing and once failing against a baseline, each
// writing its summary to a file standing in for $GITHUB_STEP_SUMMARY.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import yaml from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CellResult, RunReport } from '../../harness/results.js';
import { compileBpf, ensureBuilt } from '../helpers/tools.js';

const ROOT = resolve('.');

interface Step { name?: string; id?: string; if?: string; uses?: string; shell?: string; run?: string; env?: Record<string, string>; with?: Record<string, string> }
interface Action {
  name: string;
  inputs: Record<string, { description: string; default?: string }>;
  outputs: Record<string, { description: string; value: string }>;
  runs: { using: string; steps: Step[] };
}
const text = readFileSync(join(ROOT, 'action.yml'), 'utf8');
const action = yaml.load(text) as Action;
const script = readFileSync(join(ROOT, 'scripts/action.sh'), 'utf8');
const stepOf = (id: string): Step => action.runs.steps.find((s) => s.id === id)!;

/** A step's env as the runner sets it: `${{ inputs.x }}` is the given value, else the default. */
function stepEnv(step: Step, inputs: Record<string, string>): Record<string, string> {
  const value = (name: string) => inputs[name] ?? action.inputs[name]?.default ?? '';
  return Object.fromEntries(Object.entries(step.env ?? {}).map(([k, v]) => [k, v.replace(/\$\{\{\s*inputs\.([\w-]+)\s*\}\}/g, (_, n: string) => value(n))]));
}

interface Ran { code: number; stdout: string; stderr: string }
/**
 * Runs a step's `run:` line as the runner would (bash, the step's env, $GITHUB_ACTION_PATH set),
 * without this test's own INPUT_, GITHUB_ and RUNNER_ variables.
 */
function runStep(id: string, inputs: Record<string, string>, env: Record<string, string>, opts: { uid?: number; path?: string; timeoutMs?: number } = {}): Ran {
  // This machine's own variables (its CA certificates for npm, the cache location) stay, as a runner's would.
  const own = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(INPUT_|GITHUB_|RUNNER_|COREMATRIX_ACTION_|CI$)/.test(k))) as Record<string, string>;
  const base: Record<string, string> = { ...own, ...(opts.path ? { PATH: opts.path } : {}), ...env, ...stepEnv(stepOf(id), inputs) };
  const cmd = stepOf(id).run!;
  const argv = opts.uid !== undefined ? ['/usr/bin/setpriv', [`--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups', '/bin/bash', '-c', cmd]] as const : ['/bin/bash', ['-c', cmd]] as const;
  const r = spawnSync(argv[0], [...argv[1]], { env: base, encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000, cwd: env.GITHUB_WORKSPACE ?? tmpdir() });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const scratch = mkdtempSync(join(tmpdir(), 'cm-action-'));
chmodSync(scratch, 0o755); // the dry run as an unprivileged user reads a file in here
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A fresh workspace folder holding the given files (path → content or a file to copy). */
function workspace(name: string, files: Record<string, { text: string } | { copy: string }> = {}): string {
  const ws = join(scratch, name);
  for (const [p, f] of Object.entries(files)) {
    mkdirSync(dirname(join(ws, p)), { recursive: true });
    if ('text' in f) writeFileSync(join(ws, p), f.text);
    else copyFileSync(f.copy, join(ws, p));
  }
  mkdirSync(ws, { recursive: true });
  return ws;
}

const dry = (ws: string, inputs: Record<string, string>, actionPath = ROOT) =>
  runStep('run', inputs, { COREMATRIX_ACTION_DRY_RUN: '1', GITHUB_ACTION_PATH: actionPath, GITHUB_WORKSPACE: ws });

const help = (sub: string[]): string => spawnSync(process.execPath, ['bin/corematrix.js', ...sub, '--help'], { encoding: 'utf8' }).stdout;
const flagListed = (h: string, flag: string) => new RegExp(`(^|[\\s,])${flag}(?=[\\s,=]|$)`, 'm').test(h);

// Inputs that are `corematrix matrix` options: a value and the arguments it must become.
const OPTION_INPUTS: Record<string, { value: string; args: string[] }> = {
  objects: { value: 'build/a.bpf.o', args: ['--object', 'build/a.bpf.o'] },
  'object-configs': { value: 'build/a.bpf.o=a.yaml', args: ['--object-config', 'build/a.bpf.o=a.yaml'] },
  kernels: { value: '6.1, 5.10', args: ['--kernels', '6.1,5.10'] },
  suites: { value: 'none', args: ['--suites', 'none'] },
  'suites-dir': { value: 'my-suites', args: ['--suites-dir', 'my-suites'] },
  modules: { value: 'nf_tables', args: ['--module', 'nf_tables'] },
  loader: { value: 'libbpf', args: ['--loader', 'libbpf'] },
  baseline: { value: 'base/report.json', args: ['--baseline', 'base/report.json'] },
  corpus: { value: 'debian', args: ['--corpus', 'debian'] },
  accel: { value: 'tcg', args: ['--accel', 'tcg'] },
  cpus: { value: '2', args: ['--cpus', '2'] },
  memory: { value: '2048', args: ['--memory', '2048'] },
  jobs: { value: '3', args: ['--jobs', '3'] },
  timeout: { value: '600', args: ['--timeout', '600'] },
  out: { value: 'reports/x', args: ['--out'] }, // made absolute: checked in the dry runs below
};
// Inputs that shape how the action runs, not which options corematrix gets.
const ACTION_INPUTS = ['args', 'working-directory', 'artifact-name', 'node-version', 'cache'];

beforeAll(() => ensureBuilt());

describe('action.yml', () => {
  it('parses; a composite action whose steps, ids, outputs and cache keys fit together', () => {
    expect(action.name).toBe('corematrix');
    expect(action.runs.using).toBe('composite');
    const ids = new Set(action.runs.steps.map((s) => s.id).filter(Boolean));
    const refs = (s: string) => [...s.matchAll(/steps\.([\w-]+)\.outputs\.([\w-]+)/g)].map((m) => [m[1]!, m[2]!] as const);
    // Every step output a step or an action output reads is one the script writes.
    const written = new Set([...script.matchAll(/^\s*output ([\w-]+) /gm)].map((m) => m[1]!));
    for (const [id, out] of refs(text)) {
      expect(ids.has(id), id).toBe(true);
      if (id === 'setup' || id === 'run') expect(written.has(out), `${id}.${out}`).toBe(true);
    }
    expect(written).toEqual(new Set(['cache-dir', 'cache-prefix', 'report-dir', 'exit-code', 'cache-key']));
    for (const s of action.runs.steps) {
      if (s.uses) expect(s.uses).toMatch(/^actions\/[a-z-]+(\/[a-z]+)?@v\d+$/);
      // The variable, not ${{ github.action_path }}: that names the host's path in a container job.
      if (s.run) {
        expect(s.shell).toBe('bash');
        expect(s.run).toBe(`bash "$GITHUB_ACTION_PATH/scripts/action.sh" ${s.id}`);
      }
    }
    expect(JSON.stringify(action.runs)).not.toMatch(/\$\{\{\s*github\.action_path/);
    expect(action.runs.steps.filter((s) => s.run).map((s) => s.id)).toEqual(['setup', 'run']);
    expect(action.outputs['report-dir']!.value).toBe('${{ steps.run.outputs.report-dir }}');
    expect(action.outputs['exit-code']!.value).toBe('${{ steps.run.outputs.exit-code }}');
    const upload = action.runs.steps.find((s) => s.uses?.startsWith('actions/upload-artifact'))!;
    expect(upload.with!.path).toBe('${{ steps.run.outputs.report-dir }}');
    expect(upload.if).toContain('!cancelled()'); // a failed matrix still uploads its reports
    const restore = action.runs.steps.find((s) => s.uses?.startsWith('actions/cache/restore'))!;
    const save = action.runs.steps.find((s) => s.uses?.startsWith('actions/cache/save'))!;
    expect(restore.id).toBe('restore');
    expect(save.with!.path).toBe(restore.with!.path);
    expect(restore.with!['restore-keys']).toBe('${{ steps.setup.outputs.cache-prefix }}');
    expect(save.with!.key).toBe('${{ steps.run.outputs.cache-key }}');
    // The order the runner needs: node first, the store restored before the run, saved after it.
    const order = action.runs.steps.map((s) => s.id ?? s.uses!.replace(/@.*/, ''));
    expect(order).toEqual(['actions/setup-node', 'setup', 'restore', 'run', 'actions/upload-artifact', 'actions/cache/save']);
  });

  it('every input reaches a step; every INPUT_ the script reads is set by the step that runs it', () => {
    const inputs = Object.keys(action.inputs).sort();
    expect(inputs).toEqual([...Object.keys(OPTION_INPUTS), ...ACTION_INPUTS].sort());
    const envName = (i: string) => `INPUT_${i.toUpperCase().replace(/-/g, '_')}`;
    const runEnv = stepOf('run').env!;
    for (const i of [...Object.keys(OPTION_INPUTS), 'args', 'working-directory']) {
      expect(runEnv[envName(i)], i).toBe(`\${{ inputs.${i} }}`);
      expect(script, i).toContain(envName(i));
    }
    expect(Object.keys(runEnv).sort()).toEqual([...Object.keys(OPTION_INPUTS), 'args', 'working-directory'].map(envName).sort());
    expect([...new Set(script.match(/INPUT_[A-Z_]+/g))].every((v) => v in runEnv), 'script reads an INPUT_ the run step does not set').toBe(true);
    expect(stepOf('setup').env).toEqual({ INPUT_KERNELS: '${{ inputs.kernels }}' }); // the cache key's part
    // The others are read by the action itself.
    const steps = action.runs.steps.map((s) => JSON.stringify(s)).join('\n');
    for (const i of ['artifact-name', 'node-version', 'cache']) expect(steps, i).toContain(`inputs.${i}`);
  });

  it('every option input becomes a flag the built CLI lists in matrix --help, with its value', () => {
    const h = help(['matrix']);
    const ws = workspace('one-input', { 'build/a.bpf.o': { text: '' }, 'base/report.json': { text: '{}' } });
    for (const [input, { value, args }] of Object.entries(OPTION_INPUTS)) {
      expect(flagListed(h, args[0]!), `${input} → ${args[0]} is not in matrix --help`).toBe(true);
      const r = dry(ws, { [input]: value });
      expect(r.code, r.stderr).toBe(0);
      const cmd = r.stdout.split('\n')[1]!;
      expect(cmd, input).toContain(` ${args.join(' ')}`);
    }
  });
});

describe('scripts/action.sh run, dry run: the exact corematrix command lines', () => {
  const ws = workspace('dry', {
    'build/a.bpf.o': { text: '' },
    'build/net/b.bpf.o': { text: '' },
    'build/net/c.bpf.o': { text: '' },
    'build/notes.txt': { text: '' },
    'configs/a.yaml': { text: 'programs: {}\n' },
    'sub/dir/x.bpf.o': { text: '' },
  });
  cpSync(join(ROOT, 'test/faults/fixtures/suites'), join(ws, 'sub/my-suites'), { recursive: true });
  const node = `node ${ROOT}/bin/corematrix.js matrix`;
  const cases: { name: string; inputs: Record<string, string>; cd: string; cmd: string }[] = [
    { name: 'no inputs: the defaults', inputs: {}, cd: ws, cmd: `${node} --accel auto --out ${ws}/corematrix-report` },
    {
      name: 'objects as globs (** too) and a path, configs, kernels over lines and commas, suites none, both loaders, guest size',
      inputs: { objects: 'build/**/*.bpf.o\nsub/dir/x.bpf.o', 'object-configs': 'build/a.bpf.o=configs/a.yaml', kernels: '6.1, 5.10\n7.*', suites: 'none', loader: 'both', cpus: '2', memory: '2048' },
      cd: ws,
      cmd: `${node} --kernels '6.1,5.10,7.*' --suites none --object build/a.bpf.o --object build/net/b.bpf.o --object build/net/c.bpf.o --object sub/dir/x.bpf.o --object-config build/a.bpf.o=configs/a.yaml --loader both --accel auto --cpus 2 --memory 2048 --out ${ws}/corematrix-report`,
    },
    {
      name: 'a working directory, suites from a folder, modules, kvm, jobs, timeout, a relative out, extra args quoted',
      inputs: { 'working-directory': `${ws}/sub`, kernels: '6.1', objects: 'dir/*.bpf.o', 'suites-dir': 'my-suites', suites: 'no-such-kprobe', modules: 'nf_tables, sch_ingress', accel: 'kvm', jobs: '1', timeout: '300', out: 'out/r1', args: `--shard 1/2 --module 'null_blk'` },
      cd: `${ws}/sub`,
      cmd: `${node} --kernels 6.1 --suites no-such-kprobe --suites-dir my-suites --object dir/x.bpf.o --module nf_tables --module sch_ingress --accel kvm --jobs 1 --timeout 300 --out ${ws}/sub/out/r1 --shard 1/2 --module null_blk`,
    },
    {
      name: 'an absolute out, a baseline that is not there yet (a warning, no --baseline), quoted args with blanks',
      inputs: { kernels: '5.10', baseline: 'prev/report.json', out: `${ws}/abs-out`, args: `--exec "bpftool prog list" --cpus=1` },
      cd: ws,
      cmd: `${node} --kernels 5.10 --accel auto --out ${ws}/abs-out --exec 'bpftool prog list' --cpus=1`,
    },
  ];

  for (const c of cases)
    it(c.name, () => {
      const r = dry(ws, c.inputs);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`cd ${c.cd}\n${c.cmd}\n`);
      if (c.inputs.baseline) expect(r.stderr).toBe(`::warning::corematrix-action: no baseline at prev/report.json: nothing to compare with\n`);
    });

  it('the printed command lines are accepted by the built CLI (run with --list instead of booting)', () => {
    const listable = cases.filter((c) => !c.cmd.includes('--exec')); // --exec is not a matrix option yet
    for (const c of listable) {
      const words = c.cmd.split(' ').slice(2).map((w) => w.replace(/^'(.*)'$/, '$1'));
      const r = spawnSync(process.execPath, [join(ROOT, 'bin/corematrix.js'), ...words, '--list'], { cwd: c.cd, encoding: 'utf8', env: { ...process.env, CI: '1' } });
      expect(r.status, `${c.name}: ${r.stderr}`).toBe(0);
      expect(r.stdout.split('\n').filter(Boolean).length, c.name).toBeGreaterThan(0);
    }
  });

  it('the cache key names what the kernel store holds: the same store the same key, a new kernel a new key', () => {
    const cache = join(scratch, 'store');
    const keyOf = (): string => {
      const outputs = join(scratch, 'key-outputs');
      writeFileSync(outputs, '');
      const r = runStep('run', { kernels: '6.1,7.*' }, { COREMATRIX_ACTION_DRY_RUN: '1', GITHUB_ACTION_PATH: ROOT, GITHUB_WORKSPACE: ws, GITHUB_OUTPUT: outputs, COREMATRIX_CACHE: cache });
      expect(r.code, r.stderr).toBe(0);
      return /^cache-key=(.*)$/m.exec(readFileSync(outputs, 'utf8'))![1]!;
    };
    // What find lists (path and size, the folders too), sorted bytewise, hashed: computed here apart.
    const expected = (): string => {
      const lines: string[] = [];
      for (const d of ['kernels/manifests', 'libbpf']) {
        if (!existsSync(join(cache, d))) continue;
        for (const p of [d, ...readdirSync(join(cache, d)).map((f) => `${d}/${f}`)]) lines.push(`${p} ${statSync(join(cache, p)).size}`);
      }
      lines.sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1));
      return `corematrix-Linux-6.1-7._-${createHash('sha256').update(lines.join('\n')).digest('hex').slice(0, 16)}`;
    };
    const empty = keyOf();
    expect(empty).toBe(expected());
    mkdirSync(join(cache, 'kernels/manifests'), { recursive: true });
    writeFileSync(join(cache, 'kernels/manifests/6.1@6.1.176-1.json'), '{}');
    const one = keyOf(); // no libbpf folder (loader ours): still a key of its own
    expect(one).toBe(expected());
    expect(one).not.toBe(empty);
    expect(keyOf()).toBe(one);
    writeFileSync(join(cache, 'kernels/manifests/7.3@7.3.4-1~bpo13+1.json'), '{}');
    mkdirSync(join(cache, 'libbpf/linux-source-7.3'), { recursive: true });
    const two = keyOf();
    expect(two).toBe(expected());
    expect(two).not.toBe(one);
  });

  it('a glob that matches nothing, and args that cannot be split, fail the step (exit 2, one line) before corematrix runs', () => {
    const none = dry(ws, { objects: 'build/*.bpf.o\nout/*.o' });
    expect(none.code).toBe(2);
    expect(none.stdout).toBe('');
    expect(none.stderr).toBe(`::error::corematrix-action: objects: 'out/*.o' matches no file in ${ws}\n`);
    const quote = dry(ws, { args: `--exec 'half` });
    expect(quote.code).toBe(2);
    expect(quote.stderr).toBe(`::error::corematrix-action: args: cannot split '--exec 'half' (unmatched single quote)\n`);
  });
});

describe('scripts/action.sh setup, dry run: KVM, packages, npm ci', () => {
  // A stand-in for /dev/kvm: root's, mode 0600, so only root can use it.
  const kvm = join(scratch, 'kvm');
  writeFileSync(kvm, '');
  chmodSync(kvm, 0o600);
  // PATHs for an unprivileged user: the tools the script needs, with or without sudo and udevadm
  // (stubs that fail if called: a dry run only asks whether they exist).
  const bin = join(scratch, 'bin');
  const withRoot = join(scratch, 'bin-sudo');
  mkdirSync(bin);
  mkdirSync(withRoot);
  for (const t of ['bash', 'dirname', 'id', 'sed', 'tr']) symlinkSync(spawnSync('sh', ['-c', `command -v ${t}`], { encoding: 'utf8' }).stdout.trim(), join(bin, t));
  symlinkSync(process.execPath, join(bin, 'node'));
  for (const t of ['sudo', 'udevadm']) {
    writeFileSync(join(withRoot, t), '#!/bin/sh\nexit 99\n');
    chmodSync(join(withRoot, t), 0o755);
  }
  const npm = `npm --prefix ${ROOT} ci --no-audit --no-fund`;
  const setup = (env: Record<string, string>, opts: { uid?: number; path?: string } = {}) =>
    runStep('setup', { kernels: '6.1,7.*' }, { COREMATRIX_ACTION_DRY_RUN: '1', GITHUB_ACTION_PATH: ROOT, ...env }, opts);

  it('as root with a usable device: nothing to do for KVM; setup.mjs and npm ci printed; the cache outputs', () => {
    const outputs = join(scratch, 'setup-outputs');
    writeFileSync(outputs, '');
    const r = setup({ COREMATRIX_ACTION_KVM: kvm, GITHUB_OUTPUT: outputs, COREMATRIX_CACHE: '/var/cache/cm' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`node ${ROOT}/scripts/setup.mjs\n${npm}\n`);
    expect(r.stderr).toBe(`corematrix-action: ${kvm} is usable; corematrix's accelerator probe decides whether guests use it\n`);
    expect(readFileSync(outputs, 'utf8')).toBe('cache-dir=/var/cache/cm\ncache-prefix=corematrix-Linux-6.1-7._-\n');
  });

  it('no device: guests run under TCG', () => {
    const r = setup({ COREMATRIX_ACTION_KVM: join(scratch, 'no-kvm') });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe(`corematrix-action: no ${scratch}/no-kvm on this runner: guests run under TCG\n`);
  });

  it('a device the user cannot open, sudo and udev at hand (GitHub\'s hosted runners): the udev rule, reload, trigger', () => {
    const r = setup({ COREMATRIX_ACTION_KVM: kvm, HOME: scratch }, { uid: 65534, path: `${withRoot}:${bin}` });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      `sudo -n tee /etc/udev/rules.d/99-corematrix-kvm.rules <<< 'KERNEL=="kvm", GROUP="kvm", MODE="0666"'\n` +
        'sudo -n udevadm control --reload-rules\n' +
        'sudo -n udevadm trigger --name-match=kvm\n' +
        `${npm}\n`,
    );
    // Not root: setup.mjs only reads, so the dry run ran it (every package is here).
    expect(r.stderr).toBe('corematrix setup: all system packages present\n');
  });

  it('a device the user cannot open and no sudo: TCG, said once', () => {
    const r = setup({ COREMATRIX_ACTION_KVM: kvm, HOME: scratch }, { uid: 65534, path: bin });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${npm}\n`);
    expect(r.stderr).toBe(`corematrix-action: ${kvm} is not usable by nobody and there is no root (no sudo): guests run under TCG\ncorematrix setup: all system packages present\n`);
  });

  it('the apt-get command it would run through sudo is the one scripts/setup.mjs prints', () => {
    const setupMjs = readFileSync(join(ROOT, 'scripts/setup.mjs'), 'utf8');
    expect(setupMjs).toContain('run as root:\\n  ${cmd}');
    expect(setupMjs).toMatch(/const cmd = `apt-get update && /);
    const sed = /sed -n '([^']+)'/.exec(script)![1]!;
    const sample = 'corematrix setup: missing Debian packages: cpio, lz4\nrun as root:\n  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cpio lz4\n';
    expect(spawnSync('sed', ['-n', sed], { input: sample, encoding: 'utf8' }).stdout).toBe('apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cpio lz4\n');
  });
});

describe('scripts/action.sh for real: setup in a fresh copy, then tiny matrices on 7.3 (TCG)', () => {
  // The action's folder as a user's workflow gets it: the committed tree plus the action's own
  // files (which may not be committed yet), no node_modules, no dist.
  const copy = join(scratch, 'action');
  const ws = join(scratch, 'ws');
  const summary = join(scratch, 'step-summary.md');
  const outputs = join(scratch, 'run-outputs');
  const objectConfigH = createHash('sha256').update(readFileSync(join(ROOT, 'test/loader/fixtures/object_config.h'))).digest('hex').slice(0, 12);
  const CONFIG = 'programs:\n  on_open_fentry:\n    autoload: { btf-function: bpf_loop }\n  on_open_kprobe:\n    autoload: { not: { btf-function: bpf_loop } }\n  on_open_bare:\n    attach: do_sys_openat2\n';
  const inputs = { objects: 'build/**/*.bpf.o', 'object-configs': 'build/opensnoop.bpf.o=configs/opensnoop.yaml', kernels: '7.3', suites: 'none', loader: 'ours', accel: 'tcg' };
  const env = () => ({ CI: 'true', GITHUB_ACTION_PATH: copy, GITHUB_WORKSPACE: ws, GITHUB_STEP_SUMMARY: summary, GITHUB_OUTPUT: outputs });
  const readOutputs = () => Object.fromEntries(readFileSync(outputs, 'utf8').split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  let setup: Ran;
  let setupSeconds = 0;
  let setupOutputs: Record<string, string> = {};
  const cells = (report: RunReport, object: string): Record<string, CellResult['verdict']> =>
    Object.fromEntries(report.kernels[0]!.cells.filter((c) => c.object.name === object).map((c) => [c.program, c.verdict]));

  beforeAll(() => {
    mkdirSync(copy);
    const archive = spawnSync('sh', ['-c', `git -C ${ROOT} archive HEAD | tar -x -C ${copy}`], { encoding: 'utf8' });
    expect(archive.status, archive.stderr).toBe(0);
    for (const f of ['action.yml', 'scripts/action.sh']) copyFileSync(join(ROOT, f), join(copy, f));
    workspace('ws', {
      'build/opensnoop.bpf.o': { copy: compileBpf(join(ROOT, 'test/loader/fixtures/object_config.bpf.c'), [`-DOBJECT_CONFIG_H_SHA=${objectConfigH}`]) },
      'configs/opensnoop.yaml': { text: CONFIG },
    });
    // The setup step, once, as the action runs it first (the runs below need its npm ci).
    writeFileSync(outputs, '');
    const t0 = performance.now();
    setup = runStep('setup', inputs, env(), { timeoutMs: 300_000 });
    setupSeconds = (performance.now() - t0) / 1000;
    setupOutputs = readOutputs();
  }, 300_000);

  it('setup: the device left as it is (root), packages present, npm ci and the build in the action folder', () => {
    expect(setup.code, `${setup.stdout}\n${setup.stderr}`).toBe(0);
    expect(setup.stdout).toContain('corematrix setup: all system packages present');
    expect(existsSync(join(copy, 'node_modules/koffi'))).toBe(true);
    expect(existsSync(join(copy, 'dist/corematrix.cjs'))).toBe(true);
    expect(setupOutputs['cache-prefix']).toBe('corematrix-Linux-7.3-');
    console.log(`action setup (npm ci + build in a fresh copy): ${setupSeconds.toFixed(1)} s`);
  });

  it('run, passing: the command the dry run prints, exit 0, summary.md appended to the step summary, the outputs', () => {
    writeFileSync(summary, 'an earlier step\n');
    writeFileSync(outputs, '');
    const printed = dry(ws, inputs, copy);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toBe(`cd ${ws}\nnode ${copy}/bin/corematrix.js matrix --kernels 7.3 --suites none --object build/opensnoop.bpf.o --object-config build/opensnoop.bpf.o=configs/opensnoop.yaml --loader ours --accel tcg --out ${ws}/corematrix-report\n`);
    const t0 = performance.now();
    const r = runStep('run', inputs, env(), { timeoutMs: 300_000 });
    const s = (performance.now() - t0) / 1000;
    expect(r.code, `${r.stdout}\n${r.stderr.slice(-3000)}`).toBe(0);
    expect(r.stderr).toContain(`corematrix-action: in ${ws}: ${printed.stdout.split('\n')[1]}\n`);
    const out = join(ws, 'corematrix-report');
    const md = readFileSync(join(out, 'summary.md'), 'utf8');
    expect(md).toMatch(/^# ✅ corematrix /);
    expect(readFileSync(summary, 'utf8')).toBe(`an earlier step\n${md}\n`);
    const o = readOutputs();
    expect(o['report-dir']).toBe(out);
    expect(o['exit-code']).toBe('0');
    expect(o['cache-key']).toMatch(/^corematrix-Linux-7\.3-[0-9a-f]{16}$/);
    // The config given as an input was applied in the guest: 7.3 has bpf_loop, so fentry, not kprobe.
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as RunReport;
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`)).toEqual(['7.3:ok']);
    expect(cells(report, 'opensnoop.bpf.o')).toEqual({ on_open_fentry: 'pass', on_open_kprobe: 'expected-skip', on_open_bare: 'pass', on_enter_openat: 'pass', pass: 'pass' });
    console.log(`action run, 7.3 TCG, one object: ${s.toFixed(1)} s`);
  }, 300_000);

  it('run, failing against the baseline: exit 1, an error annotation, summary.md then comparison.md in the step summary', () => {
    copyFileSync(compileBpf(join(ROOT, 'test/faults/fixtures/oob.bpf.c')), join(ws, 'build/oob.bpf.o'));
    writeFileSync(summary, '');
    writeFileSync(outputs, '');
    const t0 = performance.now();
    const r = runStep('run', { ...inputs, baseline: 'corematrix-report/report.json', out: 'second' }, env(), { timeoutMs: 300_000 });
    const s = (performance.now() - t0) / 1000;
    expect(r.code, `${r.stdout}\n${r.stderr.slice(-3000)}`).toBe(1);
    expect(r.stderr).toContain(`--object build/oob.bpf.o --object build/opensnoop.bpf.o`);
    expect(r.stderr).toContain(`::error::corematrix matrix failed (exit 1): see the step summary and the reports in ${ws}/second\n`);
    const md = readFileSync(join(ws, 'second/summary.md'), 'utf8');
    const cmp = readFileSync(join(ws, 'second/comparison.md'), 'utf8');
    expect(md).toMatch(/^# ❌ corematrix /);
    expect(cmp).toMatch(/REGRESSION/);
    expect(readFileSync(summary, 'utf8')).toBe(`${md}\n${cmp}\n`);
    expect(readOutputs()['exit-code']).toBe('1');
    const report = JSON.parse(readFileSync(join(ws, 'second/report.json'), 'utf8')) as RunReport;
    expect(cells(report, 'oob.bpf.o')).toEqual({ read_past_value: 'fail' });
    console.log(`action run, 7.3 TCG, two objects and a baseline: ${s.toFixed(1)} s`);
  }, 300_000);

  it('run, cancelled: the SIGTERM the step gets reaches corematrix, whose partial report still lands in the step summary', async () => {
    writeFileSync(summary, '');
    writeFileSync(outputs, '');
    const step = stepOf('run');
    const child = spawn('/bin/bash', ['-c', step.run!], { env: { ...process.env, ...env(), ...stepEnv(step, { ...inputs, out: 'cancelled' }) }, cwd: ws, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    // Stopped while the guest works on the object: the agent is up, the cell not yet sent.
    await new Promise<void>((resolve) => child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      if (/\[7\.3\] agent up at/.test(err)) resolve();
    }));
    child.kill('SIGTERM'); // the step's shell only, as a runner stopping the step would start
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code, err.slice(-3000)).toBe(1);
    expect(err).toContain('corematrix: SIGTERM: stopping guests, writing a partial report');
    const md = readFileSync(join(ws, 'cancelled/summary.md'), 'utf8');
    expect(md).toMatch(/INCOMPLETE|incomplete/);
    expect(readFileSync(summary, 'utf8')).toBe(`${md}\n`);
    expect(readOutputs()['exit-code']).toBe('1');
    const report = JSON.parse(readFileSync(join(ws, 'cancelled/report.json'), 'utf8')) as RunReport;
    expect(report.complete).toBe(false);
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`)).toEqual(['7.3:aborted']);
  }, 300_000);

  it('run, bad input: exit 2, and the step summary says so instead of repeating an older summary.md in the same folder', () => {
    writeFileSync(summary, '');
    const r = runStep('run', { ...inputs, cpus: '0' }, env());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('corematrix: --cpus must be an integer from 1 to 64');
    expect(r.stderr).toContain('::error::corematrix matrix did not run (exit 2, bad input): see the messages above\n');
    expect(existsSync(join(ws, 'corematrix-report/summary.md'))).toBe(true);
    expect(readFileSync(summary, 'utf8')).toBe('## corematrix\n\n`corematrix matrix` exited 2 before it wrote a summary; its messages are in the step log.\n\n');
  });
});
