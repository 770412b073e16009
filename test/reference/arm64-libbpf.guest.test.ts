// The current libbpf cross-built for arm64 (harness/reference/build.ts), in real arm64 guests
// (qemu-system-aarch64, TCG), shipped as the matrix ships it: at /usr/lib/corematrix/libbpf/ in an
// arm64 image (harness/images/arm64-image.ts, `sharedObjects`), beside Debian's arm64 libbpf.so.1.
// In each guest our loader, Debian's libbpf (trixie's 1.5) and the current libbpf load the same
// arm64 suite objects (the guest script of current-libbpf.guest.test.ts, unchanged). Every program
// must get the same verdict from all three and, when loaded, the same translated instructions
// (the kernel's BPF_OBJ_GET_INFO_BY_FD dump of each load); libbpf's relocation lines, which come
// through its print callback (a va_list passed on to vsnprintf: a 32-byte struct that AAPCS64
// passes by reference), must name the same targets our loader chose. The library's own API
// answers in the guest (an arm64 binary cannot run on the host).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildArchImage } from '../../harness/images/arm64-image.js';
import { buildSuiteForArch, type ArchSuiteObject } from '../../harness/images/arm64-objects.js';
import { findKernel, loadMatrix } from '../../harness/kernels/matrix.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { guestLibbpfPath } from '../../harness/matrix/run.js';
import { currentLibbpf, type CurrentLibbpf } from '../../harness/reference/build.js';
import { compareOutcomes } from '../../harness/reference/compare.js';
import { bootGuest } from '../../harness/vm/arch.js';
import { bundleGuestScript } from '../helpers/guest-script.js';
import type { CurrentGuestManifest, CurrentGuestReport } from './fixtures/guest-current-libbpf.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-arm64-libbpf-guest-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const KERNELS = ['6.1-arm64', '7.3-arm64'];
/** Suites whose objects both loaders load: CO-RE field offsets (task-fields), kconfig externs and .kconfig/.rodata maps (kconfig). */
const SUITES = ['task-fields', 'kconfig'];

const store = new KernelStore();
let lib: CurrentLibbpf;
let script: string;
const objects: ArchSuiteObject[] = [];

beforeAll(async () => {
  lib = await currentLibbpf((l) => console.log(`[build] ${l}`), { arch: 'arm64' });
  script = await bundleGuestScript(fileURLToPath(new URL('./fixtures/guest-current-libbpf.ts', import.meta.url)), join(tmp, 'current-libbpf.mjs'));
  const header = await store.fetch(findKernel(loadMatrix(), '6.1-arm64')!);
  for (const s of SUITES) objects.push(await buildSuiteForArch(s, 'arm64', header.btf));
}, 20 * 60_000);

async function runIn(id: string): Promise<{ report: CurrentGuestReport; line: string }> {
  const k = await store.fetch(findKernel(loadMatrix(), id)!);
  const so = guestLibbpfPath(lib.version);
  const manifest: CurrentGuestManifest = { library: { so, version: lib.version, source: lib.source }, objects: objects.map((o, i) => ({ name: `${SUITES[i]}.bpf.o`, path: `/t/${SUITES[i]}.bpf.o` })) };
  const image = await buildArchImage({
    arch: 'arm64', agent: false, kernelConfig: k.config, release: k.release, sharedObjects: [so],
    files: [
      { path: so, source: lib.so, mode: 0o644 },
      { path: '/t/current-libbpf.mjs', source: script },
      { path: '/t/current.json', data: JSON.stringify(manifest) },
      ...objects.map((o, i) => ({ path: `/t/${SUITES[i]}.bpf.o`, source: o.object })),
    ],
  });
  const r = await bootGuest({ arch: 'arm64', vmlinuz: k.vmlinuz, initrd: image.path, append: 'cm.agent=/t/current-libbpf.mjs cm.codecache=off', timeoutMs: 400_000 });
  const why = `${r.detail ?? ''}\n${r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n')}\n${r.console.slice(-30).join('\n')}`;
  expect(r.verdict, why).toBe('ok');
  expect([r.machine, r.release]).toEqual(['aarch64', k.release]);
  const msg = r.messages.find((m) => m.t === 'result' && m.kind === 'current-libbpf');
  expect(msg, why).toBeDefined();
  return { report: (msg as { data: CurrentGuestReport }).data, line: `${id} (${k.release}): image ${image.buildMs} ms, hello at ${r.helloBootMs} ms guest uptime, ${r.wallMs} ms spawn to exit` };
}

describe.each(KERNELS)('the current libbpf in an arm64 guest: %s (TCG)', (id) => {
  let report: CurrentGuestReport;
  beforeAll(async () => {
    const run = await runIn(id);
    report = run.report;
    console.log(`[measure] ${run.line}; ${report.current.label} beside ${report.debian.label}`);
  }, 10 * 60_000);

  it('loads from its own path and answers its API as its source says; Debian\'s arm64 libbpf.so.1 is still the default and older', () => {
    expect(report.current).toMatchObject({ so: guestLibbpfPath(lib.version), major: lib.manifest.api.major, minor: lib.manifest.api.minor, versionString: lib.manifest.api.versionString, label: `libbpf ${lib.version} (${lib.source})` });
    expect(report.debian.so).toBe('libbpf.so.1');
    expect(report.debian.label).toBe(`libbpf ${report.debian.major}.${report.debian.minor} (system libbpf.so.1)`);
    expect(report.debian.major * 1000 + report.debian.minor).toBeLessThan(report.current.major * 1000 + report.current.minor);
  });

  it('every program: our loader, Debian\'s libbpf and the current libbpf agree (verdict; identical xlated; libbpf\'s relocation lines name our targets)', () => {
    const lines: string[] = [];
    let relocationsAgreed = 0;
    for (const r of report.results) {
      expect(r.differential.ours.length, r.object).toBeGreaterThan(0);
      for (const ours of r.differential.ours) {
        const debian = r.differential.reference.find((o) => o.name === ours.name)!;
        const current = r.current.find((o) => o.name === ours.name);
        expect(current, `${r.object}: ${ours.name} missing from the current libbpf's outcomes`).toBeDefined();
        expect(current!.libbpf).toBe(report.current.label);
        expect([r.object, ours.name, ours.status, current!.status]).toEqual([r.object, ours.name, 'loaded', 'loaded']);
        const vsOurs = compareOutcomes(ours, current!);
        const vsDebian = compareOutcomes({ ...debian, relocations: undefined }, current!);
        lines.push(`${r.object} ${lib.version} vs ours: ${vsOurs.line}`, `${r.object} ${lib.version} vs ${report.debian.major}.${report.debian.minor}: ${vsDebian.line}`);
        expect(vsOurs.verdict, vsOurs.line).toBe('same');
        expect(vsDebian.verdict, vsDebian.line).toBe('same');
        expect(vsOurs.reloDiff, vsOurs.line).toBeUndefined();
        // The print callback's lines parsed into decisions that equal ours, one for each of our relocations.
        if (ours.relocations?.length) {
          expect(vsOurs.line, vsOurs.line).toContain(`; ${ours.relocations.length} relocations agree`);
          relocationsAgreed += ours.relocations.length;
        }
      }
    }
    expect(relocationsAgreed).toBeGreaterThan(3);
    console.log(`[measure] ${id}:\n  ${lines.join('\n  ')}`);
  });
});
