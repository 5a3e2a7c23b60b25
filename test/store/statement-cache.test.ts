import SQLite from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { withStatementCache } from '../../packages/server/src/store/database.js';

describe('SQLite prepared-statement cache', () => {
  it('prepares a statement once per SQL text, stays bounded, and keeps answering correctly', () => {
    const sqlite = new SQLite(':memory:');
    let prepared = 0;
    const original = sqlite.prepare.bind(sqlite);
    sqlite.prepare = ((text: string) => {
      prepared += 1;
      return original(text);
    }) as typeof sqlite.prepare;
    const db = withStatementCache(sqlite, 2);
    db.prepare('create table t (n integer)').run([]);
    for (let n = 0; n < 5; n++) db.prepare('insert into t (n) values (?)').run([n]);
    expect(db.prepare('select count(*) as c from t').all([])).toEqual([{ c: 5 }]);
    expect(prepared).toBe(3); // create, insert (once for five runs), select
    db.prepare('select 1');
    db.prepare('select 2'); // evicts the least recently used: the insert
    db.prepare('insert into t (n) values (?)').run([5]);
    expect(prepared).toBe(6);
    expect(db.prepare('select sum(n) as s from t').all([])).toEqual([{ s: 15 }]);
    db.close();
  });
});
