import { describe, expect, it } from 'vitest';
import { csvField, csvHeader, csvLine, exportLines, jsonLine, type UsageRowView } from '../../packages/server/src/usage/export-format.js';

const ROW: UsageRowView = {
  id: '7',
  key_id: 'k1',
  endpoint: '/v1/a,b',
  method: 'GET',
  status_code: 200,
  ip_address: null,
  user_agent: 'say "hi"\r\nthere',
  response_time_ms: 0,
  outcome: 'VALID',
  tags: ['route:/v1/a', 'x,y'],
  created_at: '2030-05-10T00:00:00.000Z',
};

describe('usage export formats', () => {
  it('writes RFC 4180 fields: quoted only when needed, quotes doubled, null empty, numbers as they are', () => {
    expect(csvField(null)).toBe('');
    expect(csvField(0)).toBe('0');
    expect(csvField(-1)).toBe('-1');
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField('cr\ronly')).toBe('"cr\ronly"');
    expect(csvField('')).toBe('');
  });

  it('prefixes text that a spreadsheet would run as a formula with a quote', () => {
    for (const start of ['=', '+', '-', '@', '\t', '\r'])
      expect(csvField(`${start}1+1`).replace(/^"/, '').startsWith(`'${start}`), start).toBe(true);
    expect(csvField('=1,2')).toBe(`"'=1,2"`);
    expect(csvField('a=1')).toBe('a=1');
    expect(csvField('1-2')).toBe('1-2');
  });

  it('writes a header and CRLF lines in the header’s column order; tags as a JSON array', () => {
    expect(csvHeader()).toBe('id,created_at,key_id,outcome,method,endpoint,status_code,response_time_ms,ip_address,user_agent,tags\r\n');
    expect(csvLine(ROW)).toBe(
      '7,2030-05-10T00:00:00.000Z,k1,VALID,GET,"/v1/a,b",200,0,,"say ""hi""\r\nthere","[""route:/v1/a"",""x,y""]"\r\n',
    );
    expect(csvLine({ ...ROW, tags: [] }).endsWith(',\r\n')).toBe(true);
  });

  it('writes JSON Lines as the JSON page’s rows, one a line', () => {
    expect(jsonLine(ROW)).toBe(`${JSON.stringify(ROW)}\n`);
    expect(JSON.parse(jsonLine(ROW))).toEqual(ROW);
  });

  it('yields a string per chunk of rows, the CSV header first', async () => {
    async function* chunks() {
      yield [ROW, ROW];
      yield [ROW];
    }
    const csv: string[] = [];
    for await (const text of exportLines('csv', chunks())) csv.push(text);
    expect(csv).toEqual([csvHeader(), csvLine(ROW) + csvLine(ROW), csvLine(ROW)]);
    const jsonl: string[] = [];
    for await (const text of exportLines('jsonl', chunks())) jsonl.push(text);
    expect(jsonl).toEqual([jsonLine(ROW) + jsonLine(ROW), jsonLine(ROW)]);
  });
});
