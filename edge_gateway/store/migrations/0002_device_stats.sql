-- 0002: per-device reading statistics kept up to date by the writer, so that `status` and the
-- alert ticker never scan the readings table (millions of rows after a year).
ALTER TABLE devices ADD COLUMN last_reading_at TEXT;
ALTER TABLE devices ADD COLUMN readings_total INTEGER NOT NULL DEFAULT 0;

CREATE TABLE device_minutes (
    device_id TEXT NOT NULL,
    minute    TEXT NOT NULL,                        -- 'YYYY-MM-DDTHH:MM' of the receive time, UTC (kept 48 h)
    readings  INTEGER NOT NULL,
    PRIMARY KEY (device_id, minute)
) WITHOUT ROWID;
