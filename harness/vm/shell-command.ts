// `corematrix shell <kernel>`: an interactive shell in a guest booted with the image a matrix run
// would boot for that kernel (the same suites, objects, --files, modules and network), on this
// terminal, for debugging a failing cell. /init's `cm.init=shell` mode starts busybox sh on the
// console; the shell reads /cm/shell.rc ($ENV on the kernel command line), which brings the
// network up and goes to the --exec folder. Ctrl-D (or `poweroff -f`) powers the guest off.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Command } from '../cli/command.js';
import { UsageError } from '../core/errors.js';
import { runInteractiveGuest } from './qemu.js';

const HELP = `usage: corematrix shell [options] <kernel>

Boots one kernel of the matrix (an id of kernels/matrix.yaml) with the image 'corematrix matrix'
would boot for it, and gives you a root shell in the guest on this terminal instead of running
the agent. Ctrl-D or 'poweroff -f' powers the guest off; the exit status is QEMU's (0 then).

In the guest: the suites' objects under /cm/objects, --object files under /cm/user, the run
manifest /cm/run.json, the --files under /cm/files (PATH has /cm/files first). Run the agent as
the matrix does with 'CM_RESULT_PORT=/dev/stdout node /agent.js' (its results as JSON lines).

  --suites <names>       comma-separated suites in the image, or none (default: all, as matrix)
  --suites-dir <dir>     the suites' folder (as matrix)
  --object <file.o>      a user object in the image (repeatable)
  --module <name>        a kernel module in the image (repeatable)
  --loader <ours|libbpf|both>
                         as matrix: with libbpf or both the current libbpf is in the image too
  --exec <command>       as matrix: named in the banner, the shell starts in its folder
  --files <path>         as matrix: shipped to /cm/files/<basename> with their libraries
  --net <user|none>      user: the guest's network is up (10.0.2.15/24, the host is 10.0.2.2)
  --accel <auto|kvm|tcg> acceleration (default auto)
  --cpus <n>             vCPUs (default 1, or the matrix entry's)
  --memory <MiB>         guest memory (default 1024)
  --timeout <seconds>    power the guest off (kill QEMU) after this long (default: never);
                         exit status 124 then
  -h, --help             this help`;

export const shellCommand: Command = {
  name: 'shell',
  help: HELP,
  async run(args: string[]): Promise<number> {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        allowPositionals: true,
        options: {
          suites: { type: 'string' }, 'suites-dir': { type: 'string' }, object: { type: 'string', multiple: true }, module: { type: 'string', multiple: true },
          loader: { type: 'string' }, exec: { type: 'string' }, files: { type: 'string', multiple: true }, net: { type: 'string' },
          accel: { type: 'string' }, cpus: { type: 'string' }, memory: { type: 'string' }, timeout: { type: 'string' },
        },
      });
    } catch (err) {
      throw new UsageError(`shell: ${(err as Error).message.split('\n')[0]}`);
    }
    const { values, positionals } = parsed;
    if (positionals.length !== 1) throw new UsageError('shell: name one kernel (an id of kernels/matrix.yaml), e.g. corematrix shell 7.3');
    const accel = (values.accel ?? 'auto') as 'auto' | 'kvm' | 'tcg';
    if (!['auto', 'kvm', 'tcg'].includes(accel)) throw new UsageError(`--accel must be auto, kvm or tcg, not '${values.accel}'`);
    const loader = (values.loader ?? 'ours') as 'ours' | 'libbpf' | 'both';
    if (!['ours', 'libbpf', 'both'].includes(loader)) throw new UsageError(`--loader must be ours, libbpf or both, not '${values.loader}'`);
    const cpus = values.cpus !== undefined ? Number(values.cpus) : undefined;
    if (cpus !== undefined && (!Number.isInteger(cpus) || cpus < 1 || cpus > 64)) throw new UsageError(`--cpus must be an integer from 1 to 64, not '${values.cpus}'`);
    const memoryMb = values.memory !== undefined ? Number(values.memory) : undefined;
    if (memoryMb !== undefined && (!Number.isInteger(memoryMb) || memoryMb < 256 || memoryMb > 65536)) throw new UsageError(`--memory must be MiB from 256 to 65536, not '${values.memory}'`);
    const timeout = values.timeout !== undefined ? Number(values.timeout) : undefined;
    if (timeout !== undefined && !(timeout > 0)) throw new UsageError(`--timeout must be a number of seconds, not '${values.timeout}'`);
    for (const m of values.module ?? []) if (!/^[a-z0-9][a-z0-9_-]*$/.test(m)) throw new UsageError(`--module '${m}' is not a kernel module name (lower case letters, digits, - and _)`);
    const { checkExecOptions, NO_COMMAND } = await import('../matrix/exec.js');
    // In a shell, --files and --net are useful without a command.
    const { exec, files, net } = checkExecOptions({ exec: values.exec, files: values.files, net: values.net }, true);
    const { runMatrix, readUserObjects } = await import('../matrix/run.js');
    readUserObjects(values.object ?? []);

    const log = (line: string) => process.stderr.write(`${line}\n`);
    const outDir = mkdtempSync(join(tmpdir(), 'corematrix-shell-'));
    let status = 1;
    const ctl = new AbortController();
    const stop = () => ctl.abort(new Error('signal'));
    process.once('SIGTERM', stop);
    try {
      const report = await runMatrix({
        kernels: [positionals[0]!],
        suites: values.suites === 'none' ? [] : values.suites ? values.suites.split(',').map((s) => s.trim()).filter(Boolean) : undefined,
        ...(values['suites-dir'] !== undefined ? { suitesDir: values['suites-dir'] } : {}),
        objects: values.object ?? [],
        ...(values.module?.length ? { modules: values.module } : {}),
        loader,
        jobs: 1,
        accel,
        ...(cpus !== undefined ? { cpus } : {}),
        ...(memoryMb !== undefined ? { memoryMb } : {}),
        // Without a command, --files still ship (the placeholder command is never run).
        ...(exec || files.length ? { exec: exec ?? { command: NO_COMMAND, files, timeoutMs: 1000 } } : {}),
        ...(net ? { net } : {}),
        outDir,
        runId: 'shell',
        signal: ctl.signal,
        log,
        progress: (kernel, state) => {
          if (/^(no kernel|not booted|fetching|building|rebuilding)/.test(state)) log(`[${kernel}] ${state}`);
        },
        shell: async (g) => {
          log(`shell: booting ${g.kernel.id} (${g.kernel.release}); Ctrl-D powers it off`);
          status = await runInteractiveGuest({
            vmlinuz: g.vmlinuz, initrd: g.initrd, append: `quiet ${g.append}`, cpus: g.cpus, memoryMb: g.memoryMb, accel: g.accel, arch: g.arch,
            ...(g.net ? { net: g.net } : {}), ...(timeout !== undefined ? { timeoutMs: timeout * 1000 } : {}), signal: g.signal,
          });
        },
      });
      const k = report.kernels[0];
      if (k && k.guest !== 'ok') {
        log(`shell: ${k.kernel.id}: ${k.guest}${k.detail ? `: ${k.detail}` : ''}`);
        return 1;
      }
      return status;
    } finally {
      process.removeListener('SIGTERM', stop);
      rmSync(outDir, { recursive: true, force: true });
    }
  },
};
