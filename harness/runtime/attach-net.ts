// Attachments of network and cgroup programs: the ones libbpf never auto-attaches because they
// need something only user space knows (an interface, a cgroup, a network namespace, a sockmap).
// Each returns a Link whose close() detaches, with the kernel's modern interface first (a BPF
// link) and the older one where the kernel predates it (netlink IFLA_XDP, clsact + cls_bpf,
// BPF_PROG_ATTACH); a kernel too old for what was asked says which feature and version it lacks.
// Witnesses ask the kernel what is attached: linkInfo (BPF_OBJ_GET_INFO_BY_FD on a link) and
// queryAttached (BPF_PROG_QUERY); netlink.ts lists XDP on an interface and tc filters.

import { closeSync, constants, existsSync, openSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { UsageError } from '../core/errors.js';
import { SECTION_DEFS } from '../core/object/sections.js';
import { BpfCmd, getU32, getU64, layout, writeAttr } from './attr.js';
import { linkCreate, objGetInfo } from './bpf.js';
import { AttachType } from './consts.js';
import { kernelVersion, linuxKernelVersion, unameRelease } from './facts.js';
import { trackFd } from './fds.js';
import { Link } from './link.js';
import { addBpfFilter, addClsact, createNetkitPair, createVethPair, deleteBpfFilter, interfaceIndex, interfaceXdp, setInterfaceXdp, setLinkUp, type TcDirection } from './netlink.js';
import { FeatureMissingError } from './probe.js';
import type { Program } from './program.js';
import { AF_PACKET, closeSocket, sendTo, sockaddrLl, socket, SOCK_RAW } from './socket.js';
import { bpf, mount, SyscallError, withScratch } from './sys.js';

// ---- what each interface needs --------------------------------------------------------------------

/** The kernel interfaces this module uses, with the first Linux version that has each. */
const NET_FEATURES = {
  cgroupLink: { what: 'cgroup links (BPF_LINK_CREATE on a cgroup)', min: '5.7' },
  netnsLink: { what: 'netns links (BPF_LINK_CREATE on a network namespace)', min: '5.8' },
  skLookup: { what: 'sk_lookup programs', min: '5.9' },
  xdpLink: { what: 'XDP links', min: '5.9' },
  netfilterLink: { what: 'netfilter links', min: '6.4' },
  tcxLink: { what: 'tcx links', min: '6.6' },
  netkit: { what: 'netkit devices and links', min: '6.7' },
} as const;
export type NetFeature = keyof typeof NET_FEATURES;

let runningVersion: number | undefined;
/** Does the running kernel's version reach the feature's? (Debian ships no backports of these.) */
export function kernelHas(feature: NetFeature): boolean {
  const [a, b] = NET_FEATURES[feature].min.split('.').map(Number) as [number, number];
  return (runningVersion ??= linuxKernelVersion()) >= kernelVersion(a, b, 0);
}

/**
 * Something the running kernel has no interface for, in one line: "<target>: <call>: <errno>: tcx
 * links need Linux 6.6 (this kernel: 5.10.0-46-amd64)". No target when the call names it already.
 */
export class NetFeatureMissingError extends FeatureMissingError {
  override name = 'NetFeatureMissingError';
  constructor(target: string | undefined, feature: NetFeature, cause?: SyscallError) {
    const f = NET_FEATURES[feature];
    super(f.what, f.min);
    this.message = `${target ? `${target}: ` : ''}${cause ? `${cause.message}: ` : ''}${f.what} need Linux ${f.min} (this kernel: ${unameRelease()})`;
  }
}

/** Prefixes a failure with where it happened, keeping its class and errno. */
function at<T>(target: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof Error && !e.message.startsWith(`${target}: `)) e.message = `${target}: ${e.message}`;
    throw e;
  }
}

/** Runs `fn`; a failure on a kernel older than `feature` becomes the feature's error. */
function needing<T>(target: string | undefined, feature: NetFeature, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof SyscallError && !kernelHas(feature)) throw new NetFeatureMissingError(target, feature, e);
    throw e;
  }
}

/** How to attach: the kernel's modern interface where it has it ('auto'), or one path forced (tests exercise both). */
export type Via<Legacy extends string> = 'auto' | 'link' | Legacy;

// ---- BPF_PROG_ATTACH / DETACH / QUERY -------------------------------------------------------------

