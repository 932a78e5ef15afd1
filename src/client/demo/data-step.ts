/**
 * The demo's data: the database the inventory's backups name (local.yaml: `agent_lightning` on this
 * machine's PostgreSQL) gets a small `agent_memory` table, so the backups that the deploy and the
 * batch start with hold something, and `--restore-data` visibly puts it back.
 */
import pg from 'pg';
import type { Plan } from '../../plan/plan.js';
import type { BackupComponent } from '../../plan/backups.js';
import { readSecret } from '../../activities/secrets.js';

export interface DemoData {
  component: BackupComponent;
  rows(): Promise<number>;
  /** What a new agent version might write: rows the backup does not hold. */
  write(count: number, by: string): Promise<void>;
}

async function client(c: BackupComponent, database: string): Promise<pg.Client> {
  const db = new pg.Client({ host: c.address, port: c.port, user: c.user, database, password: await readSecret(c.password, `backups ${c.name}.password`) });
  await db.connect();
  return db;
}

async function run<T extends pg.QueryResultRow>(c: BackupComponent, database: string, sql: string, values: unknown[] = []): Promise<T[]> {
  const db = await client(c, database);
  try {
    return (await db.query<T>(sql, values)).rows;
  } finally {
    await db.end();
  }
}

/** Create the database and table when missing, with 1000 rows; undefined when no PostgreSQL is reachable over tcp. */
export async function seedDemoData(plan: Plan): Promise<DemoData | undefined> {
  const c = plan.backups?.components.find((x) => x.kind === 'postgres' && x.via === 'tcp');
  if (!c) return undefined;
  const exists = await run(c, 'postgres', 'SELECT 1 FROM pg_database WHERE datname = $1', [c.database]);
  if (exists.length === 0) await run(c, 'postgres', `CREATE DATABASE ${pg.escapeIdentifier(c.database!)}`);
  await run(c, c.database!, 'CREATE TABLE IF NOT EXISTS agent_memory (id bigserial PRIMARY KEY, agent text NOT NULL, note text NOT NULL, at timestamptz NOT NULL DEFAULT now())');
  const data: DemoData = {
    component: c,
    rows: async () => Number((await run<{ n: string }>(c, c.database!, 'SELECT count(*) AS n FROM agent_memory'))[0]!.n),
    write: async (count, by) => {
      await run(c, c.database!, 'INSERT INTO agent_memory (agent, note) SELECT $1::text, md5(random()::text) FROM generate_series(1, $2::int)', [by, count]);
    },
  };
  if ((await data.rows()) === 0) await data.write(1000, 'seed');
  return data;
}
