-- 0007: one outbox, several destinations.  'mqtt' (the broker of [mqtt], as before) or
-- 'nightscout:<name>' (a [[nightscout]] site, sync/nightscout.py).  Each destination drains
-- its own rows in priority order; a row is settled only by its own destination's success.
ALTER TABLE outbox ADD COLUMN destination TEXT NOT NULL DEFAULT 'mqtt';

DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox(destination, priority, id) WHERE sent_at IS NULL;
