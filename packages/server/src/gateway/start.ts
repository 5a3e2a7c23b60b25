import type { FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import { createContainer } from '../container.js';
import { migrateUpAt } from '../store/migrator.js';
import { buildGateway } from './app.js';
import type { GatewayRules } from './rules.js';

export interface RunningGateway {
  app: FastifyInstance;
  url: string;
  /** Stops accepting requests, flushes buffered usage rows and closes connections. */
  stop(): Promise<void>;
}

export interface StartGatewayOptions {
  upstream: string;
  rules?: GatewayRules;
  /** Defaults to PORT. */
  port?: number;
}

/**
 * What `keyward gateway` does: migrate (the database is shared with `keyward serve`), build the gateway and
 * listen. It never creates an admin key: keys are issued by `keyward serve` or `keyward admin create`.
 */
export async function startGateway(config: Config, options: StartGatewayOptions): Promise<RunningGateway> {
  const container = createContainer(config);
  let app: FastifyInstance;
  try {
    await migrateUpAt(container.db, config.databaseUrl);
    app = await buildGateway(container, { upstream: options.upstream, ...(options.rules ? { rules: options.rules } : {}) });
  } catch (error) {
    await container.close();
    throw error;
  }
  app.addHook('onClose', async () => container.close());
  try {
    const url = await app.listen({ port: options.port ?? config.port, host: config.host });
    return { app, url, stop: () => app.close() };
  } catch (error) {
    await app.close();
    throw error;
  }
}
