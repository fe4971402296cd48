-- 0006: what the alert life cycle needs beyond 0001.
-- clear_since: when the condition was first seen clear again (resolution waits alert.clear_after);
-- escalated_at / notify_count: escalation and re-notify bookkeeping;
-- last_event_at: the newest event for event alerts (pauses, AF) that resolve after a quiet time.
ALTER TABLE alerts ADD COLUMN clear_since TEXT;
ALTER TABLE alerts ADD COLUMN escalated_at TEXT;
ALTER TABLE alerts ADD COLUMN notify_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN last_event_at TEXT;
ALTER TABLE alerts ADD COLUMN level INTEGER NOT NULL DEFAULT 1;

-- One event is one alert: at most one open alert per de-duplication key.
CREATE UNIQUE INDEX alerts_open_key ON alerts(key) WHERE state != 'resolved';
CREATE INDEX alerts_patient_time ON alerts(patient_id, raised_at);
CREATE INDEX alert_events_alert ON alert_events(alert_id, id);
