// An object config's `target-program` (freplace against a program of the same object), checked on
// the host: what it sets in our spec, what it hands libbpf, and the one-line errors for names that
// cannot work. The guest side is test/loader/freplace.guest.test.ts.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { applyObjectConfig, checkObjectConfig, libbpfSettingsFor, parseObjectConfig } from '../../harness/loader/object-config.js';
import { compileBpf } from '../helpers/tools.js';

const spec = () => loadObjectSpec(readFileSync(compileBpf(fileURLToPath(new URL('fixtures/freplace.bpf.c', import.meta.url)))), 'freplace.bpf.o');
const config = (text: string) => parseObjectConfig(text, 'freplace.bpf.yaml');
const facts = { hasBtfFunction: () => false, hasKsym: () => false, kconfig: () => undefined, kernelVersion: [6, 1, 0] as const };

describe('target-program', () => {
  it('makes the freplace program load against its target, and gives libbpf the same through set_attach_target', () => {
    const original = spec();
    const r = applyObjectConfig(original, config('programs:\n  new_verdict: { target-program: on_openat }\n'), facts);
    expect(r.spec.programs.find((p) => p.name === 'new_verdict')).toMatchObject({ attachProgram: 'on_openat', attachTo: 'verdict' });
    expect(original.programs.find((p) => p.name === 'new_verdict')!.attachProgram).toBeUndefined();
    expect(r.applied).toEqual(['program new_verdict: replaces verdict of program on_openat']);
    expect(libbpfSettingsFor(original, r.spec)).toMatchObject({ attachProgram: { new_verdict: { program: 'on_openat', function: 'verdict' } }, attachTarget: {} });
  });

  it('refuses, naming file, line and key, what cannot work', () => {
    const s = spec();
    expect(() => checkObjectConfig(s, config('programs:\n  on_openat: { target-program: new_verdict }\n'))).toThrow("freplace.bpf.yaml:2: programs.on_openat.target-program: only freplace programs replace a function of another program ('on_openat' is tracepoint, section 'tracepoint/syscalls/sys_enter_openat')");
    expect(() => checkObjectConfig(s, config('programs:\n  new_verdict: { target-program: on_open }\n'))).toThrow("freplace.bpf.yaml:2: programs.new_verdict.target-program: no program 'on_open' in freplace.bpf.o (programs: on_openat, new_verdict)");
    expect(() => checkObjectConfig(s, config('programs:\n  new_verdict: { target-program: new_verdict }\n'))).toThrow("freplace.bpf.yaml:2: programs.new_verdict.target-program: 'new_verdict' is a freplace program itself");
    expect(() => config('programs:\n  new_verdict: { target-program: 3 }\n')).toThrow('freplace.bpf.yaml:2: programs.new_verdict.target-program: expected the name of a program of this object, not number 3');
  });
});
