/** The bounded body reader of the device endpoints, over a real loopback HTTP server. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readRawBody } from '../../src/http/raw-body';

let server: http.Server;
let port: number;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    readRawBody(req, 1000).then(
      (body) => res.end(`ok ${body.length}`),
      (err: Error) => res.writeHead(400).end(`${err.name}: ${err.message}`),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** A PUT with `chunks` written one by one (chunked unless a Content-Length header is given). */
function put(chunks: Buffer[], headers: Record<string, string | number> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', method: 'PUT', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c)).on('end', () => resolve(text));
    });
    req.on('error', reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}

it('reads a body whole, in one piece or chunked', async () => {
  expect(await put([Buffer.alloc(1000, 1)])).toBe('ok 1000');
  expect(await put([Buffer.alloc(300), Buffer.alloc(300), Buffer.alloc(300)])).toBe('ok 900');
});

it('refuses a body over the limit by its Content-Length or by its bytes, an empty body, and a compressed one', async () => {
  expect(await put([Buffer.alloc(1001)], { 'content-length': 1001 })).toBe('BodyError: body of 1001 bytes is over the 1000-byte limit');
  expect(await put([Buffer.alloc(600), Buffer.alloc(600)])).toBe('BodyError: body over the 1000-byte limit');
  expect(await put([])).toBe('BodyError: empty body');
  expect(await put([Buffer.from('x')], { 'content-encoding': 'gzip' })).toMatch(/^BodyError: a gzip body is not accepted/);
  expect(await put([Buffer.from('x')], { 'content-encoding': 'identity' })).toBe('ok 1');
});
