// corematrix command-line entry. Each command lives in its own module and registers here;
// errors become one line on stderr and an exit code, never a stack trace (CM_DEBUG=1 shows it).
import { CoreMatrixError } from '../core/errors.js';
import { commands } from './commands.js';

function usage(): string {
  const lines = ['usage: corematrix <command> [options]', '', 'commands:'];
  for (const c of commands) lines.push(`  ${c.name.padEnd(10)} ${c.summary}`);
  lines.push('', "run 'corematrix <command> --help' for a command's options");
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? 0 : 2;
  }
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    process.stderr.write(`corematrix: unknown command '${name}'\n${usage()}\n`);
    return 2;
  }
  const cmd = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(cmd.help + '\n');
    return 0;
  }
  return cmd.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (process.env.CM_DEBUG) console.error(err);
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`corematrix: ${msg.split('\n')[0]}\n`);
    process.exitCode = err instanceof CoreMatrixError ? err.exitCode : 1;
  },
);
