import { Redis } from 'ioredis';

export type { Redis } from 'ioredis';

export interface OpenRedisOptions {
  /** Called for every connection error (ioredis emits one per failed reconnect); count it, do not log each. */
  onError?: (error: Error) => void;
  /** A command not answered within this time fails, so a hung Redis cannot stall a request. */
  commandTimeoutMs?: number;
  /** Shown in `CLIENT LIST`, to tell Keyward's connections apart. */
  connectionName?: string;
}

/**
 * Opens a Redis connection for hot-path use: commands fail fast (one retry, a command timeout) instead
 * of waiting through ioredis's default 20 reconnect attempts, and reconnection continues in the background.
 */
export function openRedis(url: string, options: OpenRedisOptions = {}): Redis {
  const redis = new Redis(url, {
    maxRetriesPerRequest: 1,
    commandTimeout: options.commandTimeoutMs ?? 500,
    connectTimeout: 2_000,
    connectionName: options.connectionName ?? 'keyward',
    // Reconnect quickly at first, then every 2 s at most, forever: Redis coming back is picked up by itself.
    retryStrategy: (times) => Math.min(times * 100, 2_000),
  });
  // Without a listener an 'error' event would crash the process.
  redis.on('error', (error: Error) => options.onError?.(error));
  return redis;
}

/** Whether commands can be sent now; `false` while ioredis is reconnecting after a lost connection. */
export function redisIsDown(redis: Redis): boolean {
  return redis.status === 'reconnecting' || redis.status === 'close' || redis.status === 'end';
}

/** Closes the connection: politely when connected, at once otherwise (QUIT would wait for a reconnect). */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'ready') {
    await redis.quit().catch(() => redis.disconnect());
  } else {
    redis.disconnect();
  }
}
