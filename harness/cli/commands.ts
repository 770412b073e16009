// The command table. One line per command; each module exports a `Command`.
import type { Command } from './command.js';

export const commands: Command[] = [];
