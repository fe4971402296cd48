"""A backfilled or re-delivered reading never raises or re-notifies an alert the original
already raised — across a gateway restart too (the engine's memory is gone, the SQLite file
is not).

The readings take the daemon's own path: meter bytes -> FramePipeline -> BatchWriter ->
``on_commit`` -> AlertEngine, over a real SQLite file that is closed and opened again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_gateway.alerts.engine import AlertEngine, AlertTransition, Lifecycle, OpenAlert
from edge_gateway.alerts.rules import Observation
from edge_gateway.alerts.thresholds import ThresholdLoader
from edge_gateway.drivers.pipeline import FramePipeline
from edge_gateway.drivers.profiles.base import DateTime
from edge_gateway.drivers.profiles.glucose import GlucoseMeasurement
from edge_gateway.drivers.profiles.ieee11073 import SFloat
from edge_gateway.store import BatchWriter, Store

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def record(seq: int, at: datetime, mgdl: int) -> bytes:
    """A Glucose Measurement as a meter sends it, live or backfilled over the RACP."""
    return GlucoseMeasurement(seq, DateTime.of(at.replace(tzinfo=None)), time_offset=0,
                              concentration=SFloat(mgdl, -5), type=1,
                              sample_location=1).to_bytes()


class Gateway:
    """The daemon's reading-to-alert path over one SQLite file (one 'process')."""

    def __init__(self, db: Path) -> None:
        self.store = Store.open(db)
        self.engine = AlertEngine(self.store, ThresholdLoader(self.store))
        self.transitions: list[AlertTransition] = []
        self.writer = BatchWriter(self.store, on_commit=lambda rs: self.transitions.extend(
            self.engine.on_readings(rs)))
        self.pipeline = FramePipeline(self.store, self.writer)

    def receive(self, seq: int, at: datetime, mgdl: int,
                received: datetime | None = None) -> list[str]:
        """One record arrives; returns the alert events it caused."""
        self.transitions = []
        self.pipeline.on_frame("meter", "2a18", received or at, record(seq, at, mgdl))
        self.writer.flush(force=True)
        return [f"{t.alert.rule}:{t.event}" for t in self.transitions]

    def count(self, table: str) -> int:
        return int(self.store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gw.db"
    gw = Gateway(path)
    gw.store.add_patient("alice")
    gw.store.upsert_device("meter", profile="glucose", patient_id="alice")
    gw.close()
    yield path


def test_redelivered_reading_after_a_restart_raises_and_notifies_nothing(db: Path) -> None:
    gw = Gateway(db)
    assert gw.receive(7, T0, 45) == ["glucose_low:raised"]
    counts = (gw.count("alerts"), gw.count("alert_events"), gw.count("outbox"))
    gw.close()

    # Restart; the meter's memory is read again (RACP backfill from the newest record held,
    # which comes back as proof of identity), 3 h later: past the re-notify interval.
    gw = Gateway(db)
    assert gw.receive(7, T0, 45, received=T0 + timedelta(hours=3)) == []
    assert (gw.count("alerts"), gw.count("alert_events"), gw.count("outbox")) == counts
    # Back in range: the alert resolves (the clear time is the rule's, readings 20 min apart).
    events = [e for i, v in enumerate((110, 112, 115))
              for e in gw.receive(8 + i, T0 + timedelta(minutes=20 * (i + 1)), v)]
    assert events == ["glucose_low:resolved"]
    counts = (gw.count("alerts"), gw.count("alert_events"), gw.count("outbox"))
    gw.close()

    # Restart again; the low record is delivered once more (a re-sent notification, a
    # backfill that asks for everything after a reset check): no second alert.
    gw = Gateway(db)
    assert gw.receive(7, T0, 45, received=T0 + timedelta(hours=1, minutes=10)) == []
    assert (gw.count("alerts"), gw.count("alert_events"), gw.count("outbox")) == counts
    # A copy of it under another record identity (a reset epoch) from inside the resolved
    # alert's span does not raise it either ...
    assert gw.receive(300, T0, 45, received=T0 + timedelta(hours=1, minutes=10)) == []
    # ... while a new low after the resolution is a new alert.
    assert gw.receive(11, T0 + timedelta(hours=2), 50) == ["glucose_low:raised"]
    assert gw.count("alerts") == counts[0] + 1
    gw.close()


def _obs(at: datetime, active: bool | None, *, event: bool = False) -> Observation:
    return Observation("k", "r", at, active, event=event)


def _open(*, event: bool = False) -> OpenAlert:
    return OpenAlert(key="k", rule="r", patient_id="alice", device_id=None,
                     severity="warning", level=1, state="raised", message="m",
                     raised_at=T0, last_event_at=T0 if event else None, event=event)


def test_late_copies_neither_count_as_events_nor_restart_or_finish_the_clear_time() -> None:
    th = {"alert.clear_after": 900.0}
    # An event alert (pauses): the copy of an event already counted is not another event.
    alert = _open(event=True)
    alert, ts, _ = Lifecycle.observe(alert, _obs(T0 + timedelta(minutes=5), True, event=True),
                                     th)  # type: ignore[arg-type]
    assert alert is not None and alert.details["events"] == 2 and ts == []
    for at in (T0, T0 + timedelta(minutes=5)):  # copies of the first and the second
        alert, ts, changed = Lifecycle.observe(alert, _obs(at, True, event=True),
                                               th)  # type: ignore[arg-type]
        assert alert is not None and alert.details["events"] == 2 and not changed
    # A level alert clearing since 02:30: a late copy of the 02:00 low does not restart the
    # clear time, and a clear reading from before the alert cannot finish it early.
    alert = _open()
    alert.clear_since = T0 + timedelta(minutes=30)
    alert, _, changed = Lifecycle.observe(alert, _obs(T0, True), th)  # type: ignore[arg-type]
    assert alert is not None and not changed
    assert alert.clear_since == T0 + timedelta(minutes=30)
    alert = _open()
    alert, _, _ = Lifecycle.observe(alert, _obs(T0 - timedelta(hours=1), False),
                                    th)  # type: ignore[arg-type]
    assert alert is not None and alert.clear_since is None
    alert, ts, _ = Lifecycle.observe(alert, _obs(T0 + timedelta(minutes=5), False),
                                     th)  # type: ignore[arg-type]
    assert alert is not None and alert.state == "raised" and ts == []
