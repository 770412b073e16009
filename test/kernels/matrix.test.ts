// The kernel matrix file: the committed default is valid, and every mistake is reported as one
// line naming file, line, kernel, field and what is allowed.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FormatError, UsageError } from '../../harness/core/errors.js';
import { archVariant, findKernel, loadMatrix, parseMatrix, selectKernels } from '../../harness/kernels/matrix.js';

function errorOf(text: string): Error {
  try {
    parseMatrix(text, 'm.yaml');
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a validation error');
}

const good = `kernels:
  - id: "6.1"
    series: "6.1"
    flavour: generic
    suites: [bookworm]
  - id: 6.10
    series: 6.10
    flavour: rt
    suites: trixie
    version: 6.10.3-1
`;

describe('kernel matrix', () => {
  it('loads the committed default matrix with the required kernels', () => {
    const m = loadMatrix();
    const ids = m.map((e) => e.id);
    for (const id of ['5.10', '6.1', '6.1-cloud', '6.1-rt', '6.12', '7.2', '7.3', '7.x', '6.12-nonetns', '6.1-arm64', '7.3-arm64']) expect(ids).toContain(id);
    expect(m.filter((e) => e.arch === 'arm64').map((e) => [e.id, e.series])).toEqual([['6.1-arm64', '6.1'], ['7.3-arm64', '7.3']]);
    const custom = m.find((e) => e.id === '6.12-nonetns')!;
    expect(custom.flavour).toBe('custom');
    expect(custom.series).toBe('6.12');
    expect(custom.build).toMatchObject({ source: 'linux-source-6.12', config: 'configs/net-ns-off.config', btf: 'pahole' });
    expect(custom.build!.configPath).toMatch(/kernels\/configs\/net-ns-off\.config$/);
    expect(m.find((e) => e.id === '5.10')).toEqual({ id: '5.10', series: '5.10', flavour: 'generic', suites: ['bullseye-security'] });
    expect(m.find((e) => e.id === '6.1-rt')?.flavour).toBe('rt');
    expect(m.find((e) => e.id === '7.x')?.series).toBe('7.x');
    // at least one kernel of the default matrix runs with more than one vCPU
    expect(m.filter((e) => (e.cpus ?? 1) > 1).map((e) => e.id)).toEqual(['6.12']);
  });

  it('reads cpus as a vCPU count from 1 to 64, naming the line of anything else', () => {
    expect(parseMatrix(good.replace('flavour: rt', 'flavour: rt\n    cpus: 2'), 'm.yaml')[1]!.cpus).toBe(2);
    for (const bad of ['0', '65', '1.5', 'two']) expect(errorOf(good.replace('flavour: rt', `flavour: rt\n    cpus: ${bad}`)).message).toBe(`m.yaml:9: kernel '6.10': cpus must be an integer from 1 to 64, not "${bad}"`);
  });

  it('keeps every scalar a string (6.10 is not 6.1) and accepts a single suite', () => {
    const m = parseMatrix(good, 'm.yaml');
    expect(m[1]).toEqual({ id: '6.10', series: '6.10', flavour: 'rt', suites: ['trixie'], version: '6.10.3-1' });
  });

  it('names the line, kernel, field and allowed values of a bad flavour', () => {
    const err = errorOf(good.replace('flavour: rt', 'flavour: realtime'));
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toBe("m.yaml:8: kernel '6.10': flavour 'realtime' is not one of generic, cloud, rt");
  });

  it('reports unknown fields, missing fields, duplicates, bad series and suites on their lines', () => {
    expect(errorOf(good.replace('    suites: trixie', '    suite: trixie')).message).toBe("m.yaml:9: kernel '6.10': unknown field 'suite' (allowed: id, series, flavour, suites, version, source, config, btf, cpus, arch)");
    expect(errorOf(good.replace('    suites: [bookworm]\n', '')).message).toMatch(/^m\.yaml:2: kernel '6\.1': missing field 'suites'/);
    expect(errorOf(good.replace('id: 6.10', 'id: "6.1"')).message).toBe("m.yaml:6: kernel '6.1': duplicate id (first at line 2)");
    expect(errorOf(good.replace('series: 6.10', 'series: six')).message).toMatch(/^m\.yaml:7: kernel '6\.10': series 'six' must be MAJOR\.MINOR/);
    expect(errorOf(good.replace('suites: [bookworm]', 'suites: [Bookworm]')).message).toMatch(/^m\.yaml:5: kernel '6\.1': suites: 'Bookworm' is not a Debian suite name/);
    expect(errorOf(good.replace('version: 6.10.3-1', 'version: latest')).message).toMatch(/^m\.yaml:10: kernel '6\.10': version 'latest' is not a Debian version/);
    expect(errorOf('kernels: []\n').message).toMatch(/^m\.yaml:1: 'kernels' is empty/);
    expect(errorOf('kernel:\n  - id: x\n').message).toBe("m.yaml:1: unknown top-level field 'kernel' (allowed: kernels)");
  });

  it('reports YAML syntax errors with their line, in one line', () => {
    const err = errorOf('kernels:\n  - id: a\n    suites: [bookworm\n  - id: b\n');
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toMatch(/^m\.yaml:\d+: invalid YAML: /);
    expect(err.message).not.toContain('\n');
  });

  it('loadMatrix names the file; a missing file is a usage error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-matrix-'));
    const f = join(dir, 'bad.yaml');
    writeFileSync(f, good.replace('flavour: generic', 'flavour: cloudy'));
    expect(() => loadMatrix(f)).toThrow(/bad\.yaml:4: kernel '6\.1': flavour 'cloudy'/);
    expect(() => loadMatrix(join(dir, 'none.yaml'))).toThrow(UsageError);
  });

  it('selects by exact id, glob and all', () => {
    const m = loadMatrix();
    expect(selectKernels(m, ['6.1']).map((e) => e.id)).toEqual(['6.1']);
    expect(selectKernels(m, ['6.1*']).map((e) => e.id)).toEqual(['6.1', '6.1-cloud', '6.1-rt', '6.12', '6.12-nonetns', '6.1-arm64']);
    expect(selectKernels(m, ['6.1-*', '7.?']).map((e) => e.id)).toEqual(['6.1-cloud', '6.1-rt', '7.2', '7.3', '6.1-arm64', '7.x']);
    expect(selectKernels(m, ['all'])).toHaveLength(m.length);
    expect(() => selectKernels(m, ['4.19'])).toThrow(/no kernel matches '4\.19'/);
  });
});

