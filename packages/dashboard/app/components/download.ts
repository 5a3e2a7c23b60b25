/**
 * Saves `content` as a file the browser downloads. The API wants a bearer token, which a plain link cannot
 * carry: the page fetches the body itself and hands it over as a Blob URL.
 */
export function saveFile(content: string, fileName: string, type: string): void {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = fileName;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download holds the Blob once it has started; the URL is let go a little later, not at once.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A name safe for a file: letters, digits, dots and dashes ("Billing service" → "billing-service"). */
export const fileSlug = (text: string): string =>
  text
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9.]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60) || 'key';
