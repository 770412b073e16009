// freplace into a program of ANOTHER object of the run, as libxdp's dispatcher or a tool replacing
// a function of an already running program does: `target-program: <object>:<program>` in the
// replacing object's config (fixtures/freplace_ext.bpf.yaml).
//  - on the host: what the config sets for both loaders, and the one-line exit-2 errors of
//    `corematrix matrix` for a target that cannot be (unknown object, an object after this one, a
//    missing program, a missing or static function), before any kernel is fetched;
//  - in 6.1 and 7.3 guests (TCG) through the matrix CLI with both loaders: the target object
//    (an XDP program on the guest's veth pair, fed 5 frames) stays loaded and attached while the
//    replacing object loads `new_verdict` against its program's fd, attaches it with a link, and
//    is run by feeding the target's hook again: the kernel counts the target's runs while the
//    replacement is in place, which are the replacement's. A replacement whose target did not
//    load fails saying so, for both loaders.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import type { ObjectSpec } from '../../harness/core/object/types.js';
import { applyObjectConfig, checkObjectConfig, libbpfSettingsFor, parseObjectConfig, replacedObjects } from '../../harness/loader/object-config.js';
import type { CellResult, RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { compileBpf, ensureBuilt } from '../helpers/tools.js';

const fixture = (name: string) => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));
const TARGET = 'freplace_target.bpf.o';
const EXT = 'freplace_ext.bpf.o';
/** What fixtures/freplace_ext.bpf.yaml says. */
const EXT_CONFIG = readFileSync(fixture('freplace_ext.bpf.yaml'), 'utf8');
const facts = { hasBtfFunction: () => false, hasKsym: () => false, kconfig: () => undefined, kernelVersion: [6, 1, 0] as const };

