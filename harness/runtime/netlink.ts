// rtnetlink, for the attachments that live on an interface: interfaces (a veth or netkit pair,
// up), XDP set on an interface (IFLA_XDP), the clsact qdisc and cls_bpf filters of legacy tc, and
// the kernel's own account of what is attached (link attributes, filter dumps). Every request asks
// for an ack (and extended acks, whose text the kernel adds to an error); a failure is one line
// naming the operation, the errno and the kernel's message.

import { concatBytes } from '../core/bytes.js';
import { CoreMatrixError } from '../core/errors.js';
import {
  AF_NETLINK, bind, closeSocket, ifNameToIndex, recv, sendTo, setReceiveTimeout, setsockoptInt, sockaddrNl, socket, SOCK_RAW, SOL_NETLINK,
} from './socket.js';
import { SyscallError } from './sys.js';

const NETLINK_ROUTE = 0;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;

const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_DUMP = 0x300;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
/** In an NLMSG_ERROR: extended-ack attributes follow. */
const NLM_F_ACK_TLVS = 0x200;
/** In an NLMSG_ERROR: the request's payload was not echoed (NETLINK_CAP_ACK). */
const NLM_F_CAPPED = 0x100;
const NLMSGERR_ATTR_MSG = 1;
const NLA_TYPE_MASK = 0x3fff;

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_SETLINK = 19;
const RTM_NEWQDISC = 36;
const RTM_DELQDISC = 37;
const RTM_NEWTFILTER = 44;
const RTM_DELTFILTER = 45;
const RTM_GETTFILTER = 46;

const IFLA_IFNAME = 3;
const IFLA_LINKINFO = 18;
const IFLA_XDP = 43;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFLA_NETKIT_PEER_INFO = 1;
const IFLA_NETKIT_MODE = 5;
const IFLA_XDP_FD = 1;
const IFLA_XDP_ATTACHED = 2;
const IFLA_XDP_FLAGS = 3;
const IFLA_XDP_PROG_ID = 4;
const IFLA_XDP_DRV_PROG_ID = 5;
const IFLA_XDP_SKB_PROG_ID = 6;
const IFF_UP = 1;

const TCA_KIND = 1;
const TCA_OPTIONS = 2;
const TCA_BPF_FD = 6;
const TCA_BPF_NAME = 7;
const TCA_BPF_FLAGS = 8;
const TCA_BPF_ID = 11;
const TCA_BPF_FLAG_ACT_DIRECT = 1;

/** TC_H_CLSACT (== TC_H_INGRESS): the clsact qdisc's parent; its handle is ffff:0. */
const TC_H_CLSACT = 0xfffffff1;
const TC_H_MIN_INGRESS = 0xfff2;
const TC_H_MIN_EGRESS = 0xfff3;
const ETH_P_ALL = 0x0003;

const IFINFOMSG_SIZE = 16;
const TCMSG_SIZE = 20;
const RECV_BYTES = 64 * 1024;

export type TcDirection = 'ingress' | 'egress';

/** The parent a clsact filter hangs from: ffff:fff2 (ingress) or ffff:fff3 (egress). */
export function clsactParent(direction: TcDirection): number {
  return ((TC_H_CLSACT & 0xffff0000) | (direction === 'ingress' ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS)) >>> 0;
}

// ---- message building ---------------------------------------------------------------------------

const align4 = (n: number) => (n + 3) & ~3;

/** Netlink attributes (struct nlattr + payload, 4-byte aligned), nestable. */
class Attrs {
  private chunks: Uint8Array[] = [];
  private size = 0;
  raw(type: number, payload: Uint8Array): this {
    const len = 4 + payload.length;
    const b = new Uint8Array(align4(len));
    const dv = new DataView(b.buffer);
    dv.setUint16(0, len, true);
    dv.setUint16(2, type, true);
    b.set(payload, 4);
    this.chunks.push(b);
    this.size += b.length;
    return this;
  }
  u8(type: number, v: number): this {
    return this.raw(type, Uint8Array.of(v));
  }
  u32(type: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    return this.raw(type, b);
  }
  s32(type: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    return this.raw(type, b);
  }
  /** A NUL-terminated string. */
  str(type: number, s: string): this {
    const enc = new TextEncoder().encode(s);
    const b = new Uint8Array(enc.length + 1);
    b.set(enc);
    return this.raw(type, b);
  }
  nest(type: number, fill: (a: Attrs) => void): this {
    const inner = new Attrs();
    fill(inner);
    return this.raw(type, inner.bytes());
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.size);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}

