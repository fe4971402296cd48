"""Which codec decodes which characteristic, and which profile a service belongs to.

A new profile is one module in this package plus its lines here.  Keys are 16-bit UUIDs as
four lower-case hex digits (``"2a37"``); :func:`short_uuid` normalises the other spellings
(``0x2A37``, the 128-bit ``00002a37-0000-1000-8000-00805f9b34fb``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from edge_gateway.drivers.profiles import (
    blood_pressure,
    cgm,
    cgm_socp,
    glucose,
    heart_rate,
    pulse_oximeter,
    racp,
    support,
    thermometer,
    weight,
)
from edge_gateway.drivers.profiles.base import Codec
from edge_gateway.errors import MalformedPayload
from edge_gateway.reading import Reading

ToReadings = Callable[..., list[Reading]]

_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"

#: Service UUID -> profile name.
SERVICES: Mapping[str, str] = MappingProxyType({
    "180d": "heart_rate",
    "1810": "blood_pressure",
    "1808": "glucose",
    "181f": "cgm",
    "1822": "pulse_oximeter",
    "1809": "thermometer",
    "181d": "weight",
    "180f": "battery",
    "180a": "device_information",
    "1805": "current_time",
})

#: Characteristic UUID -> codec class.
CODECS: Mapping[str, type[Codec]] = MappingProxyType({
    c.characteristic: c for c in (
        heart_rate.HeartRateMeasurement, heart_rate.BodySensorLocation,
        heart_rate.HeartRateControlPoint,
        blood_pressure.BloodPressureMeasurement, blood_pressure.IntermediateCuffPressure,
        blood_pressure.BloodPressureFeature,
        glucose.GlucoseMeasurement, glucose.GlucoseMeasurementContext, glucose.GlucoseFeature,
        racp.RecordAccessControlPoint,
        cgm.CGMMeasurement, cgm.CGMFeature, cgm.CGMStatus, cgm.CGMSessionStartTime,
        cgm.CGMSessionRunTime, cgm_socp.CGMSpecificOpsControlPoint,
        pulse_oximeter.PLXSpotCheck, pulse_oximeter.PLXContinuous, pulse_oximeter.PLXFeatures,
        thermometer.TemperatureMeasurement, thermometer.IntermediateTemperature,
        thermometer.TemperatureType, thermometer.MeasurementInterval,
        weight.WeightMeasurement, weight.WeightScaleFeature,
        support.BatteryLevel, support.ManufacturerName, support.ModelNumber,
        support.SerialNumber, support.FirmwareRevision, support.HardwareRevision,
        support.SoftwareRevision, support.SystemID, support.PnPID, support.DateTimeChar,
        support.CurrentTime, support.LocalTimeInformation,
    )
})

#: Characteristic UUID -> ``to_readings`` for characteristics that carry measurements.
READINGS: Mapping[str, ToReadings] = MappingProxyType({
    "2a37": heart_rate.to_readings,
    "2a35": blood_pressure.to_readings,
    "2a18": glucose.to_readings,
    "2aa7": cgm.to_readings,
    "2a5e": pulse_oximeter.to_readings,
    "2a5f": pulse_oximeter.to_readings,
    "2a1c": thermometer.to_readings,
    "2a9d": weight.to_readings,
    "2a19": support.to_readings,
})


def short_uuid(uuid: str) -> str:
    """``"2A37"``, ``"0x2a37"`` or the full SIG-base 128-bit form -> ``"2a37"``.

    Raises ``ValueError`` for anything else (a vendor 128-bit UUID has no short form).
    """
    text = uuid.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) == 36 and text.endswith(_BASE_SUFFIX) and text.startswith("0000"):
        text = text[4:8]
    if len(text) != 4 or any(ch not in "0123456789abcdef" for ch in text):
        raise ValueError(f"{uuid!r} is not a 16-bit Bluetooth SIG UUID (like 2a37)")
    return text


def codec_for(characteristic: str) -> type[Codec] | None:
    return CODECS.get(short_uuid(characteristic))


def profile_for(service: str) -> str | None:
    return SERVICES.get(short_uuid(service))


def decode(characteristic: str, raw: bytes) -> Any:
    """Decode ``raw`` with the characteristic's codec; ``MalformedPayload`` when it does not
    fit, ``KeyError`` when no codec is registered for it."""
    uuid = short_uuid(characteristic)
    codec = CODECS.get(uuid)
    if codec is None:
        raise KeyError(uuid)
    return codec.from_bytes(bytes(raw))


def to_readings(characteristic: str, raw: bytes, *, device_id: str, received_at: datetime,
                device_clock_offset: timedelta | None, reset_epoch: int = 0,
                session_start: datetime | None = None) -> list[Reading]:
    """Decode a notification/indication and turn it into Readings (``[]`` for
    characteristics that carry no measurement)."""
    uuid = short_uuid(characteristic)
    fn = READINGS.get(uuid)
    if fn is None:
        return []
    decoded = decode(uuid, raw)
    return fn(decoded, device_id=device_id, characteristic=uuid, received_at=received_at,
              device_clock_offset=device_clock_offset, reset_epoch=reset_epoch,
              session_start=session_start)


def decode_readings(characteristic: str, raw: bytes, *, device_id: str,
                    received_at: datetime, device_clock_offset: timedelta | None,
                    reset_epoch: int = 0, session_start: datetime | None = None,
                    ) -> list[Reading]:
    """The name the frame pipeline uses for :func:`to_readings`."""
    return to_readings(characteristic, raw, device_id=device_id, received_at=received_at,
                       device_clock_offset=device_clock_offset, reset_epoch=reset_epoch,
                       session_start=session_start)

__all__ = ["CODECS", "READINGS", "SERVICES", "MalformedPayload", "codec_for", "decode",
           "decode_readings", "profile_for", "short_uuid", "to_readings"]
