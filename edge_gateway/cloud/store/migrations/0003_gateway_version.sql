-- 0003: the software version a hub states in its retained status message (issue 16's Hubs page).
ALTER TABLE edge_gateway.gateways ADD COLUMN IF NOT EXISTS version text;
