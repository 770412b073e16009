// Program: a loaded BPF program handle. Takes already-relocated instruction bytes; the object
// loader (harness/core) produces them, this module only talks to the kernel.

import { UsageError } from '../core/errors.js';
import { getName, getU32, getU64, PROG_INFO } from './attr.js';
import { objGetInfo, progLoad, progTestRun, type ProgLoadAttr, type TestRunOptions, type TestRunResult } from './bpf.js';
import { close, withScratch } from './sys.js';

export interface ProgramInfo {
  type: number;
  id: number;
  /** Kernel's program tag (sha1 prefix of the xlated insns, map fds zeroed) as 16 hex digits. */
  tag: string;
  name: string;
  jitedLen: number;
  xlatedLen: number;
  /** Translated (post-verifier) instructions; empty when the kernel hides them (no CAP_SYS_ADMIN / bpf_jit_harden). */
  xlated: Uint8Array;
  mapIds: number[];
  btfId: number;
  loadTime: bigint;
  runTimeNs?: bigint;
  runCnt?: bigint;
  /** 5.16+: instructions the verifier processed. */
  verifiedInsns?: number;
  /** Bytes of bpf_prog_info the kernel filled (tells what this kernel knows). */
  infoLen: number;
}

export type ProgramOptions = ProgLoadAttr;

export class Program {
  private closed = false;
  constructor(
    readonly fd: number,
    readonly type: number,
    readonly name: string,
    /** The verifier log of the load (empty unless logLevel > 0 was asked for). */
    readonly verifierLog: string,
  ) {}

  /** BPF_PROG_LOAD. Throws VerifierError (with the log) when the verifier rejects it. */
  static load(o: ProgramOptions): Program {
    const { fd, log } = progLoad(o);
    return new Program(fd, o.progType, o.name ?? '', log);
  }

  private check(): void {
    if (this.closed) throw new UsageError(`program '${this.name}' used after close()`);
  }

  /** BPF_PROG_TEST_RUN. */
  testRun(o: TestRunOptions = {}): TestRunResult {
    this.check();
    return progTestRun(this.fd, o);
  }

  /** BPF_OBJ_GET_INFO_BY_FD, twice: once for sizes, once with buffers for insns and map ids. */
  info(): ProgramInfo {
    this.check();
    return withScratch((s) => {
      const first = s.alloc(PROG_INFO.size);
      objGetInfo(this.fd, first);
      const xlatedLen = getU32(PROG_INFO, first, 'xlated_prog_len');
      const nrMaps = getU32(PROG_INFO, first, 'nr_map_ids');
      const m = s.alloc(PROG_INFO.size);
      const xl = s.alloc(xlatedLen);
      const ids = s.alloc(4 * nrMaps);
      const dv = m.view;
      dv.setUint32(PROG_INFO.fields.xlated_prog_len[0], xlatedLen, true);
      dv.setBigUint64(PROG_INFO.fields.xlated_prog_insns[0], xlatedLen ? xl.addr : 0n, true);
      dv.setUint32(PROG_INFO.fields.nr_map_ids[0], nrMaps, true);
      dv.setBigUint64(PROG_INFO.fields.map_ids[0], nrMaps ? ids.addr : 0n, true);
      const infoLen = objGetInfo(this.fd, m);
      const has = (f: keyof typeof PROG_INFO.fields, size: number) => infoLen >= PROG_INFO.fields[f][0] + size;
      const gotX = Math.min(xlatedLen, getU32(PROG_INFO, m, 'xlated_prog_len'));
      const gotM = Math.min(nrMaps, getU32(PROG_INFO, m, 'nr_map_ids'));
      const info: ProgramInfo = {
        type: getU32(PROG_INFO, m, 'type'),
        id: getU32(PROG_INFO, m, 'id'),
        tag: [...m.bytes.subarray(8, 16)].map((b) => b.toString(16).padStart(2, '0')).join(''),
        name: getName(PROG_INFO, m.bytes, 'name'),
        jitedLen: getU32(PROG_INFO, m, 'jited_prog_len'),
        xlatedLen: gotX,
        xlated: xl.copy(gotX),
        mapIds: Array.from({ length: gotM }, (_, i) => ids.view.getUint32(4 * i, true)),
        btfId: has('btf_id', 4) ? getU32(PROG_INFO, m, 'btf_id') : 0,
        loadTime: getU64(PROG_INFO, m, 'load_time'),
        infoLen,
      };
      if (has('run_cnt', 8)) {
        info.runTimeNs = getU64(PROG_INFO, m, 'run_time_ns');
        info.runCnt = getU64(PROG_INFO, m, 'run_cnt');
      }
      if (has('verified_insns', 4)) info.verifiedInsns = getU32(PROG_INFO, m, 'verified_insns');
      return info;
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }
}