const tmp = mkdtempSync(join(tmpdir(), 'cm-freplace-cross-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let targetObj: string;
let extObj: string;
const spec = (path: string, name: string): ObjectSpec => loadObjectSpec(readFileSync(path), name);

beforeAll(() => {
  targetObj = compileBpf(fixture('freplace_target.bpf.c'));
  extObj = compileBpf(fixture('freplace_ext.bpf.c'));
});

describe('target-program: <object>:<program>, on the host', () => {
  it('names the other object and its program for ours, and hands libbpf the same (its fd is filled in the guest)', () => {
    const config = parseObjectConfig(EXT_CONFIG, 'freplace_ext.bpf.yaml');
    expect(config.programs.new_verdict).toEqual({ targetObject: TARGET, targetProgram: 'on_frame' });
    expect(replacedObjects(config)).toEqual([TARGET]);
    const original = spec(extObj, EXT);
    checkObjectConfig(original, config, { self: EXT, before: new Map([[TARGET, spec(targetObj, TARGET)]]), after: [] });
    const r = applyObjectConfig(original, config, facts);
    expect(r.spec.programs.find((p) => p.name === 'new_verdict')).toMatchObject({ attachProgram: `${TARGET}:on_frame`, attachTo: 'verdict' });
    expect(r.applied).toEqual([`program new_verdict: replaces verdict of program ${TARGET}:on_frame`]);
    expect(libbpfSettingsFor(original, r.spec).attachProgram).toEqual({ new_verdict: { object: TARGET, program: 'on_frame', function: 'verdict' } });
  });

  it('refuses a target that is not an <object>:<program>', () => {
    expect(() => parseObjectConfig('programs:\n  new_verdict: { target-program: "x.bpf.o:" }\n', 'e.yaml')).toThrow('e.yaml:2: programs.new_verdict.target-program: expected the name of a program of this object, not string "x.bpf.o:" (a program of another object of the run: <object>:<program>, e.g. dispatcher.bpf.o:dispatch)');
  });

  describe('corematrix matrix: one line, exit 2, before any kernel is fetched', () => {
    const matrix = (objects: string[]) => spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '6.1', '--suites', 'none', ...objects.flatMap((o) => ['--object', o]), '--out', join(tmp, 'out-bad')], { encoding: 'utf8' });
    /** The two objects in a folder of their own, the replacing one with `config` beside it. */
    const setup = (name: string, config: string, other = TARGET): { target: string; ext: string; yaml: string } => {
      const dir = mkdtempSync(join(tmp, `${name}-`));
      const target = join(dir, other);
      const ext = join(dir, EXT);
      copyFileSync(targetObj, target);
      copyFileSync(extObj, ext);
      writeFileSync(join(dir, 'freplace_ext.bpf.yaml'), config);
      return { target, ext, yaml: join(dir, 'freplace_ext.bpf.yaml') };
    };
    const refused = (objects: string[], message: string) => {
      const r = matrix(objects);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toBe(`corematrix: ${message}\n`);
    };
    beforeAll(() => ensureBuilt());

    it('an object that is not in the run', () => {
      const { ext, yaml } = setup('unknown', 'programs:\n  new_verdict:\n    target-program: dispatcher.bpf.o:on_frame\n');
      refused([ext], `${yaml}:3: programs.new_verdict.target-program: no object 'dispatcher.bpf.o' in this run before ${EXT} (objects: none)`);
    });

    it('the other object given after this one', () => {
      const { target, ext, yaml } = setup('after', EXT_CONFIG);
      refused([ext, target], `${yaml}:3: programs.new_verdict.target-program: ${TARGET} comes after ${EXT} on the command line: give --object ${TARGET} first (the program whose function is replaced is loaded before its replacement)`);
    });

    it('a program the other object does not have', () => {
      const { target, ext, yaml } = setup('program', `programs:\n  new_verdict:\n    target-program: ${TARGET}:on_packet\n`);
      refused([target, ext], `${yaml}:3: programs.new_verdict.target-program: no program 'on_packet' in ${TARGET} (programs: on_frame)`);
    });

    it("a function that is not in the other object's BTF, or is static there", () => {
      const missing = setup('function', `programs:\n  new_verdict:\n    target-program: ${TARGET}:on_frame\n    attach: decide\n`);
      refused([missing.target, missing.ext], `${missing.yaml}:3: programs.new_verdict.target-program: no function 'decide' in ${TARGET}'s BTF to replace (the replacement loads against on_frame's BTF, which is ${TARGET}'s)`);
      const local = setup('static', `programs:\n  new_verdict:\n    target-program: ${TARGET}:on_frame\n    attach: local_verdict\n`);
      refused([local.target, local.ext], `${local.yaml}:3: programs.new_verdict.target-program: 'local_verdict' is a static function of ${TARGET}: the kernel replaces global functions only (drop 'static')`);
    });
  });
});

// ─────────────────────────────── in the guests ───────────────────────────────

const KERNELS = ['6.1', '7.3'];
/** Frames fed into an XDP program's veth end after the workload (loader/attach.ts XDP_FRAMES). */
const FRAMES = 5;
/** A second pair whose target never loads (autoload off): its replacement fails, naming it. */
const UNLOADED = 'unloaded_target.bpf.o';
const EXT2 = 'freplace_ext2.bpf.o';

