"""Alert rules and life cycle driven by readings' own timestamps; hook delivery edge."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_gateway.alerts.engine import AlertEngine, AlertTransition, list_alerts
from edge_gateway.alerts.hooks import HookRunner
from edge_gateway.alerts.thresholds import ThresholdLoader, write
from edge_gateway.errors import ConfigError
from edge_gateway.reading import Reading, Summary, iso
from edge_gateway.store import Store
from edge_gateway.store.outbox import Outbox

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "gw.db")
    s.add_patient("alice")
    return s


@pytest.fixture
def engine(store: Store) -> AlertEngine:
    return AlertEngine(store, ThresholdLoader(store))


_seq = iter(range(10**9))


def rd(kind: str, value: float, at: datetime, unit: str = "mg/dL", *,
       device: str = "cgm1", patient: str | None = "alice",
       received: datetime | None = None) -> Reading:
    return Reading(device_id=device, characteristic="x", kind=kind, value=value, unit=unit,
                   time=at, received_at=received or at, record_key=f"k{next(_seq)}",
                   patient_id=patient)


def cgm(values: Iterable[float], start: datetime = T0, step_min: float = 5) -> list[Reading]:
    return [rd("cgm_glucose", v, start + timedelta(minutes=step_min * i))
            for i, v in enumerate(values)]


def feed(engine: AlertEngine, readings: list[Reading]) -> list[AlertTransition]:
    """One reading per call, as the daemon's batches would bring them."""
    out: list[AlertTransition] = []
    for r in readings:
        out += engine.on_readings([r])
    return out


def events(ts: list[AlertTransition], rule: str | None = None) -> list[str]:
    return [t.event for t in ts if rule is None or t.alert.rule == rule]


def test_night_low_is_one_alert_from_prediction_to_resolution(
        engine: AlertEngine, store: Store) -> None:
    # 02:00 falling fast, 02:20 below 70 and wobbling around it (68..73) for an hour, a dip to
    # 50, then back to 100 for half an hour.
    values = [100, 90, 80, 74, 68, 71, 69, 73, 68, 72, 69, 71, 68, 72, 69, 73,
              50, 60, 100, 100, 100, 100, 100, 100, 100]
    ts = feed(engine, cgm(values))
    low = [t for t in ts if t.alert.rule == "glucose_low"]
    assert {t.alert.id for t in low} == {low[0].alert.id}  # one event, one alert
    assert events(low) == ["raised", "escalated", "renotified", "escalated", "resolved"]
    predicted, low1, renotify, low2, resolved = low
    # Predicted from the trend at 02:10 (80 mg/dL, falling 2 mg/dL/min)...
    assert predicted.at == T0 + timedelta(minutes=10)
    assert (predicted.alert.level, predicted.alert.severity) == (0, "warning")
    assert predicted.alert.details["predicted"] is True
    # ...the low itself at 02:20 escalates the same alert...
    assert low1.at == T0 + timedelta(minutes=20)
    assert (low1.alert.level, low1.alert.severity) == (1, "urgent")
    assert renotify.at - low1.at == timedelta(minutes=30)  # nobody acknowledged
    assert (low2.alert.level, low2.alert.severity) == (2, "critical")
    assert resolved.at - T0 == timedelta(minutes=5 * 21)  # clear from 03:30 for 15 min
    # Every state change is stored and queued for the broker with priority 0; re-notifies are
    # stored as events but not synced.
    ev = store.conn.execute("SELECT state FROM alert_events WHERE alert_id = ? ORDER BY id",
                            (predicted.alert.id,)).fetchall()
    assert [e[0] for e in ev] == events(low)
    items = [i for i in Outbox(store).batch(100) if i.body["rule"] == "glucose_low"]
    assert [i.body["state"] for i in items] == ["raised", "escalated", "escalated", "resolved"]
    assert {i.priority for i in items} == {0}


def test_unacknowledged_alert_escalates_after_the_escalation_time(engine: AlertEngine) -> None:
    ts = feed(engine, cgm([66, 66, 66, 66]))
    assert events(ts) == ["raised", "escalated"]
    assert ts[1].at - ts[0].at == timedelta(minutes=15)
    assert ts[1].alert.severity == "critical"