describe('arch', () => {
  it('an entry may name its arch (amd64, arm64); anything else is named on its line', () => {
    const m = parseMatrix(good.replace('flavour: rt', 'flavour: rt\n    arch: arm64'), 'm.yaml');
    expect(m[1]).toEqual({ id: '6.10', series: '6.10', flavour: 'rt', suites: ['trixie'], version: '6.10.3-1', arch: 'arm64' });
    // Without it, no arch field: the store, the orchestrator and the report read that as amd64.
    expect(m[0]!.arch).toBeUndefined();
    expect(parseMatrix(good.replace('flavour: rt', 'flavour: rt\n    arch: amd64'), 'm.yaml')[1]!.arch).toBe('amd64');
    expect(errorOf(good.replace('flavour: rt', 'flavour: rt\n    arch: aarch64')).message).toBe("m.yaml:9: kernel '6.10': arch 'aarch64' is not one of amd64, arm64");
  });

  it('<id>-arm64 is entry <id> built for arm64, right after its entry; an exact id wins; globs match the matrix only', () => {
    // The default matrix without its own arm64 entries: the variants are made from the amd64 ones.
    const m = loadMatrix().filter((e) => e.arch !== 'arm64');
    const base = m.find((e) => e.id === '6.1')!;
    expect(archVariant(base, 'arm64')).toEqual({ ...base, id: '6.1-arm64', arch: 'arm64' });
    expect(selectKernels(m, ['7.3-arm64,6.1-arm64']).map((e) => [e.id, e.arch, e.series, e.suites])).toEqual([
      ['6.1-arm64', 'arm64', '6.1', ['bookworm']],
      ['7.3-arm64', 'arm64', '7.3', ['trixie-backports']],
    ]);
    expect(selectKernels(m, ['6.1-arm64', '6.1', '6.1-arm64']).map((e) => e.id)).toEqual(['6.1', '6.1-arm64']);
    expect(selectKernels(m, ['6.1*']).map((e) => e.id)).not.toContain('6.1-arm64');
    // A kernel built from source has no arch variant (its entry names its arch); no variant of a variant; amd64 is no variant.
    expect(() => selectKernels(m, ['6.12-nonetns-arm64'])).toThrow(/no kernel matches '6\.12-nonetns-arm64' \(known: .*; an entry on another arch: <id>-arm64\)/);
    expect(findKernel([{ ...base, id: 'x', arch: 'arm64' }], 'x-arm64')).toBeUndefined();
    expect(findKernel(m, '6.1-amd64')).toBeUndefined();
    // An entry of that id in the matrix is taken as it is.
    const own = parseMatrix(good.replace('id: 6.10', 'id: 6.1-arm64').replace('flavour: rt', 'flavour: rt\n    arch: arm64'), 'm.yaml');
    expect(findKernel(own, '6.1-arm64')).toBe(own[1]);
  });

  it('a kernel built from source may name its arch (cross-built, docs/arm64.md); an unknown one is refused on its line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-matrix-'));
    writeFileSync(join(dir, 'f.config'), '\n');
    const text = 'kernels:\n  - id: mine\n    source: linux-source-6.12\n    suites: [trixie]\n    config: f.config\n    arch: arm64\n';
    expect(parseMatrix(text, 'm.yaml', dir)[0]).toMatchObject({ id: 'mine', arch: 'arm64', build: { source: 'linux-source-6.12' } });
    expect(() => parseMatrix(text.replace('arch: arm64', 'arch: riscv64'), 'm.yaml', dir)).toThrow(/^m\.yaml:6: kernel 'mine': arch 'riscv64' is not one of amd64, arm64/);
  });
});