describe('freplace into another object, through the matrix, both loaders (6.1, 7.3)', () => {
  let report: RunReport;
  let out = '';
  beforeAll(() => {
    ensureBuilt();
    const dir = join(tmp, 'guest');
    mkdirSync(dir, { recursive: true });
    for (const [name, from] of [[TARGET, targetObj], [EXT, extObj], [UNLOADED, targetObj], [EXT2, extObj]] as const) copyFileSync(from, join(dir, name));
    copyFileSync(fixture('freplace_ext.bpf.yaml'), join(dir, 'freplace_ext.bpf.yaml'));
    writeFileSync(join(dir, 'unloaded_target.bpf.yaml'), 'programs:\n  on_frame: { autoload: false }\n');
    writeFileSync(join(dir, 'freplace_ext2.bpf.yaml'), `programs:\n  new_verdict:\n    target-program: ${UNLOADED}:on_frame\n`);
    const objects = [TARGET, EXT, UNLOADED, EXT2].flatMap((n) => ['--object', join(dir, n)]);
    ({ report, out } = runMatrixCli(['--kernels', KERNELS.join(','), '--suites', 'none', ...objects, '--loader', 'both', '--jobs', '1'], join(tmp, 'out')));
  }, 1_200_000);

  const cell = (kernel: string, object: string, loader: 'ours' | 'libbpf', program: string): CellResult => {
    const c = report.kernels.find((k) => k.kernel.id === kernel)?.cells.find((x) => x.object.name === object && x.loader === loader && x.program === program);
    if (!c) throw new Error(`no ${loader} cell for ${object} ${program} on ${kernel}:\n${out}`);
    return c;
  };

  it('both loaders load the replacement against the other object\'s program, attach it, and it runs as often as its target', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(KERNELS.map((k) => `${k}:ok`));
    for (const k of KERNELS) {
      for (const loader of ['ours', 'libbpf'] as const) {
        const target = cell(k, TARGET, loader, 'on_frame');
        expect(target.verdict, `${k} ${loader}: ${target.reason}`).toBe('pass');
        // The kernel's count of the target in its own run: the frames fed into its veth end.
        expect(target.attach, `${k} ${loader}`).toMatchObject({ status: 'attached', runCount: FRAMES });
        const ext = cell(k, EXT, loader, 'new_verdict');
        console.log(`[measure] ${k} ${loader}: target ${JSON.stringify(target.attach)}; replacement ${JSON.stringify(ext.attach)}`);
        expect(ext.verdict, `${k} ${loader}: ${ext.reason}`).toBe('pass');
        // The kernel keeps no count for a replacement: the target's runs while it was attached
        // (the same frames fed again) are its runs, the same number as the target's own.
        expect(ext.attach, `${k} ${loader}`).toMatchObject({
          status: 'attached',
          via: loader === 'ours' ? 'BPF_LINK_CREATE' : 'bpf_program__attach',
          note: `runs inside ${TARGET}:on_frame, which the kernel counts instead (it ran ${target.attach!.runCount} times)`,
        });
        expect(ext.attach!.runCount, `${k} ${loader}`).toBeUndefined();
      }
      const ours = cell(k, EXT, 'ours', 'new_verdict');
      expect(ours.config).toEqual([`program new_verdict: replaces verdict of program ${TARGET}:on_frame`]);
      expect(ours.attach!.target).toBe(`freplace verdict in ${TARGET}:on_frame`);
      // libbpf in the same guest, loading it with set_attach_target on its own load of the target: the same verdict and translated code.
      expect(cell(k, EXT, 'libbpf', 'new_verdict').checks[0], k).toMatchObject({ observed: 'loaded', truth: 'loaded', ok: true });
      expect(cell(k, TARGET, 'libbpf', 'on_frame').checks[0], k).toMatchObject({ observed: 'loaded', truth: 'loaded', ok: true });
    }
  });

  it('a replacement whose target program did not load fails in one line naming it, for both loaders', () => {
    for (const k of KERNELS) {
      expect(cell(k, UNLOADED, 'ours', 'on_frame').verdict).toBe('expected-skip');
      const ours = cell(k, EXT2, 'ours', 'new_verdict');
      expect(ours.verdict).toBe('fail');
      expect(ours.reason).toBe(`error: program 'new_verdict': the program it replaces a function of, '${UNLOADED}:on_frame', is not loaded: ${UNLOADED} did not load on_frame`);
      const lib = cell(k, EXT2, 'libbpf', 'new_verdict');
      console.log(`[measure] ${k} unloaded target: ours ${ours.reason}; libbpf ${lib.verdict} ${JSON.stringify(lib.checks[0])}`);
      // libbpf refuses it too (its own one-line reason), which is the same verdict as ours.
      expect(lib.checks[0], `${k}: ${lib.reason}`).toMatchObject({ truth: 'error', ok: true });
      expect(lib.verdict, `${k}: ${lib.reason}`).toBe('pass');
    }
  });
});
