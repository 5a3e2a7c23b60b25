import { findKeys } from '@keyward/sdk';
import { err, type Failure } from './errors.js';

/** A key's descriptive fields, as a create or an update gives them (any of them may be absent). */
export interface DescriptiveFields {
  name?: string | null | undefined;
  description?: string | null | undefined;
  metadata?: unknown;
}

// The shortest native key: a 1-character prefix, `_` and the 49-character body. Shorter text holds none.
const SHORTEST_KEY = 51;

const holdsKey = (text: string): boolean => text.length >= SHORTEST_KEY && findKeys(text).length > 0;

/**
 * Push protection: the first descriptive field holding a valid Keyward key (its checksum right, so look-alikes
 * do not count), as a path below the body — `name`, `description`, `metadata.team.0`. A key in a property name
 * answers the path of the object holding it, so the path never carries the key. `null` when none does.
 * Metadata is walked with a stack of its own, so any nesting is searched without recursion.
 */
export function findSecretInFields(fields: DescriptiveFields): string | null {
  if (typeof fields.name === 'string' && holdsKey(fields.name)) return 'name';
  if (typeof fields.description === 'string' && holdsKey(fields.description)) return 'description';
  const stack: [unknown, string][] = [[fields.metadata, 'metadata']];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const [value, path] = next;
    if (typeof value === 'string') {
      if (holdsKey(value)) return path;
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push([value[i], `${path}.${i}`]);
    } else if (typeof value === 'object' && value !== null) {
      const entries = Object.entries(value);
      if (entries.some(([name]) => holdsKey(name))) return path;
      for (let i = entries.length - 1; i >= 0; i--) {
        const [name, child] = entries[i] as [string, unknown];
        stack.push([child, `${path}.${name}`]);
      }
    }
  }
  return null;
}

/**
 * Push protection as a service answers it: `SECRET_IN_FIELD` naming the field below the body
 * (`body.metadata.token`), or `null` when no descriptive field holds a key. The message never holds the key.
 */
export function refuseSecretInFields(fields: DescriptiveFields): Failure<'SECRET_IN_FIELD'> | null {
  const path = findSecretInFields(fields);
  if (path === null) return null;
  const field = `body.${path}`;
  const message = 'holds an API key: keys must not be stored in descriptive fields, where they would be kept in plaintext';
  return err('SECRET_IN_FIELD', `${field}: ${message}`, [{ field, message }]);
}
