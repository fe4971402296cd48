"""PostgreSQL for the clinic console: accounts, sessions, throttling, audit, commands, pages.

Every page query takes a :class:`Scope` and filters on the sites it allows inside the SQL
(``site = ANY(...)``), so a clinician's query can never return another site's rows, and a
patient outside the scope is simply not found.  Each page is a fixed number of queries
(no per-row query): :class:`Db` counts them, and the console reports the count per request.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edge_gateway.cloud.store.pg import Connection

#: Severity order for the Now page (most severe first); unknown severities last.
SEVERITY_RANK = {"critical": 0, "urgent": 1, "warning": 2, "info": 3}
#: Summary kinds whose newest value the Patients page shows, with the metrics it reads.
LATEST_KINDS: dict[str, tuple[str, ...]] = {
    "hrv": ("mean_hr_bpm", "sdnn_ms"),
    "rhythm_daily": ("af_burden_pct",),
    "rhythm": ("af_burden_pct",),  # 5-minute windows: the newest burden before a day is done
    "glucose_14d": ("tir_pct", "mean_mg_dl", "tbr1_pct", "tbr2_pct"),
    "glucose_meter_daily": ("mean_mg_dl",),
    "bp_weekly": ("mean_systolic", "mean_diastolic", "mean_class"),
}
OPEN = "state IS DISTINCT FROM 'resolved'"


@dataclass(frozen=True, slots=True)
class Scope:
    """What a user may see: every site (admin) or the granted ones."""

    all_sites: bool
    sites: tuple[str, ...]

    def allows(self, site: str) -> bool:
        return self.all_sites or site in self.sites

    @property
    def params(self) -> dict[str, Any]:
        return {"all": self.all_sites, "sites": list(self.sites)}


_IN_SCOPE = "(%(all)s OR {col} = ANY(%(sites)s))"


def in_scope(col: str) -> str:
    return _IN_SCOPE.format(col=col)


class Db:
    """A connection that counts its queries and the time spent in them (per request)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.queries = 0
        self.seconds = 0.0

    def all(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        t = time.perf_counter()
        self.queries += 1
        try:
            return list(self.conn.execute(query.encode(), params).fetchall())
        finally:
            self.seconds += time.perf_counter() - t

    def one(self, query: str, params: Any = None) -> tuple[Any, ...] | None:
        rows = self.all(query, params)
        return rows[0] if rows else None

    def run(self, query: str, params: Any = None) -> int:
        t = time.perf_counter()
        self.queries += 1
        try:
            return int(self.conn.execute(query.encode(), params).rowcount)
        finally:
            self.seconds += time.perf_counter() - t


# ---------------------------------------------------------------------- accounts
@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    password_hash: str
    disabled: bool
    sites: tuple[str, ...]
    created_at: datetime | None = None

    @property
    def scope(self) -> Scope:
        return Scope(self.role == "admin", self.sites)


_USER = ("SELECT u.name, u.role, u.password_hash, u.disabled,"
         " coalesce(array_agg(g.site ORDER BY g.site) FILTER (WHERE g.site IS NOT NULL), '{}'),"
         " u.created_at FROM edge_gateway.console_users u"
         " LEFT JOIN edge_gateway.console_grants g ON g.user_name = u.name")


def _user(row: tuple[Any, ...]) -> User:
    return User(str(row[0]), str(row[1]), str(row[2]), bool(row[3]), tuple(row[4]), row[5])


def add_user(db: Db, name: str, role: str, sites: Sequence[str], password_hash: str) -> bool:
    """Create an account; False when the name is taken."""
    with db.conn.transaction():
        n = db.run("INSERT INTO edge_gateway.console_users (name, role, password_hash)"
                   " VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING",
                   (name, role, password_hash))
        if n == 0:
            return False
        for site in sorted(set(sites)):
            db.run("INSERT INTO edge_gateway.console_grants (user_name, site) VALUES (%s, %s)",
                   (name, site))
    return True


def get_user(db: Db, name: str) -> User | None:
    row = db.one(_USER + " WHERE u.name = %s GROUP BY u.name", (name,))
    return _user(row) if row else None


def list_users(db: Db) -> list[User]:
    return [_user(r) for r in db.all(_USER + " GROUP BY u.name ORDER BY u.name")]


def disable_user(db: Db, name: str) -> bool:
    """Disable an account and end its sessions; False when there is no such account."""
    with db.conn.transaction():
        n = db.run("UPDATE edge_gateway.console_users SET disabled = true,"
                   " disabled_at = coalesce(disabled_at, now()) WHERE name = %s", (name,))
        db.run("DELETE FROM edge_gateway.console_sessions WHERE user_name = %s", (name,))
    return n > 0


def secret(db: Db) -> bytes:
    """The session-signing secret, made once for the database (every instance shares it)."""
    db.run("INSERT INTO edge_gateway.console_settings (key, value) VALUES ('session_secret', %s)"
           " ON CONFLICT (key) DO NOTHING", (secrets.token_hex(32),))
    row = db.one("SELECT value FROM edge_gateway.console_settings"
                 " WHERE key = 'session_secret'")
    assert row is not None
    return bytes.fromhex(str(row[0]))


# ---------------------------------------------------------------------- sessions
def create_session(db: Db, token_hash: bytes, user: str, csrf: str, expires_at: datetime,
                   ip: str | None) -> None:
    db.run("INSERT INTO edge_gateway.console_sessions (token_hash, user_name, csrf, expires_at,"
           " ip) VALUES (%s, %s, %s, %s, %s)", (token_hash, user, csrf, expires_at, ip))


def session(db: Db, token_hash: bytes) -> tuple[User, str] | None:
    """(user, CSRF token) of a live session of an enabled account, in one query."""
    row = db.one(
        "SELECT u.name, u.role, '', u.disabled,"
        " coalesce((SELECT array_agg(g.site ORDER BY g.site) FROM edge_gateway.console_grants g"
        " WHERE g.user_name = u.name), '{}'), u.created_at, s.csrf"
        " FROM edge_gateway.console_sessions s"
        " JOIN edge_gateway.console_users u ON u.name = s.user_name"
        " WHERE s.token_hash = %s AND s.expires_at > now() AND NOT u.disabled", (token_hash,))
    return (_user(row), str(row[6])) if row else None


def end_session(db: Db, token_hash: bytes) -> None:
    db.run("DELETE FROM edge_gateway.console_sessions WHERE token_hash = %s", (token_hash,))


def purge_sessions(db: Db) -> int:
    return db.run("DELETE FROM edge_gateway.console_sessions WHERE expires_at <= now()")


# ---------------------------------------------------------------------- throttling
def recent_failures(db: Db, user: str, ip: str, window: timedelta) -> tuple[int, datetime | None]:
    """Failed logins of ``user`` from ``ip`` within ``window`` of the last one."""
    row = db.one("SELECT failures, last_at FROM edge_gateway.console_login_failures"
                 " WHERE user_name = %s AND ip = %s AND last_at > now() - %s",
                 (user, ip, window))
    return (int(row[0]), row[1]) if row else (0, None)


def record_failure(db: Db, user: str, ip: str, window: timedelta) -> int:
    row = db.one(
        "INSERT INTO edge_gateway.console_login_failures AS f"
        " (user_name, ip, failures, first_at, last_at) VALUES (%s, %s, 1, now(), now())"
        " ON CONFLICT (user_name, ip) DO UPDATE SET"
        " failures = CASE WHEN f.last_at > now() - %s THEN f.failures + 1 ELSE 1 END,"
        " first_at = CASE WHEN f.last_at > now() - %s THEN f.first_at ELSE now() END,"
        " last_at = now() RETURNING failures", (user, ip, window, window))
    return int(row[0]) if row else 1


def clear_failures(db: Db, user: str, ip: str) -> None:
    db.run("DELETE FROM edge_gateway.console_login_failures WHERE user_name = %s AND ip = %s",
           (user, ip))


# ---------------------------------------------------------------------- audit
def audit(db: Db, actor: str, action: str, *, ip: str | None = None, site: str | None = None,
          gateway: str | None = None, patient: str | None = None,
          detail: dict[str, Any] | None = None) -> None:
    db.run("INSERT INTO edge_gateway.console_audit (actor, ip, action, site, gateway, patient,"
           " detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
           (actor, ip, action, site, gateway, patient, json.dumps(detail or {})))


def audit_rows(db: Db, *, limit: int = 200) -> list[dict[str, Any]]:
    cols = ("seq", "at", "actor", "ip", "action", "site", "gateway", "patient", "detail")
    return [dict(zip(cols, r, strict=True)) for r in db.all(
        "SELECT seq, at, actor, ip, action, site, gateway, patient, detail"
        " FROM edge_gateway.console_audit ORDER BY seq DESC LIMIT %s", (limit,))]


# ---------------------------------------------------------------------- pages
def now_page(db: Db, scope: Scope, *, silent_after: timedelta, stale_after: timedelta,
             limit: int = 200) -> dict[str, Any]:
    """Open alerts (most severe, then oldest first), silent hubs, patients without data."""
    p = {**scope.params, "limit": limit, "silent": silent_after, "stale": stale_after}
    rank = " ".join(f"WHEN '{k}' THEN {v}" for k, v in SEVERITY_RANK.items())
    alerts = db.all(
        "SELECT a.site, a.gateway, a.patient, a.alert_key, a.rule, a.severity, a.state,"
        " a.message, a.raised_at, a.updated_at, g.status, g.last_seen, count(*) OVER ()"
        " FROM edge_gateway.alerts a LEFT JOIN edge_gateway.gateways g ON g.gateway = a.gateway"
        f" WHERE a.{OPEN} AND {in_scope('a.site')}"
        f" ORDER BY CASE a.severity {rank} ELSE 9 END, a.raised_at NULLS LAST, a.gateway,"
        " a.alert_key LIMIT %(limit)s", p)
    hubs = db.all(
        "SELECT site, gateway, status, last_seen, newest_item_at, count(*) OVER ()"
        f" FROM edge_gateway.gateways WHERE {in_scope('site')}"
        " AND (status = 'offline' OR last_seen IS NULL OR last_seen < now() - %(silent)s)"
        " ORDER BY last_seen NULLS FIRST, gateway LIMIT %(limit)s", p)
    stale = db.all(
        "SELECT site, gateway, patient, last_seen, count(*) OVER ()"
        f" FROM edge_gateway.patients WHERE {in_scope('site')}"
        " AND last_seen < now() - %(stale)s ORDER BY last_seen, gateway, patient"
        " LIMIT %(limit)s", p)
    ak = ("site", "gateway", "patient", "alert_key", "rule", "severity", "state", "message",
          "raised_at", "updated_at", "hub_status", "hub_last_seen")
    return {
        "alerts": [dict(zip(ak, r[:12], strict=True)) for r in alerts],
        "alerts_total": int(alerts[0][12]) if alerts else 0,
        "hubs": [dict(zip(("site", "gateway", "status", "last_seen", "newest_item_at"), r[:5],
                          strict=True)) for r in hubs],
        "hubs_total": int(hubs[0][5]) if hubs else 0,
        "stale": [dict(zip(("site", "gateway", "patient", "last_seen"), r[:4], strict=True))
                  for r in stale],
        "stale_total": int(stale[0][4]) if stale else 0,
    }


def sites(db: Db, scope: Scope) -> list[str]:
    """Sites the user may filter by: granted ones and those with hubs."""
    rows = db.all(f"SELECT DISTINCT site FROM edge_gateway.gateways WHERE {in_scope('site')}"
                  " UNION SELECT unnest(%(sites)s::text[]) ORDER BY 1", scope.params)
    return [str(r[0]) for r in rows if scope.allows(str(r[0]))]


def patients_page(db: Db, scope: Scope, *, search: str = "", site: str = "",
                  page: int = 1, per_page: int = 50) -> dict[str, Any]:
    """One page of patients with the newest value of each summary kind and open alerts."""
    like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    p = {**scope.params, "like": like, "site": site, "limit": per_page,
         "offset": (max(1, page) - 1) * per_page}
    rows = db.all(
        "SELECT p.site, p.gateway, p.patient, p.last_seen, count(*) OVER ()"
        f" FROM edge_gateway.patients p WHERE {in_scope('p.site')}"
        " AND (%(site)s = '' OR p.site = %(site)s)"
        " AND (p.patient ILIKE %(like)s OR p.gateway ILIKE %(like)s)"
        " ORDER BY p.site, p.gateway, p.patient LIMIT %(limit)s OFFSET %(offset)s", p)
    total = int(rows[0][4]) if rows else 0
    out = [{"site": r[0], "gateway": r[1], "patient": r[2], "last_seen": r[3], "latest": {},
            "open_alerts": 0, "worst": None} for r in rows]
    if not out:
        return {"patients": out, "total": total}
    gws, pts = [r["gateway"] for r in out], [r["patient"] for r in out]
    by = {(r["gateway"], r["patient"]): r for r in out}
    # The newest summary of each kind: first among the recent partitions only (one index
    # probe per partition and pair, so fewer partitions is what makes this fast), then, for
    # the pairs with nothing recent, over all time.
    pairs = [(g, pt, k) for g, pt in zip(gws, pts, strict=True) for k in LATEST_KINDS]
    for bound in (RECENT, None):
        if not pairs:
            break
        for g, pt, kind, window_end, metrics in _latest(db, pairs, bound):
            by[(g, pt)]["latest"][kind] = {"window_end": window_end, "metrics": metrics}
        pairs = [(g, pt, k) for g, pt, k in pairs if k not in by[(g, pt)]["latest"]]
    rank = " ".join(f"WHEN '{k}' THEN {v}" for k, v in SEVERITY_RANK.items())
    for g, pt, n, worst in db.all(
            "SELECT a.gateway, a.patient, count(*), min(CASE a.severity"
            f" {rank} ELSE 9 END) FROM edge_gateway.alerts a"
            " JOIN unnest(%s::text[], %s::text[]) AS p(g, p) ON a.gateway = p.g"
            f" AND a.patient = p.p WHERE a.{OPEN} GROUP BY 1, 2", (gws, pts)):
        by[(g, pt)]["open_alerts"] = int(n)
        by[(g, pt)]["worst"] = next((k for k, v in SEVERITY_RANK.items() if v == worst), None)
    return {"patients": out, "total": total}


#: Where the Patients page looks first for a patient's newest summaries.
RECENT = timedelta(days=35)


def _latest(db: Db, pairs: Sequence[tuple[str, str, str]], within: timedelta | None
            ) -> list[tuple[Any, ...]]:
    metric_names = sorted({m for ms in LATEST_KINDS.values() for m in ms})
    pick = ", ".join(f"'{m}', i.data -> 'metrics' -> '{m}'" for m in metric_names)
    since = "" if within is None else " AND i.created_at > now() - %s"
    params: list[Any] = [[p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs]]
    if within is not None:
        params.append(within)
    return db.all(
        "SELECT p.g, p.p, p.k, l.window_end, l.m FROM unnest(%s::text[], %s::text[],"
        " %s::text[]) AS p(g, p, k) CROSS JOIN LATERAL ("
        f" SELECT i.data ->> 'window_end' AS window_end, jsonb_build_object({pick}) AS m"
        " FROM edge_gateway.item_rows i WHERE i.kind = 'summary' AND i.gateway = p.g"
        f" AND i.patient = p.p AND i.data ->> 'kind' = p.k{since}"
        " ORDER BY i.created_at DESC LIMIT 1) l", params)


def patient(db: Db, scope: Scope, gateway: str, patient_id: str) -> dict[str, Any] | None:
    """The patient's row when the scope allows it (None otherwise: the page is a 404)."""
    row = db.one(
        "SELECT p.site, p.gateway, p.patient, p.first_seen, p.last_seen, g.status, g.last_seen"
        " FROM edge_gateway.patients p LEFT JOIN edge_gateway.gateways g"
        " ON g.gateway = p.gateway WHERE p.gateway = %(g)s AND p.patient = %(p)s"
        f" AND {in_scope('p.site')}", {**scope.params, "g": gateway, "p": patient_id})
    if row is None:
        return None
    keys = ("site", "gateway", "patient", "first_seen", "last_seen", "hub_status",
            "hub_last_seen")
    return dict(zip(keys, row, strict=True))


def summaries(db: Db, gateway: str, patient_id: str, kinds: Sequence[str],
              since: datetime) -> dict[str, list[dict[str, Any]]]:
    """The patient's summaries of ``kinds`` made since ``since``, oldest first, per kind."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for kind, data in db.all(
            "SELECT i.data ->> 'kind', i.data FROM edge_gateway.item_rows i"
            " WHERE i.kind = 'summary' AND i.gateway = %s AND i.patient = %s"
            " AND i.data ->> 'kind' = ANY(%s) AND i.created_at >= %s"
            " ORDER BY i.data ->> 'window_start', i.created_at",
            (gateway, patient_id, list(kinds), since)):
        out.setdefault(str(kind), []).append(data)
    return out


def latest_summary(db: Db, gateway: str, patient_id: str, kind: str) -> dict[str, Any] | None:
    row = db.one("SELECT i.data FROM edge_gateway.item_rows i WHERE i.kind = 'summary'"
                 " AND i.gateway = %s AND i.patient = %s AND i.data ->> 'kind' = %s"
                 " ORDER BY i.created_at DESC LIMIT 1", (gateway, patient_id, kind))
    return dict(row[0]) if row else None


def patient_alerts(db: Db, gateway: str, patient_id: str, *, limit: int = 100
                   ) -> list[dict[str, Any]]:
    """The patient's alerts, newest first, with the hub's alert id and dedupe key (from the
    newest event's item) that an acknowledgement command needs."""
    keys = ("alert_key", "rule", "severity", "state", "message", "raised_at", "updated_at",
            "events", "hub_alert_id", "hub_key")
    rows = db.all(
        "SELECT a.alert_key, a.rule, a.severity, a.state, a.message, a.raised_at, a.updated_at,"
        " a.events, i.data ->> 'alert_id', i.data ->> 'key' FROM edge_gateway.alerts a"
        " LEFT JOIN edge_gateway.item_rows i ON i.id = a.last_item AND i.created_at = a.updated_at"
        " WHERE a.gateway = %s AND a.patient = %s"
        " ORDER BY a.raised_at DESC NULLS LAST LIMIT %s", (gateway, patient_id, limit))
    return [dict(zip(keys, r, strict=True)) for r in rows]


def patient_items(db: Db, gateway: str, patient_id: str, since: datetime
                  ) -> list[tuple[str, str, str, datetime, Any]]:
    """(id, kind, format, created_at, data) of the patient's summaries and alerts since."""
    return [(str(a), str(b), str(c), d, e) for a, b, c, d, e in db.all(
        "SELECT id, kind, format, created_at, data FROM edge_gateway.item_rows"
        " WHERE gateway = %s AND patient = %s AND created_at >= %s"
        " AND kind IN ('summary', 'alert') ORDER BY created_at, id",
        (gateway, patient_id, since))]


def hubs(db: Db, scope: Scope) -> list[dict[str, Any]]:
    """Every gateway in scope: site, status, last seen, backlog lag (receive - item time of
    the newest item), version (from its retained status, when it says one), patients."""
    keys = ("site", "gateway", "status", "status_at", "last_seen", "newest_item_at", "items",
            "patients", "lag_s", "version")
    rows = db.all(
        "SELECT g.site, g.gateway, g.status, g.status_at, g.last_seen, g.newest_item_at, g.items,"
        " (SELECT count(*) FROM edge_gateway.patients p WHERE p.gateway = g.gateway),"
        " extract(epoch FROM g.last_seen - g.newest_item_at)::float8, g.version"
        f" FROM edge_gateway.gateways g WHERE {in_scope('g.site')}"
        " ORDER BY g.site, g.gateway", scope.params)
    return [dict(zip(keys, r, strict=True)) for r in rows]


# ---------------------------------------------------------------------- commands
def add_command(db: Db, cmd: dict[str, Any], topic: str, payload: bytes) -> None:
    db.run("INSERT INTO edge_gateway.console_commands (id, gateway, site, patient, command,"
           " args, actor, issued_at, expires_at, topic, payload)"
           " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
           (cmd["id"], cmd["gateway"], cmd["site"], cmd["patient"], cmd["command"],
            json.dumps(cmd["args"]), cmd["actor"], cmd["issued_at"], cmd["expires_at"], topic,
            payload))


def mark_sent(db: Db, command_id: str) -> None:
    db.run("UPDATE edge_gateway.console_commands SET status = 'sent',"
           " published_at = coalesce(published_at, now())"
           " WHERE id = %s AND status = 'pending'", (command_id,))


def unsent(db: Db) -> list[tuple[str, str, bytes, datetime]]:
    """(id, topic, payload, expires_at) of commands the broker has not acknowledged yet."""
    return [(str(a), str(b), bytes(c), d) for a, b, c, d in db.all(
        "SELECT id, topic, payload, expires_at FROM edge_gateway.console_commands"
        " WHERE status = 'pending' AND expires_at > now() ORDER BY issued_at")]


def finish_results(db: Db) -> list[tuple[str, str, str]]:
    """Fold hubs' results (``command`` items) into open commands, and expire the commands
    whose time passed without one.  Returns (id, topic, status) of the commands that are
    now done and still hold a retained message (to be cleared)."""
    with db.conn.transaction():
        db.run(
            "UPDATE edge_gateway.console_commands c SET status = r.status, reason = r.reason,"
            " result_at = r.at FROM (SELECT DISTINCT ON (i.data ->> 'command_id')"
            " i.data ->> 'command_id' AS id, i.gateway, i.data ->> 'status' AS status,"
            " i.data ->> 'reason' AS reason, i.created_at AS at FROM edge_gateway.item_rows i"
            " WHERE i.kind = 'command' AND i.data ->> 'command_id' IN (SELECT id FROM"
            " edge_gateway.console_commands WHERE status IN ('pending', 'sent'))"
            " ORDER BY i.data ->> 'command_id', i.created_at DESC) r"
            " WHERE c.id = r.id AND c.gateway = r.gateway AND c.status IN ('pending', 'sent')"
            " AND r.status IN ('applied', 'rejected', 'expired')")
        db.run("UPDATE edge_gateway.console_commands SET status = 'expired',"
               " reason = 'no result from the hub before it expired', result_at = now()"
               " WHERE status IN ('pending', 'sent') AND expires_at <= now()")
        rows = db.all("SELECT id, topic, status FROM edge_gateway.console_commands"
                      " WHERE status NOT IN ('pending', 'sent') AND cleared_at IS NULL"
                      " AND published_at IS NOT NULL")
        db.run("UPDATE edge_gateway.console_commands SET cleared_at = now()"
               " WHERE status NOT IN ('pending', 'sent') AND cleared_at IS NULL"
               " AND published_at IS NULL")
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def mark_cleared(db: Db, command_id: str) -> None:
    db.run("UPDATE edge_gateway.console_commands SET cleared_at = now() WHERE id = %s",
           (command_id,))


def patient_commands(db: Db, gateway: str, patient_id: str, *, limit: int = 50
                     ) -> list[dict[str, Any]]:
    keys = ("id", "command", "args", "actor", "issued_at", "expires_at", "status", "reason",
            "result_at", "cleared_at")
    return [dict(zip(keys, r, strict=True)) for r in db.all(
        "SELECT id, command, args, actor, issued_at, expires_at, status, reason, result_at,"
        " cleared_at FROM edge_gateway.console_commands WHERE gateway = %s AND patient = %s"
        " ORDER BY issued_at DESC LIMIT %s", (gateway, patient_id, limit))]


def command(db: Db, command_id: str) -> dict[str, Any] | None:
    keys = ("id", "gateway", "site", "patient", "command", "status", "reason", "cleared_at")
    row = db.one("SELECT id, gateway, site, patient, command, status, reason, cleared_at"
                 " FROM edge_gateway.console_commands WHERE id = %s", (command_id,))
    return dict(zip(keys, row, strict=True)) if row else None
