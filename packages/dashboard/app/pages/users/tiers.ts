/** The server's default tiers (TIERS may name others; the API has no list of them yet, so the field is free text). */
export const KNOWN_TIERS = ['free', 'pro', 'enterprise'];
export const TIER_COLOR: Record<string, string> = { free: 'gray', pro: 'indigo', enterprise: 'grape' };
