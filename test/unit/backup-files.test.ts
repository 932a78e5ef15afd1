/** The pure pieces of the backup activities: the one-file tar used for docker cp, the RDB header check, INFO parsing. */
import { describe, expect, it } from 'vitest';
import { firstFileOfTar, oneFileTar } from '../../src/activities/tar.js';
import { parseInfo, rdbHeaderProblem } from '../../src/activities/redis.js';
import { backupIdOf } from '../../src/workflows/backup.js';

describe('backup file helpers', () => {
  it('writes a one-file tar and reads it back', () => {
    const data = Buffer.from('REDIS0011 payload '.repeat(100));
    const tar = oneFileTar('dump.rdb', data);
    expect(tar.length % 512).toBe(0);
    expect(firstFileOfTar(tar)).toEqual({ name: 'dump.rdb', data });
    expect(firstFileOfTar(Buffer.alloc(1024))).toBeUndefined();
  });

  it('accepts an RDB header and names what it found otherwise', () => {
    expect(rdbHeaderProblem(Buffer.from('REDIS0011'))).toBeUndefined();
    expect(rdbHeaderProblem(Buffer.from('PGDMP\0\0\0\0'))).toMatch(/does not start with an RDB header/);
  });

  it('parses INFO persistence', () => {
    expect(parseInfo('# Persistence\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:1700000000\r\n')).toEqual({ rdb_bgsave_in_progress: '0', rdb_last_save_time: '1700000000' });
  });

  it('turns a schedule run\'s workflow id into a file-safe backup id', () => {
    expect(backupIdOf('backup-scheduled-2025-01-01T03:00:00Z')).toBe('backup-scheduled-2025-01-01T03-00-00Z');
  });
});
