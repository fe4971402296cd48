"""Masimo Rad-8 pulse oximeter, serial "ASCII 1" output: a line-based codec.

Source: *Rad-8 Signal Extraction Pulse Oximeter Operator's Manual* (Masimo), section 4 "Serial
Interface" (output mode ASCII 1) and the trend data format table that defines the exception
bits.  The device sends one line a second at 9600 baud, 8N1, no handshake, ended by CR LF::

    11/25/26 20:14:07 SN=0000093112 SPO2=097% BPM=072 PI=02.35% SPCO=--.-% SPMET=--.-% \
DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800

(one line; wrapped here).  Date ``MM/DD/YY`` and time ``HH:MM:SS`` are the device's own clock;
then ``KEY=VALUE`` fields separated by spaces.  A parameter the device cannot measure is sent
as dashes (``SPO2=---%``).  ``ALARM`` and ``EXC`` are hexadecimal bit fields; the exception
bits are 0x001 no sensor, 0x002 defective sensor, 0x004 low perfusion, 0x008 pulse search,
0x010 interference, 0x020 sensor off, 0x040 ambient light, 0x080 unrecognised sensor,
0x400 low signal IQ, 0x800 "SET" (full signal-extraction mode).  Models and firmware
versions differ in the optional fields (Radical-7 adds ``PVI``, ``SPHB``, ``EXC1``), so
fields beyond the required ones are kept verbatim, in order, and re-encoded as received.

The codec is pure, like the BLE ones: a frame (one line without its CR LF) in, a frozen record
out, ``MalformedPayload`` for anything that does not fit.  Its ``PROFILE`` has no service: its
one "characteristic" is ``serial:masimo-rad8``, the name serial frames carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from edge_gateway.drivers.profiles.base import (
    Profile,
    ReadingContext,
    bits,
    iso_naive,
    measurement,
)
from edge_gateway.errors import MalformedPayload
from edge_gateway.reading import Reading

PROTOCOL = "masimo-rad8"
#: The characteristic name frames of this protocol carry through the pipeline.
CHARACTERISTIC = f"serial:{PROTOCOL}"
BAUDRATE = 9600

EXCEPTION_BITS = {
    0: "no_sensor", 1: "defective_sensor", 2: "low_perfusion", 3: "pulse_search",
    4: "interference", 5: "sensor_off", 6: "ambient_light", 7: "unrecognized_sensor",
    10: "low_signal_iq", 11: "set_mode",
}
#: Exceptions that make the numbers on the same line untrustworthy.
_INVALIDATING = 0x001 | 0x002 | 0x020 | 0x080

_DATE = re.compile(rb"(\d\d)/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)")
_DECIMAL = re.compile(r"\d{1,4}(\.\d{1,3})?")
_REQUIRED = ("SN", "SPO2", "BPM", "PI", "ALARM", "EXC")
_MAX_LINE = 400  # the longest documented line is ~190 characters


def _fail(raw: bytes, offset: int, reason: str) -> MalformedPayload:
    return MalformedPayload(CHARACTERISTIC, offset, reason, raw)


def _number(raw: bytes, offset: int, key: str, text: str, suffix: str = "") -> float | None:
    body = text[: -len(suffix)] if suffix and text.endswith(suffix) else text
    if body and set(body) <= {"-", "."}:
        return None  # dashes: the device has no value for this parameter now
    # Digits only: float() would also take 'nan', '1e3' or '-5', none of which the device sends.
    if _DECIMAL.fullmatch(body) is None:
        raise _fail(raw, offset, f"{key} value {text!r} is not a number")
    return float(body)


@dataclass(frozen=True, slots=True)
class Rad8Record:
    """One ASCII 1 line.  ``None`` values were sent as dashes; ``others`` keeps the optional
    fields (``SPCO``, ``DESAT``, ...) as ``(key, text)`` pairs in the order sent."""

    characteristic: ClassVar[str] = CHARACTERISTIC
    name: ClassVar[str] = "Masimo Rad-8 ASCII 1 line"

    device_time: datetime  # naive: the device clock has no zone
    serial_number: str
    spo2: float | None
    pulse_rate: float | None
    perfusion_index: float | None
    alarm: int = 0
    exception: int = 0
    others: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        line = raw.rstrip(b"\r\n")
        if len(line) > _MAX_LINE:
            raise _fail(raw, _MAX_LINE, f"line longer than {_MAX_LINE} characters")
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError as e:
            raise _fail(raw, e.start, "non-ASCII byte in line") from None
        m = _DATE.match(line)
        if m is None:
            raise _fail(raw, 0, "line does not start with 'MM/DD/YY HH:MM:SS'")
        mo, d, y, hh, mi, ss = (int(g) for g in m.groups())
        try:
            device_time = datetime(2000 + y, mo, d, hh, mi, ss)
        except ValueError as e:
            raise _fail(raw, 0, f"device date/time is not valid: {e}") from None
        fields: dict[str, tuple[int, str]] = {}
        others: list[tuple[str, str]] = []
        pos = m.end()
        for token in text[pos:].split(" "):
            if not token:
                pos += 1
                continue
            key, eq, value = token.partition("=")
            if not eq or not key.isalnum() or not key.isupper():
                raise _fail(raw, pos, f"field {token!r} is not KEY=VALUE")
            if key in fields or any(k == key for k, _ in others):
                raise _fail(raw, pos, f"field {key} appears twice")
            if key in _REQUIRED:
                fields[key] = (pos, value)
            else:
                others.append((key, value))
            pos += len(token) + 1
        missing = [k for k in _REQUIRED if k not in fields]
        if missing:
            raise _fail(raw, len(line), f"missing field{'s' if len(missing) > 1 else ''} "
                        + ", ".join(missing))

        def hexfield(key: str) -> int:
            off, value = fields[key]
            try:
                return int(value, 16)
            except ValueError:
                raise _fail(raw, off, f"{key} value {value!r} is not hexadecimal") from None

        spo2 = _number(raw, fields["SPO2"][0], "SPO2", fields["SPO2"][1], "%")
        if spo2 is not None and spo2 > 100:
            raise _fail(raw, fields["SPO2"][0], f"SPO2 {spo2:g}% is above 100%")
        return cls(
            device_time=device_time,
            serial_number=fields["SN"][1],
            spo2=spo2,
            pulse_rate=_number(raw, fields["BPM"][0], "BPM", fields["BPM"][1]),
            perfusion_index=_number(raw, fields["PI"][0], "PI", fields["PI"][1], "%"),
            alarm=hexfield("ALARM"),
            exception=hexfield("EXC"),
            others=tuple(others),
        )

    def to_bytes(self) -> bytes:
        """The line as the device sends it, without the CR LF that frames it on the wire."""
        spo2 = "---" if self.spo2 is None else f"{round(self.spo2):03d}"
        bpm = "---" if self.pulse_rate is None else f"{round(self.pulse_rate):03d}"
        pi = "--.--" if self.perfusion_index is None else f"{self.perfusion_index:05.2f}"
        parts = [
            self.device_time.strftime("%m/%d/%y %H:%M:%S"),
            f"SN={self.serial_number}", f"SPO2={spo2}%", f"BPM={bpm}", f"PI={pi}%",
            *(f"{k}={v}" for k, v in self.others),
            f"ALARM={self.alarm:04X}", f"EXC={self.exception:06X}",
        ]
        return " ".join(parts).encode("ascii")

    @property
    def exceptions(self) -> dict[str, bool]:
        return bits(self.exception, EXCEPTION_BITS)

    @property
    def trustworthy(self) -> bool:
        """False when an exception (no sensor, sensor off, ...) voids the line's numbers."""
        return not self.exception & _INVALIDATING

    def to_json(self) -> dict[str, Any]:
        return {
            "device_time": self.device_time.isoformat(),
            "serial_number": self.serial_number,
            "spo2_percent": self.spo2,
            "pulse_rate_bpm": self.pulse_rate,
            "perfusion_index_percent": self.perfusion_index,
            "alarm": self.alarm,
            "exceptions": self.exceptions,
            "others": dict(self.others),
        }


@measurement
def to_readings(r: Rad8Record, ctx: ReadingContext) -> list[Reading]:
    """``spo2`` (%), ``pulse_rate`` (/min) and ``perfusion_index`` (%) keyed by device time.

    Parameters sent as dashes, and every number on a line whose exception bits say there is
    no usable sensor signal, yield no reading (the raw line is still kept by the caller).
    """
    if not r.trustworthy:
        return []
    key = f"dev:{iso_naive(r.device_time)}"
    extra = {"exception": r.exception, "alarm": r.alarm, "serial_number": r.serial_number}
    out: list[Reading] = []
    for kind, value, unit in (("spo2", r.spo2, "%"), ("pulse_rate", r.pulse_rate, "/min"),
                              ("perfusion_index", r.perfusion_index, "%")):
        if value is not None:
            out.append(ctx.reading(kind, value, unit, record_key=key,
                                   device_time=r.device_time, extra=extra))
    return out


PROFILE = Profile(
    name="masimo_rad8", service=None, codecs=(Rad8Record,),
    measurements={CHARACTERISTIC: to_readings}, scan=False,
)
