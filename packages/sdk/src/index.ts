export {
  classifyKey,
  DISPLAY_SECRET_CHARS,
  displayPrefix,
  generateKey,
  hashApiKey,
  isValidPrefix,
  isWellFormed,
  type KeyShape,
  type ParsedKey,
  parseKey,
  verifyApiKeyHash,
} from './key.js';
