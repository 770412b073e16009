// The verifier's reason for a rejection, read from its log as both loaders' cells give it
// (runtime/bpf.ts verifierReason): the last line that is neither a statistic nor a quoted source
// line. The logs are as 7.3's verifier wrote them in a guest (test_xdp_devmap_tailcall's
// xdp_devmap, which reads ctx->egress_ifindex without BPF_XDP_DEVMAP): with BPF_LOG_STATS, as
// libbpf loads and as our retry after E2BIG loads, 7.3 adds one line per subprogram and quotes the
// failing source line after the error; with log level 1, the error is the line before "processed".
import { describe, expect, it } from 'vitest';
import { VerifierError, verifierProcessed, verifierReason } from '../../harness/runtime/bpf.js';

const STATS_7_3 = [
  'invalid bpf_context access off=20 size=4',
  '; return ctx->egress_ifindex; @ test_xdp_devmap_tailcall.c:10',
  'verification time 642 usec',
  'stack depth max 0',
  'subprog 0 (xdp_devmap) main insns_self 1 insns_total 1 stack 0',
  'processed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
  '',
].join('\n');

const LEVEL_1 = [
  'func#0 @0',
  '0: R1=ctx() R10=fp0',
  '; return ctx->egress_ifindex; @ test_xdp_devmap_tailcall.c:10',
  '0: (61) r0 = *(u32 *)(r1 +20)',
  'invalid bpf_context access off=20 size=4',
  'processed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
  '',
].join('\n');

describe("the verifier's reason", () => {
  it('skips the statistics 7.3 writes with BPF_LOG_STATS, the subprogram lines and the quoted source line', () => {
    expect(verifierReason(STATS_7_3)).toBe('invalid bpf_context access off=20 size=4');
  });

  it('is the line before "processed" in a level-1 log', () => {
    expect(verifierReason(LEVEL_1)).toBe('invalid bpf_context access off=20 size=4');
  });

  it('is nothing when the log holds only statistics (the verifier accepted the program)', () => {
    expect(verifierReason(STATS_7_3.split('\n').slice(2).join('\n'))).toBeUndefined();
    expect(verifierReason('')).toBeUndefined();
  });

  it('names the reason in a VerifierError, and says so when the log is empty or holds only "processed 0 insns"', () => {
    expect(new VerifierError('bpf(BPF_PROG_LOAD)', 13, STATS_7_3, "program 'xdp_devmap'").message).toContain("program 'xdp_devmap': invalid bpf_context access off=20 size=4");
    expect(new VerifierError('bpf(BPF_PROG_LOAD)', 22, '', "program 'x'").message).toContain("program 'x': rejected with an empty log (bad attributes, not the verifier)");
    // 5.10 asked for an lsm_cgroup program (an attach type it does not know) writes only this line.
    const none = 'processed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n';
    expect(verifierReason(none)).toBeUndefined();
    expect(verifierProcessed(none)).toBe(0);
    expect(verifierProcessed(STATS_7_3)).toBe(1);
    expect(new VerifierError('bpf(BPF_PROG_LOAD)', 22, none, "program 'socket_bind'").message).toContain("program 'socket_bind': refused before the verifier looked at any instruction (an attach type or flag this kernel lacks)");
  });
});