def test_hysteresis_wobble_below_the_clear_margin_never_resolves(engine: AlertEngine) -> None:
    ts = feed(engine, cgm([68, 72, 69, 74, 68, 74, 69, 74, 74, 74, 74]))
    assert events(ts, "glucose_low") == ["raised", "escalated", "renotified"]
    ts = feed(engine, cgm([75, 75, 75, 75], start=T0 + timedelta(hours=1)))
    assert events(ts, "glucose_low") == ["resolved"]  # 75 = 70 + 5 held for 15 min


def test_acknowledge_stops_escalation_and_renotify(engine: AlertEngine, store: Store) -> None:
    ts = feed(engine, cgm([65]))
    alert_id = ts[0].alert.id
    assert alert_id is not None
    ack = engine.acknowledge(alert_id, "carol", T0 + timedelta(minutes=3))
    assert ack is not None and ack.alert.state == "acknowledged"
    ts = feed(engine, cgm([66] * 20, start=T0 + timedelta(minutes=5)))
    assert events(ts, "glucose_low") == []
    # ...but a worse level re-arms it.
    ts = feed(engine, cgm([50], start=T0 + timedelta(minutes=110)))
    assert events(ts, "glucose_low") == ["escalated"]
    [row] = list_alerts(store, patient_id="alice")
    assert row.acknowledged_by == "carol" and row.state == "escalated"


def test_predicted_low_from_the_cgm_trend(engine: AlertEngine) -> None:
    # Falling 3 mg/dL/min from 130: at 100 (02:10) the line reaches 70 in ~10 min.
    ts = feed(engine, cgm([130 - 3 * m for m in range(0, 20, 5)]))
    assert events(ts) == ["raised"]
    assert ts[0].at == T0 + timedelta(minutes=10)
    assert ts[0].alert.level == 0 and ts[0].alert.details["minutes_to_low"] <= 20


def test_flat_cgm_raises_nothing(engine: AlertEngine) -> None:
    assert feed(engine, cgm([110, 108, 111, 109, 110, 108, 112])) == []


def test_heart_rate_must_be_sustained(engine: AlertEngine) -> None:
    beats = [rd("heart_rate", 36, T0 + timedelta(seconds=s), "/min", device="strap")
             for s in range(0, 9 * 60, 5)]
    assert feed(engine, beats) == []  # 9 minutes: not yet
    more = [rd("heart_rate", 36, T0 + timedelta(seconds=s), "/min", device="strap")
            for s in range(9 * 60, 11 * 60, 5)]
    ts = feed(engine, more)
    assert events(ts) == ["raised"] and ts[0].at == T0 + timedelta(minutes=10)


def test_heart_rate_in_af_jumps_but_its_median_counts(engine: AlertEngine) -> None:
    jumpy = [130, 85, 125, 140, 95, 135, 128, 90, 150]  # median 128: high, though not every beat
    beats = [rd("heart_rate", jumpy[i % len(jumpy)], T0 + timedelta(seconds=2 * i), "/min",
                device="strap") for i in range(12 * 30)]
    ts = feed(engine, beats)
    assert events(ts) == ["raised"] and ts[0].alert.rule == "hr_high"
    assert ts[0].at == T0 + timedelta(minutes=10)
    assert "median over 10 min" in ts[0].alert.message


def test_heart_rate_spikes_do_not_alert(engine: AlertEngine) -> None:
    beats = [rd("heart_rate", 150 if i % 5 == 0 else 80, T0 + timedelta(seconds=2 * i),
                "/min", device="strap") for i in range(15 * 30)]
    assert feed(engine, beats) == []


def test_pauses_are_one_event_alert_resolved_after_quiet(engine: AlertEngine) -> None:
    rr = [rd("rr_interval", ms, T0 + timedelta(seconds=i * 10), "ms", device="strap")
          for i, ms in enumerate([800, 3400, 820, 4100, 790])]
    ts = feed(engine, rr)
    assert events(ts) == ["raised"]
    assert events(engine.tick(T0 + timedelta(minutes=10)), "hr_pause") == []
    ts = engine.tick(T0 + timedelta(hours=1, minutes=1))
    assert events(ts, "hr_pause") == ["resolved"]
    assert ts[-1].alert.details["events"] == 2