const BPF_PROG_ATTACH = 8;
const BPF_PROG_DETACH = 9;
const BPF_PROG_QUERY = 16;
export const BPF_F_ALLOW_MULTI = 1 << 1;

// BPF_PROG_ATTACH and BPF_PROG_DETACH: { target_fd; attach_bpf_fd; attach_type; attach_flags; replace_bpf_fd }.
export const PROG_ATTACH = layout('BPF_PROG_ATTACH', ['union bpf_attr', ''], 20, {
  target_fd: [0, 4],
  attach_bpf_fd: [4, 4],
  attach_type: [8, 4],
  attach_flags: [12, 4],
  replace_bpf_fd: [16, 4],
});

// BPF_PROG_QUERY: struct `query`. 6.6 added prog_attach_flags, link_ids, link_attach_flags (left
// zero: not asked for) and `revision`, which the kernel writes back into the caller's attr
// whatever size it was given: the buffer must reach past it (64 bytes), or the kernel writes into
// whatever the allocator put after it.
// The offsetof check (test/runtime/attr.test.ts) knows bookworm's 6.1 header: the 6.6 fields are null there.
export const PROG_QUERY = layout('BPF_PROG_QUERY', ['union bpf_attr', 'query.'], 64, {
  target_fd: [0, 4],
  attach_type: [4, 4],
  query_flags: [8, 4],
  attach_flags: [12, 4],
  prog_ids: [16, 8],
  prog_cnt: [24, 4],
  prog_attach_flags: [32, 8],
  link_ids: [40, 8],
  link_attach_flags: [48, 8],
  revision: [56, 8],
}, { link_ids: null, link_attach_flags: null, revision: null });

function progAttachCmd(cmd: number, name: string, targetFd: number, progFd: number, attachType: number, flags: number): void {
  withScratch((s) => {
    const attr = s.alloc(PROG_ATTACH.size);
    writeAttr(PROG_ATTACH, attr, { target_fd: targetFd, attach_bpf_fd: progFd, attach_type: attachType, attach_flags: flags });
    bpf(cmd, name, attr, PROG_ATTACH.size);
  });
}

/** BPF_PROG_ATTACH of `progFd` to `targetFd` (a cgroup, a sockmap, 0 for the current netns). */
export function progAttach(targetFd: number, progFd: number, attachType: number, flags = 0): void {
  progAttachCmd(BPF_PROG_ATTACH, 'BPF_PROG_ATTACH', targetFd, progFd, attachType, flags);
}

/** BPF_PROG_DETACH of `progFd` from `targetFd`. */
export function progDetach(targetFd: number, progFd: number, attachType: number): void {
  progAttachCmd(BPF_PROG_DETACH, 'BPF_PROG_DETACH', targetFd, progFd, attachType, 0);
}

/** What BPF_PROG_QUERY says is attached to a target for one attach type. */
export interface Attached {
  progIds: number[];
  /** BPF_F_ALLOW_OVERRIDE / BPF_F_ALLOW_MULTI for cgroups (0 elsewhere). */
  attachFlags: number;
}

/**
 * BPF_PROG_QUERY: the programs attached to `target` (an open fd: a cgroup or netns; an ifindex
 * for tcx; a path is opened and closed again) for `attachType`, links included.
 */
export function queryAttached(target: number | string, attachType: number, maxProgs = 64): Attached {
  const fd = typeof target === 'string' ? openSync(target, constants.O_RDONLY) : target;
  try {
    return withScratch((s) => {
      const ids = s.alloc(4 * maxProgs);
      const attr = s.alloc(PROG_QUERY.size);
      writeAttr(PROG_QUERY, attr, { target_fd: fd, attach_type: attachType, prog_ids: ids.addr, prog_cnt: maxProgs });
      bpf(BPF_PROG_QUERY, `BPF_PROG_QUERY ${typeof target === 'string' ? target : `fd ${fd}`} ${attachTypeName(attachType)}`, attr, PROG_QUERY.size);
      const n = Math.min(maxProgs, getU32(PROG_QUERY, attr, 'prog_cnt'));
      return { progIds: Array.from({ length: n }, (_, i) => ids.view.getUint32(4 * i, true)), attachFlags: getU32(PROG_QUERY, attr, 'attach_flags') };
    });
  } finally {
    if (typeof target === 'string') closeSync(fd);
  }
}

// ---- link info --------------------------------------------------------------------------------

