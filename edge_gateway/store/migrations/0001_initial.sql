-- 0001: the initial schema.  Times are fixed-width UTC ISO 8601 text ('...T10:00:00.000000Z'),
-- so text order is time order.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE patients (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    notes      TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE devices (
    id                   TEXT PRIMARY KEY,          -- stable id: the BLE address or the serial port name
    address              TEXT,
    name                 TEXT,
    profile              TEXT NOT NULL,             -- heart_rate, glucose, cgm, blood_pressure, ...
    transport            TEXT NOT NULL DEFAULT 'ble',
    patient_id           TEXT REFERENCES patients(id) ON DELETE SET NULL,
    bonded               INTEGER NOT NULL DEFAULT 0,
    enabled              INTEGER NOT NULL DEFAULT 1,
    added_at             TEXT NOT NULL,
    connected            INTEGER NOT NULL DEFAULT 0, -- as last recorded by the daemon
    connected_changed_at TEXT,
    last_seen_at         TEXT,
    reset_epoch          INTEGER NOT NULL DEFAULT 0, -- bumped on a sequence reset / new sensor session
    last_record          TEXT,                      -- last record identity held (seq or offset), JSON
    clock_offset_s       REAL,                      -- device clock minus gateway UTC, last measured
    battery_pct          REAL,
    details              TEXT                       -- JSON: firmware, model, features
);

-- A BP cuff's user slots (or any multi-user device) map to patients separately.
CREATE TABLE device_users (
    device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL,
    patient_id TEXT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    PRIMARY KEY (device_id, user_id)
);

CREATE TABLE raw_frames (
    id             INTEGER PRIMARY KEY,
    device_id      TEXT NOT NULL,
    characteristic TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    payload        BLOB,                            -- NULL only when raw keeping was stopped (storage full)
    status         TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'rejected')),
    error          TEXT
);
CREATE INDEX raw_frames_rejected ON raw_frames(device_id, id) WHERE status = 'rejected';

CREATE TABLE readings (
    id             INTEGER PRIMARY KEY,
    device_id      TEXT NOT NULL,
    patient_id     TEXT,
    characteristic TEXT NOT NULL,
    kind           TEXT NOT NULL,
    value          REAL,
    unit           TEXT NOT NULL,
    special        TEXT,                            -- nan / nres / +inf / -inf when value is NULL
    time           TEXT NOT NULL,                   -- UTC, derived from the device time and offset
    received_at    TEXT NOT NULL,                   -- gateway clock
    device_time    TEXT,                            -- the device's own clock, as it said
    record_key     TEXT NOT NULL,
    reset_epoch    INTEGER NOT NULL DEFAULT 0,
    raw_frame_id   INTEGER,
    extra          TEXT,
    UNIQUE (device_id, characteristic, kind, reset_epoch, record_key)
);
CREATE INDEX readings_patient_kind_time ON readings(patient_id, kind, time);

CREATE TABLE summaries (
    id           INTEGER PRIMARY KEY,
    patient_id   TEXT,
    device_id    TEXT,
    kind         TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end   TEXT NOT NULL,
    metrics      TEXT NOT NULL,                     -- JSON
    coverage     REAL NOT NULL,
    algorithm    TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX summaries_window
    ON summaries(ifnull(patient_id, ''), ifnull(device_id, ''), kind, window_start, window_end, algorithm);

CREATE TABLE alerts (
    id               INTEGER PRIMARY KEY,
    patient_id       TEXT,
    device_id        TEXT,
    rule             TEXT NOT NULL,
    key              TEXT NOT NULL,                 -- de-duplication key: one open alert per key
    severity         TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('raised', 'escalated', 'acknowledged', 'resolved')),
    message          TEXT NOT NULL,
    value            REAL,
    unit             TEXT,
    raised_at        TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    acknowledged_at  TEXT,
    acknowledged_by  TEXT,
    resolved_at      TEXT,
    last_notified_at TEXT,
    details          TEXT
);
CREATE INDEX alerts_open ON alerts(key) WHERE state != 'resolved';

CREATE TABLE alert_events (
    id       INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    state    TEXT NOT NULL,
    at       TEXT NOT NULL,
    details  TEXT
);

-- Durable outbox: the row is the only source of truth for what must reach the broker.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,            -- the outbox sequence
    msg_id          TEXT NOT NULL UNIQUE,           -- gateway id + database id + sequence
    priority        INTEGER NOT NULL,               -- 0 alerts, 1 summaries, 2 bulk
    kind            TEXT NOT NULL,
    patient_id      TEXT,
    ref_table       TEXT,
    ref_id          INTEGER,
    payload         TEXT NOT NULL,                  -- the item as JSON (envelope built at publish)
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TEXT,
    last_error      TEXT,
    sent_at         TEXT
);
CREATE INDEX outbox_pending ON outbox(priority, id) WHERE sent_at IS NULL;

-- Run-time settings a caregiver changes through the CLI (thresholds, ...); scope 'patient:<id>'
-- or 'gateway'.  The daemon polls settings_version in meta to see changes without a restart.
CREATE TABLE settings (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    details TEXT                                    -- never reading values
);

-- Monotonic counters (evictions, sent messages, ...) that survive row deletion.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
