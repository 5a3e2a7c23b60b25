import { lookup } from 'node:dns/promises';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';

// Webhooks must not reach what the operator has not allowed: an admin (or whoever steals an admin key) could
// otherwise point one at the cloud's metadata service or an internal API and read its answers in the deliveries'
// status codes. Unless `WEBHOOK_ALLOW_PRIVATE`, a webhook's host must be a public unicast address: not loopback,
// private (10/8, 172.16/12, 192.168/16), link-local (169.254/16, the metadata address among them), CGNAT
// (100.64/10), unique-local (fc00::/7), multicast or reserved, nor an IPv4-mapped or NAT64 IPv6 address of one.
// It is checked when a URL is set and again at each delivery, on the addresses the name resolves to then; the
// connection goes to the address checked (a `lookup` that answers it), so a name that resolves elsewhere a moment
// later (DNS rebinding) changes nothing.

/** Whether `address` (an IP literal) is a public unicast address. */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  // `process` turns an IPv4-mapped IPv6 address (::ffff:10.0.0.1) into the IPv4 address it maps.
  const parsed = ipaddr.process(address);
  const range = parsed.range();
  // IPv4-compatible IPv6 (::/96, deprecated) embeds an IPv4 address some stacks still route to: never public.
  if (
    parsed.kind() === 'ipv6' &&
    parsed
      .toByteArray()
      .slice(0, 12)
      .every((b) => b === 0)
  )
    return false;
  if (range === 'unicast') return true;
  // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits: as public as that address.
  if (parsed.kind() === 'ipv6' && range === 'rfc6052') {
    const bytes = parsed.toByteArray();
    return isPublicAddress(bytes.slice(-4).join('.'));
  }
  return false;
}

/** The addresses a host name resolves to, all of them (A and AAAA). */
export type Resolver = (hostname: string) => Promise<{ address: string; family: number }[]>;

export const resolveAll: Resolver = (hostname) => lookup(hostname, { all: true, verbatim: true });

/** Where a delivery may connect: the address checked, or why none may be used. */
export type Target = { ok: true; address: string | null; family: number } | { ok: false; reason: string };

/** `hostname` of a URL without the brackets of an IPv6 literal. */
const bare = (hostname: string): string => (hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname);

/**
 * The address a request to `url` may connect to. `address: null` means "resolve as usual": private addresses are
 * allowed, or the host is an IP literal already checked. A name resolving to any address not allowed is refused
 * whole, so a name cannot mix a public address with an internal one.
 */
export async function checkTarget(url: URL, allowPrivate: boolean, resolve: Resolver = resolveAll): Promise<Target> {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return { ok: false, reason: 'the URL must use http or https' };
  if (allowPrivate) return { ok: true, address: null, family: 0 };
  const host = bare(url.hostname);
  if (ipaddr.isValid(host)) {
    return isPublicAddress(host) ? { ok: true, address: null, family: 0 } : { ok: false, reason: `${host} is not a public address` };
  }
  let found: { address: string; family: number }[];
  try {
    found = await resolve(host);
  } catch {
    return { ok: false, reason: `${host} does not resolve` };
  }
  const first = found[0];
  if (first === undefined) return { ok: false, reason: `${host} does not resolve` };
  const refused = found.find((a) => !isPublicAddress(a.address));
  if (refused) return { ok: false, reason: `${host} resolves to ${refused.address}, which is not a public address` };
  return { ok: true, address: first.address, family: first.family };
}

/** A `lookup` for `http.request` that answers the checked address whatever the name, pinning the connection to it. */
export function pinnedLookup(address: string, family: number): LookupFunction {
  return (_hostname, options, callback) => {
    // Node's connect asks for every address (`all`) when it may try several families (autoSelectFamily).
    if (typeof options === 'object' && options !== null && options.all) {
      (callback as unknown as (error: null, addresses: { address: string; family: number }[]) => void)(null, [{ address, family }]);
    } else {
      callback(null, address, family);
    }
  };
}