/** struct ifinfomsg { family, type, index, flags, change }. */
function ifinfomsg(o: { index?: number; flags?: number; change?: number } = {}): Uint8Array {
  const b = new Uint8Array(IFINFOMSG_SIZE);
  const dv = new DataView(b.buffer);
  dv.setInt32(4, o.index ?? 0, true);
  dv.setUint32(8, o.flags ?? 0, true);
  dv.setUint32(12, o.change ?? 0, true);
  return b;
}

/** struct tcmsg { family, ifindex, handle, parent, info }. */
function tcmsg(o: { ifindex: number; handle?: number; parent?: number; info?: number }): Uint8Array {
  const b = new Uint8Array(TCMSG_SIZE);
  const dv = new DataView(b.buffer);
  dv.setInt32(4, o.ifindex, true);
  dv.setUint32(8, o.handle ?? 0, true);
  dv.setUint32(12, o.parent ?? 0, true);
  dv.setUint32(16, o.info ?? 0, true);
  return b;
}

const concat = (...parts: Uint8Array[]): Uint8Array => concatBytes(parts);

// ---- message parsing ----------------------------------------------------------------------------

/** One netlink message of a reply: its type and payload (after the 16-byte header). */
export interface NlMessage {
  type: number;
  flags: number;
  payload: Uint8Array;
}

/** The attributes in `b` from `off` on, by type (NLA_F_NESTED and NLA_F_NET_BYTEORDER masked off); the first of a type wins. */
export function parseAttrs(b: Uint8Array, off = 0): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  while (off + 4 <= b.length) {
    const len = dv.getUint16(off, true);
    const type = dv.getUint16(off + 2, true) & NLA_TYPE_MASK;
    if (len < 4 || off + len > b.length) break;
    if (!out.has(type)) out.set(type, b.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

const u32Of = (b: Uint8Array | undefined) => (b && b.length >= 4 ? new DataView(b.buffer, b.byteOffset).getUint32(0, true) : undefined);
const strOf = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b.subarray(0, b.indexOf(0) < 0 ? b.length : b.indexOf(0))) : undefined);

// ---- the socket ---------------------------------------------------------------------------------

let nextSeq = 1;

