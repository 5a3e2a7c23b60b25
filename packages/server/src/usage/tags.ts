import { Type } from '@fastify/type-provider-typebox';

/** Most tags on one usage row (as Unkey's verify allows). */
export const MAX_TAGS = 10;
/** Longest tag, in characters. */
export const MAX_TAG_LENGTH = 64;

/** One tag: 1–64 characters, no control characters. */
export const Tag = Type.String({
  minLength: 1,
  maxLength: MAX_TAG_LENGTH,
  pattern: '^[^\\u0000-\\u001f\\u007f]+$',
  description: 'A tag such as `route:/v1/companies` or `region:eu`: 1–64 characters, no control characters',
});

/** The tags of a request, stored on its usage row: up to 10. */
export const Tags = Type.Array(Tag, {
  maxItems: MAX_TAGS,
  description: `Up to ${MAX_TAGS} tags stored on the usage row, e.g. \`route:/v1/companies\`, \`region:eu\`; filter and group usage by them`,
  examples: [['route:/v1/companies', 'region:eu']],
});

/**
 * Tags as the usage row stores them: JSON text of an array, null for none. Tags come validated from the routes;
 * this also holds for other callers (the gateway, tests): at most {@link MAX_TAGS}, each cut to
 * {@link MAX_TAG_LENGTH}, no NUL (PostgreSQL's jsonb refuses it), empty ones dropped.
 */
export function tagsColumn(tags: readonly string[] | null | undefined): string | null {
  if (tags == null || tags.length === 0) return null;
  const kept: string[] = [];
  for (const tag of tags) {
    if (typeof tag !== 'string' || tag.length === 0) continue;
    const cut = tag.length > MAX_TAG_LENGTH ? tag.slice(0, MAX_TAG_LENGTH) : tag;
    kept.push(cut.includes('\u0000') ? cut.replaceAll('\u0000', '\uFFFD') : cut);
    if (kept.length === MAX_TAGS) break;
  }
  return kept.length === 0 ? null : JSON.stringify(kept);
}

/** A stored tags value (JSON text on SQLite, the array itself from PostgreSQL's jsonb) as an array. */
export function tagsOf(stored: string | readonly string[] | null): string[] {
  if (stored === null) return [];
  if (typeof stored !== 'string') return [...stored];
  try {
    const parsed: unknown = JSON.parse(stored);
    return Array.isArray(parsed) ? parsed.filter((t): t is string => typeof t === 'string') : [];
  } catch {
    return [];
  }
}
