"""The BLE side of the daemon: one :class:`DeviceSession` per enabled device, kept in step
with the store's allowlist (``devices add/remove`` take effect without a restart).

The glue between a session and the rest of the gateway lives here:

* frames go to the frame pipeline (decode, keep raw, reject malformed); CGM measurements get
  the sensor's Session Start Time, remembered from the 0x2AAA frame the session reads first;
* :class:`StoreLedger` answers "what is the newest record we hold" from committed readings and
  their raw frames, and bumps the device's reset epoch when a session detects a reset;
* connection state and the device clock offset go to the ``devices`` table;
* the connection slots are one :class:`~edge_gateway.drivers.slots.SlotPool`: streams keep
  their links within ``max_connections - 1`` slots, store-only devices take turns on the
  rest, oldest visit first, and are left as soon as their transfer is done (docs/ble.md,
  "Many devices, few slots").

The daemon runs :func:`ble_component` as a named task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from edge_gateway.backoff import Backoff
from edge_gateway.drivers import registry
from edge_gateway.drivers.backfill import RecordMark, cgm_offsets, recorded_mark, sequence_mark
from edge_gateway.drivers.profiles.cgm import CGMSessionStartTime
from edge_gateway.drivers.session import DeviceSession
from edge_gateway.drivers.slots import SlotPool
from edge_gateway.drivers.transport import Transport
from edge_gateway.errors import DeviceError, MalformedPayload
from edge_gateway.store import Store
from edge_gateway.store import devices as device_rows
from edge_gateway.store import readings as reading_rows

if TYPE_CHECKING:
    from edge_gateway.config import BleSection
    from edge_gateway.runtime.daemon import Daemon

log = logging.getLogger(__name__)

#: Device Information characteristics -> key in ``devices.details``.
_DEVICE_INFO = {"2a29": "manufacturer", "2a24": "model", "2a25": "serial", "2a26": "firmware"}
#: How many recent frames of a characteristic the ledger looks at for the newest record.
_RECENT = 2000


class PipelineOnFrame(Protocol):
    def __call__(self, device_id: str, characteristic: str, received_at: datetime,
                 payload: bytes, *, session_start: datetime | None = None) -> Any: ...


def session_start_of(payload: bytes) -> datetime | None:
    """A CGM Session Start Time: aware UTC when the zone is known, else the device's clock."""
    try:
        sst = CGMSessionStartTime.from_bytes(payload)
    except MalformedPayload:
        return None
    return sst.utc_start() or sst.start.to_datetime()


