/**
 * The backup store is closed: manifests are validated when read, and nothing outside the store is
 * read, written or removed (issue 15 item 4). Real files in a temp folder; the activities run in
 * Temporal's mock activity context.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DefaultLogger } from '@temporalio/worker';
import { MockActivityEnvironment } from '@temporalio/testing';
import { checkFile, checkManifest, createBackupStoreActivities, insideStore, type Manifest } from '../../src/activities/backup-store.js';
import type { HostContext } from '../../src/activities/context.js';

const sha = 'a'.repeat(64);
const manifest = (id: string, extra: Partial<Manifest> = {}): Manifest => ({
  id,
  createdAt: '2025-01-01T00:00:00.000Z',
  host: 'h1',
  status: 'verified',
  components: [{ name: 'pg', kind: 'postgres', host: 'h1', file: 'pg.dump', bytes: 3, sha256: sha }],
  ...extra,
});

describe('insideStore', () => {
  it('joins plain names under the root', () => {
    expect(insideStore('/srv/b', 'id-1', 'pg.dump')).toBe('/srv/b/id-1/pg.dump');
    expect(insideStore('/srv/b/', 'a..b')).toBe('/srv/b/a..b');
  });

  it.each([['..'], ['.'], ['../../victim'], ['a/b'], ['/etc'], [''], ['-x'], ['a\\..\\b'], ['x\0y']])('refuses %j', (name) => {
    expect(() => insideStore('/srv/b', name)).toThrow(/not a plain name|not inside/);
  });
});

describe('checkManifest', () => {
  it('accepts a well-formed manifest of its own folder', () => {
    expect(checkManifest(manifest('b1'), 'b1')).toEqual({ manifest: manifest('b1') });
  });

  it.each([
    ['an id that climbs out', { id: '../../victim' }, /id/],
    ['an id of another folder', { id: 'b2' }, /names the backup "b2"/],
    ['a file with a slash', { components: [{ ...manifest('b1').components[0]!, file: '../../etc/passwd' }] }, /components\.0\.file/],
    ['an absolute file', { components: [{ ...manifest('b1').components[0]!, file: '/etc/passwd' }] }, /components\.0\.file/],
    ['negative bytes', { components: [{ ...manifest('b1').components[0]!, bytes: -1 }] }, /bytes/],
    ['a non-hex sha256', { components: [{ ...manifest('b1').components[0]!, sha256: 'zz' }] }, /sha256/],
    ['an unknown status', { status: 'great' }, /status/],
    ['no components', { components: undefined }, /components/],
    ['an influx folder that climbs out', { components: [{ ...manifest('b1').components[0]!, influx: { version: 1, countedTo: 'x', databases: [{ name: 'd', folder: '..', series: [] }] } }] }, /folder/],
  ] as const)('refuses %s', (_what, change, why) => {
    const got = checkManifest({ ...manifest('b1'), ...change }, 'b1');
    expect('problem' in got && got.problem).toMatch(why);
  });
});

describe('the store on disk', () => {
  let dir: string;
  let root: string;
  let ctx: HostContext;
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  const inActivity = <R>(fn: () => Promise<R>) => env.run(fn) as Promise<R>;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'migrate-store-'));
    root = path.join(dir, 'store');
    ctx = { host: 'h1', project: 'p', dataDir: dir, identity: 'test', spec: {} as HostContext['spec'], docker: {} as HostContext['docker'] };
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const put = async (folder: string, m: unknown) => {
    await mkdir(path.join(root, 'h1', folder), { recursive: true });
    await writeFile(path.join(root, 'h1', folder, 'manifest.json'), JSON.stringify(m));
  };

  it('retention never deletes outside the store (a manifest with "id": "../../victim")', async () => {
    // The reproduction: retention removed path.join(root, manifest.id).
    await mkdir(path.join(dir, 'victim'), { recursive: true });
    await writeFile(path.join(dir, 'victim', 'precious'), 'keep me');
    for (let i = 1; i <= 4; i++) await put(`b${i}`, manifest(`b${i}`, { createdAt: `2025-01-0${i}T00:00:00.000Z` }));
    await put('evil', manifest('../../victim', { createdAt: '2024-01-01T00:00:00.000Z' }));
    const store = createBackupStoreActivities(ctx);
    const listed = await inActivity(() => store.listBackups(root));
    expect(listed.find((b) => b.id === 'evil')).toMatchObject({ status: 'failed', problems: [expect.stringMatching(/id/)] });
    expect(listed.map((b) => b.id)).not.toContain('../../victim');
    const { removed } = await inActivity(() => store.applyBackupRetention(root, { keepLast: 1, keepDaily: 0, keepWeekly: 0 }));
    expect(removed.sort()).toEqual(['b1', 'b2', 'b3']);
    expect(await readdir(path.join(dir, 'victim'))).toEqual(['precious']);
    expect((await readdir(path.join(root, 'h1'))).sort()).toEqual(['b4', 'evil']);
  });

  it('reading a tampered manifest fails with the reason, and a file name cannot leave the folder', async () => {
    await put('b1', manifest('b1', { components: [{ ...manifest('b1').components[0]!, file: '../../../etc/passwd' }] }));
    const store = createBackupStoreActivities(ctx);
    await expect(inActivity(() => store.readBackupManifest(root, 'b1'))).rejects.toThrow(/components\.0\.file/);
    await expect(inActivity(() => store.readBackupManifest(root, '../b1'))).rejects.toThrow(/not a backup id/);
    const folder = path.join(root, 'h1', 'b1');
    expect(await checkFile(folder, { ...manifest('b1').components[0]!, file: '../../../etc/passwd' })).toMatch(/not a plain file name/);
  });

  it('a backup folder that is a link out of the store is neither read nor removed', async () => {
    await mkdir(path.join(dir, 'elsewhere'), { recursive: true });
    await writeFile(path.join(dir, 'elsewhere', 'manifest.json'), JSON.stringify(manifest('b0', { createdAt: '2020-01-01T00:00:00.000Z' })));
    await put('b1', manifest('b1'));
    await symlink(path.join(dir, 'elsewhere'), path.join(root, 'h1', 'b0'));
    const store = createBackupStoreActivities(ctx);
    const listed = await inActivity(() => store.listBackups(root));
    expect(listed.find((b) => b.id === 'b0')).toMatchObject({ status: 'failed', problems: [expect.stringMatching(/not a folder/)] });
    await inActivity(() => store.applyBackupRetention(root, { keepLast: 1, keepDaily: 0, keepWeekly: 0 }));
    expect(await readdir(path.join(dir, 'elsewhere'))).toEqual(['manifest.json']);
    await expect(inActivity(() => store.readBackupManifest(root, 'b0'))).rejects.toThrow(/not a folder/);
  });

  it('an entry handed over by a workflow is checked again', async () => {
    await mkdir(path.join(root, 'h1', 'b1'), { recursive: true });
    const entry = { ...manifest('b1').components[0]!, influx: { version: 1 as const, countedTo: 'x', databases: [{ name: 'd', folder: '../..', series: [] }] } };
    expect(await checkFile(path.join(root, 'h1', 'b1'), entry)).toMatch(/influx\.databases\.0\.folder/);
  });

  it('a link in the store is not followed', async () => {
    await mkdir(path.join(dir, 'outside'), { recursive: true });
    await writeFile(path.join(dir, 'outside', 'pg.dump'), 'abc');
    await mkdir(path.join(root, 'h1', 'b1'), { recursive: true });
    await symlink(path.join(dir, 'outside', 'pg.dump'), path.join(root, 'h1', 'b1', 'pg.dump'));
    expect(await checkFile(path.join(root, 'h1', 'b1'), manifest('b1').components[0]!)).toMatch(/not a regular file/);
  });

  it('failover adopts the lost host\'s latest verified backup whose file is intact, once, checksums checked', async () => {
    const dump = Buffer.from('the dump');
    const entry = { name: 'pg', kind: 'postgres' as const, host: 'pc2', file: 'pg.dump', bytes: dump.length, sha256: createHash('sha256').update(dump).digest('hex') };
    const lost = async (id: string, createdAt: string, status: Manifest['status'], content: Buffer) => {
      await mkdir(path.join(root, 'pc2', id), { recursive: true });
      await writeFile(path.join(root, 'pc2', id, 'pg.dump'), content);
      await writeFile(path.join(root, 'pc2', id, 'manifest.json'), JSON.stringify(manifest(id, { host: 'pc2', createdAt, status, components: [entry] })));
    };
    await lost('b1', '2025-01-01T00:00:00.000Z', 'verified', dump);
    await lost('b2', '2025-01-02T00:00:00.000Z', 'verified', Buffer.from('the dumq')); // corrupted after the backup
    await lost('b3', '2025-01-03T00:00:00.000Z', 'failed', dump);
    const store = createBackupStoreActivities(ctx);
    const got = await inActivity(() => store.adoptFailoverBackup(root, 'pc2', 'pg'));
    expect(got).toEqual({ backupId: 'b1.from-pc2', from: 'b1', entry: { ...entry, host: 'h1' } });
    expect(await readFile(path.join(root, 'h1', 'b1.from-pc2', 'pg.dump'))).toEqual(dump);
    expect(await inActivity(() => store.readBackupManifest(root, 'b1.from-pc2'))).toMatchObject({ host: 'h1', status: 'verified', components: [{ name: 'pg', host: 'h1' }] });
    // Idempotent: a retry finds it adopted.
    expect(await inActivity(() => store.adoptFailoverBackup(root, 'pc2', 'pg'))).toEqual(got);
    expect((await readdir(path.join(root, 'h1', 'b1.from-pc2'))).sort()).toEqual(['manifest.json', 'pg.dump']);
    // Named by the operator: refused when not verified; no shared directory: refused, saying why.
    await expect(inActivity(() => store.adoptFailoverBackup(root, 'pc2', 'pg', 'b3'))).rejects.toThrow(/no verified backup of "pg".*b3 is failed/);
    await expect(inActivity(() => store.adoptFailoverBackup(undefined, 'pc2', 'pg'))).rejects.toThrow(/backups\.directory.*shares/);
  });
});
