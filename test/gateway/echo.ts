import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the echo upstream saw of one request. */
export interface Echoed {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bodyLength: number;
  bodySha256: string;
}

export interface EchoServer {
  url: string;
  /** Every request received so far, oldest first. */
  received: Echoed[];
  close(): Promise<void>;
}

/**
 * An upstream on 127.0.0.1:0 that answers every request with what it received, as JSON (with the body's
 * length and SHA-256, not the body). `/status/NNN` answers with that status; every answer carries
 * `x-upstream: echo`.
 */
export async function startEcho(): Promise<EchoServer> {
  const received: Echoed[] = [];
  const server = createServer((request, response) => {
    const hash = createHash('sha256');
    let length = 0;
    request.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      length += chunk.length;
    });
    request.on('end', () => {
      const echoed: Echoed = {
        method: request.method ?? '',
        url: request.url ?? '',
        headers: request.headers,
        bodyLength: length,
        bodySha256: hash.digest('hex'),
      };
      received.push(echoed);
      const status = /\/status\/(\d{3})/.exec(echoed.url);
      response.writeHead(status ? Number(status[1]) : 200, { 'content-type': 'application/json', 'x-upstream': 'echo' });
      response.end(request.method === 'HEAD' ? undefined : JSON.stringify(echoed));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
