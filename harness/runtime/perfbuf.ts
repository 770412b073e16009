// Reader for BPF_MAP_TYPE_PERF_EVENT_ARRAY (bpf_perf_event_output): one software
// PERF_COUNT_SW_BPF_OUTPUT event per online CPU, its fd stored in the map at index = CPU, and
// its ring mmap'd: a metadata page (struct perf_event_mmap_page: data_head/data_tail/...) and
// 2^n data pages. Records are struct perf_event_header { u32 type; u16 misc; u16 size; } then
// the body: PERF_RECORD_SAMPLE with PERF_SAMPLE_RAW = { u32 size; u8 data[size]; } (size includes
// the kernel's padding to 8 bytes), PERF_RECORD_LOST = { u64 id; u64 lost; }.

import { UsageError } from '../core/errors.js';
import { PERF_EVENT_ATTR, PERF_MMAP_PAGE, writeAttr } from './attr.js';
import { MapType, Perf } from './consts.js';
import { onlineCpus } from './facts.js';
import { trackFd } from './fds.js';
import { u32, type BpfMap } from './map.js';
import { close, ioctl, Mapping, mmap, pageSize, perfEventOpen, PROT_READ, PROT_WRITE, withScratch } from './sys.js';

export type PerfRecord = { cpu: number; kind: 'sample'; data: Uint8Array } | { cpu: number; kind: 'lost'; lost: number };

interface CpuRing {
  cpu: number;
  fd: number;
  ring: Mapping;
}

export interface PerfReaderOptions {
  /** Data pages per CPU, a power of two (default 8). */
  pagesPerCpu?: number;
}

export class PerfBufReader {
  private readonly rings: CpuRing[] = [];
  private closed = false;

  constructor(
    readonly map: BpfMap,
    o: PerfReaderOptions = {},
  ) {
    if (map.type !== MapType.PERF_EVENT_ARRAY) throw new UsageError(`map '${map.name}' is not a perf event array (type ${map.type})`);
    const pages = o.pagesPerCpu ?? 8;
    if (pages & (pages - 1)) throw new UsageError(`pagesPerCpu ${pages} is not a power of two`);
    const ps = pageSize();
    try {
      for (const cpu of onlineCpus()) {
        if (cpu >= map.maxEntries) continue;
        const fd = withScratch((s) => {
          const attr = s.alloc(PERF_EVENT_ATTR.size);
          writeAttr(PERF_EVENT_ATTR, attr, {
            type: Perf.TYPE_SOFTWARE,
            size: PERF_EVENT_ATTR.size,
            config: Perf.COUNT_SW_BPF_OUTPUT,
            sample_type: Perf.SAMPLE_RAW,
            sample_period: 1,
            wakeup_events: 1,
          });
          return trackFd(perfEventOpen(attr, -1, cpu, -1, Perf.FLAG_FD_CLOEXEC, `bpf_output cpu ${cpu}`), 'perf_event', `perfbuf '${map.name}' cpu ${cpu}`);
        });
        let ring: Mapping;
        try {
          ring = mmap(fd, (1 + pages) * ps, PROT_READ | PROT_WRITE, 0, `perf ring cpu ${cpu}`);
        } catch (e) {
          close(fd);
          throw e;
        }
        this.rings.push({ cpu, fd, ring });
        map.update(u32(cpu), u32(fd));
        ioctl(fd, Perf.IOC_ENABLE, 0, `PERF_EVENT_IOC_ENABLE cpu ${cpu}`);
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Drains every CPU's ring. */
  read(): PerfRecord[] {
    if (this.closed) throw new UsageError(`perfbuf '${this.map.name}' read after close()`);
    const out: PerfRecord[] = [];
    const ps = pageSize();
    for (const { cpu, ring } of this.rings) {
      const meta = ring.view;
      const head = meta.getBigUint64(PERF_MMAP_PAGE.fields.data_head[0], true);
      let tail = meta.getBigUint64(PERF_MMAP_PAGE.fields.data_tail[0], true);
      // data_offset/data_size are 0 on kernels before 4.1: the data then starts at one page.
      const dataOff = Number(meta.getBigUint64(PERF_MMAP_PAGE.fields.data_offset[0], true)) || ps;
      const dataSize = Number(meta.getBigUint64(PERF_MMAP_PAGE.fields.data_size[0], true)) || ring.length - ps;
      const at = (pos: bigint, len: number): Uint8Array => {
        const start = Number(pos % BigInt(dataSize));
        if (start + len <= dataSize) return ring.bytes.slice(dataOff + start, dataOff + start + len);
        const b = new Uint8Array(len);
        const first = dataSize - start;
        b.set(ring.bytes.subarray(dataOff + start, dataOff + dataSize), 0);
        b.set(ring.bytes.subarray(dataOff, dataOff + len - first), first);
        return b;
      };
      while (tail < head) {
        const hdr = at(tail, 8);
        const hv = new DataView(hdr.buffer);
        const type = hv.getUint32(0, true);
        const size = hv.getUint16(6, true);
        if (size < 8) break; // corrupt; stop rather than spin
        const body = at(tail + 8n, size - 8);
        const bv = new DataView(body.buffer);
        if (type === Perf.RECORD_SAMPLE && body.length >= 4) {
          const n = bv.getUint32(0, true);
          out.push({ cpu, kind: 'sample', data: body.slice(4, 4 + n) });
        } else if (type === Perf.RECORD_LOST && body.length >= 16) {
          out.push({ cpu, kind: 'lost', lost: Number(bv.getBigUint64(8, true)) });
        }
        tail += BigInt(size);
      }
      meta.setBigUint64(PERF_MMAP_PAGE.fields.data_tail[0], tail, true);
    }
    return out;
  }

  /** Polls until at least `min` samples arrived or `timeoutMs` passed. */
  async poll(min = 1, timeoutMs = 1000, intervalMs = 5): Promise<PerfRecord[]> {
    const out: PerfRecord[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      out.push(...this.read());
      if (out.filter((r) => r.kind === 'sample').length >= min || Date.now() >= deadline) return out;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  /** Removes the map entries, unmaps the rings and closes the events (the map stays open). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.rings) {
      try {
        this.map.delete(u32(r.cpu));
      } catch {
        // the map may be closed already; closing the event is what matters
      }
      r.ring.close();
      close(r.fd);
    }
    this.rings.length = 0;
  }
}
