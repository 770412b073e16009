// The kernel's own CO-RE conformance corpus: tools/testing/selftests/bpf's test_core_reloc_*
// programs and the btf__core_reloc_* objects whose BTF serves as the target. Fetched at run
// time from Debian's linux-source-6.12 package (never committed), compiled with clang-19.
//
// Which cases must fail comes from the kernel's own test table (prog_tests/core_reloc.c,
// `*_ERR_CASE(name)`), not from our reading of the file names.

import { CLANG } from '../tools.js';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreMatrixError } from '../core/errors.js';
import { AptState } from '../kernels/apt.js';
import { compareDebVersions } from '../kernels/debversion.js';
import { sourceTarStream } from '../kernels/build.js';
import { cacheDir } from '../paths.js';

export const CORPUS_PACKAGE = 'linux-source-6.12';
const SUITES = ['trixie', 'trixie-security', 'trixie-updates'];
const SELFTESTS = 'tools/testing/selftests/bpf';

export interface CorpusCase {
  /** e.g. `nesting___err_missing_field` */
  name: string;
  /** e.g. `nesting` */
  group: string;
  /** The object whose BTF is the relocation target. */
  target: string;
  /** The test programs relocated against it (bitfields has two: probed and direct). */
  programs: string[];
  /** The kernel's test table says loading must fail. */
  expectFail: boolean;
}

export interface Corpus {
  package: string;
  version: string;
  dir: string;
  cases: CorpusCase[];
  /** test_core_reloc_* objects that need no custom target (kernel: relocated against vmlinux). */
  kernelPrograms: string[];
}

export const CORPUS_CFLAGS = ['-g', '-O2', '-target', 'bpf', '-ffreestanding', '-I/usr/include/x86_64-linux-gnu'];

function sh(cmd: string): void {
  execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 64 << 20 });
}

async function fetchSources(log: (s: string) => void): Promise<{ version: string; dir: string }> {
  const apt = new AptState({ log });
  await apt.ensure(SUITES);
  const rows = await apt.madison([CORPUS_PACKAGE]);
  if (rows.length === 0) throw new CoreMatrixError(`${CORPUS_PACKAGE} is not in ${SUITES.join(', ')} of the private apt state`);
  const version = rows.map((r) => r.version).sort(compareDebVersions).pop()!;
  const dir = cacheDir('corpus', `${CORPUS_PACKAGE}_${version}`);
  const progs = join(dir, SELFTESTS, 'progs');
  if (existsSync(join(dir, '.complete'))) return { version, dir };
  const tmp = cacheDir('corpus', `tmp.${process.pid}`);
  try {
    log(`corpus: unpacking ${CORPUS_PACKAGE} ${version}`);
    const deb = await apt.keptDownload(CORPUS_PACKAGE, version);
    const want = [`progs/*core_reloc*`, 'progs/bpf_misc.h', 'prog_tests/core_reloc.c'].map((p) => `'*/${SELFTESTS}/${p}'`).join(' ');
    sh(`cd '${tmp}' && ${sourceTarStream(deb)} | tar -x --wildcards --strip-components=1 ${want}`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
    if (!existsSync(progs)) throw new CoreMatrixError(`${CORPUS_PACKAGE} ${version} has no ${SELFTESTS}/progs`);
    writeFileSync(join(dir, '.complete'), version + '\n');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { version, dir };
}

/** Fetches (once), compiles (once) and describes the corpus. */
export async function loadCorpus(log: (s: string) => void = () => {}): Promise<Corpus> {
  const { version, dir } = await fetchSources(log);
  const progs = join(dir, SELFTESTS, 'progs');
  const out = join(dir, 'objects');
  mkdirSync(out, { recursive: true });
  const sources = readdirSync(progs).filter((f) => /^(test_core_reloc_|btf__core_reloc_).*\.c$/.test(f) && f !== 'test_core_reloc_module.c');
  for (const f of sources) {
    const obj = join(out, f.replace(/\.c$/, '.bpf.o'));
    if (existsSync(obj)) continue;
    execFileSync(CLANG, [...CORPUS_CFLAGS, `-I${progs}`, '-c', join(progs, f), '-o', `${obj}.tmp`], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(`${obj}.tmp`, obj);
  }
  const table = readFileSync(join(dir, SELFTESTS, 'prog_tests/core_reloc.c'), 'utf8');
  const errCases = new Set([...table.matchAll(/_ERR_CASE\((\w+)\)/g)].map((m) => m[1]!));
  const cases: CorpusCase[] = [];
  for (const f of sources.filter((f) => f.startsWith('btf__core_reloc_')).sort()) {
    const name = f.slice('btf__core_reloc_'.length, -2);
    const group = name.split('__')[0]!;
    const progNames = group === 'bitfields' ? ['bitfields_probed', 'bitfields_direct'] : [group];
    const programs = progNames.map((p) => join(out, `test_core_reloc_${p}.bpf.o`));
    for (const p of programs) if (!existsSync(p)) throw new CoreMatrixError(`corpus case ${name}: no program object ${p}`);
    cases.push({ name, group, target: join(out, f.replace(/\.c$/, '.bpf.o')), programs, expectFail: errCases.has(name) });
  }
  return { package: CORPUS_PACKAGE, version, dir, cases, kernelPrograms: [join(out, 'test_core_reloc_kernel.bpf.o')] };
}
