/**
 * What the enrollment-governance stores (restrictions, corporate identifiers, pre-approved devices)
 * share: the id check that turns a malformed id into "not found" before it reaches a uuid column,
 * where Postgres would refuse it with an error instead.
 */

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
