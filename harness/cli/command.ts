/** A CLI command: parses its own arguments (node:util parseArgs) and returns the exit code. */
export interface Command {
  name: string;
  /** Deprecated here: the one-line summary lives in the command table (commands.ts). */
  summary?: string;
  help: string;
  run(args: string[]): Promise<number>;
}

/** An entry of the command table: the module is imported only when the command runs. */
export interface CommandEntry {
  name: string;
  summary: string;
  load(): Promise<Command>;
}
