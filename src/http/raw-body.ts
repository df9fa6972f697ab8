/**
 * A device request body as one Buffer, at most `limit` bytes: a larger one is refused as soon as its
 * Content-Length or its bytes say so. Used where body-parser's generality costs on every request and
 * the protocol answers errors in its own form (Apple MDM and SCEP, Windows enrollment and management).
 * A compressed body is refused: devices do not send one, and the bounds would count its compressed size.
 */
import type { IncomingMessage } from 'node:http';

export class BodyError extends Error {
  override name = 'BodyError';
}

export function readRawBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const encoding = req.headers['content-encoding'];
    if (encoding && encoding.toLowerCase() !== 'identity') {
      req.resume();
      return reject(new BodyError(`a ${encoding} body is not accepted: devices send their bodies uncompressed`));
    }
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > limit) {
      req.resume();
      return reject(new BodyError(`body of ${declared} bytes is over the ${limit}-byte limit`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        return reject(new BodyError(`body over the ${limit}-byte limit`));
      }
      chunks.push(chunk);
    });
    req.once('end', () => (size === 0 ? reject(new BodyError('empty body')) : resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size))));
    req.once('error', (err) => reject(new BodyError(`unreadable body: ${err.message}`)));
  });
}
