import { type Db, ping } from '../store/database.js';

export type HealthService = ReturnType<typeof createHealthService>;

export function createHealthService({ db }: { db: Db }) {
  return {
    /** `ok` when the database answers a trivial query within two seconds. */
    async database(): Promise<'ok' | 'unreachable'> {
      const probe = ping(db.db).then(() => 'ok' as const);
      const timeout = new Promise<'unreachable'>((resolve) => setTimeout(() => resolve('unreachable'), 2_000).unref());
      return Promise.race([probe, timeout]).catch(() => 'unreachable' as const);
    },
  };
}
