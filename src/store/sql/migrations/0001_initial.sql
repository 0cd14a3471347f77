-- tower-usage-plans SQL key store, schema version 1.
-- Portable SQL: runs unchanged on PostgreSQL and SQLite. Times are unix seconds (UTC).

CREATE TABLE usage_plans_plans (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    description    TEXT,
    throttle_rate  DOUBLE PRECISION CHECK (throttle_rate > 0),
    throttle_burst BIGINT CHECK (throttle_burst >= 1),
    quota_limit    BIGINT CHECK (quota_limit >= 1),
    quota_period   TEXT CHECK (quota_period IN ('DAY', 'WEEK', 'MONTH')),
    quota_offset   BIGINT CHECK (quota_offset >= 0),
    created_at     BIGINT NOT NULL
);

CREATE TABLE usage_plans_plan_stages (
    plan_id  TEXT NOT NULL REFERENCES usage_plans_plans (id) ON DELETE CASCADE,
    api      TEXT NOT NULL,
    stage    TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (plan_id, api, stage)
);

CREATE TABLE usage_plans_method_throttles (
    plan_id  TEXT NOT NULL,
    api      TEXT NOT NULL,
    stage    TEXT NOT NULL,
    method   TEXT NOT NULL,
    rate     DOUBLE PRECISION NOT NULL CHECK (rate > 0),
    burst    BIGINT NOT NULL CHECK (burst >= 1),
    position BIGINT NOT NULL,
    PRIMARY KEY (plan_id, api, stage, method),
    FOREIGN KEY (plan_id, api, stage) REFERENCES usage_plans_plan_stages (plan_id, api, stage) ON DELETE CASCADE
);

CREATE TABLE usage_plans_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    enabled     BOOLEAN NOT NULL,
    customer_id TEXT,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE usage_plans_key_values (
    hash       TEXT PRIMARY KEY CHECK (length(hash) = 64),
    key_id     TEXT NOT NULL REFERENCES usage_plans_keys (id) ON DELETE CASCADE,
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE INDEX usage_plans_key_values_key_id ON usage_plans_key_values (key_id);

CREATE TABLE usage_plans_plan_keys (
    plan_id TEXT NOT NULL REFERENCES usage_plans_plans (id) ON DELETE CASCADE,
    key_id  TEXT NOT NULL REFERENCES usage_plans_keys (id) ON DELETE CASCADE,
    PRIMARY KEY (plan_id, key_id)
);

CREATE INDEX usage_plans_plan_keys_key_id ON usage_plans_plan_keys (key_id);
