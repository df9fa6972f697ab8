/**
 * Where a device's client certificate comes from: the TLS handshake on our HTTPS listener, or, behind a
 * TLS-terminating proxy, the header that proxy sets (MOORING_TRUSTED_PROXY_CERT_HEADER): RFC 9440
 * `Client-Cert: :<base64 DER>:` or a URL-escaped PEM (nginx `$ssl_client_escaped_cert`). The header is
 * read only when configured, so a device cannot claim a certificate by sending it.
 */
import type { Request } from 'express';
import type { TLSSocket } from 'node:tls';

export function clientCertificate(req: Request, trustedHeader?: string): Buffer | undefined {
  const socket = req.socket as Partial<TLSSocket>;
  const peer = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate(false) : undefined;
  if (peer && peer.raw && peer.raw.length > 0) return peer.raw;
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