describe('custom kernel entries', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-matrix-'));
  writeFileSync(join(dir, 'frag.config'), '# CONFIG_NET_NS is not set\n');
  const custom = `kernels:
  - id: mine
    source: linux-source-6.12
    suites: [trixie]
    config: frag.config
    btf: none
`;
  const parse = (t: string) => parseMatrix(t, 'm.yaml', dir);
  const err = (t: string) => {
    try {
      parse(t);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error('expected an error');
  };

  it('derives series and flavour from the source package and resolves the fragment next to the matrix', () => {
    expect(parse(custom)).toEqual([{ id: 'mine', series: '6.12', flavour: 'custom', suites: ['trixie'], build: { source: 'linux-source-6.12', config: 'frag.config', configPath: join(dir, 'frag.config'), btf: 'none' } }]);
    expect(parse(custom.replace('    btf: none\n', ''))[0]!.build!.btf).toBe('kernel');
  });

  it('reports bad sources, fragments, btf modes and misplaced fields on their lines', () => {
    expect(err(custom.replace('linux-source-6.12', 'linux-6.12'))).toBe("m.yaml:3: kernel 'mine': source 'linux-6.12' must be a Debian kernel source package such as linux-source-6.12");
    expect(err(custom.replace('frag.config', 'nope.config'))).toBe(`m.yaml:5: kernel 'mine': config fragment nope.config does not exist (looked for ${join(dir, 'nope.config')})`);
    expect(err(custom.replace('btf: none', 'btf: dwarf'))).toBe("m.yaml:6: kernel 'mine': btf 'dwarf' is not one of kernel, pahole, none");
    expect(err(custom.replace('    config: frag.config\n', ''))).toBe("m.yaml:2: kernel 'mine': missing field 'config'");
    expect(err(custom.replace('    suites: [trixie]\n', '    suites: [trixie]\n    flavour: rt\n'))).toBe("m.yaml:5: kernel 'mine': a kernel built from source has flavour 'custom', not 'rt'");
    expect(err(custom.replace('    suites: [trixie]\n', '    suites: [trixie]\n    series: "6.1"\n'))).toBe("m.yaml:5: kernel 'mine': series '6.1' does not match source linux-source-6.12");
    expect(err(good.replace('    version: 6.10.3-1\n', '    btf: pahole\n'))).toBe("m.yaml:10: kernel '6.10': 'btf' is only for kernels built from source (add source: linux-source-X.Y)");
  });
});