def test_bp_crisis_and_spot_spo2(engine: AlertEngine) -> None:
    t1 = T0 + timedelta(hours=8)
    ts = engine.on_readings([rd("systolic", 186, t1, "mmHg", device="cuff"),
                             rd("diastolic", 100, t1, "mmHg", device="cuff")])
    assert events(ts) == ["raised"] and ts[0].alert.rule == "bp_crisis"
    t2 = t1 + timedelta(minutes=30)
    ts = engine.on_readings([rd("systolic", 150, t2, "mmHg", device="cuff"),
                             rd("diastolic", 95, t2, "mmHg", device="cuff")])
    assert "resolved" not in events(ts)  # first clear reading starts the clear time
    t3 = t2 + timedelta(minutes=20)
    ts = engine.on_readings([rd("systolic", 148, t3, "mmHg", device="cuff"),
                             rd("diastolic", 90, t3, "mmHg", device="cuff")])
    assert events(ts, "bp_crisis") == ["resolved"]
    ts = engine.on_readings([rd("spo2", 86, t3, "%", device="ox")])
    assert events(ts) == ["raised"] and ts[0].alert.rule == "spo2_low"


def test_stale_backfill_is_stored_not_alerted(engine: AlertEngine) -> None:
    old = rd("glucose", 45, T0, received=T0 + timedelta(days=2), device="meter")
    assert engine.on_readings([old]) == []


def test_af_summary(engine: AlertEngine) -> None:
    s = Summary("alice", "rhythm", T0, T0 + timedelta(minutes=5),
                {"af_burden_pct": 42.0, "af_longest_episode_s": 126.0}, 0.98, "rhythm/1",
                T0 + timedelta(minutes=5))
    ts = engine.on_summary(s)
    assert events(ts) == ["raised"] and "Atrial fibrillation" in ts[0].alert.message
    assert engine.on_summary(s) == []  # the same episode continuing: still one alert


def test_tick_device_silent_battery_and_outbox(engine: AlertEngine, store: Store) -> None:
    store.upsert_device("cgm1", profile="cgm", patient_id="alice")
    store.update_device_state("cgm1", last_seen_at=iso(T0), battery_pct=12.0)
    Outbox(store).add("summary", {"x": 1}, priority=1, created_at=T0)
    assert sorted(t.alert.rule for t in engine.tick(T0 + timedelta(minutes=30))) == [
        "battery_low"]
    ts = engine.tick(T0 + timedelta(hours=7))
    assert sorted(t.alert.rule for t in ts if t.event == "raised") == [
        "device_silent", "outbox_unsynced"]
    write(store, "alice", "device.silent", "12 h")  # takes effect without a restart
    engine.tick(T0 + timedelta(hours=7, minutes=20))  # clear: the clear time starts
    ts = engine.tick(T0 + timedelta(hours=7, minutes=36))
    assert [t.event for t in ts if t.alert.rule == "device_silent"] == ["resolved"]


def test_silent_device_resolves_when_it_reports_again(engine: AlertEngine, store: Store) -> None:
    store.upsert_device("cgm1", profile="cgm", patient_id="alice")
    store.add_readings(cgm([120]))
    assert engine.tick(T0 + timedelta(hours=1)) == []
    ts = engine.tick(T0 + timedelta(hours=3))
    assert [t.alert.rule for t in ts] == ["device_silent"]
    back = T0 + timedelta(hours=3, minutes=5)
    engine.on_readings(cgm([118], start=back))  # the engine sees it arrive; no rescan needed
    engine.tick(back + timedelta(minutes=1))
    ts = engine.tick(back + timedelta(minutes=17))
    assert [(t.alert.rule, t.event) for t in ts] == [("device_silent", "resolved")]


# ------------------------------------------------------------------------------ hooks
def _script(tmp_path: Path, body: str) -> list[str]:
    p = tmp_path / "hook.py"
    p.write_text(body)
    return [sys.executable, str(p)]


def test_hook_success_gets_the_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    cmd = _script(tmp_path, f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())")
    res = asyncio.run(HookRunner(cmd, timeout_s=10, retries=0).deliver('{"a": 1}'))
    assert res.ok and res.attempts == 1
    assert json.loads(out.read_text()) == {"a": 1}