// struct bpf_link_info: type, id, prog_id, then a union per link type at offset 16.
export const LINK_INFO = layout('struct bpf_link_info', ['struct bpf_link_info', ''], 64, {
  type: [0, 4],
  id: [4, 4],
  prog_id: [8, 4],
  'cgroup.cgroup_id': [16, 8],
  'cgroup.attach_type': [24, 4],
  'netns.netns_ino': [16, 4],
  'netns.attach_type': [20, 4],
  'xdp.ifindex': [16, 4],
  'tcx.ifindex': [16, 4],
  'tcx.attach_type': [20, 4],
  'netfilter.pf': [16, 4],
  'netfilter.hooknum': [20, 4],
  'netfilter.priority': [24, 4],
  'netfilter.flags': [28, 4],
}, { 'tcx.ifindex': null, 'tcx.attach_type': null, 'netfilter.pf': null, 'netfilter.hooknum': null, 'netfilter.priority': null, 'netfilter.flags': null });

/** enum bpf_link_type, by value. */
const LINK_TYPES = ['unspec', 'raw_tracepoint', 'tracing', 'cgroup', 'iter', 'netns', 'xdp', 'perf_event', 'kprobe_multi', 'struct_ops', 'netfilter', 'tcx', 'uprobe_multi', 'netkit', 'sockmap'];

/** A BPF link as the kernel describes it (BPF_OBJ_GET_INFO_BY_FD). */
export interface LinkInfo {
  type: string;
  id: number;
  progId: number;
  ifindex?: number;
  cgroupId?: number;
  netnsIno?: number;
  attachType?: number;
  netfilter?: { pf: number; hooknum: number; priority: number; flags: number };
}

/** The kernel's description of a bpf_link (its type, program and target). */
export function linkInfo(link: Link | number): LinkInfo {
  const fd = typeof link === 'number' ? link : link.fd;
  if (typeof link !== 'number' && link.kind !== 'bpf_link') throw new UsageError(`${link.target}: attached ${link.via}, not a BPF link: the kernel keeps no link info for it`);
  return withScratch((s) => {
    const info = s.alloc(LINK_INFO.size);
    objGetInfo(fd, info);
    const u32 = (k: keyof typeof LINK_INFO.fields) => getU32(LINK_INFO, info, k);
    const typeNo = u32('type');
    const out: LinkInfo = { type: LINK_TYPES[typeNo] ?? `type ${typeNo}`, id: u32('id'), progId: u32('prog_id') };
    switch (out.type) {
      case 'cgroup':
        out.cgroupId = Number(getU64(LINK_INFO, info, 'cgroup.cgroup_id'));
        out.attachType = u32('cgroup.attach_type');
        break;
      case 'netns':
        out.netnsIno = u32('netns.netns_ino');
        out.attachType = u32('netns.attach_type');
        break;
      case 'xdp':
        out.ifindex = u32('xdp.ifindex');
        break;
      case 'tcx':
      case 'netkit':
        out.ifindex = u32('tcx.ifindex');
        out.attachType = u32('tcx.attach_type');
        break;
      case 'netfilter':
        out.netfilter = { pf: u32('netfilter.pf'), hooknum: u32('netfilter.hooknum'), priority: info.view.getInt32(LINK_INFO.fields['netfilter.priority'][0], true), flags: u32('netfilter.flags') };
        break;
    }
    return out;
  });
}

// ---- names for messages ---------------------------------------------------------------------------

