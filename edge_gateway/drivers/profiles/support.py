"""Support characteristics every health device carries: battery, device information, time.

Specifications: Battery Service v1.0 (BAS) §3.1; Device Information Service v1.1 (DIS)
§3.1–3.9; Current Time Service v1.1 (CTS) §3.1; GATT Specification Supplement "Battery
Level", "Manufacturer Name String" …, "PnP ID", "System ID", "Current Time", "Date Time",
"Exact Time 256", "Day of Week", "Adjust Reason", "Local Time Information".

Three small services live here, so the module declares ``PROFILES`` (three), not ``PROFILE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self

from edge_gateway.drivers.profiles.base import (
    DateTime,
    Profile,
    Reader,
    ReadingContext,
    TextField,
    UIntField,
    bits,
    enum_name,
    measurement,
    reserved_values,
    rx_key,
)
from edge_gateway.drivers.profiles.layout import (
    DATE_TIME,
    P8,
    S8,
    U8,
    U16,
    Field,
    Layout,
    TableCodec,
)
from edge_gateway.reading import Reading


@dataclass(frozen=True, slots=True)
class BatteryLevel(UIntField, uuid="2a19", label="Battery Level", what="battery level",
                   check=reserved_values("battery level", range(101),
                                         "GSS Battery Level: 101-255 RFU")):
    """Battery Level 0x2A19 (BAS §3.1, GSS "Battery Level"): uint8 percent 0–100; 101–255
    are reserved for future use, so a payload carrying one is malformed."""

    level: int

    def to_json(self) -> dict[str, Any]:
        return {"battery_level_pct": self.level}


@measurement
def to_readings(m: BatteryLevel, ctx: ReadingContext) -> list[Reading]:
    """One ``battery`` reading (%)."""
    return [ctx.reading("battery", float(m.level), "%", record_key=rx_key(ctx.received_at))]


# Device Information strings (DIS §3.1–3.6): UTF-8, invalid UTF-8 is malformed.
class ManufacturerName(TextField, uuid="2a29", label="Manufacturer Name String",
                       key="manufacturer_name"):
    __slots__ = ()


class ModelNumber(TextField, uuid="2a24", label="Model Number String", key="model_number"):
    __slots__ = ()


class SerialNumber(TextField, uuid="2a25", label="Serial Number String", key="serial_number"):
    __slots__ = ()


class FirmwareRevision(TextField, uuid="2a26", label="Firmware Revision String",
                       key="firmware_revision"):
    __slots__ = ()


class HardwareRevision(TextField, uuid="2a27", label="Hardware Revision String",
                       key="hardware_revision"):
    __slots__ = ()


class SoftwareRevision(TextField, uuid="2a28", label="Software Revision String",
                       key="software_revision"):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SystemID:
    """System ID 0x2A23 (DIS §3.7): manufacturer identifier (40 bits) + OUI (24 bits)."""

    characteristic: ClassVar[str] = "2a23"
    name: ClassVar[str] = "System ID"

    manufacturer_identifier: int
    oui: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        r = Reader("2a23", raw)
        p = r.need(8, "system id")
        r.end()
        return cls(int.from_bytes(raw[p:p + 5], "little"), int.from_bytes(raw[p + 5:p + 8],
                                                                          "little"))

    def to_bytes(self) -> bytes:
        return self.manufacturer_identifier.to_bytes(5, "little") + self.oui.to_bytes(3,
                                                                                      "little")

    def to_json(self) -> dict[str, Any]:
        return {"manufacturer_identifier": self.manufacturer_identifier,
                "organizationally_unique_identifier": f"{self.oui:06x}"}


VENDOR_ID_SOURCES = {1: "bluetooth_sig", 2: "usb_implementers_forum"}


@dataclass(frozen=True, slots=True)
class PnPID(TableCodec):
    """PnP ID 0x2A50 (DIS §3.9): vendor id source (uint8), vendor id, product id, product
    version (uint16 each)."""

    characteristic: ClassVar[str] = "2a50"
    name: ClassVar[str] = "PnP ID"
    LAYOUT: ClassVar[Layout] = Layout.fixed(
        Field("vendor_id_source", "vendor id source", U8),
        Field("vendor_id", "vendor id", U16),
        Field("product_id", "product id", U16),
        Field("product_version", "product version", U16),
    )

    vendor_id_source: int
    vendor_id: int
    product_id: int
    product_version: int

    def to_json(self) -> dict[str, Any]:
        return {"vendor_id_source": enum_name(self.vendor_id_source, VENDOR_ID_SOURCES),
                "vendor_id": self.vendor_id, "product_id": self.product_id,
                "product_version": self.product_version}


# -------------------------------------------------------------------------------------------
# Time
# -------------------------------------------------------------------------------------------

DAYS_OF_WEEK = {0: None, 1: "monday", 2: "tuesday", 3: "wednesday", 4: "thursday",
                5: "friday", 6: "saturday", 7: "sunday"}
ADJUST_REASON_BITS = {0: "manual_time_update", 1: "external_reference_time_update",
                      2: "change_of_time_zone", 3: "change_of_dst"}


@dataclass(frozen=True, slots=True)
class DateTimeChar(TableCodec):
    """Date Time 0x2A08 (GSS "Date Time"): year (uint16, 0 = unknown), month, day, hours,
    minutes, seconds (uint8 each)."""

    characteristic: ClassVar[str] = "2a08"
    name: ClassVar[str] = "Date Time"
    LAYOUT: ClassVar[Layout] = Layout.fixed(Field("value", "date time", DATE_TIME))

    value: DateTime

    def to_json(self) -> dict[str, Any]:
        return {"date_time": self.value.iso(), "date_time_raw": self.value.to_json()}


@dataclass(frozen=True, slots=True)
class CurrentTime(TableCodec):
    """Current Time 0x2A2B (CTS §3.1; read, notify and — to set a device's clock — write).

    Layout: Exact Time 256 = Day Date Time (Date Time 7 + Day of Week uint8, 0 = unknown,
    1 = Monday … 7 = Sunday) + Fractions256 (uint8, 1/256 s); Adjust Reason (8 bits).
    """

    characteristic: ClassVar[str] = "2a2b"
    name: ClassVar[str] = "Current Time"
    LAYOUT: ClassVar[Layout] = Layout.fixed(
        Field("time", "date time", DATE_TIME),
        Field("day_of_week", "day of week", P8),
        Field("fractions256", "fractions256", P8),
        Field("adjust_reason", "adjust reason", P8),
    )

    time: DateTime
    day_of_week: int = 0
    fractions256: int = 0
    adjust_reason: int = 0

    @classmethod
    def for_write(cls, local: datetime, adjust_reason: int = 0x01) -> CurrentTime:
        """The value to write to set a device clock to ``local`` (the device's wall time;
        the caller chooses the zone).  Adjust reason defaults to "manual time update"."""
        return cls(DateTime.of(local), local.isoweekday(), local.microsecond * 256 // 10**6,
                   adjust_reason)

    def to_datetime(self) -> datetime | None:
        dt = self.time.to_datetime()
        if dt is None:
            return None
        return dt + timedelta(microseconds=self.fractions256 * 10**6 // 256)

    def to_json(self) -> dict[str, Any]:
        dt = self.to_datetime()
        return {
            "current_time": None if dt is None else dt.isoformat(),
            "day_of_week": DAYS_OF_WEEK.get(self.day_of_week, self.day_of_week),
            "fractions256": self.fractions256,
            "adjust_reason": bits(self.adjust_reason, ADJUST_REASON_BITS),
        }


@dataclass(frozen=True, slots=True)
class LocalTimeInformation(TableCodec):
    """Local Time Information 0x2A0F (CTS §3.2): time zone (sint8, 15-min steps, −128
    unknown) and DST offset (uint8, quarter hours; 255 unknown)."""

    characteristic: ClassVar[str] = "2a0f"
    name: ClassVar[str] = "Local Time Information"
    LAYOUT: ClassVar[Layout] = Layout.fixed(
        Field("time_zone", "time zone", S8),
        Field("dst_offset", "DST offset", P8),
    )

    time_zone: int
    dst_offset: int

    def to_json(self) -> dict[str, Any]:
        return {"time_zone_min": None if self.time_zone == -128 else 15 * self.time_zone,
                "dst_offset_min": None if self.dst_offset == 255 else 15 * self.dst_offset}


PROFILES = (
    Profile(
        name="battery", service="180f", codecs=(BatteryLevel,),
        measurements={"2a19": to_readings}, read_once=("2a19",), scan=False,
    ),
    Profile(
        name="device_information", service="180a",
        codecs=(ManufacturerName, ModelNumber, SerialNumber, FirmwareRevision,
                HardwareRevision, SoftwareRevision, SystemID, PnPID),
        # Manufacturer, model, serial, firmware: they do not change between connections.
        read_first=("2a29", "2a24", "2a25", "2a26"), scan=False,
    ),
    # Current Time is read and set by drivers/current_time.py, not by these tables.
    Profile(name="current_time", service="1805",
            codecs=(DateTimeChar, CurrentTime, LocalTimeInformation), scan=False),
)
