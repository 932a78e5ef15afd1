/**
 * What went wrong, in the words of whoever said it first: Temporal wraps a failure in layers
 * (WorkflowFailedError → ChildWorkflowFailure → ActivityFailure → ApplicationFailure); the innermost
 * cause carries the message an operator needs. Pure: used by workflows and the CLI alike.
 */
export function rootMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e?.cause && typeof e.cause === 'object') e = e.cause as typeof e;
  return e?.message ?? String(err);
}
