// `matrix --exec`: the user's own command in every guest, after the agent's work, as one cell per
// kernel; `--net user`; `corematrix shell`. Real guests (TCG), 5.10 and 7.3, and programs nobody
// here wrote:
//  - Debian's bpftool (/usr/sbin/bpftool, shipped with the library the base layer lacks) probes
//    each kernel: exit 0 everywhere, and its answers differ where the kernels do;
//  - a libbpf C program, compiled here against libbpf-dev's static library, loads two of our
//    suite objects in the same guests as our loader: its verdicts agree with our cells;
//  - failing, missing and runaway commands are failing cells that say why (exit status, output
//    tail, the limit that killed them);
//  - with --net user a guest fetches a page from an HTTP server of this test on QEMU's gateway;
//  - `corematrix shell 7.3` answers a command on its stdin and powers off with Ctrl-D's twin.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileHash } from '../../harness/images/base.js';
import { runMatrix } from '../../harness/matrix/run.js';
import type { CellResult, KernelRun, RunReport } from '../../harness/results.js';
import { buildSuites } from '../../harness/suites/build.js';
import { validateRunReport } from '../../harness/report/validate.js';
import { ensureBuilt, runCli } from '../helpers/tools.js';

const KERNELS = ['5.10', '7.3'];
const tmp = mkdtempSync(join(tmpdir(), 'cm-exec-'));
beforeAll(() => ensureBuilt());
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const execCell = (k: KernelRun): CellResult | undefined => k.cells.find((c) => c.suite.startsWith('exec:'));
/** Everything about a kernel's run a failed expectation should show. */
const why = (k: KernelRun) => `${k.kernel.id}: guest ${k.guest} ${k.detail ?? ''}\n${JSON.stringify(execCell(k) ?? k.cells, null, 1).slice(0, 3000)}\n${k.consoleTail ?? ''}`;
const readReport = (dir: string): RunReport => validateRunReport(JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')), 'report.json');

async function matrix(name: string, kernels: string[], o: Partial<Parameters<typeof runMatrix>[0]>): Promise<RunReport> {
  const t0 = performance.now();
  const r = await runMatrix({ kernels, suites: [], jobs: 1, accel: 'tcg', outDir: join(tmp, name), runId: name, log: () => {}, ...o });
  console.log(`[measure] ${name}: ${Math.round(performance.now() - t0)} ms; ${r.kernels.map((k) => `${k.kernel.id} guest ${k.guest} in ${k.durationMs} ms, command ${execCell(k)?.timings.runMs ?? '–'} ms`).join('; ')}`);
  return r;
}

describe('usage (no guest)', () => {
  it.each([
    [['--files', '/usr/sbin/bpftool'], /--files ships folders for --exec: give the command too/],
    [['--exec', 'true', '--files', join(tmp, 'no-such-folder')], /--files .*no-such-folder: no such file or folder/],
    [['--exec', 'true', '--files', '/usr/sbin/bpftool', '--files', '/usr/bin/../sbin/bpftool'], /would both be \/cm\/files\/bpftool: rename one/],
    [['--exec', 'true', '--exec-timeout', '0'], /--exec-timeout must be seconds from 0 to 86400, not '0'/],
    [['--exec', 'true', '--net', 'tap'], /--net must be user or none, not 'tap'/],
    [['--net', 'user'], /--net user gives the --exec command a network: give the command too/],
    [['--exec', '  '], /--exec needs a command/],
  ])('matrix %j: exit 2 with one line', async (args, message) => {
    const r = await runCli(['matrix', '--kernels', '7.3', '--suites', 'none', ...args]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('matrix --exec in real guests (TCG)', () => {
  it("Debian's bpftool probes 5.10 and 7.3: exit 0 on both, and the answers differ where the kernels do", async () => {
    const out = join(tmp, 'bpftool');
    // Through the CLI as a user writes it: the host path of the program, run from where --files shipped it.
    const cmd = '/usr/sbin/bpftool feature probe kernel > /tmp/probe && grep -E "^eBPF (program|map)_type " /tmp/probe';
    const t0 = performance.now();
    const r = await runCli(['matrix', '--kernels', KERNELS.join(','), '--suites', 'none', '--loader', 'ours', '--jobs', '1', '--accel', 'tcg', '--exec', cmd, '--files', '/usr/sbin/bpftool', '--out', out], 900_000);
    const report = readReport(out);
    console.log(`[measure] bpftool via the CLI: ${Math.round(performance.now() - t0)} ms; ${report.kernels.map((k) => `${k.kernel.id} guest ${k.durationMs} ms, bpftool ${execCell(k)?.timings.runMs} ms`).join('; ')}`);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const lines = new Map<string, Set<string>>();
    for (const k of report.kernels) {
      const c = execCell(k);
      expect(c?.verdict, why(k)).toBe('pass');
      expect(c!.suite).toBe('exec:/usr/sbin/bpftool feature probe kernel >…');
      expect(c!.program).toBe('(command)');
      // The cell names the program and its bytes: the same object everywhere, as for BPF objects.
      expect(c!.object).toEqual({ name: 'bpftool', sha256: fileHash('/usr/sbin/bpftool') });
      expect(c!.output!.exitCode).toBe(0);
      lines.set(k.kernel.id, new Set(c!.output!.tail.split('\n')));
    }
    const [old, cur] = KERNELS.map((id) => lines.get(id)!);
    // BPF_PROG_TYPE_SYSCALL came in 5.14, BPF_MAP_TYPE_USER_RINGBUF in 6.1: bpftool says so.
    expect(old!.has('eBPF program_type syscall is NOT available')).toBe(true);
    expect(cur!.has('eBPF program_type syscall is available')).toBe(true);
    expect(old!.has('eBPF map_type user_ringbuf is NOT available')).toBe(true);
    expect(cur!.has('eBPF map_type user_ringbuf is available')).toBe(true);
    // Types both have: the same answer on both.
    expect(old!.has('eBPF program_type kprobe is available') && cur!.has('eBPF program_type kprobe is available')).toBe(true);
    const differ = [...cur!].filter((l) => !old!.has(l));
    console.log(`[measure] bpftool answers 7.3 has and 5.10 does not (${differ.length}): ${differ.join('; ')}`);
    // The report readers take the new field.
    expect(readFileSync(join(out, 'index.html'), 'utf8')).toContain('output (tail) · exit 0');
  }, 900_000);

  it("a libbpf program built here against libbpf-dev's libbpf.a loads our suite objects as our loader does, in the same guests", async () => {
    const dir = join(tmp, 'libbpf-tool');
    mkdirSync(dir);
    const src = join(dir, 'loadobj.c');
    writeFileSync(src, LOADOBJ_C);
    execFileSync('cc', ['-O2', '-Wall', '-o', join(dir, 'loadobj'), src, '-l:libbpf.a', '-lelf', '-lz'], { stdio: ['ignore', 'ignore', 'pipe'] });
    rmSync(src);
    const suites = await buildSuites({ names: ['task-fields', 'iter-num'] });
    for (const s of suites) copyFileSync(s.object, join(dir, `${s.name}.bpf.o`));
    const report = await matrix('libbpf-tool', KERNELS, { suites: suites.map((s) => s.name), exec: { command: './loadobj task-fields.bpf.o iter-num.bpf.o', files: [dir], timeoutMs: 300_000 } });
    for (const k of report.kernels) {
      const c = execCell(k);
      expect(c?.verdict, why(k)).toBe('pass');
      const said = new Map(c!.output!.tail.split('\n').flatMap((l) => {
        const m = /^(\S+)\.bpf\.o: (loaded|not loaded)/.exec(l);
        return m ? [[m[1]!, m[2]!] as const] : [];
      }));
      console.log(`[measure] ${k.kernel.id}: loadobj says: ${[...said].map(([o, v]) => `${o} ${v}`).join(', ')}; ours: ${suites.map((s) => `${s.name} ${[...new Set(k.cells.filter((x) => x.suite === s.name).map((x) => x.verdict))].join('/')}`).join(', ')}`);
      for (const s of suites) {
        const ours = k.cells.filter((x) => x.suite === s.name && x.loader === 'ours');
        expect(ours.length, why(k)).toBeGreaterThan(0);
        // Ours loaded it (every program passes) exactly where libbpf loaded it; below the suite's
        // minimum kernel ours does not try (expected skip) and libbpf's load fails.
        const oursLoaded = ours.every((x) => x.verdict === 'pass');
        expect(oursLoaded || ours.every((x) => x.verdict === 'expected-skip'), `${k.kernel.id} ${s.name}: ${ours.map((x) => `${x.verdict} ${x.reason ?? ''}`).join('; ')}`).toBe(true);
        expect(said.get(s.name), `${k.kernel.id} ${s.name}\n${c!.output!.tail}`).toBe(oursLoaded ? 'loaded' : 'not loaded');
      }
    }
    // Where the kernels differ: iter-num's kfuncs are 6.4+.
    const iter = (id: string) => report.kernels.find((k) => k.kernel.id === id)!.cells.find((x) => x.suite === 'iter-num')!.verdict;
    expect([iter('5.10'), iter('7.3')]).toEqual(['expected-skip', 'pass']);
  }, 900_000);

  it('a command that exits 3 is a failing cell with its status and output tail, in report.json, summary.md and index.html', async () => {
    const out = join(tmp, 'exit3');
    const r = await runCli(['matrix', '--kernels', '7.3', '--suites', 'none', '--loader', 'ours', '--accel', 'tcg', '--exec', 'echo to-stdout; sleep 1; echo to-stderr >&2; exit 3', '--out', out], 600_000);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
    const k = readReport(out).kernels[0]!;
    expect(k.guest, why(k)).toBe('ok');
    const c = execCell(k)!;
    expect(c.verdict).toBe('fail');
    expect(c.reason).toBe('exit 3: to-stderr');
    expect(c.output).toEqual({ exitCode: 3, tail: 'to-stdout\nto-stderr' });
    expect(c.timings.runMs).toBeGreaterThanOrEqual(1000);
    const md = readFileSync(join(out, 'summary.md'), 'utf8');
    expect(md).toContain('exit 3: to-stderr');
    expect(md).toMatch(/output \(tail\), exit 3:\n\n```text\nto-stdout\nto-stderr\n```/);
    expect(readFileSync(join(out, 'index.html'), 'utf8')).toContain('output (tail) · exit 3</h4><pre>to-stdout\nto-stderr</pre>');
  }, 600_000);

  it('a command that outlives --exec-timeout is killed with what it started, and its cell says so', async () => {
    const report = await matrix('timeout', ['5.10'], { exec: { command: 'echo started; sleep 100 & sleep 100', files: [], timeoutMs: 5000 } });
    const k = report.kernels[0]!;
    // The agent went on after the kill: the guest finished cleanly.
    expect(k.guest, why(k)).toBe('ok');
    const c = execCell(k)!;
    expect(c.verdict).toBe('fail');
    expect(c.reason).toBe('killed after 5 s (--exec-timeout): started');
    expect(c.output).toEqual({ exitCode: null, signal: 'SIGKILL', tail: 'started' });
    expect(c.timings.runMs).toBeGreaterThanOrEqual(5000);
    expect(c.timings.runMs).toBeLessThan(20_000);
  }, 600_000);

  it('a command the guest does not have is a failing cell saying so', async () => {
    const report = await matrix('not-found', ['5.10'], { exec: { command: 'no-such-tool --version', files: [], timeoutMs: 60_000 } });
    const k = report.kernels[0]!;
    const c = execCell(k);
    expect(c?.verdict, why(k)).toBe('fail');
    expect(c!.reason).toMatch(/^exit 127: not found in the guest \(or a library it needs\): .*no-such-tool: not found$/);
    expect(c!.object.name).toBe('no-such-tool');
  }, 600_000);
});

describe('--net user (TCG)', () => {
  let server: Server;
  const token = randomBytes(8).toString('hex');
  const requests: string[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      requests.push(`${req.socket.remoteAddress} ${req.method} ${req.url}`);
      res.end(`token ${token}\n`);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  // arm64 too: its guest's e1000 sits on virt's PCIe bus, its driver a module of Debian's arm64 kernel.
  const NET_KERNELS = [...KERNELS, '6.1-arm64'];
  it('each guest (amd64 and arm64) reaches an HTTP server on the host through QEMU user net (10.0.2.2), from 10.0.2.15', async () => {
    const port = (server.address() as AddressInfo).port;
    const report = await matrix('net', NET_KERNELS, { net: 'user', exec: { command: `wget -q -O - http://10.0.2.2:${port}/from-guest && ip -4 addr show`, files: [], timeoutMs: 120_000 } });
    for (const k of report.kernels) {
      const c = execCell(k);
      expect(c?.verdict, why(k)).toBe('pass');
      expect(c!.output!.tail).toContain(`token ${token}`);
      expect(c!.output!.tail).toMatch(/inet 10\.0\.2\.15\/24 .*eth0/);
    }
    // QEMU's slirp connected to us from the host's loopback, once per guest.
    expect(report.kernels.map((k) => k.kernel.id)).toEqual(NET_KERNELS);
    expect(requests).toEqual(NET_KERNELS.map(() => '127.0.0.1 GET /from-guest'));
  }, 900_000);
});

describe('corematrix shell (TCG)', () => {
  it('shell 7.3: answers a command on its stdin and exits 0 when the guest powers off', async () => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['bin/corematrix.js', 'shell', '7.3', '--accel', 'tcg'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let typed = 0;
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      // The profile's banner is the prompt: the shell reads its tty from here on (typed earlier,
      // bytes may be lost while the serial port is set up).
      if (!typed && stdout.includes('powers the guest off')) {
        typed = performance.now();
        child.stdin.write('echo "R=$(uname -r) F=$(ls /cm/objects | wc -l)"; poweroff -f\n');
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 400_000);
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    clearTimeout(timer);
    console.log(`[measure] shell 7.3: banner after ${Math.round(typed - t0)} ms, exit after ${Math.round(performance.now() - t0)} ms`);
    expect(code, `${stderr}\n${stdout}`).toBe(0);
    // The echoed line shows `$(uname -r)`; only the shell's answer has the release in it.
    expect(stdout).toMatch(/R=7\.3\.\d+\+deb\d+-amd64 F=\d+/);
    // The image is the matrix's: the suites' objects are in it.
    expect(Number(/F=(\d+)/.exec(stdout.slice(stdout.indexOf('R=7.3')))![1])).toBeGreaterThan(5);
  }, 450_000);
});

/**
 * Opens and loads each BPF object named on the command line with libbpf, one line per object
 * (libbpf's own messages are dropped: a verifier log would push the lines out of the cell's tail).
 */
const LOADOBJ_C = String.raw`
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <bpf/libbpf.h>

static int silent(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return 0;
}

int main(int argc, char **argv)
{
	libbpf_set_print(silent);
	for (int i = 1; i < argc; i++) {
		struct bpf_object *obj = bpf_object__open_file(argv[i], NULL);
		long err = libbpf_get_error(obj);
		if (err) {
			printf("%s: not opened: %s\n", argv[i], strerror((int)-err));
			return 1;
		}
		int n = 0;
		struct bpf_program *p;
		bpf_object__for_each_program(p, obj) n++;
		err = bpf_object__load(obj);
		if (err)
			printf("%s: not loaded: %s\n", argv[i], strerror((int)-err));
		else
			printf("%s: loaded, %d programs\n", argv[i], n);
		bpf_object__close(obj);
	}
	return 0;
}
`;
