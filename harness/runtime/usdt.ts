// USDT attachment, as libbpf's bpf_program__attach_usdt does it for programs written with
// usdt.bpf.h (facts from libbpf's usdt.c behaviour; no code of theirs): find the probe's notes in
// the binary, turn each location's argument string into a `struct __bpf_usdt_spec` in the
// object's `__bpf_usdt_specs` map (one spec id per distinct argument string of this attachment),
// tell the BPF side which spec a hit belongs to — the spec id as the BPF cookie where the object
// was loaded with LINUX_HAS_BPF_COOKIE, else an `__bpf_usdt_ip_to_spec_id` entry keyed by the
// probe's address — and attach one uprobe per location (the semaphore as its ref_ctr_offset), or
// one multi-uprobe link when the program was loaded for BPF_TRACE_UPROBE_MULTI.

import { readFileSync, realpathSync } from 'node:fs';
import { CoreMatrixError, UsageError } from '../core/errors.js';
import { executableMappings, mappedAddress, needsProcessMapping, parseUsdtArgs, USDT_SPEC_SIZE, usdtLocations, usdtSpecBytes } from '../core/usdt.js';
import { UpdateFlag } from './consts.js';
import { Link } from './link.js';
import { type BpfMap, u32, u64 } from './map.js';
import type { Program } from './program.js';
import { attachUprobe, attachUprobeMulti, readBinary, resolveBinaryPath, uprobePmu } from './uprobe.js';
import { errnoNumber, SyscallError } from './sys.js';

/** The object's USDT maps (usdt.bpf.h): `__bpf_usdt_specs` and `__bpf_usdt_ip_to_spec_id`. */
export interface UsdtMaps {
  specs?: BpfMap;
  ipToSpecId?: BpfMap;
}

export interface UsdtTarget {
  /** Path of the executable or library, or a name looked up as libbpf does. */
  binary: string;
  provider: string;
  name: string;
  /** Only this process (0: this one; default: every process). */
  pid?: number;
}

export interface UsdtOptions {
  /**
   * The object was loaded with LINUX_HAS_BPF_COOKIE = 1: usdt.bpf.h then reads the spec id from
   * bpf_get_attach_cookie(); otherwise from the ip→spec-id map. Must be what the program was loaded with.
   */
  cookies: boolean;
  /** The program was loaded for BPF_TRACE_UPROBE_MULTI (libbpf does so where the kernel has multi-uprobe links): one link for every location. */
  multi?: boolean;
  /** What bpf_usdt_cookie() returns (libbpf's bpf_usdt_opts.usdt_cookie). */
  usdtCookie?: bigint | number;
  /** Per-location uprobes through tracefs uprobe_events rather than the uprobe PMU. */
  legacy?: boolean;
}

/** One attached location, for reports: where it is, which spec it reads, how it is keyed. */
export interface UsdtAttachedLocation {
  /** File offset of the probe (the uprobe's offset). */
  fileOffset: number;
  /** Address used as the ip→spec-id key (absent with cookies). */
  ipKey?: number;
  /** File offset of the semaphore, 0 when none. */
  semaphoreOffset: number;
  specId: number;
  args: string;
}

/** A USDT attachment: one Link whose close() detaches every location and releases its spec ids and ip→spec-id entries. */
export class UsdtLink extends Link {
  constructor(
    target: string,
    via: string,
    readonly locations: readonly UsdtAttachedLocation[],
    cleanup: () => void,
  ) {
    super(-1, 'legacy', target, via, cleanup);
  }
}

/** Spec ids of one spec map: handed out in order, taken back on detach and handed out again first (as libbpf does). */
interface SpecIds {
  next: number;
  free: number[];
}
const specIdsByMap = new WeakMap<BpfMap, SpecIds>();

const EEXIST = errnoNumber('EEXIST');

/**
 * Attaches a usdt.bpf.h program to USDT `provider:name` of `target.binary`. Errors name the
 * probe and the step ("usdt /t/x:cm:tick: ...").
 */
