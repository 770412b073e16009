/** A CLI command: parses its own arguments (node:util parseArgs) and returns the exit code. */
export interface Command {
  name: string;
  summary: string;
  help: string;
  run(args: string[]): Promise<number>;
}
