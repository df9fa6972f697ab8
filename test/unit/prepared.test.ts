/** `:name` parameters become `$n` once, without touching casts or literals. */
import { namedStatement } from '../../src/storage/prepared';

describe('namedStatement', () => {
  it('numbers parameters by first appearance and reuses a number for a repeated name', () => {
    const st = namedStatement('s', 'SELECT :b::uuid, :a, :b::text, x::jsonb FROM t WHERE y = :a_2');
    expect(st.text).toBe('SELECT $1::uuid, $2, $1::text, x::jsonb FROM t WHERE y = $3');
    expect(st.params).toEqual(['b', 'a', 'a_2']);
  });

  it('leaves casts, string literals and times alone', () => {
    const sql = `SELECT 'enrollment_token:' || id, '12:30'::time, now() - interval '30 seconds', v::text[] FROM t WHERE k = :key`;
    const st = namedStatement('s', sql);
    expect(st.text).toBe(sql.replace(':key', '$1'));
    expect(st.params).toEqual(['key']);
    expect(st.sql).toBe(sql);
  });
});
