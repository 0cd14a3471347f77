-- tower-usage-plans SQL key store, schema version 3: a key's own limits (replacing its plan's),
-- a plan's concurrency cap, and customers (limits shared by every key whose customer_id names
-- one). Portable SQL (PostgreSQL and SQLite); one column per ALTER, as SQLite requires. Rows of
-- version 2 read back with no overrides, no concurrency cap and no customer.

-- A key's own limits as a JSON object, e.g. {"throttle":{"rate":5.0,"burst":2},
-- "quota":{"limit":100,"period":"MONTH","offset":0},"methods":[{"method":"/pets/GET","rate":1.0,
-- "burst":2}],"concurrency":3,"quota_anchor":1769851800}; every member optional; NULL: none.
ALTER TABLE usage_plans_keys ADD COLUMN limits TEXT;
-- At most this many requests of each of the plan's keys in the inner service at once; NULL: no cap.
ALTER TABLE usage_plans_plans ADD COLUMN concurrency BIGINT CHECK (concurrency >= 1);

CREATE TABLE usage_plans_customers (
    id             TEXT PRIMARY KEY,
    name           TEXT,
    throttle_rate  DOUBLE PRECISION CHECK (throttle_rate > 0),
    throttle_burst BIGINT CHECK (throttle_burst >= 1),
    quota_limit    BIGINT CHECK (quota_limit >= 1),
    quota_period   TEXT CHECK (quota_period IN ('DAY', 'WEEK', 'MONTH')),
    quota_offset   BIGINT CHECK (quota_offset >= 0),
    concurrency    BIGINT CHECK (concurrency >= 1),
    -- Unix seconds (UTC) of the billing anchor of the customer's quota periods.
    quota_anchor   BIGINT
);

CREATE INDEX usage_plans_keys_customer_id ON usage_plans_keys (customer_id);
