"""The console's pages over a real PostgreSQL: what they show, and the hub's numbers in them.

The data are summaries the hub's own DSP computed (console_helpers.rich_patient), landed
through the hub's payload builder and the ingest's commit.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from console_helpers import Hub, add_user, login, query, rich_patient, served

from edge_gateway.cloud.console.app import Settings
from edge_gateway.dsp import bp


@pytest.fixture
def site(pg_dsn: str) -> Iterator[tuple[str, str]]:
    now = datetime.now(UTC)
    hub = Hub("gw-1", "clinic-1")
    rich_patient(hub, "maria", now)
    hub.alert("maria", 7, "glucose_low", "urgent", "raised", "glucose 52 mg/dL below 54",
              now - timedelta(hours=3))
    hub.alert("maria", 8, "af", "warning", "raised", "Atrial fibrillation: burden 30 %",
              now - timedelta(hours=5))
    hub.alert("maria", 9, "spo2_low", "critical", "raised", "SpO2 85 %",
              now - timedelta(minutes=20))
    hub.alert("maria", 5, "hr_high", "warning", "resolved", "old one",
              now - timedelta(days=2))
    hub.summary("quiet", "hrv", now - timedelta(days=3, minutes=5), now - timedelta(days=3),
                {"mean_hr_bpm": 60.0})
    hub.land(pg_dsn)
    # The landed summaries' own numbers, to compare with the page.
    add_user(pg_dsn, "doc", "clinician", ["clinic-1"])
    with served(Settings(dsn=pg_dsn)) as s:
        yield pg_dsn, s.url


def _text(markup: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup)))


def test_now_orders_alerts_by_severity_then_age_and_lists_stale_patients(
        site: tuple[str, str]) -> None:
    _dsn, url = site
    r = login(url, "doc").get("/")
    assert r.status_code == 200
    text = _text(r.text)
    order = [text.index(m) for m in ("SpO2 85 %", "glucose 52 mg/dL", "Atrial fibrillation")]
    assert order == sorted(order)  # critical, urgent, warning
    assert "old one" not in text  # resolved
    stale = text.split("Patients without data", 1)[1]
    assert "quiet" in stale and "maria" not in stale
    assert int(r.headers["X-Queries"]) == 4  # session + three page queries


def test_patients_shows_the_last_value_of_each_kind_and_filters(site: tuple[str, str]) -> None:
    dsn, url = site
    c = login(url, "doc")
    r = c.get("/patients")
    text = _text(r.text)
    [(tir, mean)] = query(dsn, "SELECT (data->'metrics'->>'tir_pct')::float,"
                               " (data->'metrics'->>'mean_mg_dl')::float FROM edge_gateway.items"
                               " WHERE data->>'kind' = 'glucose_14d'")
    assert f"TIR {tir:.0f} %, mean {mean:.0f} mg/dL" in text
    assert "74 /min" in text  # the newest hrv summary
    assert re.search(r"maria .*? 3 ", text)  # three open alerts
    # session, list, newest values (recent, then all time for kinds not found), alerts, sites
    assert int(r.headers["X-Queries"]) == 6
    assert "quiet" in text
    r = c.get("/patients", params={"q": "mar"})
    assert "maria" in r.text and "quiet" not in _text(r.text).split("Patients", 1)[1]
    assert "No patients match" in c.get("/patients", params={"q": "zzz"}).text
    assert "No patients match" in c.get("/patients", params={"q": "%"}).text  # no wildcard


def test_patient_page_draws_the_hubs_numbers(site: tuple[str, str]) -> None:
    dsn, url = site
    r = login(url, "doc").get("/patients/gw-1/maria")
    assert r.status_code == 200
    page, text = r.text, _text(r.text)
    [(m,)] = query(dsn, "SELECT data->'metrics' FROM edge_gateway.items"
                        " WHERE data->>'kind' = 'glucose_14d'")
    # AGP from the 14-day summary's percentiles; time in ranges with the report's labels.
    assert page.count("<svg") >= 5 and 'class="median"' in page
    assert f"In range 70–180: {m['tir_pct']:.1f} %" in text
    assert f"Very low < 54: {m['tbr2_pct']:.1f} %" in text
    assert f"mean {m['mean_mg_dl']:.0f} mg/dL" in text
    # BP: the week's mean classed by the hub's one table.
    weeks = query(dsn, "SELECT data->'metrics' FROM edge_gateway.items"
                       " WHERE data->>'kind' = 'bp_weekly' ORDER BY data->>'window_start' DESC")
    w = weeks[0][0]
    label = bp.label_of(bp.classify(w["mean_systolic"], w["mean_diastolic"]))
    assert f"{w['mean_systolic']:.0f}/{w['mean_diastolic']:.0f} {label}" in text
    # AF: four days with an episode each, burden over every rhythm window.
    assert "4 episode(s)" in text
    assert "Heart-rate variability" in text and "No HRV summaries" not in text
    # The alert timeline and an Acknowledge form per open alert (disabled: no key).
    assert text.count("Acknowledge") == 3
    assert int(r.headers["X-Queries"]) == 6  # session, patient, summaries, alerts,
    # commands, audit


def test_fhir_export_is_a_valid_r4_bundle_of_the_patients_items(site: tuple[str, str]) -> None:
    from fhir.resources.R4B.bundle import Bundle

    dsn, url = site
    r = login(url, "doc").get("/patients/gw-1/maria/fhir")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    assert "attachment" in r.headers["content-disposition"]
    doc = r.json()
    Bundle.model_validate(doc)
    kinds = [e["resource"]["resourceType"] for e in doc["entry"]]
    [(n,)] = query(dsn, "SELECT count(*) FROM edge_gateway.items WHERE patient = 'maria'"
                        " AND created_at >= now() - interval '14 days'")
    assert len(kinds) == n and "Flag" in kinds and "Observation" in kinds
    obs = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert all(o["subject"] == {"reference": "Patient/maria"} for o in obs)


def test_pages_print_without_navigation(site: tuple[str, str]) -> None:
    _dsn, url = site
    c = login(url, "doc")
    css = c.get("/static/console.css").text
    assert "@media print" in css and ".noprint" in css
    page = c.get("/patients/gw-1/maria").text
    assert "<script" not in page  # no JavaScript anywhere
    assert 'class="noprint"' in page or "noprint" in page