const ATTACH_NAMES = new Map<number, string>();
for (const d of SECTION_DEFS) {
  if (d.attachType === undefined || ATTACH_NAMES.has(d.attachType)) continue;
  ATTACH_NAMES.set(d.attachType, d.sec.replace(/\+$/, '').replace(/^cgroup\//, ''));
}
/** The SEC() spelling of an attach type ("connect4", "cgroup_skb/ingress", "sk_msg"), else its enum name. */
export function attachTypeName(t: number): string {
  return ATTACH_NAMES.get(t) ?? Object.entries(AttachType).find(([, v]) => v === t)?.[0].toLowerCase() ?? `attach type ${t}`;
}

/** An interface given by name or index: its index and the name messages use. */
function iface(i: string | number): { ifindex: number; name: string } {
  return typeof i === 'number' ? { ifindex: i, name: `ifindex ${i}` } : { ifindex: interfaceIndex(i), name: i };
}

// ---- XDP --------------------------------------------------------------------------------------

const XDP_FLAGS_UPDATE_IF_NOEXIST = 1;
const XDP_MODE_FLAGS = { skb: 2, drv: 4, hw: 8 } as const;
export type XdpMode = keyof typeof XDP_MODE_FLAGS;

export interface XdpOptions {
  /** skb (generic, any interface), drv (the driver's own, e.g. veth), hw; default: the kernel picks (drv where the driver has it, else skb). */
  mode?: XdpMode;
  /** 'link': BPF_LINK_CREATE BPF_XDP (5.9); 'netlink': RTM_SETLINK IFLA_XDP; 'auto': the link where the kernel has it. */
  via?: Via<'netlink'>;
}

/** Attaches an XDP program to an interface (by name or index). */
export function attachXdp(prog: Program, where: string | number, o: XdpOptions = {}): Link {
  const { ifindex, name } = iface(where);
  const target = `xdp ${name}${o.mode ? ` (${o.mode})` : ''}`;
  const flags = o.mode ? XDP_MODE_FLAGS[o.mode] : 0;
  const via = o.via === undefined || o.via === 'auto' ? (kernelHas('xdpLink') ? 'link' : 'netlink') : o.via;
  if (via === 'link') {
    const fd = at(target, () => needing(target, 'xdpLink', () => linkCreate({ progFd: prog.fd, targetFd: ifindex, attachType: AttachType.XDP, flags }, target)));
    return new Link(fd, 'bpf_link', target, 'BPF_LINK_CREATE');
  }
  at(target, () => setInterfaceXdp(ifindex, prog.fd, flags | XDP_FLAGS_UPDATE_IF_NOEXIST, target));
  return new Link(-1, 'legacy', target, 'netlink IFLA_XDP', () => setInterfaceXdp(ifindex, -1, flags, `${target} (detach)`));
}

/** IFLA_XDP_ATTACHED values: the mode an interface's one XDP program runs in. */
const XDP_ATTACHED_MODES: Record<number, XdpMode> = { 1: 'drv', 2: 'skb', 3: 'hw' };

/**
 * The mode the kernel says program `progId` runs in on an interface (its IFLA_XDP: links and
 * netlink attachments alike), or undefined when it is not attached there: the witness for an
 * attach that left the mode to the kernel (libbpf's bpf_program__attach_xdp passes no flags).
 */
export function xdpModeOf(ifindex: number, progId: number): XdpMode | undefined {
  const x = interfaceXdp(ifindex);
  if (x.drvProgId === progId && progId) return 'drv';
  if (x.skbProgId === progId && progId) return 'skb';
  // Kernels that report one program fill only IFLA_XDP_PROG_ID and say the mode in IFLA_XDP_ATTACHED.
  return x.progId === progId && progId ? XDP_ATTACHED_MODES[x.attached] : undefined;
}

// ---- tc: tcx links, else clsact + cls_bpf ---------------------------------------------------------

export interface TcOptions {
  /** 'link': a tcx link (6.6); 'legacy': clsact + cls_bpf over netlink; 'auto': tcx where the kernel has it. */
  via?: Via<'legacy'>;
  /** cls_bpf filter priority (legacy only); default 1. */
  prio?: number;
}

let nextFilterHandle = 1;

/** Attaches a SCHED_CLS program to an interface's ingress or egress. */
export function attachTc(prog: Program, where: string | number, direction: TcDirection, o: TcOptions = {}): Link {
  const { ifindex, name } = iface(where);
  const target = `tc ${name} ${direction}`;
  const via = o.via === undefined || o.via === 'auto' ? (kernelHas('tcxLink') ? 'link' : 'legacy') : o.via;
  if (via === 'link') {
    const attachType = direction === 'ingress' ? AttachType.TCX_INGRESS : AttachType.TCX_EGRESS;
    const fd = at(target, () => needing(target, 'tcxLink', () => linkCreate({ progFd: prog.fd, targetFd: ifindex, attachType }, target)));
    return new Link(fd, 'bpf_link', target, 'BPF_LINK_CREATE tcx');
  }
  const prio = o.prio ?? 1;
  return at(target, () => {
    addClsact(ifindex, name);
    // A free handle at this priority: the first not taken (EEXIST) by another filter.
    for (let tries = 0; ; tries++) {
      const handle = nextFilterHandle++;
      try {
        addBpfFilter(ifindex, direction, { progFd: prog.fd, name: prog.name || 'corematrix', prio, handle }, name);
      } catch (e) {
        if (e instanceof SyscallError && e.code === 'EEXIST' && tries < 64) continue;
        throw e;
      }
      // The clsact qdisc stays (as libbpf's bpf_tc_detach leaves its hook): other filters may hang from it.
      return new Link(-1, 'legacy', target, 'netlink cls_bpf', () => deleteBpfFilter(ifindex, direction, prio, handle, name));
    }
  });
}

/** Creates a netkit pair over netlink (L2: it carries Ethernet frames); a kernel without netkit says so. */
export function createNetkit(primary: string, peer: string, mode: 'l2' | 'l3' = 'l2'): void {
  needing(undefined, 'netkit', () => createNetkitPair(primary, peer, mode));
}

/**
 * The guest's netkit pair, for netkit programs whose tool would create one (Cilium creates one per
 * pod): made the first time it is asked for (L2, both ends up) and kept for the guest's life.
 */
export const NETKIT_PAIR = { primary: 'cmnk0', peer: 'cmnk1' } as const;

export function ensureNetkitPair(): { primary: number; peer: number } {
  const [primary, peer] = ensurePair([NETKIT_PAIR.primary, NETKIT_PAIR.peer], () => createNetkit(NETKIT_PAIR.primary, NETKIT_PAIR.peer));
  return { primary, peer };
}

/**
 * The guest's veth pair, for XDP in driver mode (veth has its own XDP hook, as a NIC's driver
 * does): made the first time it is asked for and kept for the guest's life. Both ends up: with the
 * receiving end down, frames sent into it are taken and dropped before its XDP program runs
 * (measured on 5.10, 6.1 and 7.3; nothing else is needed there). Needs the veth module where the
 * kernel builds it so (kernels/modules.ts ships it).
 */
export const VETH_PAIR = { name: 'cmv0', peer: 'cmv1' } as const;

export function ensureVethPair(): { name: number; peer: number } {
  const [name, peer] = ensurePair([VETH_PAIR.name, VETH_PAIR.peer], () => createVethPair(VETH_PAIR.name, VETH_PAIR.peer));
  return { name, peer };
}

/** A device pair made by `create` unless it is there already, both ends up and silent; their indexes. */
function ensurePair(ends: readonly [string, string], create: () => void): [number, number] {
  if (!existsSync(`/sys/class/net/${ends[0]}`)) {
    create();
    for (const n of ends) {
      // No IPv6 on the pair: an interface coming up sends router solicitations and MLD reports of
      // its own, which would run the programs beside the frames the count is made of. (No IPv4
      // address either: nothing else sends on it.)
      const ipv6 = `/proc/sys/net/ipv6/conf/${n}/disable_ipv6`;
      if (existsSync(ipv6)) writeFileSync(ipv6, '1');
      setLinkUp(interfaceIndex(n));
    }
  }
  return [interfaceIndex(ends[0]), interfaceIndex(ends[1])];
}

/** An ethertype for local experiments (IEEE 802 "local experimental 1"): no protocol handler takes it. */
export const PROBE_ETHERTYPE = 0x88b5;

/**
 * Sends `n` broadcast frames of PROBE_ETHERTYPE out of interface `ifindex` (an AF_PACKET socket):
 * each is one transmit, which is where netkit runs the programs of the sending end. Returns how
 * many the kernel took.
 */
export function sendProbeFrames(ifindex: number, n: number, what: string): number {
  const frame = new Uint8Array(60);
  frame.fill(0xff, 0, 6);
  frame.set([0x02, 0, 0, 0, 0, 0x01], 6);
  new DataView(frame.buffer).setUint16(12, PROBE_ETHERTYPE, false);
  const fd = socket(AF_PACKET, SOCK_RAW, 0, `AF_PACKET frames out of ${what}`);
  let sent = 0;
  try {
    for (; sent < n; sent++) sendTo(fd, frame, sockaddrLl(ifindex, PROBE_ETHERTYPE), `frame out of ${what}`);
  } finally {
    closeSocket(fd);
  }
  return sent;
}

/** Attaches a SCHED_CLS program to a netkit pair (by its primary): on the primary, or on its peer. */
export function attachNetkit(prog: Program, primary: string | number, side: 'primary' | 'peer'): Link {
  const { ifindex, name } = iface(primary);
  const target = `netkit ${name} ${side}`;
  const attachType = side === 'primary' ? AttachType.NETKIT_PRIMARY : AttachType.NETKIT_PEER;
  const fd = at(target, () => needing(target, 'netkit', () => linkCreate({ progFd: prog.fd, targetFd: ifindex, attachType }, target)));
  return new Link(fd, 'bpf_link', target, 'BPF_LINK_CREATE netkit');
}

// ---- cgroups ----------------------------------------------------------------------------------

export const DEFAULT_CGROUP = '/sys/fs/cgroup';

/** The filesystem type mounted at `dir` (/proc/self/mountinfo), if anything is. */
function mountedType(dir: string): string | undefined {
  let fs: string | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (f[4] === dir && dash > 0) fs = f[dash + 1]; // the last mount on a point is the visible one
  }
  return fs;
}

/** Mounts cgroup2 at `dir` unless it is there already: 'mounted' or 'present'. */
export function ensureCgroup2(dir = DEFAULT_CGROUP): 'mounted' | 'present' {
  const fs = mountedType(dir);
  if (fs === 'cgroup2') return 'present';
  if (fs) throw new UsageError(`${dir}: ${fs} is mounted there, not cgroup2 (a cgroup v1 or hybrid layout): attach to a cgroup2 directory instead`);
  if (!existsSync(dir)) throw new UsageError(`${dir}: no such directory to mount cgroup2 on`);
  mount('cgroup2', dir, 'cgroup2');
  return 'mounted';
}

export interface CgroupOptions {
  /** 'link': BPF_LINK_CREATE on the cgroup (5.7); 'attach': BPF_PROG_ATTACH with BPF_F_ALLOW_MULTI; 'auto': the link where the kernel has it. */
  via?: Via<'attach'>;
}

const openDir = (dir: string) => openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);

