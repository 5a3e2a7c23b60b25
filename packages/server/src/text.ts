import type { FieldError } from './errors.js';

/**
 * Text both databases can store, in this module because every edge (HTTP, JWT claims) checks the same thing.
 * PostgreSQL refuses NUL in `text` and `jsonb` (`invalid byte sequence for encoding "UTF8": 0x00`) where SQLite
 * takes it, and a lone UTF-16 surrogate is no Unicode text at all (each driver would store a replacement
 * character): such input is refused at the edge, so both databases see the same values.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what it looks for
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export const UNSTORABLE_TEXT_MESSAGE = 'must not contain NUL (U+0000) or an unpaired surrogate';

/** Whether `value` holds no NUL and no unpaired surrogate. */
export function isStorableText(value: string): boolean {
  return !UNSTORABLE.test(value);
}

/** At most this many fields are named in one answer: a body of a million NULs gets a short one. */
const MAX_REPORTED = 10;

/**
 * Every string in a parsed JSON value (or query/params object) that is not storable text, named by its path
 * below `root` (`body.metadata.tags.0`); a property name that is not names the object holding it. Walks with
 * its own stack, so any nesting JSON.parse accepted is scanned without recursion.
 */
export function unstorableTextIn(value: unknown, root: string): FieldError[] {
  const found: FieldError[] = [];
  const stack: [unknown, string][] = [[value, root]];
  for (let next = stack.pop(); next !== undefined && found.length < MAX_REPORTED; next = stack.pop()) {
    const [item, path] = next;
    if (typeof item === 'string') {
      if (!isStorableText(item)) found.push({ field: path, message: UNSTORABLE_TEXT_MESSAGE });
    } else if (Array.isArray(item)) {
      for (let i = item.length - 1; i >= 0; i--) stack.push([item[i], `${path}.${i}`]);
    } else if (typeof item === 'object' && item !== null) {
      const entries = Object.entries(item);
      if (entries.some(([name]) => !isStorableText(name))) {
        found.push({ field: path, message: `has a property name that ${UNSTORABLE_TEXT_MESSAGE}` });
        continue;
      }
      for (let i = entries.length - 1; i >= 0; i--) {
        const [name, child] = entries[i] as [string, unknown];
        stack.push([child, `${path}.${name}`]);
      }
    }
  }
  return found;
}
