// Bounds on the free-form JSON Keyward accepts (`metadata`), shared by the HTTP schemas and the paths that bypass
// them (the importer). The bounds on instants are in domain.ts, beside how instants are shown.

/** Levels of objects and arrays in `metadata`, the object itself being level 1. */
export const MAX_METADATA_DEPTH = 32;
/** `metadata` serialized as JSON, in UTF-8 bytes. */
export const MAX_METADATA_BYTES = 16 * 1024;
/** Top-level properties of `metadata`. */
export const MAX_METADATA_PROPERTIES = 50;
/** Characters in a top-level property name of `metadata`. */
export const MAX_METADATA_KEY_LENGTH = 100;
/** Characters in a key search (`q` of the key lists). */
export const MAX_KEY_SEARCH_LENGTH = 200;

/**
 * Metadata keys that read like settings Keyward enforces, with where the setting really lives: metadata is stored
 * and shown, never enforced, so `{"rate_limit": 1000}` there would be a limit that silently does nothing.
 */
export const ENFORCED_ELSEWHERE: Readonly<Record<string, string>> = {
  rate_limit: 'the top-level `rate_limit` field ({limit, window_seconds})',
  quota: 'the top-level `quota` field ({remaining, refill})',
};
/** Why a key of {@link ENFORCED_ELSEWHERE} is refused, given where its setting lives. */
export const enforcedElsewhere = (setting: string): string => `is not enforced in metadata: set ${setting} instead`;

/**
 * Why a metadata value is out of bounds (too deep, too large), or null when it is within them. Iterative, and
 * stops at the first level past the limit, so hostile nesting cannot exhaust the stack here either.
 */
export function metadataSizeProblem(value: unknown): string | null {
  const pending: { node: unknown; depth: number }[] = [{ node: value, depth: 1 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { node, depth } = next;
    if (typeof node !== 'object' || node === null) continue;
    if (depth > MAX_METADATA_DEPTH) return `must not nest objects and arrays more than ${MAX_METADATA_DEPTH} levels deep`;
    for (const child of Array.isArray(node) ? node : Object.values(node)) pending.push({ node: child, depth: depth + 1 });
  }
  // Depth is bounded now, so serializing cannot overflow the stack.
  const bytes = Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
  return bytes > MAX_METADATA_BYTES ? `must not be larger than ${MAX_METADATA_BYTES} bytes as JSON (it is ${bytes})` : null;
}

/**
 * The first problem with a `metadata` value, as a field (relative: `metadata` or `metadata.rate_limit`) and a
 * message; null when it may be stored. For inputs no schema checked (import lines).
 */
export function metadataProblem(value: unknown): { field: string; message: string } | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { field: 'metadata', message: 'must be an object' };
  for (const [name, setting] of Object.entries(ENFORCED_ELSEWHERE)) {
    if (Object.hasOwn(value, name)) return { field: `metadata.${name}`, message: enforcedElsewhere(setting) };
  }
  if (Object.keys(value).length > MAX_METADATA_PROPERTIES) {
    return { field: 'metadata', message: `must not have more than ${MAX_METADATA_PROPERTIES} properties` };
  }
  if (Object.keys(value).some((k) => k.length > MAX_METADATA_KEY_LENGTH)) {
    return { field: 'metadata', message: `must not have a property name longer than ${MAX_METADATA_KEY_LENGTH} characters` };
  }
  const size = metadataSizeProblem(value);
  return size === null ? null : { field: 'metadata', message: size };
}
