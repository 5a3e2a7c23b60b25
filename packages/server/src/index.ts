export { buildApp } from './app.js';
export { type Config, ConfigError, loadConfig } from './config.js';
export { type Container, createContainer } from './container.js';
export { type RunningServer, startServer } from './server.js';
export { openDatabase } from './store/database.js';
export { migrateDown, migrateUp, migrationStatus } from './store/migrator.js';
