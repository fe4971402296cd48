"""Alert rules: readings, summaries and gateway facts -> :class:`Observation`s.

Pure: no I/O, no clock.  Time is the readings' own ``time`` (or the ``now`` a caller passes to
:meth:`Rules.evaluate_tick`), so a test replays a night of CGM data in microseconds.

An observation says, for one de-duplication key, whether the condition is *active*
(``True``), *clear* (``False``: back inside the range by at least the hysteresis margin) or
*neutral* (``None``: inside the hysteresis band, or out of range but not yet for long enough).
The life cycle in :mod:`edge_gateway.alerts.engine` turns observations into alert transitions.

Reading kinds understood (codecs emit these): ``glucose``, ``cgm_glucose`` (mg/dL or mmol/L),
``heart_rate`` (/min), ``rr_interval`` (ms), ``spo2`` (%), ``systolic``/``diastolic``
(also ``bp_systolic``/``bp_diastolic``; mmHg or kPa), ``battery`` (%).
Summary metrics understood (the DSP scheduler's short ``rhythm`` summaries):
``af_burden_pct``, ``af_longest_episode_s`` (or ``af_longest_s``), ``longest_pause_ms``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import median
from typing import Any

from edge_gateway.alerts.thresholds import Thresholds
from edge_gateway.dsp import bp
from edge_gateway.reading import Reading, Summary
from edge_gateway.units import BP_PARTS, MGDL_PER_MMOLL, MMHG_PER_KPA

SEVERITIES = ("info", "warning", "urgent", "critical")

GLUCOSE_KINDS = frozenset({"glucose", "cgm_glucose"})
#: Blood-pressure kinds by part (the table is units.BP_PARTS).
SYSTOLIC_KINDS = frozenset(k for k, part in BP_PARTS.items() if part == "sys")
DIASTOLIC_KINDS = frozenset(k for k, part in BP_PARTS.items() if part == "dia")
BATTERY_KINDS = frozenset({"battery", "battery_pct", "battery_level"})
#: Summary kinds the AF and pause rules read (the DSP scheduler's short rhythm windows).
RHYTHM_KINDS = frozenset({"rhythm"})

#: Readings this much older than their arrival (a meter's memory read days later) are stored
#: but not alerted on: a caregiver cannot act on a low from last Tuesday, and a burst of stale
#: alarms would teach them to ignore the real ones.
STALE_AFTER = timedelta(hours=6)
#: A gap this long in a stream breaks a "sustained" condition (a strap taken off and put on).
CONTINUITY_GAP = timedelta(minutes=2)
#: Least-squares trend window for the predicted low, and the least it must span.
TREND_WINDOW = timedelta(minutes=20)
TREND_MIN_SPAN = timedelta(minutes=10)
BATTERY_HYSTERESIS = 5.0


@dataclass(frozen=True, slots=True)
class Observation:
    """One rule's verdict for one key at one instant."""

    key: str
    rule: str
    at: datetime
    active: bool | None
    severity: str = "warning"
    level: int = 1
    message: str = ""
    value: float | None = None
    unit: str | None = None
    patient_id: str | None = None
    device_id: str | None = None
    #: Event alerts (a pause, an AF episode) have no "clear" reading: they resolve after a
    #: quiet time without new events.
    event: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What :meth:`Rules.evaluate_tick` needs to know of one device."""

    device_id: str
    patient_id: str | None
    last_seen: datetime | None  # newest of: last reading, last connection
    battery_pct: float | None = None
    enabled: bool = True


def duration(seconds: float) -> str:
    """Seconds as a caregiver reads them: ``45 s``, ``20 min``, ``2.5 h``, ``3 d``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.1f} d".replace(".0 d", " d")


def _owner(r: Reading) -> str:
    return r.patient_id or f"device:{r.device_id}"


def _stream_owner(r: Reading) -> str:
    """Streamed vitals are judged per device: two oximeters on one patient that disagree must
    not average each other away (nor clear each other's alert)."""
    return f"{_owner(r)}:{r.device_id}" if r.patient_id else _owner(r)


#: Heart Rate Measurement flags: sensor contact feature supported but contact not detected.
CONTACT_LOST = 2


def glucose_mgdl(value: float, unit: str) -> float:
    return value * MGDL_PER_MMOLL if unit == "mmol/L" else value


def minutes_to_level(points: Sequence[tuple[datetime, float]], level: float) -> float | None:
    """Minutes until a least-squares line through ``points`` falls to ``level``.

    None when the trend is flat or rising, or the points are too few or too short to trust.
    """
    if len(points) < 3 or points[-1][0] - points[0][0] < TREND_MIN_SPAN:
        return None
    t0 = points[0][0]
    xs = [(t - t0).total_seconds() / 60.0 for t, _ in points]
    ys = [v for _, v in points]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    if slope >= -0.1:  # mg/dL/min; slower than this is noise, not a fall
        return None
    now_fit = my + slope * (xs[-1] - mx)
    return max(0.0, (now_fit - level) / -slope)


