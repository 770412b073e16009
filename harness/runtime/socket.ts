// libc's socket calls through koffi, for what the runtime drives over sockets itself: rtnetlink
// (netlink.ts), raw frames on an interface (AF_PACKET), socket options a test asks the kernel for.
// Addresses are byte strings built here (sockaddr_in, sockaddr_nl, sockaddr_ll); every failure is a
// SyscallError naming the call and what it was for.

import koffi from 'koffi';
import { CoreMatrixError } from '../core/errors.js';
import { close, NativeMem, SyscallError, withScratch } from './sys.js';

const libc = koffi.load('libc.so.6');
const cSocket = libc.func('int socket(int domain, int type, int protocol)');
const cBind = libc.func('int bind(int fd, void *addr, uint32_t addrlen)');
const cSendto = libc.func('long sendto(int fd, void *buf, size_t len, int flags, void *addr, uint32_t addrlen)');
const cRecv = libc.func('long recv(int fd, void *buf, size_t len, int flags)');
const cSetsockopt = libc.func('int setsockopt(int fd, int level, int optname, void *optval, uint32_t optlen)');
const cGetsockopt = libc.func('int getsockopt(int fd, int level, int optname, void *optval, void *optlen)');
const cIfNameToIndex = libc.func('unsigned int if_nametoindex(const char *ifname)');

export const AF_INET = 2;
export const AF_NETLINK = 16;
export const AF_PACKET = 17;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_RCVBUF = 8;
export const SO_RCVTIMEO = 20;
export const SOL_NETLINK = 270;

function fail(call: string): never {
  throw new SyscallError(call, koffi.errno());
}

/** socket(domain, type | SOCK_CLOEXEC, protocol) → fd; `what` names its use in errors. */
export function socket(domain: number, type: number, protocol: number, what: string): number {
  const fd = cSocket(domain, type | SOCK_CLOEXEC, protocol) as number;
  if (fd < 0) fail(`socket(${what})`);
  return fd;
}

/** close(fd) of a socket from socket(). */
export function closeSocket(fd: number): void {
  close(fd);
}

export function bind(fd: number, addr: Uint8Array, what: string): void {
  withScratch((s) => {
    if ((cBind(fd, s.from(addr).addr, addr.length) as number) < 0) fail(`bind(${what})`);
  });
}

/** sendto(fd, data, flags, addr): the bytes sent. Without `addr`, send() on a connected socket. */
export function sendTo(fd: number, data: Uint8Array, addr: Uint8Array | undefined, what: string, flags = 0): number {
  return withScratch((s) => {
    const buf = s.from(data);
    const to = addr ? s.from(addr) : undefined;
    const n = Number(cSendto(fd, buf.addr, data.length, flags, to ? to.addr : null, addr?.length ?? 0));
    if (n < 0) fail(`sendto(${what})`);
    return n;
  });
}

/** recv(fd, maxLen, flags) → the bytes received (one datagram or netlink batch). */
export function recv(fd: number, maxLen: number, what: string, flags = 0): Uint8Array {
  const m = new NativeMem(maxLen);
  try {
    const n = Number(cRecv(fd, m.addr, maxLen, flags));
    if (n < 0) fail(`recv(${what})`);
    return m.copy(n);
  } finally {
    m.free();
  }
}

export function setsockopt(fd: number, level: number, optname: number, value: Uint8Array, what: string): void {
  withScratch((s) => {
    if ((cSetsockopt(fd, level, optname, s.from(value).addr, value.length) as number) < 0) fail(`setsockopt(${what})`);
  });
}

/** setsockopt with an int value. */
export function setsockoptInt(fd: number, level: number, optname: number, value: number, what: string): void {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, value, true);
  setsockopt(fd, level, optname, b, what);
}

/** getsockopt(fd, level, optname) with room for `size` bytes → the bytes the kernel wrote. */
export function getsockopt(fd: number, level: number, optname: number, size: number, what: string): Uint8Array {
  return withScratch((s) => {
    const val = s.alloc(size);
    const len = s.alloc(4);
    len.view.setUint32(0, size, true);
    if ((cGetsockopt(fd, level, optname, val.addr, len.addr) as number) < 0) fail(`getsockopt(${what})`);
    return val.copy(Math.min(size, len.view.getUint32(0, true)));
  });
}

/** getsockopt of an int option. */
export function getsockoptInt(fd: number, level: number, optname: number, what: string): number {
  const b = getsockopt(fd, level, optname, 4, what);
  if (b.length !== 4) throw new CoreMatrixError(`getsockopt(${what}): the kernel wrote ${b.length} bytes, not an int`);
  return new DataView(b.buffer, b.byteOffset).getInt32(0, true);
}

/** SO_RCVTIMEO: a blocking recv() gives up with EAGAIN after `ms`. */
export function setReceiveTimeout(fd: number, ms: number, what: string): void {
  const tv = new Uint8Array(16);
  const dv = new DataView(tv.buffer);
  dv.setBigInt64(0, BigInt(Math.floor(ms / 1000)), true);
  dv.setBigInt64(8, BigInt((ms % 1000) * 1000), true);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, what);
}

/** if_nametoindex(name): the interface's index; a missing interface is ENODEV. */
export function ifNameToIndex(name: string): number {
  const i = cIfNameToIndex(name) as number;
  if (i === 0) fail(`if_nametoindex(${name})`);
  return i;
}

/** struct sockaddr_in for a dotted IPv4 address and a port. */
export function sockaddrIn(ip: string, port: number): Uint8Array {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new CoreMatrixError(`'${ip}' is not a dotted IPv4 address`);
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_INET, true);
  dv.setUint16(2, port, false);
  b.set(parts, 4);
  return b;
}

/** struct sockaddr_nl: pid 0 is the kernel (as a destination) or "assign one" (to bind). */
export function sockaddrNl(pid = 0, groups = 0): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_NETLINK, true);
  dv.setUint32(4, pid, true);
  dv.setUint32(8, groups, true);
  return b;
}

/** struct sockaddr_ll for sending frames of EtherType `protocol` out of interface `ifindex`. */
export function sockaddrLl(ifindex: number, protocol: number, mac?: Uint8Array): Uint8Array {
  const b = new Uint8Array(20);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_PACKET, true);
  dv.setUint16(2, protocol, false);
  dv.setInt32(4, ifindex, true);
  if (mac) {
    dv.setUint8(11, mac.length);
    b.set(mac.subarray(0, 8), 12);
  }
  return b;
}
