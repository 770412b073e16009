// The command table. One line per command; each module exports a `Command`.
import type { Command } from './command.js';
import { relocateCommand } from './relocate.js';
import { kernelsCommand } from './kernels.js';

export const commands: Command[] = [relocateCommand, kernelsCommand];
