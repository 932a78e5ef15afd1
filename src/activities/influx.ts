/**
 * InfluxDB 2: `influx backup` inside its container (docker exec), the folder copied out as a tar
 * (docker cp), and `influx restore --full` from it. Not exercised by the tests here: no InfluxDB
 * image exists on this machine. Verification checks the file and that the archive holds the
 * backup's manifest; it does not restore into a scratch instance.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ApplicationFailure } from '@temporalio/common';
import { log } from '@temporalio/activity';
import type { BackupComponent } from '../plan/backups.js';
import type { HostContext } from './context.js';
import { backupFolder, checkFile, sha256File, type ComponentEntry, type ComponentVerification } from './backup-store.js';
import { runTool } from './exec.js';
import { readSecret } from './secrets.js';

export interface InfluxRequest {
  directory?: string;
  backupId: string;
  component: BackupComponent;
}

export function createInfluxActivities(ctx: HostContext) {
  const inContainer = async (c: BackupComponent, argv: string[]) => {
    const res = await runTool(ctx.docker, c.container, argv, { env: { INFLUX_TOKEN: await readSecret(c.password, `backups ${c.name}.token`) } });
    if (res.code !== 0) throw ApplicationFailure.retryable(`${argv.slice(0, 2).join(' ')} in ${c.container} failed: ${(res.stdout + res.stderr).trim()}`, 'InfluxFailed');
  };

  return {
    async backupInflux(req: InfluxRequest): Promise<ComponentEntry> {
      const c = req.component;
      const folder = backupFolder(ctx, req.directory, req.backupId);
      await mkdir(folder, { recursive: true });
      const inside = `/tmp/migrate-backup-${req.backupId}`;
      const t0 = Date.now();
      await inContainer(c, ['rm', '-rf', inside]);
      await inContainer(c, ['influx', 'backup', inside]);
      const fileName = `${c.name}.tar`;
      const file = path.join(folder, fileName);
      await pipeline(await ctx.docker.getContainer(c.container!).getArchive({ path: inside }), createWriteStream(`${file}.partial`));
      await rename(`${file}.partial`, file);
      await inContainer(c, ['rm', '-rf', inside]);
      const { sha256, bytes } = await sha256File(file);
      log.info('influx backup copied', { backupId: req.backupId, component: c.name, bytes });
      return { name: c.name, kind: 'influxdb', host: ctx.host, file: fileName, bytes, sha256, dumpMs: Date.now() - t0 };
    },

    async verifyInflux(req: InfluxRequest & { entry: ComponentEntry }): Promise<ComponentVerification> {
      const t0 = Date.now();
      const folder = backupFolder(ctx, req.directory, req.backupId);
      const problem = await checkFile(folder, req.entry);
      const tar = problem ? undefined : await readFile(path.join(folder, req.entry.file));
      const hasManifest = tar?.includes(Buffer.from('.manifest')) ?? false;
      const detail = problem ?? (hasManifest ? 'archive intact and holds an influx backup manifest (not restored: no scratch instance)' : `${req.entry.file} holds no influx backup manifest`);
      return { name: req.component.name, ok: !problem && hasManifest, detail, ms: Date.now() - t0 };
    },

    async restoreInflux(req: InfluxRequest & { entry: ComponentEntry }): Promise<ComponentVerification> {
      const c = req.component;
      const t0 = Date.now();
      const folder = backupFolder(ctx, req.directory, req.backupId);
      const problem = await checkFile(folder, req.entry);
      if (problem) throw ApplicationFailure.nonRetryable(`refusing to restore ${c.name}: ${problem}`, 'BackupCorrupt');
      const parent = `/tmp/migrate-restore-${req.backupId}`;
      await inContainer(c, ['mkdir', '-p', parent]);
      await ctx.docker.getContainer(c.container!).putArchive(path.join(folder, req.entry.file), { path: parent });
      await inContainer(c, ['influx', 'restore', '--full', path.posix.join(parent, `migrate-backup-${req.backupId}`)]);
      await inContainer(c, ['rm', '-rf', parent]);
      return { name: c.name, ok: true, detail: `influx restore --full from ${req.entry.file}`, ms: Date.now() - t0 };
    },
  };
}
