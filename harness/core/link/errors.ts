// The one error the static linker throws on purpose: a one-line message naming the input file and
// what is wrong with it (`b.o: symbol 'l1' defined in both a.o and b.o`). CLI exit code 2.
import { CoreMatrixError, oneLine } from '../errors.js';

export class LinkError extends CoreMatrixError {
  override name = 'LinkError';
  override exitCode = 2;
  constructor(message: string) {
    super(oneLine(message));
  }
}
