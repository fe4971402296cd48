-- 0009: signed commands from the clinic console (edge_gateway/commands.py, docs/mqtt.md).
-- One row per command id the hub has handled, so a retained command re-delivered on every
-- reconnect is applied once.  A row whose signature held (verified = 1) blocks its id for
-- good; an unverified refusal (bad signature, junk) blocks only the same bytes again
-- (payload_sha256), so a forged message cannot pre-empt the console's real command.
CREATE TABLE command_log (
    id             TEXT PRIMARY KEY,               -- the command id (the topic's last level)
    command        TEXT,                           -- alert.ack, threshold.set, ... (NULL: unreadable)
    patient_id     TEXT,
    actor          TEXT,                           -- the console user, as signed
    status         TEXT NOT NULL CHECK (status IN ('applied', 'rejected', 'expired')),
    reason         TEXT,
    verified       INTEGER NOT NULL CHECK (verified IN (0, 1)),
    payload_sha256 TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    result_msg_id  TEXT                            -- the outbox item reporting the outcome
);
