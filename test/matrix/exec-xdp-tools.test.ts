// A real XDP tool nobody here wrote, run by `matrix --exec` in 5.10 and 7.3 guests (TCG): Debian's
// xdp-filter (bookworm's xdp-tools, with libxdp's BPF objects from libxdp1, both fetched through
// the private apt state) loads its filter on lo through libxdp's multi-program dispatcher (the
// filter replaces a slot of `xdp_dispatcher` with freplace), is told to drop UDP port 9, and
// reports its own counters after five datagrams are sent there. In the same guests both our loader
// and libbpf load the filter's object as `--object`: their cells must pass, as the tool's did.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { AptState } from '../../harness/kernels/apt.js';
import { cacheDir } from '../../harness/paths.js';
import type { KernelRun, RunReport } from '../../harness/results.js';
import { ensureBuilt, runCli } from '../helpers/tools.js';

const KERNELS = ['5.10', '7.3'];
const FILTER = 'xdpfilt_alw_all.o';
/** What the guest runs, in the shipped folder: load, add a port, send to it, ask the tool, unload. */
const COMMAND = [
  'set -e',
  'export LIBXDP_OBJECT_PATH=$CM_FILES/xdp-tools/bpf',
  './xdp-filter load -m skb lo',
  './xdp-filter port 9',
  `node -e 'const s=require("dgram").createSocket("udp4");let n=0;const f=()=>s.send("x",9,"127.0.0.1",()=>{if(++n<5)f();else s.close()});f()'`,
  './xdp-filter status',
  './xdp-loader status lo',
  './xdp-filter unload lo',
].join('\n');

let tools: { dir: string; version: string };
let report: RunReport;
let out = '';

/** bookworm's xdp-tools and libxdp1 (the same version), unpacked once into the cache: the two tools and libxdp's BPF objects. */
async function xdpTools(): Promise<{ dir: string; version: string }> {
  const apt = new AptState();
  await apt.ensure(['bookworm']);
  const rows = (await apt.madison(['xdp-tools', 'libxdp1'])).filter((r) => r.suite === 'bookworm');
  const tools = rows.find((r) => r.name === 'xdp-tools')!;
  const lib = rows.find((r) => r.name === 'libxdp1' && r.version === tools.version)!;
  const dir = cacheDir('test-objects', `xdp-tools_${tools.version}`, 'xdp-tools');
  if (!existsSync(join(dir, 'xdp-filter'))) {
    const tmp = `${dir}.tmp.${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, 'bpf'), { recursive: true });
    for (const r of [tools, lib]) execFileSync('dpkg-deb', ['-x', await apt.download(r.name, r.version, join(tmp, 'deb')), join(tmp, 'root')]);
    for (const t of ['xdp-filter', 'xdp-loader']) copyFileSync(join(tmp, 'root/usr/sbin', t), join(tmp, t));
    const objects = join(tmp, 'root/usr/lib/x86_64-linux-gnu/bpf');
    for (const o of readdirSync(objects)) copyFileSync(join(objects, o), join(tmp, 'bpf', o));
    rmSync(join(tmp, 'root'), { recursive: true, force: true });
    rmSync(join(tmp, 'deb'), { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  return { dir, version: tools.version };
}

beforeAll(async () => {
  ensureBuilt();
  tools = await xdpTools();
  const dir = mkdtempSync(join(tmpdir(), 'cm-xdp-tools-'));
  const r = await runCli(['matrix', '--kernels', KERNELS.join(','), '--suites', 'none', '--object', join(tools.dir, 'bpf', FILTER), '--loader', 'both', '--jobs', '2', '--accel', 'tcg', '--exec', COMMAND, '--files', tools.dir, '--out', dir], 900_000);
  out = `${r.stdout}\n${r.stderr.slice(-3000)}`;
  report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as RunReport;
}, 900_000);

const execCell = (k: KernelRun) => k.cells.find((c) => c.suite.startsWith('exec:'))!;

describe(`Debian's xdp-filter in every guest (bookworm xdp-tools)`, () => {
  it('loads through the dispatcher, drops the five datagrams to port 9 and counts them, on 5.10 and 7.3', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(KERNELS.map((k) => `${k}:ok`));
    for (const k of report.kernels) {
      const c = execCell(k);
      const tail = c.output?.tail ?? '';
      console.log(`[measure] ${k.kernel.id}: xdp-tools ${tools.version}, command ${c.timings.runMs} ms`);
      expect(c.verdict, `${k.kernel.id}: ${c.reason}\n${tail}`).toBe('pass');
      expect(tail, k.kernel.id).toMatch(/XDP_DROP\s+5 pkts/);
      expect(tail, k.kernel.id).toMatch(/^\s+9\s+dst,tcp,udp\s+5$/m);
      // libxdp's multi-program mode: the dispatcher on lo, the filter in one of its slots (freplace).
      expect(tail, k.kernel.id).toMatch(/^lo\s+xdp_dispatcher\s+skb\s+\d+/m);
      expect(tail, k.kernel.id).toMatch(/^ =>\s+\d+\s+xdpfilt_alw_all\s+\d+/m);
    }
  });

  it("the filter's object loads with ours and with libbpf in the same guests", () => {
    for (const k of report.kernels) {
      const cells = k.cells.filter((c) => c.object.name === FILTER);
      expect(cells.length, k.kernel.id).toBeGreaterThanOrEqual(2);
      for (const c of cells) expect(c.verdict, `${k.kernel.id} ${c.loader} ${c.program}: ${c.reason}`).toBe('pass');
    }
  });
});