/** Attaches a cgroup program (cgroup_skb, cgroup/*, sockops) to a cgroup v2 directory. */
export function attachCgroup(prog: Program, attachType: number, cgroupDir = DEFAULT_CGROUP, o: CgroupOptions = {}): Link {
  const target = `cgroup ${cgroupDir} ${attachTypeName(attachType)}`;
  const via = o.via === undefined || o.via === 'auto' ? (kernelHas('cgroupLink') ? 'link' : 'attach') : o.via;
  const cg = at(target, () => openDir(cgroupDir));
  if (via === 'link') {
    try {
      const fd = at(target, () => needing(target, 'cgroupLink', () => linkCreate({ progFd: prog.fd, targetFd: cg, attachType }, target)));
      return new Link(fd, 'bpf_link', target, 'BPF_LINK_CREATE');
    } finally {
      closeSync(cg); // the link holds the cgroup
    }
  }
  try {
    at(target, () => progAttach(cg, prog.fd, attachType, BPF_F_ALLOW_MULTI));
  } catch (e) {
    closeSync(cg);
    throw e;
  }
  // The cgroup's fd stays open until the detach, which needs it.
  return new Link(-1, 'legacy', target, 'BPF_PROG_ATTACH', () => {
    try {
      at(`${target} (detach)`, () => progDetach(cg, prog.fd, attachType));
    } finally {
      closeSync(cg);
    }
  });
}

