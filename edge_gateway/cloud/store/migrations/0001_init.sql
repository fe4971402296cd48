-- The fleet ingest schema (docs/fleet.md).  Applied under pg_advisory_lock by
-- edge_gateway/cloud/store/pg.py; every statement is idempotent-safe only once: the version
-- is recorded in edge_gateway.schema_version in the same transaction.

-- Every item, partitioned by month on the item's own time; monthly partitions are created on
-- demand (pg.py), rows dated outside the window land in the DEFAULT partition.
CREATE TABLE edge_gateway.item_rows (
    id          text        NOT NULL,
    created_at  timestamptz NOT NULL,
    gateway     text        NOT NULL,
    site        text        NOT NULL,
    patient     text,
    kind        text        NOT NULL,
    format      text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    data        jsonb       NOT NULL,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE edge_gateway.item_rows_default PARTITION OF edge_gateway.item_rows DEFAULT;
CREATE INDEX item_rows_gateway_time ON edge_gateway.item_rows (gateway, created_at);
CREATE INDEX item_rows_patient_time ON edge_gateway.item_rows (patient, created_at);

CREATE TABLE edge_gateway.gateways (
    gateway         text PRIMARY KEY,
    site            text NOT NULL,
    status          text NOT NULL DEFAULT 'unknown',  -- online | offline | unknown
    status_at       timestamptz,                      -- when the status message was received
    status_said_at  timestamptz,                      -- the gateway's own time in it
    last_seen       timestamptz,                      -- last message of any kind received
    newest_item_at  timestamptz,                      -- newest item created_at
    items           bigint NOT NULL DEFAULT 0
);

CREATE TABLE edge_gateway.patients (
    gateway     text NOT NULL,
    patient     text NOT NULL,
    site        text NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    PRIMARY KEY (gateway, patient)
);

-- One row per alert, folded from its life-cycle items (raised, escalated, acknowledged,
-- resolved); the newest event by the item's own time wins, whatever order they arrive in.
CREATE TABLE edge_gateway.alerts (
    gateway     text NOT NULL,
    alert_key   text NOT NULL,
    site        text NOT NULL,
    patient     text,
    rule        text,
    severity    text,
    state       text,
    message     text,
    raised_at   timestamptz,
    updated_at  timestamptz NOT NULL,
    last_item   text NOT NULL,
    events      integer NOT NULL DEFAULT 1,
    PRIMARY KEY (gateway, alert_key)
);

CREATE TABLE edge_gateway.dead_letter_rows (
    seq         bigserial PRIMARY KEY,
    topic       text NOT NULL,
    reason      text NOT NULL,
    payload     bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    consumer    text NOT NULL
);

-- Counters per consumer (one row each: no contention between instances).
CREATE TABLE edge_gateway.consumers (
    consumer        text PRIMARY KEY,
    messages        bigint NOT NULL DEFAULT 0,
    items           bigint NOT NULL DEFAULT 0,
    duplicates      bigint NOT NULL DEFAULT 0,
    dead_letters    bigint NOT NULL DEFAULT 0,
    last_commit_at  timestamptz,
    last_lag_s      double precision
);

-- The stable views for clinicians' tools (docs/fleet.md): change only with a new version.
CREATE VIEW edge_gateway.items AS
    SELECT id, gateway, site, patient, kind, created_at, received_at, data
    FROM edge_gateway.item_rows;
CREATE VIEW edge_gateway.dead_letters AS
    SELECT topic, reason, payload, received_at FROM edge_gateway.dead_letter_rows;