/** An NETLINK_ROUTE socket for one or more requests; close() it. */
export class RtNetlink {
  private readonly fd: number;
  constructor() {
    this.fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, 'rtnetlink');
    try {
      // The kernel's reason in text on errors, without the request echoed back. Both since 4.12/4.3;
      // an older kernel refusing them still answers with plain errnos.
      for (const opt of [NETLINK_EXT_ACK, NETLINK_CAP_ACK]) {
        try {
          setsockoptInt(this.fd, SOL_NETLINK, opt, 1, 'rtnetlink ack options');
        } catch (e) {
          if (!(e instanceof SyscallError)) throw e;
        }
      }
      // The kernel answers rtnetlink in the sendto() call's context; a missing answer is a bug, not a wait.
      setReceiveTimeout(this.fd, 5000, 'rtnetlink');
      bind(this.fd, sockaddrNl(), 'rtnetlink');
    } catch (e) {
      closeSocket(this.fd);
      throw e;
    }
  }

  close(): void {
    closeSocket(this.fd);
  }

  /**
   * Sends one request and reads its answer: the data messages (a dump's, or a GET's), ended by
   * NLMSG_DONE (dump) or the ack every other request asks for. A negative ack throws, naming `op`.
   */
  transact(op: string, type: number, flags: number, body: Uint8Array): NlMessage[] {
    const seq = nextSeq++;
    const dump = (flags & NLM_F_DUMP) === NLM_F_DUMP;
    const msg = new Uint8Array(16 + body.length);
    const dv = new DataView(msg.buffer);
    dv.setUint32(0, msg.length, true);
    dv.setUint16(4, type, true);
    dv.setUint16(6, NLM_F_REQUEST | (dump ? 0 : NLM_F_ACK) | flags, true);
    dv.setUint32(8, seq, true);
    msg.set(body, 16);
    sendTo(this.fd, msg, sockaddrNl(), `rtnetlink ${op}`);
    const out: NlMessage[] = [];
    for (;;) {
      const batch = recv(this.fd, RECV_BYTES, `rtnetlink ${op}`);
      if (batch.length === 0) throw new CoreMatrixError(`netlink ${op}: the kernel closed the answer without an ack`);
      const bv = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
      for (let off = 0; off + 16 <= batch.length; ) {
        const len = bv.getUint32(off, true);
        if (len < 16 || off + len > batch.length) throw new CoreMatrixError(`netlink ${op}: malformed answer (message length ${len} at ${off} of ${batch.length})`);
        const mType = bv.getUint16(off + 4, true);
        const mFlags = bv.getUint16(off + 6, true);
        const mSeq = bv.getUint32(off + 8, true);
        const payload = batch.subarray(off + 16, off + len);
        off += align4(len);
        if (mSeq !== seq) continue; // a late answer to an earlier request
        if (mType === NLMSG_DONE) {
          // A dump that failed midway ends in NLMSG_DONE carrying the negative errno.
          const error = payload.length >= 4 ? new DataView(payload.buffer, payload.byteOffset).getInt32(0, true) : 0;
          if (error < 0) throw new SyscallError(`netlink ${op}`, -error, mFlags & NLM_F_ACK_TLVS ? strOf(parseAttrs(payload, 4).get(NLMSGERR_ATTR_MSG)) : undefined);
          return out;
        }
        if (mType === NLMSG_ERROR) {
          const error = new DataView(payload.buffer, payload.byteOffset).getInt32(0, true);
          if (error === 0) return out;
          throw new SyscallError(`netlink ${op}`, -error, extackMessage(payload, mFlags));
        }
        out.push({ type: mType, flags: mFlags, payload });
      }
    }
  }
}

/** The kernel's text in an extended ack (NLMSGERR_ATTR_MSG), if any. */
function extackMessage(payload: Uint8Array, flags: number): string | undefined {
  if (!(flags & NLM_F_ACK_TLVS)) return undefined;
  // struct nlmsgerr: int error + the request's nlmsghdr (+ its payload unless capped).
  let off = 4 + 16;
  if (!(flags & NLM_F_CAPPED)) off = 4 + new DataView(payload.buffer, payload.byteOffset).getUint32(4, true);
  return strOf(parseAttrs(payload, align4(off)).get(NLMSGERR_ATTR_MSG)) || undefined;
}

/** Runs `fn` with a fresh rtnetlink socket. */
export function withRtnl<T>(fn: (nl: RtNetlink) => T): T {
  const nl = new RtNetlink();
  try {
    return fn(nl);
  } finally {
    nl.close();
  }
}

// ---- interfaces ---------------------------------------------------------------------------------

/** The index of interface `name` (if_nametoindex); a missing interface throws ENODEV naming it. */
export function interfaceIndex(name: string): number {
  return ifNameToIndex(name);
}

const NEW_EXCL = NLM_F_CREATE | NLM_F_EXCL;

/** RTM_NEWLINK of a pair: `name` of `kind` with its peer `peer` described in `peerAttr` of the kind's data. */
function createPair(kind: string, name: string, peer: string, peerAttr: number, data: (a: Attrs) => void = () => {}): void {
  const body = concat(
    ifinfomsg(),
    new Attrs()
      .str(IFLA_IFNAME, name)
      .nest(IFLA_LINKINFO, (li) =>
        li.str(IFLA_INFO_KIND, kind).nest(IFLA_INFO_DATA, (d) => {
          data(d);
          d.raw(peerAttr, concat(ifinfomsg(), new Attrs().str(IFLA_IFNAME, peer).bytes()));
        }),
      )
      .bytes(),
  );
  withRtnl((nl) => nl.transact(`RTM_NEWLINK ${kind} ${name}/${peer}`, RTM_NEWLINK, NEW_EXCL, body));
}

/** Creates a veth pair `name` ↔ `peer` (needs the veth module); both start down. */
export function createVethPair(name: string, peer: string): void {
  createPair('veth', name, peer, VETH_INFO_PEER);
}

