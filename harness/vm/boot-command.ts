// `corematrix boot`: boots kernels of the matrix with our initramfs and prints one verdict line
// per kernel (for debugging images and the orchestrator, and for measuring boot times).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Command } from '../cli/command.js';
import { UsageError } from '../core/errors.js';
import { buildImage } from '../images/initramfs.js';
import { KernelStore } from '../kernels/store.js';
import { repoRoot } from '../paths.js';
import { defaultJobs, runPool } from './pool.js';
import { type GuestRun, runGuest } from './qemu.js';

const INITS = ['agent', 'hello', 'node', 'hang', 'panic'] as const;
type InitMode = (typeof INITS)[number];

const HELP = `usage: corematrix boot [options] <kernel-id>...

Boots each kernel (ids from kernels/matrix.yaml) under QEMU with the corematrix initramfs
and prints one line per kernel: verdict, guest uptime at /init and at the agent's hello,
wall time. Exit code 0 when every verdict is 'ok', 1 otherwise.

options:
  --init <mode>      agent (default: node /agent.js from dist/), hello (busybox only, no node),
                     node (node + koffi + libbpf smoke check), hang, panic (verdict tests)
  --jobs <n>         guests in parallel (default: number of cores)
  --accel <a>        auto (default: KVM only if a probe boot proves it), kvm, tcg
  --timeout <s>      overall budget per guest (default 360 under TCG)
  --append <args>    extra kernel command line
  --log-dir <dir>    console logs (default reports/boot)
  --json             print the GuestRun records as JSON instead of lines
  -h, --help         this help`;

export const bootCommand: Command = {
  name: 'boot',
  help: HELP,
  async run(args: string[]): Promise<number> {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        init: { type: 'string', default: 'agent' },
        jobs: { type: 'string' },
        accel: { type: 'string', default: 'auto' },
        timeout: { type: 'string' },
        append: { type: 'string' },
        'log-dir': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (positionals.length === 0) throw new UsageError('boot: name at least one kernel id (see kernels/matrix.yaml)');
    const init = values.init as InitMode;
    if (!INITS.includes(init)) throw new UsageError(`boot: --init ${values.init}: expected one of ${INITS.join(', ')}`);
    const accel = values.accel as 'auto' | 'kvm' | 'tcg';
    if (!['auto', 'kvm', 'tcg'].includes(accel)) throw new UsageError(`boot: --accel ${values.accel}: expected auto, kvm or tcg`);
    const jobs = values.jobs === undefined ? defaultJobs() : Number(values.jobs);
    if (!Number.isInteger(jobs) || jobs < 1) throw new UsageError(`boot: --jobs ${values.jobs}: expected a positive integer`);
    const timeoutMs = values.timeout === undefined ? undefined : Number(values.timeout) * 1000;
    if (timeoutMs !== undefined && !(timeoutMs > 0)) throw new UsageError(`boot: --timeout ${values.timeout}: expected seconds > 0`);
    const logDir = values['log-dir'] ?? join(repoRoot(), 'reports', 'boot');
    mkdirSync(logDir, { recursive: true });

    const store = new KernelStore({ log: (l) => process.stderr.write(l + '\n') });
    const kernels = [];
    for (const id of positionals) kernels.push(await store.fetch(id));
    const runs = await runPool(kernels, jobs, async (k, signal): Promise<GuestRun> => {
      const img = await buildImage({
        files: [],
        base: init === 'agent' || init === 'node' ? 'full' : 'busybox',
        agent: init === 'agent' ? undefined : false,
        kernelConfig: k.config,
        release: k.release,
      });
      const append = [init === 'agent' ? '' : `cm.init=${init}`, values.append ?? ''].filter(Boolean).join(' ');
      return runGuest({
        kernelId: k.id,
        vmlinuz: k.vmlinuz,
        initrd: img.path,
        append,
        accel,
        logDir,
        signal,
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      });
    });
    if (values.json) process.stdout.write(JSON.stringify(runs, null, 2) + '\n');
    else
      for (const r of runs) {
        const ms = (n?: number) => (n === undefined ? '-' : `${(n / 1000).toFixed(2)}s`);
        process.stdout.write(
          `${r.kernelId.padEnd(10)} ${r.verdict.padEnd(12)} init ${ms(r.initMs)}  hello ${ms(r.bootMs)}  wall ${ms(r.durationMs)}  ${r.accel}` +
            `${r.detail ? `  ${r.detail}` : ''}\n`,
        );
        if (r.verdict !== 'ok') process.stdout.write(`  console: ${r.consoleLog}\n`);
      }
    return runs.every((r) => r.verdict === 'ok') ? 0 : 1;
  },
};