class StoreLedger:
    """:class:`~edge_gateway.drivers.backfill.RecordLedger` over the store."""

    def __init__(self, store: Store, on_reset: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.on_reset = on_reset

    def _epoch(self, device_id: str) -> int:
        return device_rows.reset_epoch(self.store, device_id)

    def _payloads(self, device_id: str, characteristic: str) -> list[bytes]:
        return reading_rows.record_payloads(self.store, device_id, characteristic,
                                            self._epoch(device_id), _RECENT)

    def last_record(self, device_id: str, characteristic: str) -> RecordMark | None:
        # How the newest record is found follows the profile's declared record identity.
        spec = registry.current().racp.get(characteristic)
        identity = None if spec is None else spec.identity
        if identity == "sequence":
            marks = [m for p in self._payloads(device_id, characteristic)
                     if (m := sequence_mark(p)) is not None]
            return max(marks, key=lambda m: m.key) if marks else None
        if identity == "time_offset" and spec is not None and spec.session is not None:
            start = reading_rows.latest_frame(self.store, device_id, spec.session)
            offsets = [o for p in self._payloads(device_id, characteristic)
                       for o in cgm_offsets(p)]
            if start is None or not offsets:
                return None
            return RecordMark(max(offsets), start)
        if identity == "recorded":
            # Records are kept raw until a codec turns them into readings: the newest one
            # received (backfills hand records on in ascending order) is the mark.
            for payload in reading_rows.recent_frames(self.store, device_id, characteristic):
                if (mark := recorded_mark(payload)) is not None:
                    return mark
        return None

    def reset_detected(self, device_id: str, characteristic: str, reason: str) -> None:
        log.warning("%s: %s (%s); new records go to a new reset epoch",
                    device_id, reason, characteristic)
        self.store.update_device_state(device_id, reset_epoch=self._epoch(device_id) + 1)
        if self.on_reset is not None:
            self.on_reset(device_id)


def streams_expected(profile_name: str | None) -> bool:
    """Whether a device of this profile is expected to stream, before it first connected:
    its profile streams its main measurement (heart rate, CGM, continuous SpO2).  Cuffs and
    thermometers declare streams too (intermediate cuff pressure and temperature), but those
    only come while measuring; what a device offers decides once it is connected."""
    for p in registry.current().profiles:
        if p.name == profile_name:
            measured = {registry.char_key(c) for c in p.measurements}
            return any(registry.char_key(c) in measured for c in p.streams)
    return False


class BleFleet:
    """Runs and reconciles the sessions of every enabled BLE device in the store."""

    def __init__(
        self,
        store: Store,
        on_frame: PipelineOnFrame,
        ble: BleSection,
        *,
        clock_trusted: Callable[[], bool],
        on_settings: Callable[[], None] = lambda: None,
        transport_factory: Callable[[str, str], Transport] | None = None,
        flush: Callable[[], object] = lambda: None,
        idle_disconnect_s: float | None = 2.0,
        revisit_s: float | None = None,
        visit_max_s: float = 60.0,
    ) -> None:
        self.store = store
        self.pipeline_on_frame = on_frame
        self.ble = ble
        self.clock_trusted = clock_trusted
        self.on_settings = on_settings
        self.transport_factory = transport_factory or self._ble_transport
        self.flush = flush
        # How long a store-only device may stay quiet before its transfer counts as done.
        self.idle_disconnect_s = idle_disconnect_s
        self.revisit_s = ble.revisit_s if revisit_s is None else revisit_s
        self.visit_max_s = visit_max_s
        self.slots = SlotPool(ble.max_connections)
        self.sessions: dict[str, DeviceSession] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session_start: dict[str, datetime | None] = {}
        self._info: dict[str, dict[str, str]] = {}
        self.ledger = StoreLedger(store, on_reset=lambda _d: self._changed())

    def _ble_transport(self, device_id: str, address: str) -> Transport:
        from edge_gateway.drivers.ble import BleTransport

        return BleTransport(address, adapter=self.ble.adapter, name=device_id)

    def _changed(self) -> None:
        # The pipeline caches epochs and clock offsets per device: make it re-read them.
        self.flush()  # frames decoded under the old epoch are committed under it
        self.on_settings()

    def on_frame(self, device_id: str, char: str, received_at: datetime, payload: bytes) -> None:
        if char == CGMSessionStartTime.characteristic:
            self._session_start[device_id] = session_start_of(payload)
        elif char == "2a19" and len(payload) == 1 and payload[0] <= 100:
            self._device_state(device_id, battery_pct=payload[0])
        elif char in _DEVICE_INFO:
            info = self._info.setdefault(device_id, {})
            info[_DEVICE_INFO[char]] = payload.decode("utf-8", "replace").rstrip("\x00").strip()
            self._device_state(device_id, details=dict(info))
        self.pipeline_on_frame(device_id, char, received_at, payload,
                               session_start=self._session_start.get(device_id))

    def _device_state(self, device_id: str, **fields: Any) -> None:
        try:
            self.store.update_device_state(device_id, **fields)
        except Exception:  # a busy database must not stop a session
            log.exception("%s: could not record %s", device_id, ", ".join(fields))

    def on_state(self, device_id: str, state: str) -> None:
        if state in ("streaming", "disconnected", "stopped", "idle", "backoff"):
            try:
                self.store.set_connected(device_id, state == "streaming", datetime.now(UTC))
            except Exception:  # a busy database must not stop a session
                log.exception("%s: could not record connection state", device_id)

    def on_clock(self, device_id: str, offset_s: float, corrected: bool) -> None:
        self.store.update_device_state(device_id, clock_offset_s=offset_s)
        self.on_settings()

    def wanted(self) -> dict[str, str]:
        return device_rows.enabled_ble(self.store)

    def reconcile(self, tg: asyncio.TaskGroup) -> None:
        wanted = self.wanted()
        for device_id in list(self.sessions):
            if device_id not in wanted:
                self.sessions.pop(device_id).stop()
                self._tasks.pop(device_id, None)
        new = [d for d in wanted if d not in self.sessions]
        profiles = {row.id: row.profile for row in device_rows.status_rows(self.store)} \
            if new else {}
        for device_id in new:
            address = wanted[device_id]
            session = DeviceSession(
                device_id, self.transport_factory(device_id, address), self.on_frame,
                self.slots, ledger=self.ledger, clock_trusted=self.clock_trusted,
                max_drift_s=self.ble.max_device_drift_s, set_clock=self.ble.set_device_clock,
                backoff=Backoff(self.ble.backoff_initial_s, self.ble.backoff_max_s),
                on_state=self.on_state, on_clock=self.on_clock,
                idle_disconnect_s=self.idle_disconnect_s, revisit_s=self.revisit_s,
                visit_max_s=self.visit_max_s,
                expect_streams=streams_expected(profiles.get(device_id)),
            )
            self.sessions[device_id] = session
            self._tasks[device_id] = tg.create_task(session.run(), name=f"ble:{device_id}")

    async def run(self, sleep: Callable[[float], Any], poll_s: float = 2.0,
                  watch_bluez: bool = True) -> None:
        """Until ``await sleep(poll_s)`` returns True (the daemon stopping).

        Raises ``DeviceError`` when bluetoothd stops or restarts (see ``ble.bluez_gone``)."""
        try:
            async with asyncio.TaskGroup() as tg:
                watcher = tg.create_task(self._watch_bluez(), name="ble:bluez-watch") \
                    if watch_bluez else None
                try:
                    while True:
                        self.reconcile(tg)
                        if await sleep(poll_s):
                            break
                finally:
                    for session in self.sessions.values():
                        session.stop()
                    if watcher is not None:
                        watcher.cancel()
        except ExceptionGroup as group:
            # The one error worth a message (bluetoothd gone), not a group of one.
            errors = [e for e in group.exceptions if isinstance(e, DeviceError)]
            if errors and len(errors) == len(group.exceptions):
                raise errors[0] from None
            raise

    async def _watch_bluez(self) -> None:
        from edge_gateway.drivers.ble import bluez_gone

        try:
            reason = await bluez_gone()
        except (OSError, DeviceError) as err:
            log.warning("not watching bluetoothd: %s", err)
            return
        raise DeviceError("bluetoothd", f"{reason}: every link is gone and bleak's view of "
                          "BlueZ is stale", retryable=True,
                          hint="the daemon exits so that systemd restarts it")


async def ble_component(d: Daemon) -> None:
    """The daemon's ``ble`` task: ``Component("ble", ble_component)``."""
    from edge_gateway.clock import kernel_clock_synchronized

    assert d.store is not None and d.pipeline is not None and d.writer is not None
    fleet = BleFleet(
        d.store, d.pipeline.on_frame, d.cfg.ble,
        clock_trusted=lambda: kernel_clock_synchronized() is True,
        on_settings=d.pipeline.refresh, flush=d.writer.flush,
    )
    await fleet.run(d.sleep, d.cfg.daemon.settings_poll_s)