class Rules:
    """Evaluate readings and summaries in time order.

    Holds the little memory some rules need (the last minutes of heart rate and SpO2, the
    recent CGM trend, the last systolic/diastolic verdicts); all of it is driven by the
    readings' times.
    """

    def __init__(self) -> None:
        self._win: dict[str, deque[tuple[datetime, float]]] = {}  # key -> recent readings
        self._trend: dict[str, deque[tuple[datetime, float]]] = {}
        self._bp: dict[str, dict[str, bool | None]] = {}

    # ------------------------------------------------------------------ readings
    def evaluate_reading(self, r: Reading, th: Thresholds) -> list[Observation]:
        if r.value is None or r.received_at - r.time > STALE_AFTER:
            return []
        if r.kind in GLUCOSE_KINDS:
            return self._glucose(r, th)
        if r.kind == "heart_rate":
            return self._heart_rate(r, th)
        if r.kind == "rr_interval":
            return self._pause(r, th)
        if r.kind == "spo2":
            return self._spo2(r, th)
        if r.kind in SYSTOLIC_KINDS or r.kind in DIASTOLIC_KINDS:
            return self._bp_reading(r, th)
        if r.kind in BATTERY_KINDS:
            return [self._battery(r.device_id, r.patient_id, r.value, r.time, th)]
        return []

    def _glucose(self, r: Reading, th: Thresholds) -> list[Observation]:
        assert r.value is not None
        v = glucose_mgdl(r.value, r.unit)
        owner, hyst = _owner(r), th["glucose.hysteresis"]
        l1, l2, high = th["glucose.low_l1"], th["glucose.low_l2"], th["glucose.high"]
        common: dict[str, Any] = {"at": r.time, "value": round(v, 1), "unit": "mg/dL",
                                  "patient_id": r.patient_id, "device_id": r.device_id}
        low = f"glucose_low:{owner}"
        # A predicted low is level 0 of the same alert as the low itself: when the low comes,
        # the alert escalates instead of a second one being raised (one event, one alert).
        minutes = self._predicted_minutes(r, v, owner, th) if r.kind == "cgm_glucose" else None
        out: list[Observation] = []
        if v < l2:
            out.append(Observation(low, "glucose_low", active=True, severity="critical",
                                   level=2, **common,
                                   message=f"Glucose {v:.0f} mg/dL: level 2 low (< {l2:g})"))
        elif v < l1:
            out.append(Observation(low, "glucose_low", active=True, severity="urgent", level=1,
                                   message=f"Glucose {v:.0f} mg/dL: level 1 low (< {l1:g})",
                                   **common))
        elif minutes is not None:
            out.append(Observation(
                low, "glucose_low", active=True, severity="warning", level=0,
                message=f"Glucose {v:.0f} mg/dL falling: below {l1:g} in about "
                        f"{minutes:.0f} min (predicted)",
                details={"predicted": True, "minutes_to_low": round(minutes, 1)}, **common))
        else:
            out.append(Observation(low, "glucose_low",
                                   active=False if v >= l1 + hyst else None, **common))
        if v > high:
            out.append(Observation(f"glucose_high:{owner}", "glucose_high", active=True,
                                   severity="warning",
                                   message=f"Glucose {v:.0f} mg/dL: high (> {high:g})", **common))
        else:
            out.append(Observation(f"glucose_high:{owner}", "glucose_high",
                                   active=False if v <= high - hyst else None, **common))
        return out

    def _predicted_minutes(self, r: Reading, v: float, owner: str,
                           th: Thresholds) -> float | None:
        """Minutes until the CGM trend reaches level 1, when within the horizon; else None."""
        # TODO(dsp): use edge_gateway.dsp.glucose's trend once it lands; this least-squares
        # line over 20 minutes is the same idea in a dozen lines.
        trend = self._trend.setdefault(owner, deque())
        if trend and r.time <= trend[-1][0]:
            trend.clear()  # out of order (a new sensor session): start the trend over
        trend.append((r.time, v))
        while trend and r.time - trend[0][0] > TREND_WINDOW:
            trend.popleft()
        l1 = th["glucose.low_l1"]
        if v < l1:
            return None
        minutes = minutes_to_level(list(trend), l1)
        if minutes is not None and minutes <= th["glucose.predicted_low"] / 60.0:
            return minutes
        return None

    def _window_median(self, key: str, at: datetime, v: float, need_s: float,
                       *, spot_ok: bool = False) -> float | None:
        """The median of the readings of the last ``need_s`` seconds, once they span it.

        A median, not "every reading": a heart rate in AF jumps 70 → 120 → 90 from beat to
        beat, and one low beat must not restart a ten-minute count.  None while the window is
        not yet covered.  ``spot_ok``: a reading with no predecessor within ``need_s`` is a
        spot check (an oximeter clipped on for one measurement, which already averages) and
        counts alone.
        """
        win = self._win.setdefault(key, deque())
        if win and (at - win[-1][0] > CONTINUITY_GAP or at < win[-1][0]):
            win.clear()  # the strap was off, or time went back: start over
        spot = spot_ok and (not win or (at - win[-1][0]).total_seconds() > need_s)
        win.append((at, v))
        if spot:
            win.clear()
            win.append((at, v))
            return v
        edge = at - timedelta(seconds=need_s)
        while len(win) > 1 and win[1][0] <= edge:
            win.popleft()  # keep one reading at or before the edge: the span is then known
        if (at - win[0][0]).total_seconds() < need_s:
            return None
        return float(median(x for _, x in win))

    def _heart_rate(self, r: Reading, th: Thresholds) -> list[Observation]:
        assert r.value is not None
        if r.value <= 0 or (r.extra or {}).get("sensor_contact") == CONTACT_LOST:
            # A strap off the chest reports 0 /min or flags lost contact: no heart rate, so
            # neither a reason to alert nor to clear.
            return []
        owner = _stream_owner(r)
        lo, hi, hyst = th["hr.low_rest"], th["hr.high_rest"], th["hr.hysteresis"]
        sustain = th["hr.sustain"]
        med = self._window_median(f"hr:{owner}", r.time, r.value, sustain)
        common: dict[str, Any] = {
            "at": r.time, "value": r.value if med is None else round(med, 1), "unit": "/min",
            "patient_id": r.patient_id, "device_id": r.device_id,
            "details": {"median_over_s": sustain}}
        out = []
        for rule, bad, clear, text in (
            ("hr_low", med is not None and med < lo, med is not None and med >= lo + hyst,
             f"below {lo:g}"),
            ("hr_high", med is not None and med > hi, med is not None and med <= hi - hyst,
             f"above {hi:g}"),
        ):
            key = f"{rule}:{owner}"
            if bad:
                assert med is not None
                out.append(Observation(
                    key, rule, active=True, severity="warning",
                    message=f"Heart rate {med:.0f} /min (median over {duration(sustain)}) "
                            f"{text}", **common))
            else:
                out.append(Observation(key, rule, active=False if clear else None, **common))
        return out

    def _pause(self, r: Reading, th: Thresholds) -> list[Observation]:
        assert r.value is not None
        limit_ms = th["hr.pause"] * 1000.0
        if r.value < limit_ms:
            return []
        return [Observation(
            f"hr_pause:{_owner(r)}", "hr_pause", at=r.time, active=True, severity="urgent",
            event=True, value=r.value, unit="ms", patient_id=r.patient_id,
            device_id=r.device_id, message=f"Pause of {r.value / 1000:.1f} s between beats")]

    def _spo2(self, r: Reading, th: Thresholds) -> list[Observation]:
        assert r.value is not None
        key, low = f"spo2_low:{_stream_owner(r)}", th["spo2.low"]
        med = self._window_median(key, r.time, r.value, th["spo2.sustain"], spot_ok=True)
        common: dict[str, Any] = {
            "at": r.time, "value": r.value if med is None else round(med, 1), "unit": "%",
            "patient_id": r.patient_id, "device_id": r.device_id}
        if med is not None and med < low:
            return [Observation(key, "spo2_low", active=True, severity="urgent",
                                message=f"SpO2 {med:.0f} % (< {low:g} %)", **common)]
        clear = med is not None and med >= low + th["spo2.hysteresis"]
        return [Observation(key, "spo2_low", active=False if clear else None, **common)]

    def _bp_reading(self, r: Reading, th: Thresholds) -> list[Observation]:
        assert r.value is not None
        v = r.value * MMHG_PER_KPA if r.unit == "kPa" else r.value
        owner, hyst = _owner(r), th["bp.hysteresis"]
        part = "sys" if r.kind in SYSTOLIC_KINDS else "dia"
        limit = th["bp.crisis_sys"] if part == "sys" else th["bp.crisis_dia"]
        state = self._bp.setdefault(owner, {"sys": None, "dia": None})
        name = "systolic" if part == "sys" else "diastolic"
        # The crisis convention (ACC/AHA: strictly above) comes from the one BP table.
        state[part] = True if bp.crisis_part(name, v, limit) else (
            False if v < limit - hyst else None)
        common: dict[str, Any] = {"at": r.time, "value": round(v, 1), "unit": "mmHg",
                  "patient_id": r.patient_id, "device_id": r.device_id}
        key = f"bp_crisis:{owner}"
        if state[part]:
            return [Observation(
                key, "bp_crisis", active=True, severity="urgent",
                message=f"Blood pressure {name} {v:.0f} mmHg: hypertensive crisis range "
                        f"(> {limit:g})", details={"component": name}, **common)]
        both_clear = state["sys"] is False and state["dia"] is False
        return [Observation(key, "bp_crisis", active=False if both_clear else None, **common)]

    @staticmethod
    def _battery(device_id: str, patient_id: str | None, pct: float, at: datetime,
                 th: Thresholds) -> Observation:
        low = th["battery.low"]
        key = f"battery_low:{device_id}"
        common: dict[str, Any] = {"at": at, "value": pct, "unit": "%", "patient_id": patient_id,
                  "device_id": device_id}
        if pct <= low:
            return Observation(key, "battery_low", active=True, severity="info",
                               message=f"Device {device_id} battery {pct:.0f} %", **common)
        active = False if pct >= low + BATTERY_HYSTERESIS else None
        return Observation(key, "battery_low", active=active, **common)

    # ------------------------------------------------------------------ summaries
    def evaluate_summary(self, s: Summary, th: Thresholds) -> list[Observation]:
        if s.kind not in RHYTHM_KINDS:
            return []  # daily roll-ups arrive hours late: the short windows already alerted
        m = s.metrics
        owner = s.patient_id or f"device:{s.device_id}"
        common: dict[str, Any] = {
            "at": s.window_end, "patient_id": s.patient_id, "device_id": s.device_id,
            "event": True}
        out: list[Observation] = []
        burden = _num(m.get("af_burden_pct"))
        longest = _num(m.get("af_longest_episode_s", m.get("af_longest_s")))
        if (burden is not None and burden >= th["af.burden"]) or (
                longest is not None and longest >= th["af.episode"] and longest > 0):
            parts = []
            if burden is not None:
                parts.append(f"burden {burden:.0f} %")
            if longest is not None:
                parts.append(f"longest episode {duration(longest)}")
            out.append(Observation(
                f"af:{owner}", "af", active=True, severity="warning",
                value=burden, unit="%" if burden is not None else None,
                message="Atrial fibrillation: " + ", ".join(parts),
                details={"af_burden_pct": burden, "af_longest_episode_s": longest,
                         "window_start": s.window_start.isoformat()}, **common))
        pause = _num(m.get("longest_pause_ms"))
        if pause is not None and pause >= th["hr.pause"] * 1000.0:
            out.append(Observation(
                f"hr_pause:{owner}", "hr_pause", active=True, severity="urgent", value=pause,
                unit="ms", message=f"Pause of {pause / 1000:.1f} s between beats", **common))
        return out

    # ------------------------------------------------------------------ gateway facts
    def evaluate_tick(
        self, now: datetime, devices: Iterable[DeviceFacts], outbox_oldest: datetime | None,
        thresholds: Any,
    ) -> list[Observation]:
        """Silent devices, low batteries (from the device table), an outbox not draining.

        ``thresholds`` is the loader: ``thresholds(patient_id) -> Thresholds``.
        """
        out: list[Observation] = []
        for d in devices:
            if not d.enabled:
                continue
            th = thresholds(d.patient_id)
            key = f"device_silent:{d.device_id}"
            silent_s = th["device.silent"]
            age = None if d.last_seen is None else (now - d.last_seen).total_seconds()
            if age is not None and age > silent_s:
                out.append(Observation(
                    key, "device_silent", at=now, active=True, severity="warning",
                    patient_id=d.patient_id, device_id=d.device_id, value=round(age / 60),
                    unit="min", message=f"Device {d.device_id} silent for {duration(age)}"))
            else:
                out.append(Observation(key, "device_silent", at=now, active=False,
                                       patient_id=d.patient_id, device_id=d.device_id))
            if d.battery_pct is not None:
                out.append(self._battery(d.device_id, d.patient_id, d.battery_pct, now, th))
        gth = thresholds(None)
        key = "outbox_unsynced:gateway"
        age = None if outbox_oldest is None else (now - outbox_oldest).total_seconds()
        if age is not None and age > gth["outbox.unsynced"]:
            out.append(Observation(
                key, "outbox_unsynced", at=now, active=True, severity="warning",
                value=round(age / 60), unit="min",
                message=f"Nothing synced for {duration(age)} (broker unreachable?)"))
        else:
            out.append(Observation(key, "outbox_unsynced", at=now, active=False))
        return out


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)
