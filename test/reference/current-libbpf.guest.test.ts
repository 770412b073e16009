// The current libbpf in a real guest (6.1, TCG), shipped as an image should ship it: the built .so
// at a path of its own beside Debian's libbpf.so.1 (no other library added: it needs what Debian's
// does). In the guest, our loader, Debian's libbpf 1.1 and the current libbpf load the same
// fixtures; every program must get the same verdict from all three and, when loaded, the kernel's
// translated instructions must be identical. One boot.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { currentLibbpf, type CurrentLibbpf } from '../../harness/reference/build.js';
import { compareOutcomes } from '../../harness/reference/compare.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';
import { compileBpf } from '../helpers/tools.js';
import type { CurrentGuestManifest, CurrentGuestReport } from './fixtures/guest-current-libbpf.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-current-libbpf-guest-'));
const fixture = (n: string) => fileURLToPath(new URL(n === 'relo_fail' ? `./fixtures/${n}.bpf.c` : `../fixtures/${n}.bpf.c`, import.meta.url));
const OBJECTS = ['core_kernel', 'btf_kinds', 'insns', 'relo_fail'];
/** Where the image puts the current libbpf: outside the dynamic loader's search path, so a bare libbpf.so.1 stays Debian's. */
const GUEST_DIR = '/usr/lib/corematrix/libbpf';
const KERNEL = '6.1';

let cur: CurrentLibbpf;
let report: CurrentGuestReport;

beforeAll(async () => {
  cur = await currentLibbpf((l) => console.log(`[build] ${l}`));
  const agent = await bundleGuestScript(fileURLToPath(new URL('./fixtures/guest-current-libbpf.ts', import.meta.url)), join(tmp, 'current-libbpf.mjs'));
  const k = await new KernelStore().fetch(KERNEL);
  const so = `${GUEST_DIR}/${cur.manifest.so}`;
  const manifest: CurrentGuestManifest = { library: { so, version: cur.version, source: cur.source }, objects: OBJECTS.map((n) => ({ name: n, path: `/t/${n}.bpf.o` })) };
  const initrd = await buildInitramfs({
    files: [
      { path: so, source: cur.so, mode: 0o644 },
      { path: '/t/current-libbpf.mjs', source: agent },
      { path: '/t/current.json', data: JSON.stringify(manifest) },
      ...OBJECTS.map((n) => ({ path: `/t/${n}.bpf.o`, source: compileBpf(fixture(n)) })),
    ],
    agent: false,
    kernelConfig: k.config,
    release: k.release,
  });
  const r = await runGuest({ kernelId: KERNEL, vmlinuz: k.vmlinuz, initrd, append: 'cm.agent=/t/current-libbpf.mjs', accel: 'tcg', logDir: join(tmp, 'logs') });
  const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
  expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
  const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'current-libbpf');
  expect(msg, JSON.stringify(r.messages)).toBeDefined();
  report = (msg as { data: CurrentGuestReport }).data;
  console.log(`[measure] ${KERNEL} (${k.release}): ${report.current.label} beside ${report.debian.label}; boot ${r.bootMs} ms, whole run ${Math.round(r.durationMs)} ms`);
}, 15 * 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe(`the current libbpf in a ${KERNEL} guest (TCG)`, () => {
  it('loads from its own path and says the version it was built as; Debian\'s libbpf.so.1 is still the default', () => {
    expect(report.current).toMatchObject({ major: cur.manifest.api.major, minor: cur.manifest.api.minor, versionString: cur.manifest.api.versionString, label: `libbpf ${cur.version} (${cur.source})` });
    expect(report.debian.so).toBe('libbpf.so.1');
    expect(report.debian.label).toBe(`libbpf ${report.debian.major}.${report.debian.minor} (system libbpf.so.1)`);
    expect(report.debian.versionString).not.toBe(report.current.versionString);
  });

  it('every fixture program: our loader, libbpf 1.1 and the current libbpf agree (verdict; xlated when loaded)', () => {
    const lines: string[] = [];
    for (const r of report.results) {
      for (const ours of r.differential.ours) {
        const debian = r.differential.reference.find((o) => o.name === ours.name)!;
        const current = r.current.find((o) => o.name === ours.name);
        expect(current, `${r.object}: ${ours.name} missing from the current libbpf's outcomes`).toBeDefined();
        expect(current!.libbpf).toBe(report.current.label);
        const vsOurs = compareOutcomes(ours, current!);
        const vsDebian = compareOutcomes({ ...debian, relocations: undefined }, current!);
        lines.push(`${r.object} ${cur.version} vs ours: ${vsOurs.line}`, `${r.object} ${cur.version} vs 1.1: ${vsDebian.line}`);
        expect(vsOurs.verdict, vsOurs.line).toBe('same');
        expect(vsDebian.verdict, vsDebian.line).toBe('same');
      }
    }
    expect(report.results.flatMap((r) => r.current).filter((o) => o.status === 'loaded' && o.xlated).length).toBeGreaterThan(1);
    console.log(`[measure] ${KERNEL}:\n  ${lines.join('\n  ')}`);
  });
});
