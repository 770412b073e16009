// `corematrix kernels`: list the matrix and what each entry resolves to, fetch kernels into the
// cache, print the path of a kernel's BTF. Progress goes to stderr; stdout carries the answer.
import { parseArgs } from 'node:util';
import { UsageError } from '../core/errors.js';
import { KernelStore, type KernelArtifacts, type KernelEntry } from '../kernels/store.js';
import type { Command } from './command.js';

const HELP = `usage: corematrix kernels <list|fetch|btf|show> [options]

  kernels list                   every matrix entry: flavour, suites, the package and version it
                                 resolves to today, and whether it is cached
  kernels fetch <id|glob|all>... download and extract kernels (vmlinuz, config, BTF) into the cache;
                                 entries with source: are built (tinyconfig + configs/base.config +
                                 their fragment; 6 to 8 min on 2 cores, once per recipe hash)
  kernels btf <id>               print the path of the kernel's cached vmlinux BTF (fetching if needed;
                                 for a custom kernel without CONFIG_DEBUG_INFO_BTF, pahole's BTF)
  kernels show <id>              print the kernel's cached artefacts as JSON (fetching if needed)

options:
  --matrix FILE   kernel matrix (default kernels/matrix.yaml)
  --offline       list: do not consult apt, show only what is cached
  --jobs N        fetch: kernels fetched at once (default 2)
  --quiet         no progress lines on stderr
  --help          this text

ids may be exact (6.1-rt), globs (6.1*) or 'all'. The cache is $COREMATRIX_CACHE/kernels
(default ~/.cache/corematrix/kernels); apt lists are refreshed at most every
$COREMATRIX_APT_MAX_AGE_HOURS hours (default 12).`;

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

async function pool<T, R>(items: T[], jobs: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, items.length)) }, worker));
  return out;
}

async function list(store: KernelStore, offline: boolean): Promise<number> {
  const rows = [['id', 'flavour', 'suites', 'package', 'version', 'cached']];
  let failed = 0;
  for (const e of store.matrix()) {
    const cached = store.cached(e.id, { use: [] });
    if (offline) {
      rows.push([e.id, e.flavour, e.suites.join(','), cached?.package ?? '-', cached?.version ?? '-', cached ? 'yes' : 'no']);
      continue;
    }
    try {
      const r = await store.resolve(e);
      const isCached = cached !== undefined && cached.version === r.version && cached.package === r.package;
      rows.push([e.id, e.flavour, r.suite, r.package, r.version, isCached ? 'yes' : cached ? `older (${cached.version})` : 'no']);
    } catch (err) {
      failed++;
      rows.push([e.id, e.flavour, e.suites.join(','), `error: ${(err as Error).message}`, '', cached ? `yes (${cached.version})` : 'no']);
    }
  }
  process.stdout.write(table(rows) + '\n');
  return failed ? 1 : 0;
}

async function fetchAll(store: KernelStore, entries: KernelEntry[], jobs: number): Promise<number> {
  const results = await pool(entries, jobs, async (e) => {
    const t0 = Date.now();
    try {
      const a = await store.fetch(e);
      return { e, a, s: (Date.now() - t0) / 1000 };
    } catch (err) {
      return { e, err: (err as Error).message.split('\n')[0]! };
    }
  });
  const rows = [['id', 'release', 'version', 'image', 'btf', 'seconds', 'btf path']];
  let failed = 0;
  for (const r of results) {
    if ('err' in r) {
      failed++;
      rows.push([r.e.id, 'FAILED', r.err!, '', '', '', '']);
      continue;
    }
    const a: KernelArtifacts = r.a!;
    rows.push([a.id, a.release, a.version, a.compression, mb(a.sizes.btf), r.s!.toFixed(1), a.btf]);
  }
  process.stdout.write(table(rows) + '\n');
  return failed ? 1 : 0;
}

export const kernelsCommand: Command = {
  name: 'kernels',
  help: HELP,
  async run(args: string[]): Promise<number> {
    let parsed;
    try {
      parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        matrix: { type: 'string' },
        offline: { type: 'boolean', default: false },
        jobs: { type: 'string', default: '2' },
        quiet: { type: 'boolean', short: 'q', default: false },
      },
      });
    } catch (err) {
      throw new UsageError(`kernels: ${(err as Error).message}`);
    }
    const { values, positionals } = parsed;
    const [sub, ...rest] = positionals;
    const log = values.quiet ? () => {} : (line: string) => process.stderr.write(`${line}\n`);
    const store = new KernelStore({ log, ...(values.matrix ? { matrix: values.matrix } : {}) });
    const jobs = Number(values.jobs);
    if (!Number.isInteger(jobs) || jobs < 1) throw new UsageError(`kernels: --jobs must be a positive integer, not '${values.jobs}'`);
    switch (sub) {
      case 'list':
        if (rest.length) throw new UsageError(`kernels list: unexpected argument '${rest[0]}'`);
        return list(store, values.offline);
      case 'fetch':
        if (rest.length === 0) throw new UsageError('kernels fetch: name kernels: an id, a glob (6.1*) or all');
        return fetchAll(store, store.select(rest), jobs);
      case 'btf':
      case 'show': {
        if (rest.length !== 1) throw new UsageError(`kernels ${sub}: name exactly one kernel id`);
        const a = await store.fetch(store.entry(rest[0]!));
        process.stdout.write(sub === 'btf' ? `${a.btf}\n` : `${JSON.stringify(a, null, 2)}\n`);
        return 0;
      }
      case undefined:
        throw new UsageError('kernels: missing subcommand (list, fetch, btf, show); see corematrix kernels --help');
      default:
        throw new UsageError(`kernels: unknown subcommand '${sub}' (list, fetch, btf, show)`);
    }
  },
};
