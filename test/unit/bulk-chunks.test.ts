/**
 * How a bulk request is cut into transactions: a small first chunk (so the first devices are woken
 * early), doubling up to the largest, covering every device once.
 */
import { bulkChunks } from '../../src/core/commands';

const sizes = (chunks: Array<[number, number]>) => chunks.map(([a, b]) => b - a);

describe('bulkChunks', () => {
  it('keeps a request no larger than the first chunk in one piece', () => {
    expect(bulkChunks(0)).toEqual([]);
    expect(bulkChunks(1)).toEqual([[0, 1]]);
    expect(bulkChunks(500)).toEqual([[0, 500]]);
  });

  it('grows from the first chunk to the largest and covers every device once', () => {
    expect(sizes(bulkChunks(501))).toEqual([500, 1]);
    expect(sizes(bulkChunks(10_000))).toEqual([500, 1000, 2000, 2000, 2000, 2000, 500]);
    const chunks = bulkChunks(100_000);
    expect(chunks[0]).toEqual([0, 500]);
    for (let i = 1; i < chunks.length; i++) expect(chunks[i]![0]).toBe(chunks[i - 1]![1]);
    expect(chunks.at(-1)![1]).toBe(100_000);
    expect(Math.max(...sizes(chunks))).toBe(2000);
  });

  it('takes other sizes', () => {
    expect(sizes(bulkChunks(7, 2, 4))).toEqual([2, 4, 1]);
  });
});
