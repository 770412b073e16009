// Progress of a matrix run on stderr. On an interactive terminal (and not in CI) one status line
// per kernel is redrawn in place (ANSI: cursor up, clear line); log lines scroll above the block.
// Piped, or with CI set, every state change is a plain line: `[6.1] booting`.

export interface ProgressSink {
  progress(kernel: string, state: string): void;
  log(line: string): void;
  /** Leaves the final block on screen; later output starts below it. */
  done(): void;
}

export interface ProgressOptions {
  write: (s: string) => void;
  /** Redraw in place (default: stderr is a TTY, CI is not set and TERM is not dumb). */
  live: boolean;
  columns?: () => number;
}

export function liveTerminal(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && !env.CI && env.TERM !== 'dumb';
}

export function progressSink(o: ProgressOptions): ProgressSink {
  if (!o.live) {
    return { progress: (k, s) => o.write(`[${k}] ${s}\n`), log: (l) => o.write(l + '\n'), done: () => {} };
  }
  const states = new Map<string, string>();
  let drawn = 0;
  const width = () => Math.max(20, (o.columns?.() || 80) - 1);
  const clip = (s: string) => (s.length > width() ? s.slice(0, width() - 1) + '…' : s);
  const erase = () => {
    if (drawn > 0) o.write(`\x1b[${drawn}A`);
    for (let i = 0; i < drawn; i++) o.write('\x1b[2K\n');
    if (drawn > 0) o.write(`\x1b[${drawn}A`);
    drawn = 0;
  };
  const draw = () => {
    const pad = Math.max(0, ...[...states.keys()].map((k) => k.length));
    let out = '';
    for (const [k, s] of states) out += `\x1b[2K${clip(`${k.padEnd(pad)}  ${s}`)}\n`;
    o.write(out);
    drawn = states.size;
  };
  return {
    progress(k, s) {
      states.set(k, s);
      if (drawn > 0) o.write(`\x1b[${drawn}A`);
      drawn = 0;
      draw();
    },
    log(line) {
      erase();
      o.write(line + '\n');
      draw();
    },
    done() {
      drawn = 0;
    },
  };
}
