-- The clinic console (docs/fleet.md, "Clinic console"): accounts, site grants, sessions,
-- login throttling, the audit trail and the signed commands sent to hubs.

CREATE TABLE edge_gateway.console_users (
    name          text PRIMARY KEY,
    role          text NOT NULL CHECK (role IN ('admin', 'clinician')),
    password_hash text NOT NULL,                      -- argon2id, PHC string
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);

-- A site may be granted before any data from it has arrived (no foreign key to gateways).
CREATE TABLE edge_gateway.console_grants (
    user_name text NOT NULL REFERENCES edge_gateway.console_users (name) ON DELETE CASCADE,
    site      text NOT NULL,
    PRIMARY KEY (user_name, site)
);

-- Server-side sessions: the cookie carries a random token (signed); only its SHA-256 is kept.
CREATE TABLE edge_gateway.console_sessions (
    token_hash bytea PRIMARY KEY,
    user_name  text NOT NULL REFERENCES edge_gateway.console_users (name) ON DELETE CASCADE,
    csrf       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ip         text
);
CREATE INDEX console_sessions_user ON edge_gateway.console_sessions (user_name);

-- Failed logins per user name and client address (kept across restarts and instances).
CREATE TABLE edge_gateway.console_login_failures (
    user_name   text NOT NULL,
    ip          text NOT NULL,
    failures    integer NOT NULL,
    first_at    timestamptz NOT NULL,
    last_at     timestamptz NOT NULL,
    PRIMARY KEY (user_name, ip)
);

-- Every view of a patient and every action, in order.
CREATE TABLE edge_gateway.console_audit (
    seq     bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor   text NOT NULL,
    ip      text,
    action  text NOT NULL,
    site    text,
    gateway text,
    patient text,
    detail  jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX console_audit_patient ON edge_gateway.console_audit (gateway, patient, at);

-- Commands to hubs (edge_gateway/commands.py): the signed payload is kept as published.
CREATE TABLE edge_gateway.console_commands (
    id           text PRIMARY KEY,
    gateway      text NOT NULL,
    site         text NOT NULL,
    patient      text NOT NULL,
    command      text NOT NULL,
    args         jsonb NOT NULL,
    actor        text NOT NULL,
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    -- pending (not yet acknowledged by the broker) | sent | applied | rejected | expired
    status       text NOT NULL DEFAULT 'pending',
    reason       text,
    published_at timestamptz,
    result_at    timestamptz,
    cleared_at   timestamptz                          -- the retained message was cleared
);
CREATE INDEX console_commands_open ON edge_gateway.console_commands (status)
    WHERE cleared_at IS NULL;
CREATE INDEX console_commands_patient ON edge_gateway.console_commands (gateway, patient);

-- One value per key (the session-signing secret, made on first start).
CREATE TABLE edge_gateway.console_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- The console's "last value of each kind" and the patient page read a patient's newest
-- summaries of one kind: without this index they would walk every summary of the patient.
CREATE INDEX item_rows_summary_kind ON edge_gateway.item_rows
    (gateway, patient, (data ->> 'kind'), created_at) WHERE kind = 'summary';
-- The command results the console waits for.
CREATE INDEX item_rows_command_id ON edge_gateway.item_rows ((data ->> 'command_id'))
    WHERE kind = 'command';
-- Per-patient alert lists.
CREATE INDEX alerts_patient ON edge_gateway.alerts (gateway, patient);
