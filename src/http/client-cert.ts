/**
 * Where a device's client certificate comes from: the TLS handshake on our HTTPS listener, or, behind a
 * TLS-terminating proxy, the header that proxy sets (MOORING_TRUSTED_PROXY_CERT_HEADER): RFC 9440
 * `Client-Cert: :<base64 DER>:` or a URL-escaped PEM (nginx `$ssl_client_escaped_cert`). The header is
 * read only when configured, so a device cannot claim a certificate by sending it.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

/**
 * The peer certificate of each TLS connection, read once: building it is costly (Node turns the whole
 * certificate into an object), and keep-alive devices send several requests per connection. A
 * connection that renegotiates keeps its first answer; the client proved that key too.
 */
const peers = new WeakMap<object, Buffer | null>();

function peerCertificate(socket: Partial<TLSSocket>): Buffer | null {
  if (typeof socket.getPeerCertificate !== 'function') return null;
  let der = peers.get(socket);
  if (der === undefined) {
    const raw = socket.getPeerCertificate(false)?.raw;
    der = raw && raw.length > 0 ? raw : null;
    // Before the handshake finished there is nothing to remember.
    if (socket.encrypted) peers.set(socket, der);
  }
  return der;
}

export function clientCertificate(req: IncomingMessage, trustedHeader?: string): Buffer | undefined {
  const peer = peerCertificate(req.socket as Partial<TLSSocket>);
  if (peer) return peer;
  if (!trustedHeader) return undefined;
  const value = req.headers[trustedHeader];
  return typeof value === 'string' ? decodeHeaderCertificate(value) : undefined;
}

export function decodeHeaderCertificate(value: string): Buffer | undefined {
  const v = value.trim();
  const sf = /^:([A-Za-z0-9+/=]+):$/.exec(v);
  if (sf) return Buffer.from(sf[1]!, 'base64');
  const pem = decodeURIComponent(v);
  const body = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem);
  return body ? Buffer.from(body[1]!.replace(/\s+/g, ''), 'base64') : undefined;
}
