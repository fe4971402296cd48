"""The gateway's status as one dict (``edge-gateway status --json``), read from the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from edge_gateway.store import Store


def gateway_status(store: Store, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    since_dt = now - timedelta(hours=24)
    conn = store.conn
    devices = []
    rows = conn.execute(
        "SELECT d.id, d.name, d.profile, d.patient_id, d.connected, d.connected_changed_at,"
        " d.transport, d.battery_pct, d.last_seen_at, d.last_reading_at, d.readings_total"
        " FROM devices d ORDER BY d.id").fetchall()
    for (dev_id, name, profile, patient, connected, changed, transport, battery,
         seen, last, total) in rows:
        rejected = conn.execute(
            "SELECT count(*) FROM raw_frames WHERE device_id = ? AND status = 'rejected'",
            (dev_id,)).fetchone()[0]
        devices.append({
            "id": dev_id, "name": name, "profile": profile, "patient": patient,
            "transport": transport, "connected": bool(connected),
            "connected_recorded_at": changed, "last_seen_at": seen,
            "last_reading_at": last, "readings_24h": store.readings_since(dev_id, since_dt),
            "readings_total": int(total), "rejected_frames": int(rejected),
            "battery_pct": battery,
        })
    pending, oldest = conn.execute(
        "SELECT count(*), min(created_at) FROM outbox WHERE sent_at IS NULL").fetchone()
    last_sync = conn.execute("SELECT max(sent_at) FROM outbox").fetchone()[0]
    meta_last = store.meta("last_sync_at")
    if meta_last and (last_sync is None or meta_last > last_sync):
        last_sync = meta_last
    open_alerts = conn.execute(
        "SELECT count(*) FROM alerts WHERE state != 'resolved'").fetchone()[0]
    return {
        "gateway_db_id": store.db_id,
        "devices": devices,
        "outbox": {"pending": int(pending), "oldest_pending_at": oldest},
        "last_sync_at": last_sync,
        "alerts_open": int(open_alerts),
        "storage": {
            "db_path": str(store.path),
            "db_bytes": store.file_bytes(),
            "used_bytes": store.used_bytes(),
            "cap_bytes": store.cap_bytes,
            "evicted": store.evicted(),
            "keeping_raw_frames": store.keep_raw,
        },
    }
