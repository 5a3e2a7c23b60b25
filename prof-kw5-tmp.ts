import { v7 as uuidv7 } from 'uuid';
import { CompiledQuery } from 'kysely';
import { openDatabase } from './packages/server/src/store/database.js';
import { migrateUp } from './packages/server/src/store/migrator.js';
for (const url of ['sqlite:/tmp/kw5/prof.db', 'postgres://postgres@127.0.0.1:5432/postgres']) {
const db = openDatabase(url); await migrateUp(db.db).catch(()=>{});
const mk = () => Array.from({ length: 500 }, () => ({ id: uuidv7(), api_key_id: 'q', endpoint: '/x', method: 'GET', status_code: 200, ip_address: '1.2.3.4', user_agent: 'ua', response_time_ms: 1, outcome: 'VALID', created_at: Date.now() }));
let t = performance.now(); for (let k = 0; k < 20; k++) mk(); console.log('rows µs/row', (performance.now() - t) / 10000 * 1000);
const cols = ['id','api_key_id','endpoint','method','status_code','ip_address','user_agent','response_time_ms','outcome','created_at'] as const;
for (let k = 0; k < 2; k++) {
t = performance.now(); for (let j = 0; j < 20; j++) { const rows = mk(); await db.db.transaction().execute((trx) => trx.insertInto('api_key_usage').values(rows).execute()); }
console.log(db.dialect, 'kysely µs/row', (performance.now() - t) / 10000 * 1000);
t = performance.now(); for (let j = 0; j < 20; j++) { const rows = mk();
  let n = 0; const ph = db.dialect === 'sqlite' ? () => '?' : () => `$${++n}`;
  const text = `insert into api_key_usage (${cols.join(', ')}) values ${rows.map(() => `(${cols.map(ph).join(', ')})`).join(', ')}`;
  const params = rows.flatMap((r) => cols.map((c) => r[c]));
  await db.db.transaction().execute((trx) => trx.executeQuery(CompiledQuery.raw(text, params)));
}
console.log(db.dialect, 'raw µs/row', (performance.now() - t) / 10000 * 1000);
}
await db.db.deleteFrom('api_key_usage').execute();
await db.close();
}
