// Debian version ordering checked against dpkg itself on real version strings: every package
// installed on this machine, every kernel version in the private apt lists, and the classic
// corner cases (~, +, epochs, letters vs. punctuation, leading zeros).
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { compareDebVersions, parseDebVersion, upstreamOf } from '../../harness/kernels/debversion.js';

const tricky = [
  '1.0', '1.0-1', '1.0-0', '1.0~rc1', '1.0~rc1-1', '1.0~~', '1.0~~a', '1.0~', '1.0+b1', '1.0a', '1.0.1', '1.00',
  '1:0.9', '2:0.1', '0:1.0', '1.0-1~bpo13+1', '1.0-1+deb12u1', '1.0-1.1', '7.3~rc7-1~exp1', '7.3.4-1~bpo13+1',
  '6.1.176-1', '6.1.170-3', '6.12.117-1', '5.10.262-1', '6.1.176-1~deb11u1', '1.2.3-4ubuntu1', '1.2.3-4+b2',
  '10.0', '9.99', '1.0-a', '1.0-A', '1.0-+', '1.0-.', '20240101', '1.0+dfsg-1', '1.0+dfsg1-1', '1.0.dfsg-1',
];

function dpkgOrder(pairs: [string, string][]): number[] {
  // One shell for all pairs: prints -1, 0 or 1 per line, as dpkg --compare-versions decides.
  const script = pairs
    .map(([a, b]) => `if dpkg --compare-versions '${a}' lt '${b}'; then echo -1; elif dpkg --compare-versions '${a}' eq '${b}'; then echo 0; else echo 1; fi`)
    .join('\n');
  return execFileSync('sh', [], { input: script, encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['pipe', 'pipe', 'ignore'] }).trim().split('\n').map(Number);
}

function installedVersions(): string[] {
  const out = execFileSync('dpkg-query', ['-W', '-f', '${Version}\\n'], { encoding: 'utf8' });
  return [...new Set(out.split('\n').filter(Boolean))];
}

describe('Debian version comparison', () => {
  it('agrees with dpkg --compare-versions on corner cases, all pairs', () => {
    const pairs: [string, string][] = [];
    for (const a of tricky) for (const b of tricky) pairs.push([a, b]);
    const want = dpkgOrder(pairs);
    const got = pairs.map(([a, b]) => Math.sign(compareDebVersions(a, b)));
    const diff = pairs.filter((_, i) => got[i] !== want[i]).map(([a, b], i) => `${a} vs ${b}`);
    expect(diff).toEqual([]);
    expect(pairs.length).toBe(tricky.length ** 2);
  }, 120_000);

  it('agrees with dpkg on the versions of every installed package (neighbours after sorting, plus random pairs)', () => {
    const versions = installedVersions();
    expect(versions.length).toBeGreaterThan(100);
    const sorted = [...versions].sort(compareDebVersions);
    const pairs: [string, string][] = [];
    for (let i = 0; i + 1 < sorted.length; i++) pairs.push([sorted[i]!, sorted[i + 1]!]);
    // A deterministic spread of far-apart pairs too.
    for (let i = 0; i < versions.length; i += 3) pairs.push([versions[i]!, versions[(i * 7919) % versions.length]!]);
    const want = dpkgOrder(pairs);
    const got = pairs.map(([a, b]) => Math.sign(compareDebVersions(a, b)));
    const diff = pairs.filter((_, i) => got[i] !== want[i]).map(([a, b]) => `${a} vs ${b}`);
    expect(diff).toEqual([]);
  }, 120_000);

  it('splits epoch, upstream and revision', () => {
    expect(parseDebVersion('1:2.3-4-5')).toEqual({ epoch: 1, upstream: '2.3-4', revision: '5' });
    expect(parseDebVersion('7.3~rc7-1~exp1')).toEqual({ epoch: 0, upstream: '7.3~rc7', revision: '1~exp1' });
    expect(parseDebVersion('6.1')).toEqual({ epoch: 0, upstream: '6.1', revision: '' });
    expect(parseDebVersion('not a version')).toBeUndefined();
    expect(parseDebVersion('a1.0')).toBeUndefined();
    expect(upstreamOf('6.1.176-1~deb11u1')).toBe('6.1.176');
  });
});
