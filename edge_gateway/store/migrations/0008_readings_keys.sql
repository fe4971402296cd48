-- 0008: fewer B-tree pages written per commit (issue 14; benchmarks/bench_store_layout.py).
-- A one-second batch wrote one leaf (and often its parent) of each index per (device, kind)
-- it touched: a heart-rate notification's rate and RR intervals landed in different leaves of
-- the natural key, because `kind` came before the record key.  The natural key is the same set
-- of columns in a new order, device and record key first, so a frame's readings sit side by
-- side; uniqueness (INSERT OR IGNORE) is unchanged.  The UNIQUE table constraint becomes a
-- named index (an autoindex can be neither dropped nor reordered), which needs the table
-- rebuilt once: every row, id and column is copied as it is.
CREATE TABLE readings_0008 (
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
    extra          TEXT
);
INSERT INTO readings_0008 (id, device_id, patient_id, characteristic, kind, value, unit, special,
                           time, received_at, device_time, record_key, reset_epoch,
                           raw_frame_id, extra)
    SELECT id, device_id, patient_id, characteristic, kind, value, unit, special, time,
           received_at, device_time, record_key, reset_epoch, raw_frame_id, extra
    FROM readings ORDER BY id;
DROP TABLE readings;
ALTER TABLE readings_0008 RENAME TO readings;
CREATE UNIQUE INDEX readings_natural_key
    ON readings(device_id, characteristic, reset_epoch, record_key, kind);
CREATE INDEX readings_patient_kind_time ON readings(patient_id, kind, time);