// ---- network namespaces -------------------------------------------------------------------------

export const CURRENT_NETNS = '/proc/self/ns/net';

export interface NetnsOptions {
  /** 'link': BPF_LINK_CREATE on the netns (5.8); 'attach': BPF_PROG_ATTACH (flow_dissector only, current netns); 'auto': the link where the kernel has it. */
  via?: Via<'attach'>;
  /** The namespace file; default this process's. */
  netns?: string;
}

/** Attaches an sk_lookup or flow_dissector program to a network namespace. */
export function attachNetns(prog: Program, attachType: number, o: NetnsOptions = {}): Link {
  const path = o.netns ?? CURRENT_NETNS;
  const target = `netns ${readlinkSync(path)} ${attachTypeName(attachType)}`;
  const skLookup = attachType === AttachType.SK_LOOKUP;
  if (attachType !== AttachType.FLOW_DISSECTOR && !skLookup) throw new UsageError(`${target}: only sk_lookup and flow_dissector programs attach to a network namespace`);
  const via = o.via === undefined || o.via === 'auto' ? (kernelHas('netnsLink') || skLookup ? 'link' : 'attach') : o.via;
  if (via === 'attach') {
    if (skLookup) throw new UsageError(`${target}: sk_lookup programs attach through links only`);
    if (path !== CURRENT_NETNS) throw new UsageError(`${target}: BPF_PROG_ATTACH attaches a flow dissector to the current network namespace only`);
    at(target, () => progAttach(0, prog.fd, attachType));
    return new Link(-1, 'legacy', target, 'BPF_PROG_ATTACH', () => at(`${target} (detach)`, () => progDetach(0, prog.fd, attachType)));
  }
  const ns = openSync(path, constants.O_RDONLY);
  try {
    const fd = at(target, () => needing(target, skLookup ? 'skLookup' : 'netnsLink', () => linkCreate({ progFd: prog.fd, targetFd: ns, attachType }, target)));
    return new Link(fd, 'bpf_link', target, 'BPF_LINK_CREATE');
  } finally {
    closeSync(ns);
  }
}

