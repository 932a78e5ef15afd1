/**
 * Typed search attributes, so a person finds "batch-2 on pc2, validating" by filtering in the
 * Temporal Web UI. `migrate dev` registers them on the dev server; `docker-compose.temporal.yml`'s
 * README section shows the `temporal operator search-attribute create` line for a real cluster.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const SA = {
  kind: defineSearchAttributeKey('MigrateKind', SearchAttributeType.KEYWORD),
  release: defineSearchAttributeKey('MigrateRelease', SearchAttributeType.KEYWORD),
  batch: defineSearchAttributeKey('MigrateBatch', SearchAttributeType.KEYWORD),
  hosts: defineSearchAttributeKey('MigrateHosts', SearchAttributeType.KEYWORD_LIST),
  phase: defineSearchAttributeKey('MigratePhase', SearchAttributeType.KEYWORD),
} as const;

/** name → type, in the form `temporal server start-dev --search-attribute NAME=TYPE` takes. */
export const SEARCH_ATTRIBUTE_DEFINITIONS: Record<string, 'Keyword' | 'KeywordList'> = {
  MigrateKind: 'Keyword',
  MigrateRelease: 'Keyword',
  MigrateBatch: 'Keyword',
  MigrateHosts: 'KeywordList',
  MigratePhase: 'Keyword',
};
