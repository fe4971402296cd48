"""The records that flow through the pipeline: Reading, Summary, Alert.

All are frozen, slotted dataclasses.  Times are timezone-aware UTC ``datetime``s; the device's
own clock is kept beside the derived UTC time as the device reported it (naive ISO 8601 text),
because a device clock may be off by minutes or years and the truth must stay recoverable.
Units are UCUM codes (``mg/dL``, ``mmol/L``, ``kPa``, ``/min``, ``ms``, ``%``), except
``mmHg`` (UCUM ``mm[Hg]``): ``units.UNITS`` gives each one's UCUM code and display.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edge_gateway.units import UCUM_UNITS


def utc(dt: datetime) -> datetime:
    """Return ``dt`` as an aware UTC datetime; naive datetimes are refused."""
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt.isoformat()} where UTC was required")
    return dt.astimezone(UTC)


def iso(dt: datetime | None) -> str | None:
    """Fixed-width ISO 8601 text in UTC: ``2026-11-25T10:00:00.000000Z``.

    Always with microseconds, so that text order is time order (the store compares these
    strings in SQL; ``...:00Z`` would sort after ``...:00.5Z``).
    """
    if dt is None:
        return None
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured quantity from one device.

    A frame may yield several readings (a heart-rate notification gives one ``heart_rate`` and
    one ``rr_interval`` per RR value; a blood-pressure measurement gives systolic, diastolic,
    mean arterial pressure and pulse), which share ``record_key``.

    The natural key ``(device_id, characteristic, kind, reset_epoch, record_key)`` makes inserts
    idempotent: ``record_key`` is the device's own record identity (``seq:42``,
    ``sess:2026-11-20T08:00:00:off:15``, ``dev:2026-11-20T08:00:00``) or, for streams without
    any (heart-rate notifications), the receive time plus the index within the frame.
    ``reset_epoch`` is bumped when a device reboot or a new sensor session restarts its record
    identities, so new records are never mistaken for old ones.

    ``value`` is ``None`` when the device sent a special value (NaN, NRes, ±INF); ``special``
    then names it.  ``extra`` holds the remaining decoded fields (flags, status bits) and is
    stored as JSON.
    """

    device_id: str
    characteristic: str
    kind: str
    value: float | None
    unit: str
    time: datetime
    received_at: datetime
    record_key: str
    device_time: str | None = None
    reset_epoch: int = 0
    special: str | None = None
    patient_id: str | None = None
    raw_frame_id: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.unit not in UCUM_UNITS:
            raise ValueError(f"unit {self.unit!r} is not one of the gateway's UCUM units")
        if self.time.tzinfo is None or self.received_at.tzinfo is None:
            raise ValueError("Reading times must be timezone-aware UTC")
        if self.value is None and self.special is None:
            raise ValueError("a Reading without a value must name its special value")


@dataclass(frozen=True, slots=True)
class Summary:
    """A windowed result of the DSP (HRV, rhythm, glucose metrics, BP averages).

    ``metrics`` maps metric names (unit in the name: ``sdnn_ms``) to numbers or ``None``;
    ``coverage`` is the share (0..1) of the window covered by valid data; ``algorithm`` names
    the code and version that made it (``hrv/1``) so a summary can be traced back.
    """

    patient_id: str | None
    kind: str
    window_start: datetime
    window_end: datetime
    metrics: Mapping[str, Any]
    coverage: float
    algorithm: str
    created_at: datetime
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert event or life-cycle transition (raised, escalated, acknowledged, resolved)."""

    patient_id: str | None
    rule: str
    severity: str
    state: str
    message: str
    raised_at: datetime
    key: str
    value: float | None = None
    unit: str | None = None
    device_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    SEVERITIES = ("info", "warning", "urgent", "critical")