/** Creates a netkit pair (Linux 6.7, CONFIG_NETKIT): `name` is the primary, `peer` its peer; L2 mode carries Ethernet frames. */
export function createNetkitPair(name: string, peer: string, mode: 'l2' | 'l3' = 'l2'): void {
  createPair('netkit', name, peer, IFLA_NETKIT_PEER_INFO, (d) => d.u32(IFLA_NETKIT_MODE, mode === 'l2' ? 0 : 1));
}

/** Deletes an interface (a pair goes with either end). */
export function deleteLink(ifindex: number): void {
  withRtnl((nl) => nl.transact(`RTM_DELLINK ifindex ${ifindex}`, RTM_DELLINK, 0, ifinfomsg({ index: ifindex })));
}

/** Sets an interface up. */
export function setLinkUp(ifindex: number): void {
  withRtnl((nl) => nl.transact(`RTM_SETLINK up ifindex ${ifindex}`, RTM_SETLINK, 0, ifinfomsg({ index: ifindex, flags: IFF_UP, change: IFF_UP })));
}

// ---- XDP on an interface (IFLA_XDP) -------------------------------------------------------------

/** What an interface says about its XDP programs (the kernel's IFLA_XDP): ids are 0 when none. */
export interface InterfaceXdp {
  /** XDP_ATTACHED_*: 0 none, 1 drv, 2 skb, 3 hw, 4 multi. */
  attached: number;
  progId: number;
  drvProgId: number;
  skbProgId: number;
}

/** RTM_SETLINK IFLA_XDP: sets (progFd ≥ 0) or removes (progFd -1) the XDP program in the mode `flags` names. */
export function setInterfaceXdp(ifindex: number, progFd: number, flags: number, what: string): void {
  const body = concat(ifinfomsg({ index: ifindex }), new Attrs().nest(IFLA_XDP, (x) => x.s32(IFLA_XDP_FD, progFd).u32(IFLA_XDP_FLAGS, flags)).bytes());
  withRtnl((nl) => nl.transact(`RTM_SETLINK IFLA_XDP ${what}`, RTM_SETLINK, 0, body));
}

/** RTM_GETLINK: the interface's XDP state as the kernel reports it. */
export function interfaceXdp(ifindex: number): InterfaceXdp {
  const replies = withRtnl((nl) => nl.transact(`RTM_GETLINK ifindex ${ifindex}`, RTM_GETLINK, 0, ifinfomsg({ index: ifindex })));
  const link = replies.find((m) => m.type === RTM_NEWLINK);
  if (!link) throw new CoreMatrixError(`netlink RTM_GETLINK ifindex ${ifindex}: no link in the answer`);
  const xdp = parseAttrs(link.payload, IFINFOMSG_SIZE).get(IFLA_XDP);
  const a = xdp ? parseAttrs(xdp) : new Map<number, Uint8Array>();
  return {
    attached: a.get(IFLA_XDP_ATTACHED)?.[0] ?? 0,
    progId: u32Of(a.get(IFLA_XDP_PROG_ID)) ?? 0,
    drvProgId: u32Of(a.get(IFLA_XDP_DRV_PROG_ID)) ?? 0,
    skbProgId: u32Of(a.get(IFLA_XDP_SKB_PROG_ID)) ?? 0,
  };
}

// ---- legacy tc: clsact + cls_bpf ----------------------------------------------------------------

/** Adds the clsact qdisc (needs sch_ingress): 'created', or 'present' when the interface has one. */
export function addClsact(ifindex: number, ifname = `ifindex ${ifindex}`): 'created' | 'present' {
  const body = concat(tcmsg({ ifindex, handle: 0xffff0000, parent: TC_H_CLSACT }), new Attrs().str(TCA_KIND, 'clsact').bytes());
  try {
    withRtnl((nl) => nl.transact(`RTM_NEWQDISC clsact on ${ifname}`, RTM_NEWQDISC, NEW_EXCL, body));
    return 'created';
  } catch (e) {
    if (e instanceof SyscallError && e.code === 'EEXIST') return 'present';
    throw e;
  }
}