// ---- sockmaps ---------------------------------------------------------------------------------

/**
 * Attaches an sk_skb (stream parser/verdict, verdict) or sk_msg program to a sockmap or sockhash
 * with BPF_PROG_ATTACH; sockets added to the map afterwards run it.
 */
export function attachSockmap(prog: Program, map: { fd: number; name: string }, attachType: number): Link {
  const target = `sockmap ${map.name} ${attachTypeName(attachType)}`;
  at(target, () => progAttach(map.fd, prog.fd, attachType));
  return new Link(-1, 'legacy', target, 'BPF_PROG_ATTACH', () => at(`${target} (detach)`, () => progDetach(map.fd, prog.fd, attachType)));
}

// ---- netfilter ----------------------------------------------------------------------------------

// BPF_LINK_CREATE for BPF_NETFILTER (6.4): `link_create.netfilter` after the four common fields.
export const LINK_CREATE_NETFILTER = layout('BPF_LINK_CREATE netfilter', ['union bpf_attr', 'link_create.'], 32, {
  prog_fd: [0, 4],
  target_fd: [4, 4],
  attach_type: [8, 4],
  flags: [12, 4],
  'netfilter.pf': [16, 4],
  'netfilter.hooknum': [20, 4],
  'netfilter.priority': [24, 4],
  'netfilter.flags': [28, 4],
});

export const NFPROTO_IPV4 = 2;
export const NFPROTO_IPV6 = 10;
/** enum nf_inet_hooks. */
export const NfHook = { PRE_ROUTING: 0, LOCAL_IN: 1, FORWARD: 2, LOCAL_OUT: 3, POST_ROUTING: 4 } as const;

export interface NetfilterHook {
  /** NFPROTO_IPV4 or NFPROTO_IPV6. */
  pf: number;
  hooknum: number;
  /** Hook priority; the kernel refuses INT_MIN and INT_MAX. */
  priority: number;
  /** BPF_F_NETFILTER_IP_DEFRAG (1, 6.6) asks for defragmented packets. */
  flags?: number;
}

/** Attaches a netfilter program to a hook of this network namespace. */
export function attachNetfilter(prog: Program, hook: NetfilterHook): Link {
  const pf = hook.pf === NFPROTO_IPV4 ? 'ipv4' : hook.pf === NFPROTO_IPV6 ? 'ipv6' : `pf ${hook.pf}`;
  const hookName = Object.entries(NfHook).find(([, v]) => v === hook.hooknum)?.[0].toLowerCase() ?? `hook ${hook.hooknum}`;
  const target = `netfilter ${pf} ${hookName} prio ${hook.priority}`;
  const fd = at(target, () =>
    needing(target, 'netfilterLink', () =>
      withScratch((s) => {
        const attr = s.alloc(LINK_CREATE_NETFILTER.size);
        writeAttr(LINK_CREATE_NETFILTER, attr, {
          prog_fd: prog.fd, attach_type: AttachType.NETFILTER,
          'netfilter.pf': hook.pf, 'netfilter.hooknum': hook.hooknum, 'netfilter.priority': hook.priority >>> 0, 'netfilter.flags': hook.flags ?? 0,
        });
        return trackFd(bpf(BpfCmd.LINK_CREATE, 'BPF_LINK_CREATE', attr, LINK_CREATE_NETFILTER.size), 'link', target);
      }),
    ),
  );
  return new Link(fd, 'bpf_link', target, 'BPF_LINK_CREATE');
}