export function attachUsdt(prog: Program, maps: UsdtMaps, target: UsdtTarget, opts: UsdtOptions): UsdtLink {
  const path = resolveBinaryPath(target.binary);
  const what = `usdt ${path}:${target.provider}:${target.name}`;
  const { specs, ipToSpecId } = maps;
  if (!specs || (!opts.cookies && !ipToSpecId)) throw new UsageError(`${what}: the object has no ${specs ? '__bpf_usdt_ip_to_spec_id' : '__bpf_usdt_specs'} map (is bpf/usdt.bpf.h included?)`);
  if (specs.valueSize !== USDT_SPEC_SIZE) throw new CoreMatrixError(`${what}: __bpf_usdt_specs holds ${specs.valueSize}-byte values; the struct __bpf_usdt_spec written here is ${USDT_SPEC_SIZE} bytes`);
  const pid = target.pid === 0 ? process.pid : target.pid !== undefined && target.pid > 0 ? target.pid : undefined;

  const bin = readBinary(path);
  const hostArch = process.arch === 'arm64' ? 'aarch64' : 'x86_64';
  if (bin.arch !== hostArch) throw new CoreMatrixError(`${what}: the binary is for machine ${bin.machine}, not ${hostArch}`);
  const located = usdtLocations(bin, target.provider, target.name);
  if (!located.length) throw new CoreMatrixError(`${what}: no such USDT probe in ${path}`);
  if (located.some((l) => l.semaphoreOffset) && !opts.multi && !opts.legacy) {
    const pmu = uprobePmu();
    if (pmu && pmu.refCtrShift === undefined) throw new CoreMatrixError(`${what}: the probe has a semaphore and this kernel's uprobes cannot count it (no ref_ctr_offset, Linux 4.20)`);
  }

  // Without cookies, a shared object's probe addresses are only known in one process's mapping.
  let mappings: ReturnType<typeof executableMappings> | undefined;
  if (!opts.cookies && needsProcessMapping(bin)) {
    if (pid === undefined) throw new CoreMatrixError(`${what}: a shared object (or PIE) without BPF cookies can only be attached for one process (give a pid)`);
    mappings = executableMappings(readFileSync(`/proc/${pid}/maps`, 'utf8'), realpathSync(path));
  }

  const ids = specIdsByMap.get(specs) ?? { next: 0, free: [] };
  specIdsByMap.set(specs, ids);
  const mine: number[] = [];
  const idOfArgs = new Map<string, number>();
  const ipKeys: number[] = [];
  const links: Link[] = [];
  const locations: UsdtAttachedLocation[] = [];
  const release = () => {
    for (const l of links.splice(0)) {
      try {
        l.close();
      } catch {
        // Detach the rest whatever one of them says.
      }
    }
    for (const ip of ipKeys.splice(0)) {
      try {
        ipToSpecId!.delete(u64(ip));
      } catch {
        // Best effort: a stale entry would only make a later attach at this address fail with EEXIST.
      }
    }
    ids.free.push(...mine.splice(0));
  };

  try {
    for (const loc of located) {
      const args = loc.note.args;
      let specId = idOfArgs.get(args);
      if (specId === undefined) {
        const spec = usdtSpecBytes(parseUsdtArgs(args, hostArch, `${what} at 0x${loc.address.toString(16)}`), BigInt(opts.usdtCookie ?? 0));
        specId = ids.free.length ? ids.free.pop()! : ids.next < specs.maxEntries ? ids.next++ : -1;
        if (specId < 0) throw new CoreMatrixError(`${what}: __bpf_usdt_specs is full (${specs.maxEntries} specs; raise BPF_USDT_MAX_SPEC_CNT)`);
        mine.push(specId);
        idOfArgs.set(args, specId);
        specs.update(u32(specId), spec, UpdateFlag.ANY);
      }
      const placed: UsdtAttachedLocation = { fileOffset: loc.fileOffset, semaphoreOffset: loc.semaphoreOffset, specId, args };
      if (!opts.cookies) {
        const ip = mappings ? mappedAddress(mappings, loc.fileOffset) : loc.address;
        if (ip === undefined) throw new CoreMatrixError(`${what}: file offset 0x${loc.fileOffset.toString(16)} is not mapped executable in process ${pid}`);
        try {
          ipToSpecId!.update(u64(ip), u32(specId), UpdateFlag.NOEXIST);
        } catch (e) {
          if (e instanceof SyscallError && e.errno === EEXIST) throw new CoreMatrixError(`${what}: address 0x${ip.toString(16)} is already in __bpf_usdt_ip_to_spec_id (attached twice?)`);
          throw e;
        }
        ipKeys.push(ip);
        placed.ipKey = ip;
      }
      locations.push(placed);
    }
    if (opts.multi) {
      links.push(attachUprobeMulti(prog, {
        binary: path,
        offsets: locations.map((l) => l.fileOffset),
        refCtrOffsets: locations.map((l) => l.semaphoreOffset),
        ...(opts.cookies ? { cookies: locations.map((l) => l.specId) } : {}),
        ...(pid !== undefined ? { pid } : {}),
        label: what,
      }));
    } else {
      for (const l of locations) {
        links.push(attachUprobe(prog, {
          binary: path,
          offset: l.fileOffset,
          ...(l.semaphoreOffset ? { refCtrOffset: l.semaphoreOffset } : {}),
          ...(opts.cookies ? { cookie: l.specId } : {}),
          ...(pid !== undefined ? { pid } : {}),
          ...(opts.legacy ? { legacy: true } : {}),
        }));
      }
    }
  } catch (e) {
    release();
    if (e instanceof CoreMatrixError && !e.message.startsWith(what)) e.message = `${what}: ${e.message}`;
    throw e;
  }
  const via = [...new Set(links.map((l) => l.via))].join('; ');
  const n = locations.length;
  return new UsdtLink(`${what} (${n} ${n === 1 ? 'location' : 'locations'})`, via, locations, release);
}
