// YAML syntax errors name the line the mistake is on, in all three files we parse with js-yaml:
// a suite spec, an object config and the kernel matrix. js-yaml reports where it noticed the
// problem, which for an unclosed bracket or quote is the next entry (past blank lines and
// comments: kernels/matrix.yaml's blank line between entries made it two lines late) or the end
// of the file. The texts are the committed files with one typo each; the expected line is found
// by searching the text for the typo, not computed by the code under test.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { parseMatrix } from '../../harness/kernels/matrix.js';
import { parseObjectConfig } from '../../harness/loader/object-config.js';
import { readSpec } from '../../harness/suites/spec.js';

const root = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'cm-yaml-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `text` with `from` replaced by `to` (which must occur once), and the 1-based line of the change. */
function typo(text: string, from: string, to: string): { text: string; line: number } {
  const at = text.indexOf(from);
  expect(at, `'${from}' in the text`).toBeGreaterThanOrEqual(0);
  expect(text.indexOf(from, at + 1), `'${from}' once`).toBe(-1);
  return { text: text.slice(0, at) + to + text.slice(at + from.length), line: text.slice(0, at).split('\n').length };
}

/** js-yaml's own line for the error (1-based), to show the case is one where it notices late. */
function jsYamlLine(text: string): number {
  try {
    yaml.load(text, { schema: yaml.FAILSAFE_SCHEMA });
  } catch (e) {
    return (e as { mark: { line: number } }).mark.line + 1;
  }
  throw new Error('the typo parses');
}

const messageOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('no error');
};

const spec = readFileSync(join(root, 'suites/globals/spec.yaml'), 'utf8');
const matrix = readFileSync(join(root, 'kernels/matrix.yaml'), 'utf8');
const config = readFileSync(join(root, 'docs/object-config.md'), 'utf8').split('```yaml\n')[1]!.split('```')[0]!;

// Each case: a typo js-yaml notices on a later line, and what the message says about it.
const SPEC_CASES: [string, { text: string; line: number }, RegExp][] = [
  ['an unclosed [ (comma or bracket)', typo(spec, '1015, 1500]', '1015, 1500'), /: YAML error: a ',' is missing after this entry, or the '\[' of line \d+ is not closed \(js-yaml: missed comma between flow collection entries, at line \d+\)$/],
  ['an unclosed { before the next list item', typo(spec, 'truth: "rodata:cfg.max" }', 'truth: "rodata:cfg.max"'), /: YAML error: a ',' is missing after this entry, or the '\{' of line \d+ is not closed/],
  ['an unclosed { in the last entry', typo(spec, 'truth: "trigger:totalLen" }', 'truth: "trigger:totalLen"'), /: YAML error: the '\{' opened here is never closed \(js-yaml: unexpected end of the stream within a flow collection, at line \d+\)$/],
  ['an unclosed " in the last entry', typo(spec, '"trigger:totalLen" }', '"trigger:totalLen }'), /: YAML error: the " opened here is never closed \(js-yaml: unexpected end of the stream within a double quoted scalar, at line \d+\)$/],
  ["an unclosed ' that runs to the end", typo(spec, 'minKernel: "5.2"', "minKernel: '5.2"), /: YAML error: the ' opened here is never closed/],
  ['an unclosed " that the next quote closes', typo(spec, 'truth: "rodata:cfg.max" }', 'truth: "rodata:cfg.max }'), /: YAML error: the " opened here closes only on line \d+ \(js-yaml: missed comma between flow collection entries, at line \d+\)$/],
  ['an unclosed " in a block mapping', typo(spec, 'name: globals', 'name: "globals'), /: YAML error: the " opened here closes only on line \d+ \(js-yaml: /],
];

describe('suite spec (readSpec)', () => {
  it.each(SPEC_CASES)('%s: the line of the typo', (_, t, says) => {
    expect(jsYamlLine(t.text)).toBeGreaterThan(t.line);
    const f = join(dir, 'spec.yaml');
    writeFileSync(f, t.text);
    const msg = messageOf(() => readSpec(f, 'suites/globals/spec.yaml', 'globals'));
    expect(msg).toMatch(new RegExp(`^suites/globals/spec\\.yaml:${t.line}: YAML error: `));
    expect(msg).toMatch(says);
    expect(msg).not.toContain('\n');
  });

  it('an error js-yaml finds on its own line keeps that line and its words', () => {
    const t = typo(spec, 'rodata:\n', 'rodata: x: 1\n');
    const f = join(dir, 'spec.yaml');
    writeFileSync(f, t.text);
    expect(messageOf(() => readSpec(f, 'suites/globals/spec.yaml', 'globals'))).toBe(`suites/globals/spec.yaml:${t.line}: YAML error: bad indentation of a mapping entry`);
  });

  it('quotes and brackets inside comments, plain scalars and block scalars are not openers', () => {
    // The description (a folded block scalar) holds "seed's"; comments hold ' [ and {.
    const noisy = typo(spec, 'minKernel: "5.2"\n', "minKernel: \"5.2\"  # it's [5.2 {\n# don't [ {\nwhat: it's a [plain] one\n");
    const t = typo(noisy.text, '1015, 1500]', '1015, 1500');
    const f = join(dir, 'spec.yaml');
    writeFileSync(f, t.text);
    expect(messageOf(() => readSpec(f, 'suites/globals/spec.yaml', 'globals'))).toMatch(new RegExp(`^suites/globals/spec\\.yaml:${t.line}: YAML error: a ',' is missing after this entry, or the '\\[' of line ${t.line} is not closed `));
  });
});

describe('object config (parseObjectConfig)', () => {
  it('an unclosed { followed by a comment and a blank line: the line of the {', () => {
    const t = typo(config, 'events: { max_entries: 8192 }     # the ring buffer: 256 KiB in the object, 8 KiB here\n', 'events: { max_entries: 8192     # the ring buffer\n  # more maps later\n\n');
    expect(jsYamlLine(t.text)).toBe(t.line + 3);
    expect(messageOf(() => parseObjectConfig(t.text, 'tool.bpf.yaml'))).toMatch(new RegExp(`^tool\\.bpf\\.yaml:${t.line}: YAML error: a ',' is missing after this entry, or the '\\{' of line ${t.line} is not closed \\(js-yaml: missed comma between flow collection entries, at line ${t.line + 3}\\)$`));
  });

  it('an unclosed " in a value: the line of the quote', () => {
    const t = typo(config, 'mask: "0xffffffffffffffff"', 'mask: "0xffffffffffffffff');
    expect(messageOf(() => parseObjectConfig(t.text, 'tool.bpf.yaml'))).toMatch(new RegExp(`^tool\\.bpf\\.yaml:${t.line}: YAML error: the " opened here is never closed `));
  });
});

describe('kernel matrix (parseMatrix)', () => {
  it('an unclosed [ before the blank line between entries: the line of the [, not two lines later', () => {
    const t = typo(matrix, 'suites: [bookworm]\n\n  - id: "6.1-cloud"', 'suites: [bookworm\n\n  - id: "6.1-cloud"');
    expect(jsYamlLine(t.text)).toBe(t.line + 2);
    expect(messageOf(() => parseMatrix(t.text, 'kernels/matrix.yaml'))).toMatch(new RegExp(`^kernels/matrix\\.yaml:${t.line}: invalid YAML: a ',' is missing after this entry, or the '\\[' of line ${t.line} is not closed `));
  });
});
