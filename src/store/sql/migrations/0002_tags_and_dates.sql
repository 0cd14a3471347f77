-- tower-usage-plans SQL key store, schema version 2: what API Gateway's management API shows
-- beyond what the layer needs. Portable SQL (PostgreSQL and SQLite); one column per ALTER, as
-- SQLite requires. Rows of version 1 read back with no tags, no product code and no
-- last-updated time.

-- Unix seconds (UTC) of the key's last change; NULL: never changed since it was created.
ALTER TABLE usage_plans_keys ADD COLUMN last_updated_at BIGINT;
-- A JSON object of tag names to values, e.g. {"team":"billing"}; NULL: no tags.
ALTER TABLE usage_plans_keys ADD COLUMN tags TEXT;
-- As on keys.
ALTER TABLE usage_plans_plans ADD COLUMN tags TEXT;
-- The AWS Marketplace product code (kept and shown, never enforced).
ALTER TABLE usage_plans_plans ADD COLUMN product_code TEXT;
