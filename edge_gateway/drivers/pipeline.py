"""From a raw frame to stored readings: decode, attribute to a patient, queue for commit.

Every frame is kept (raw bytes and receive time) beside what it decoded to, so that a decoder
fix can re-derive history.  A frame that does not decode is kept as a *rejected* frame with
the error and its bytes are logged; the device's session goes on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edge_gateway.errors import MalformedPayload
from edge_gateway.logfmt import log
from edge_gateway.reading import Reading
from edge_gateway.store import BatchWriter, FrameRecord, Store
from edge_gateway.store import devices as device_rows

LOG = logging.getLogger("edge_gateway.drivers.pipeline")

#: decode(characteristic, payload, context) -> readings; raises MalformedPayload.
Decoder = Callable[[str, bytes, "DeviceContext"], Sequence[Reading]]


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """What decoding needs to know about a device beyond the bytes."""

    device_id: str
    received_at: datetime
    patient_id: str | None = None
    reset_epoch: int = 0
    clock_offset: timedelta | None = None
    session_start: datetime | None = None
    user_patients: tuple[tuple[int, str], ...] = ()


def default_decoder(characteristic: str, payload: bytes, ctx: DeviceContext) -> list[Reading]:
    """Decode with the profile registry: BLE characteristics and serial protocols alike (a
    serial protocol's profile has the one characteristic ``serial:<protocol>``)."""
    from edge_gateway.drivers import registry

    if characteristic.startswith(registry.SERIAL_PREFIX) \
            and registry.codec_for(characteristic) is None:
        protocol = characteristic.split(":", 1)[1]
        raise MalformedPayload(characteristic, 0, f"no decoder for serial protocol {protocol!r}",
                               payload)
    return registry.decode_readings(
        characteristic, payload, device_id=ctx.device_id, received_at=ctx.received_at,
        device_clock_offset=ctx.clock_offset, reset_epoch=ctx.reset_epoch,
        session_start=ctx.session_start,
    )


def is_stream(characteristic: str) -> bool:
    """A continuous stream's characteristic (heart rate, SpO2, a serial monitor), whose
    frames are not stored on the device: not one a RACP backfill fetches records from."""
    from edge_gateway.drivers import registry

    if characteristic.startswith(registry.SERIAL_PREFIX):
        return True
    try:
        key = registry.char_key(characteristic)
    except ValueError:
        return False
    reg = registry.current()
    stored = {c for spec in reg.racp.values() for c in (spec.records, *spec.also)}
    return key in reg.streams and key not in stored


class FramePipeline:
    def __init__(self, store: Store, writer: BatchWriter, decoder: Decoder = default_decoder
                 ) -> None:
        self.store = store
        self.writer = writer
        self.decoder = decoder
        self._devices: dict[str, dict[str, Any]] = {}
        self._users: dict[str, tuple[tuple[int, str], ...]] = {}
        self.rejected = 0
        self._refusing = False

    def refresh(self) -> None:
        """Re-read device attributions (patients, epochs, clock offsets) from the store."""
        self._devices = {}
        self._users = {}

    def _device(self, device_id: str) -> dict[str, Any]:
        dev = self._devices.get(device_id)
        if dev is None:
            row = device_rows.context(self.store, device_id)
            dev = {"patient_id": None, "reset_epoch": 0, "clock_offset_s": None}
            if row is not None:
                dev = {"patient_id": row.patient_id, "reset_epoch": row.reset_epoch,
                       "clock_offset_s": row.clock_offset_s}
            self._devices[device_id] = dev
            self._users[device_id] = device_rows.user_patients(self.store, device_id)
        return dev

    def context(self, device_id: str, received_at: datetime,
                session_start: datetime | None = None) -> DeviceContext:
        dev = self._device(device_id)
        offset = dev["clock_offset_s"]
        return DeviceContext(
            device_id=device_id, received_at=received_at, patient_id=dev["patient_id"],
            reset_epoch=int(dev["reset_epoch"]),
            clock_offset=None if offset is None else timedelta(seconds=float(offset)),
            session_start=session_start, user_patients=self._users.get(device_id, ()),
        )

    def on_frame(self, device_id: str, characteristic: str, received_at: datetime,
                 payload: bytes, *, session_start: datetime | None = None) -> None:
        """Decode and queue one frame; never raises for a bad payload.

        While commits fail and the held data is at its cap, a continuous stream's frame is
        refused here (counted by the writer) so that nothing already taken is ever dropped.
        """
        if not self.writer.admit(stream=is_stream(characteristic)):
            if not self._refusing:
                self._refusing = True
                log(LOG, logging.ERROR, "frames.refusing", reason="storage failing and "
                    f"{self.writer.pending_bytes} bytes held", kind="stream frames",
                    action="fix the storage fault; stored records are still taken")
            return
        if self._refusing:
            self._refusing = False
            log(LOG, logging.WARNING, "frames.taking_again",
                refused=self.writer.stats.refused_stream_frames)
        ctx = self.context(device_id, received_at, session_start)
        try:
            readings = list(self.decoder(characteristic, payload, ctx))
        except MalformedPayload as err:
            self.rejected += 1
            log(LOG, logging.WARNING, "frame.rejected", device=device_id, char=characteristic,
                offset=err.offset, reason=err.reason, raw=payload.hex())
            self.writer.submit(FrameRecord(device_id, characteristic, received_at,
                                           bytes(payload), error=str(err)))
            return
        except Exception as err:
            # A decoder bug must not lose the frame or stop the device's session: keep the
            # frame as rejected (a fixed decoder can re-derive it later) and say so loudly.
            self.rejected += 1
            LOG.exception("frame.decoder_error", extra={"fields": {
                "device": device_id, "char": characteristic, "raw": payload.hex()}})
            self.writer.submit(FrameRecord(device_id, characteristic, received_at,
                                           bytes(payload),
                                           error=f"decoder error: {type(err).__name__}: {err}"))
            return
        readings = [self._attribute(r, ctx) for r in readings]
        self.writer.submit(FrameRecord(device_id, characteristic, received_at, bytes(payload)),
                           readings)

    @staticmethod
    def _attribute(r: Reading, ctx: DeviceContext) -> Reading:
        patient = ctx.patient_id
        user = r.extra.get("user_id") if r.extra else None
        if user is not None:
            for uid, pid in ctx.user_patients:
                if uid == user:
                    patient = pid
                    break
            else:
                # A multi-user cuff's unassigned slot: keep the reading, attribute to nobody.
                patient = None if ctx.user_patients else patient
        if patient == r.patient_id and r.reset_epoch == ctx.reset_epoch:
            return r
        return dataclasses.replace(r, patient_id=patient)