def test_hook_gets_the_main_fields_as_variables(tmp_path: Path) -> None:
    out = tmp_path / "env"
    cmd = _script(tmp_path, "import os\n"
                            f"open({str(out)!r}, 'w').write(os.environ['ALERT_EVENT'] + ' ' + "
                            "os.environ['ALERT_SEVERITY'] + ' ' + os.environ['ALERT_MESSAGE'])")
    alert = {"event": "raised", "severity": "critical", "message": "Glucose 48 mg/dL"}
    assert asyncio.run(HookRunner(cmd, retries=0).deliver(json.dumps(alert))).ok
    assert out.read_text() == "raised critical Glucose 48 mg/dL"


def test_hook_command_that_cannot_be_split_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"alerts\.hook"):
        HookRunner("/usr/bin/notify 'unbalanced")


def test_hook_failure_is_retried_then_given_up(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    count = tmp_path / "n"
    cmd = _script(tmp_path, f"import sys\nopen({str(count)!r}, 'a').write('x')\n"
                            "sys.stderr.write('modem busy'); sys.exit(3)")
    res = asyncio.run(HookRunner(cmd, timeout_s=10, retries=2, backoff_s=0.01).deliver("{}"))
    assert not res.ok and res.attempts == 3 and res.returncode == 3
    assert count.read_text() == "xxx"
    assert "modem busy" in caplog.text and "gave up" in caplog.text


def test_hook_that_fails_once_then_works(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    cmd = _script(tmp_path, f"import os, sys\nif not os.path.exists({str(flag)!r}):\n"
                            f"    open({str(flag)!r}, 'w').close(); sys.exit(1)\n")
    res = asyncio.run(HookRunner(cmd, retries=3, backoff_s=0.01).deliver("{}"))
    assert res.ok and res.attempts == 2


def test_hook_timeout_kills_it(tmp_path: Path) -> None:
    cmd = _script(tmp_path, "import time; time.sleep(30)")
    started = time.monotonic()
    res = asyncio.run(HookRunner(cmd, timeout_s=0.3, retries=0).deliver("{}"))
    assert not res.ok and res.returncode is None and "timed out" in (res.error or "")
    assert time.monotonic() - started < 5


def test_hook_missing_command_is_logged_not_raised() -> None:
    res = asyncio.run(HookRunner(["/nonexistent/hook"], retries=0).deliver("{}"))
    assert not res.ok and "cannot start" in (res.error or "")


def test_hook_keeps_order_per_alert_but_alerts_do_not_wait_for_each_other(
        tmp_path: Path) -> None:
    log, flag = tmp_path / "log", tmp_path / "flag"
    cmd = _script(tmp_path, f"""
import json, os, sys, time
a = json.load(sys.stdin)
if a["key"] == "a" and a["event"] == "raised" and not os.path.exists({str(flag)!r}):
    open({str(flag)!r}, "w").close()
    time.sleep(0.3)
    sys.exit(1)
open({str(log)!r}, "a").write(a["key"] + ":" + a["event"] + "\\n")
""")
    runner = HookRunner(cmd, timeout_s=10, retries=2, backoff_s=0.01)

    async def go() -> None:
        runner.submit([json.dumps({"key": "a", "event": "raised"}),
                       json.dumps({"key": "b", "event": "raised"}),
                       json.dumps({"key": "a", "event": "resolved"})])
        await runner.drain(10)

    asyncio.run(go())
    assert log.read_text().splitlines() == ["b:raised", "a:raised", "a:resolved"]


def test_offline_alert_delivered_locally_then_synced_first(
        tmp_path: Path, store: Store, engine: AlertEngine) -> None:
    """The broker is unreachable: the hook still rings at once; the alert waits in the outbox
    and leaves it before the older summaries when the link returns."""
    box = Outbox(store)
    for i in range(5):
        box.add("summary", {"n": i}, priority=1, created_at=T0 - timedelta(minutes=i))
    got = tmp_path / "local.jsonl"
    cmd = _script(tmp_path, f"import sys; open({str(got)!r}, 'a').write(sys.stdin.read()+'\\n')")
    runner = HookRunner(cmd, timeout_s=10, retries=1, backoff_s=0.01)

    async def daemon_step() -> float:
        ts = engine.on_readings(cgm([48]))
        before = time.monotonic()
        runner.submit(t.to_json() for t in ts)
        returned = time.monotonic() - before  # the pipeline does not wait for the hook
        await runner.drain(10)
        return returned

    assert asyncio.run(daemon_step()) < 0.1
    [line] = got.read_text().splitlines()
    sent = json.loads(line)
    assert sent["event"] == "raised" and sent["rule"] == "glucose_low"
    assert sent["severity"] == "critical"
    first = box.batch(3)  # link back: what goes first?
    assert [i.kind for i in first][:1] == ["alert"] and first[0].priority == 0
    assert first[0].body["alert_id"] == sent["alert_id"]


def test_spo2_is_judged_per_device_so_two_oximeters_do_not_cancel_out(
        engine: AlertEngine) -> None:
    readings = []
    for i in range(150):  # 2.5 min: the clip-on oximeter reads 87 %, the serial one 97 %
        at = T0 + timedelta(seconds=i)
        for ms in (0, 300):  # the serial one reports twice as often
            readings.append(rd("spo2", 97.0, at + timedelta(milliseconds=ms), "%",
                               device="rad8"))
        readings.append(rd("spo2", 87.0, at + timedelta(milliseconds=600), "%",
                           device="clip"))
    raised = [t for t in feed(engine, readings) if t.event == "raised"]
    assert len(raised) == 1
    assert raised[0].to_alert().device_id == "clip"


def test_a_strap_without_skin_contact_raises_no_heart_rate_alert(engine: AlertEngine) -> None:
    off = []
    for i in range(20 * 60):  # 20 min of "0 /min, contact not detected"
        at = T0 + timedelta(seconds=i)
        off.append(Reading("strap", "2a37", "heart_rate", 0.0, "/min", at, at, f"rx:{i}",
                           patient_id="alice", extra={"sensor_contact": 2}))
    assert feed(engine, off) == []


def test_redelivered_reading_never_raises_or_renotifies_again(engine: AlertEngine) -> None:
    # A cuff's crisis reading raises once; the same reading (same record identity) delivered
    # again — a re-sent indication, a backfilled copy — is neither a new alert nor a
    # re-notification, while the alert is open and after it resolved.
    t1 = T0 + timedelta(hours=8)
    sys_, dia = (rd("systolic", 186, t1, "mmHg", device="cuff"),
                 rd("diastolic", 100, t1, "mmHg", device="cuff"))
    assert events(engine.on_readings([sys_, dia])) == ["raised"]
    later = t1 + timedelta(hours=3)  # past any re-notify interval
    assert engine.on_readings([sys_, dia]) == []
    for i, (s, d) in enumerate(((150, 95), (148, 90))):
        at = t1 + timedelta(minutes=30 + 20 * i)
        engine.on_readings([rd("systolic", s, at, "mmHg", device="cuff"),
                            rd("diastolic", d, at, "mmHg", device="cuff")])
    assert engine.on_readings([sys_, dia]) == []  # resolved: the copy does not raise again
    # A copy with a new record identity but from inside the resolved alert's span (a
    # backfilled record of the same measurement) does not raise it again either.
    copy = rd("systolic", 186, t1, "mmHg", device="cuff", received=later)
    assert events(engine.on_readings([copy]), "bp_crisis") == []
    # A new crisis after the resolution is a new alert.
    t4 = t1 + timedelta(hours=2)
    assert events(engine.on_readings([rd("systolic", 190, t4, "mmHg", device="cuff")]),
                  "bp_crisis") == ["raised"]


def test_bp_crisis_follows_the_acc_aha_convention(engine: AlertEngine) -> None:
    # ACC/AHA 2017 crisis is > 180 and/or > 120, the same bound as the report's class.
    from edge_gateway.dsp import bp

    t1 = T0 + timedelta(hours=8)
    assert engine.on_readings([rd("systolic", 180, t1, "mmHg", device="cuff"),
                               rd("diastolic", 120, t1, "mmHg", device="cuff")]) == []
    assert bp.classify(180, 120) == "stage_2" and not bp.is_crisis(180, 120)
    assert bp.classify(181, 80) == "hypertensive_crisis"
    assert events(engine.on_readings([rd("systolic", 181, t1 + timedelta(minutes=5), "mmHg",
                                         device="cuff")])) == ["raised"]
    # ESH 2023 grade 3 is >= 180 and/or >= 110 (its own convention), from the same table.
    assert bp.classify(180, 80, "esh-2023") == "grade_3"
    assert bp.classify(150, 110, "esh-2023") == "grade_3"
    assert bp.is_crisis(180, 70, "esh-2023") and not bp.is_crisis(179, 109, "esh-2023")
    assert bp.classify(125, 75, "esc-2024") == "elevated"
