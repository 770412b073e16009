// The command table. One line per command; each module exports a `Command`.
import type { Command } from './command.js';
import { relocateCommand } from './relocate.js';
import { kernelsCommand } from './kernels.js';
import { diffCommand } from './diff.js';
import { reportCommand } from './report.js';
import { bootCommand } from '../vm/boot-command.js';
import { matrixCommand } from './matrix.js';

export const commands: Command[] = [matrixCommand, relocateCommand, kernelsCommand, diffCommand, reportCommand, bootCommand];
