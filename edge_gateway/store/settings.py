"""Run-time settings a caregiver changes (thresholds) and the version the daemon polls.

Rows of ``settings`` are keyed by scope (``gateway`` or ``patient:<id>``) and key; threshold
keys are stored as ``threshold.<name>``.  Every change bumps ``meta.settings_version`` so the
running daemon re-reads without a restart.
"""

from __future__ import annotations

from edge_gateway.store.db import Store

#: The meta key the daemon polls to see caregiver changes.
SETTINGS_VERSION = "settings_version"
#: Threshold keys are kept under this prefix in ``settings.key``.
THRESHOLD_PREFIX = "threshold."


def bump_version(store: Store) -> None:
    """Count one more settings change (joins the caller's transaction)."""
    with store.write() as conn:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('settings_version', '1') ON CONFLICT(key)"
            " DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)")


def threshold_texts(store: Store, scope: str) -> dict[str, str]:
    """The thresholds set in one scope: name (without the prefix) -> the text as typed."""
    rows = store.conn.execute(
        "SELECT key, value FROM settings WHERE scope = ? AND key LIKE 'threshold.%'", (scope,))
    return {k[len(THRESHOLD_PREFIX):]: v for k, v in rows}


def put_threshold(store: Store, scope: str, name: str, text: str,
                  updated_at: str | None) -> None:
    with store.write() as conn:
        conn.execute(
            "INSERT INTO settings (scope, key, value, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(scope, key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            (scope, THRESHOLD_PREFIX + name, text, updated_at))


def delete_threshold(store: Store, scope: str, name: str) -> None:
    with store.write() as conn:
        conn.execute("DELETE FROM settings WHERE scope = ? AND key = ?",
                     (scope, THRESHOLD_PREFIX + name))


def delete_thresholds(store: Store, scope: str) -> int:
    """Drop every threshold of one scope; returns how many there were."""
    with store.write() as conn:
        return int(conn.execute(
            "DELETE FROM settings WHERE scope = ? AND key LIKE 'threshold.%'",
            (scope,)).rowcount)


def delete_scope(store: Store, scope: str) -> int:
    """Drop every setting of one scope (a removed patient's); returns how many."""
    with store.write() as conn:
        return int(conn.execute("DELETE FROM settings WHERE scope = ?", (scope,)).rowcount)