/** Removes the clsact qdisc (and every filter under it). */
export function deleteClsact(ifindex: number, ifname = `ifindex ${ifindex}`): void {
  const body = concat(tcmsg({ ifindex, handle: 0xffff0000, parent: TC_H_CLSACT }), new Attrs().str(TCA_KIND, 'clsact').bytes());
  withRtnl((nl) => nl.transact(`RTM_DELQDISC clsact on ${ifname}`, RTM_DELQDISC, 0, body));
}

export interface BpfFilterSpec {
  progFd: number;
  /** Shown by `tc filter show` (TCA_BPF_NAME). */
  name: string;
  /** Filter priority (1..0xffff). */
  prio: number;
  /** Filter handle (non-zero). */
  handle: number;
}

const filterInfo = (prio: number) => ((prio << 16) | ((ETH_P_ALL >> 8) | ((ETH_P_ALL & 0xff) << 8))) >>> 0; // TC_H_MAKE(prio << 16, htons(ETH_P_ALL))

/** Adds a cls_bpf filter in direct-action mode under clsact (needs cls_bpf); EEXIST when prio/handle is taken. */
export function addBpfFilter(ifindex: number, direction: TcDirection, f: BpfFilterSpec, ifname = `ifindex ${ifindex}`): void {
  const body = concat(
    tcmsg({ ifindex, handle: f.handle, parent: clsactParent(direction), info: filterInfo(f.prio) }),
    new Attrs()
      .str(TCA_KIND, 'bpf')
      .nest(TCA_OPTIONS, (o) => o.u32(TCA_BPF_FD, f.progFd).str(TCA_BPF_NAME, f.name).u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT))
      .bytes(),
  );
  withRtnl((nl) => nl.transact(`RTM_NEWTFILTER bpf on ${ifname} ${direction}`, RTM_NEWTFILTER, NEW_EXCL, body));
}

/** Deletes the cls_bpf filter at prio/handle. */
export function deleteBpfFilter(ifindex: number, direction: TcDirection, prio: number, handle: number, ifname = `ifindex ${ifindex}`): void {
  const body = concat(tcmsg({ ifindex, handle, parent: clsactParent(direction), info: filterInfo(prio) }), new Attrs().str(TCA_KIND, 'bpf').bytes());
  withRtnl((nl) => nl.transact(`RTM_DELTFILTER bpf on ${ifname} ${direction}`, RTM_DELTFILTER, 0, body));
}

/** A cls_bpf filter as the kernel lists it. */
export interface BpfFilter {
  prio: number;
  handle: number;
  progId: number;
  name: string;
  directAction: boolean;
}

/** RTM_GETTFILTER dump: the cls_bpf filters under clsact in one direction (none when there is no clsact). */
export function dumpBpfFilters(ifindex: number, direction: TcDirection, ifname = `ifindex ${ifindex}`): BpfFilter[] {
  let replies: NlMessage[];
  try {
    replies = withRtnl((nl) => nl.transact(`RTM_GETTFILTER on ${ifname} ${direction}`, RTM_GETTFILTER, NLM_F_DUMP, tcmsg({ ifindex, parent: clsactParent(direction) })));
  } catch (e) {
    if (e instanceof SyscallError && e.code === 'EINVAL') return []; // no clsact qdisc: nothing to list
    throw e;
  }
  const out: BpfFilter[] = [];
  for (const m of replies) {
    if (m.type !== RTM_NEWTFILTER) continue;
    const dv = new DataView(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
    const attrs = parseAttrs(m.payload, TCMSG_SIZE);
    const options = attrs.get(TCA_OPTIONS);
    // Each priority also lists its chain head (handle 0, no options).
    if (strOf(attrs.get(TCA_KIND)) !== 'bpf' || !options) continue;
    const o = parseAttrs(options);
    out.push({
      prio: dv.getUint32(16, true) >>> 16,
      handle: dv.getUint32(8, true),
      progId: u32Of(o.get(TCA_BPF_ID)) ?? 0,
      name: strOf(o.get(TCA_BPF_NAME)) ?? '',
      directAction: ((u32Of(o.get(TCA_BPF_FLAGS)) ?? 0) & TCA_BPF_FLAG_ACT_DIRECT) !== 0,
    });
  }
  return out;
}
