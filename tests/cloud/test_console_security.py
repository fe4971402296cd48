"""The console's access rules against a real PostgreSQL and a served app (uvicorn, httpx).

No session -> the login page (401 for JSON); a clinician of site A gets 404 for site B's
patient and sees none of B's alerts or patients; a form without its CSRF token -> 403; wrong
passwords -> throttled (persisted per user and address); every patient view and action is
audited; cookies are HttpOnly, SameSite=Strict and not Secure only on loopback HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from console_helpers import Hub, add_user, client, csrf_of, login, query, served

from edge_gateway.cloud.console.app import Settings


@pytest.fixture
def fleet(pg_dsn: str) -> Iterator[tuple[str, str]]:
    now = datetime.now(UTC)
    a, b = Hub("gw-a", "clinic-a"), Hub("gw-b", "clinic-b")
    for hub, patient in ((a, "ann"), (b, "bob")):
        hub.summary(patient, "hrv", now - timedelta(minutes=10), now - timedelta(minutes=5),
                    {"mean_hr_bpm": 71.0, "sdnn_ms": 40.0, "rmssd_ms": 30.0})
        hub.alert(patient, 3, "af", "warning", "raised", f"AF for {patient}",
                  now - timedelta(hours=1))
        hub.land(pg_dsn)
    add_user(pg_dsn, "doc-a", "clinician", ["clinic-a"])
    add_user(pg_dsn, "boss", "admin", [])
    with served(Settings(dsn=pg_dsn, max_failures=3)) as s:
        yield pg_dsn, s.url


def test_no_session_means_the_login_page_or_401(fleet: tuple[str, str]) -> None:
    _dsn, url = fleet
    with httpx.Client(base_url=url) as c:
        for path in ("/", "/patients", "/hubs", "/patients/gw-a/ann", "/patients/gw-a/ann/fhir"):
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
            r = c.get(path, headers={"Accept": "application/json"})
            assert r.status_code == 401 and r.json() == {"error": "login required"}
        r = c.get("/login")
        assert r.status_code == 200
        assert 'action="/login"' in r.text and 'name="username"' in r.text
        assert 'name="password"' in r.text and 'name="csrf_token" value="' in r.text
        # A forged cookie is no session either.
        c.cookies.set("egw_session", "abc.def")
        assert c.get("/").status_code == 303


def test_login_sets_a_strict_httponly_cookie_and_shows_now(fleet: tuple[str, str]) -> None:
    dsn, url = fleet
    c = client(url)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": "doc-a", "password": "correct horse 1",
                               "csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "egw_session=" in cookie and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie  # plain HTTP on loopback only
    r = c.get("/")
    assert r.status_code == 200 and "Open alerts" in r.text
    assert int(r.headers["X-Queries"]) <= 5
    # The database keeps only a hash of the token.
    [(n,)] = query(dsn, "SELECT count(*) FROM edge_gateway.console_sessions"
                        " WHERE position(%s::bytea in token_hash) > 0",
                   (c.cookies["egw_session"].split(".")[0].encode(),))
    assert n == 0


def test_another_sites_patient_is_404_and_invisible(fleet: tuple[str, str]) -> None:
    _dsn, url = fleet
    c = login(url, "doc-a")
    assert c.get("/patients/gw-a/ann").status_code == 200
    r = c.get("/patients/gw-b/bob")
    assert r.status_code == 404
    assert "bob" not in r.text.replace("no such patient", "")
    assert c.get("/patients/gw-b/bob/fhir").status_code == 404
    assert c.get("/patients/gw-b/nobody").status_code == 404  # same answer: nothing confirmed
    now = c.get("/").text
    assert "AF for ann" in now and "AF for bob" not in now and "gw-b" not in now
    pats = c.get("/patients").text
    assert "ann" in pats and "bob" not in pats and "clinic-b" not in pats
    assert "gw-b" not in c.get("/hubs").text
    # Filtering by the other site shows nothing either.
    assert "bob" not in c.get("/patients", params={"site": "clinic-b"}).text
    # An action on the other site's patient is a 404 too (with a valid CSRF token).
    token = csrf_of(c.get("/patients/gw-a/ann").text)
    r = c.post("/patients/gw-b/bob/ack", data={"csrf_token": token, "alert_key": "3"})
    assert r.status_code == 404
    # The admin sees both.
    boss = login(url, "boss")
    assert "AF for bob" in boss.get("/").text and boss.get("/patients/gw-b/bob").status_code == 200


def test_forms_without_their_csrf_token_are_refused(fleet: tuple[str, str]) -> None:
    dsn, url = fleet
    c = login(url, "doc-a")
    good = csrf_of(c.get("/patients/gw-a/ann").text)
    for data in ({"alert_key": "3"}, {"alert_key": "3", "csrf_token": "x" + good[1:]}):
        r = c.post("/patients/gw-a/ann/ack", data=data)
        assert r.status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    assert c.get("/").status_code == 200  # still logged in
    # The login form has one too.
    anon = client(url)
    anon.get("/login")
    r = anon.post("/login", data={"username": "doc-a", "password": "correct horse 1"})
    assert r.status_code == 403
    [(n,)] = query(dsn, "SELECT count(*) FROM edge_gateway.console_audit"
                        " WHERE action = 'csrf.refused' AND actor = 'doc-a'")
    assert n == 3
    # Logging out with the token ends the session.
    assert c.post("/logout", data={"csrf_token": good}).status_code == 303
    assert c.get("/").status_code == 303


def test_wrong_passwords_are_throttled_per_user_and_address(fleet: tuple[str, str]) -> None:
    dsn, url = fleet
    c = client(url)

    def attempt(password: str, user: str = "doc-a") -> int:
        token = csrf_of(c.get("/login").text)
        return c.post("/login", data={"username": user, "password": password,
                                      "csrf_token": token}).status_code

    assert [attempt("wrong") for _ in range(3)] == [401, 401, 401]
    # Throttled now: even the right password is not checked.
    r_status = attempt("correct horse 1")
    assert r_status == 429
    [(n,)] = query(dsn, "SELECT failures FROM edge_gateway.console_login_failures"
                        " WHERE user_name = 'doc-a' AND ip = '127.0.0.1'")
    assert n == 3
    # Another user from the same address is not affected.
    assert attempt("correct horse 1", "boss") == 303
    # The window passing (simulated in the database) lifts it.
    query(dsn, "UPDATE edge_gateway.console_login_failures SET last_at = now() - interval '1 h'")
    assert attempt("correct horse 1") == 303
    acts = [a for (a,) in query(dsn, "SELECT action FROM edge_gateway.console_audit"
                                     " WHERE actor = 'doc-a' ORDER BY seq")]
    assert acts == ["login.failed"] * 3 + ["login.throttled", "login"]


def test_every_patient_view_and_export_is_audited(fleet: tuple[str, str]) -> None:
    dsn, url = fleet
    c = login(url, "doc-a")
    c.get("/patients/gw-a/ann")
    r = c.get("/patients/gw-a/ann/fhir")
    assert r.status_code == 200 and r.json()["resourceType"] == "Bundle"
    c.get("/patients/gw-b/bob")  # not theirs: not found, and not a view
    rows = query(dsn, "SELECT actor, ip, action, site, gateway, patient FROM"
                      " edge_gateway.console_audit WHERE action LIKE 'patient.%' ORDER BY seq")
    assert rows == [("doc-a", "127.0.0.1", "patient.view", "clinic-a", "gw-a", "ann"),
                    ("doc-a", "127.0.0.1", "patient.export", "clinic-a", "gw-a", "ann")]


def test_a_disabled_user_loses_the_session_at_once(fleet: tuple[str, str]) -> None:
    from click.testing import CliRunner

    from edge_gateway.cli import main

    dsn, url = fleet
    c = login(url, "doc-a")
    assert c.get("/").status_code == 200
    res = CliRunner().invoke(main, ["cloud", "users", "disable", "doc-a", "--dsn", dsn])
    assert res.exit_code == 0, res.output
    assert c.get("/").status_code == 303
    token = csrf_of(c.get("/login").text)
    assert c.post("/login", data={"username": "doc-a", "password": "correct horse 1",
                                  "csrf_token": token}).status_code == 401


def test_actions_are_disabled_without_a_signing_key(fleet: tuple[str, str]) -> None:
    dsn, url = fleet
    c = login(url, "doc-a")
    page = c.get("/patients/gw-a/ann").text
    assert "Acknowledge</button>" in page and "disabled" in page.split("Acknowledge")[0][-200:]
    r = c.post("/patients/gw-a/ann/ack", data={"csrf_token": csrf_of(page), "alert_key": "3"})
    assert r.status_code == 409 and "signing key" in r.text
    assert query(dsn, "SELECT count(*) FROM edge_gateway.console_commands") == [(0,)]
