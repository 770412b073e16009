// Which objects may share a run of the workload (agent/observers.ts), on objects compiled here:
// only those whose every loaded program observes, and that call no helper acting on what it sees.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { mustRunAlone } from '../../harness/agent/observers.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { compileBpf } from '../helpers/tools.js';

const source = fileURLToPath(new URL('../loader/fixtures/actors.bpf.c', import.meta.url));
const spec = (define?: string) => {
  const o = compileBpf(source, [...(define ? [`-D${define}`] : []), '-D__TARGET_ARCH_x86']);
  return loadObjectSpec(readFileSync(o), `${define ?? 'observers'}.bpf.o`);
};

describe('objects that only observe share a run of the workload; others run it alone', () => {
  it('kprobe, tracepoint, fentry and perf_event programs observe (an autoload-off XDP program does not count)', () => {
    expect(mustRunAlone(spec())).toBeUndefined();
    expect(mustRunAlone(loadObjectSpec(readFileSync(compileBpf(fileURLToPath(new URL('../loader/fixtures/observer.bpf.c', import.meta.url)))), 'observer.bpf.o'))).toBeUndefined();
  });

  it('a config that adds workload commands runs alone', () => {
    expect(mustRunAlone(spec(), ['touch /tmp/x'])).toBe('its config adds workload commands');
  });

  it.each([
    ['OVERRIDE', /calls a helper that changes what it traces/],
    ['SIGNAL', /calls a helper that changes what it traces/],
    ['WRITE_USER', /calls a helper that changes what it traces/],
    ['FMOD_RET', /program deny_open \(fmod_ret\) acts on what it is attached to/],
    ['XDP', /program pass \(xdp\) acts on what it is attached to/],
    ['WRITABLE', /program writable \(raw_tp\.w\) acts on what it is attached to/],
  ])('%s runs alone', (define, why) => {
    expect(mustRunAlone(spec(define))).toMatch(why);
  });
});
