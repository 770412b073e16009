// The command table. One line per command; each module exports a `Command`.
import type { Command } from './command.js';
import { kernelsCommand } from './kernels.js';

export const commands: Command[] = [kernelsCommand];
