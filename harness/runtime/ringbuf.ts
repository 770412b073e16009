// Reader for BPF_MAP_TYPE_RINGBUF. The map is mmap'd in two parts:
//   offset 0:         one page, the consumer position (u64), read-write;
//   offset page size: one page with the producer position (u64), then the data area mapped
//                     twice in a row (2 × max_entries), read-only, so a record that wraps around
//                     the end is still contiguous.
// Each record starts with an 8-byte header: u32 length with BUSY (bit 31: still being written)
// and DISCARD (bit 30: dropped by the program) bits, u32 page offset; records are 8-aligned.

import { UsageError } from '../core/errors.js';
import { MapType, Ringbuf } from './consts.js';
import type { BpfMap } from './map.js';
import { Mapping, mmap, pageSize, PROT_READ, PROT_WRITE } from './sys.js';

export class RingBufReader {
  private readonly consumer: Mapping;
  private readonly producer: Mapping;
  private readonly mask: number;
  private readonly dataOff: number;
  private closed = false;
  /** Records skipped because the program discarded them. */
  discarded = 0;

  constructor(readonly map: BpfMap) {
    if (map.type !== MapType.RINGBUF) throw new UsageError(`map '${map.name}' is not a ring buffer (type ${map.type})`);
    const ps = pageSize();
    this.mask = map.maxEntries - 1;
    this.dataOff = ps;
    this.consumer = mmap(map.fd, ps, PROT_READ | PROT_WRITE, 0, `ringbuf '${map.name}' consumer page`);
    try {
      this.producer = mmap(map.fd, ps + 2 * map.maxEntries, PROT_READ, ps, `ringbuf '${map.name}' producer and data pages`);
    } catch (e) {
      this.consumer.close();
      throw e;
    }
  }

  /** Bytes written by producers and not consumed yet. */
  pending(): number {
    return Number(this.producer.view.getBigUint64(0, true) - this.consumer.view.getBigUint64(0, true));
  }

  /** Bytes consumed since the map was created (the consumer position). */
  consumerPos(): number {
    return Number(this.consumer.view.getBigUint64(0, true));
  }

  /** Drains every complete record (copies), stopping at the first one still being written. */
  read(max = Infinity): Uint8Array[] {
    if (this.closed) throw new UsageError(`ringbuf '${this.map.name}' read after close()`);
    const out: Uint8Array[] = [];
    let cons = this.consumer.view.getBigUint64(0, true);
    const prod = this.producer.view.getBigUint64(0, true);
    const dv = this.producer.view;
    while (cons < prod && out.length < max) {
      const off = this.dataOff + (Number(cons & BigInt(this.mask)));
      const hdr = dv.getUint32(off, true);
      if (hdr & Ringbuf.BUSY_BIT) break;
      const len = hdr & 0x3fffffff;
      if ((hdr & Ringbuf.DISCARD_BIT) === 0) out.push(this.producer.bytes.slice(off + Ringbuf.HDR_SZ, off + Ringbuf.HDR_SZ + len));
      else this.discarded++;
      cons += BigInt((len + Ringbuf.HDR_SZ + 7) & ~7);
      this.consumer.view.setBigUint64(0, cons, true);
    }
    return out;
  }

  /** Polls (every `intervalMs`) until at least `min` records arrived or `timeoutMs` passed. */
  async poll(min = 1, timeoutMs = 1000, intervalMs = 5): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      out.push(...this.read());
      if (out.length >= min || Date.now() >= deadline) return out;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  /** Unmaps (the map itself stays open; close it separately). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.producer.close();
    this.consumer.close();
  }
}
