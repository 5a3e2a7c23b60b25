import { type BuildAppOptions, buildApp } from './app.js';
import type { Config } from './config.js';
import { createContainer } from './container.js';
import type { App } from './http/types.js';
import { migrateUpAt } from './store/migrator.js';

export interface RunningServer {
  app: App;
  url: string;
  /** Stops accepting requests, flushes buffered work and closes connections. */
  stop(): Promise<void>;
}

/**
 * What `keyward serve` does: migrate, bootstrap the first admin key, listen. The generated admin key (if
 * any) is written once to `print`, never to the log.
 */
export async function startServer(
  config: Config,
  print: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  options: BuildAppOptions = {},
): Promise<RunningServer> {
  const container = createContainer(config);
  try {
    await migrateUpAt(container.db, config.databaseUrl);
    const boot = await container.keys.bootstrap(config.initialAdminKey);
    if (boot?.generated) {
      print('');
      print('No admin key existed, so one was generated. Save it now: it will not be shown again.');
      print('');
      print(`    ${boot.generated}`);
      print('');
    } else if (boot) {
      print(`Admin key from INITIAL_ADMIN_KEY stored (hashed) as ${boot.record.keyPrefix}…`);
    }
  } catch (error) {
    await container.close();
    throw error;
  }
  const app = await buildApp(container, options);
  app.addHook('onClose', async () => container.close());
  const url = await app.listen({ port: config.port, host: config.host });
  // Webhook deliveries and the expiry sweep run where Keyward serves, not in CLI commands.
  container.deliveries.start((error) => app.log.warn({ err: error }, 'a webhook delivery round failed'));
  container.eventSweeps.start((error) => app.log.warn({ err: error }, 'the event sweep failed'));
  return { app, url, stop: () => app.close() };
}
