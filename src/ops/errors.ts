/**
 * What the operations API throws: `BadInput` (exit 2 in the CLI: nothing was started) carries the
 * problems with their paths and fixes; `OperationFailed` (exit 1) is a failure to show plainly.
 */
import type { Problem } from '../inventory/load.js';

export class BadInput extends Error {
  constructor(message: string, public readonly problems: Problem[] = []) {
    super(message);
    this.name = 'BadInput';
  }
}

export class OperationFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OperationFailed';
  }
}
