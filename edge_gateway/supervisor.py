"""Device supervision for the daemon: one session per enabled device in the store.

Sessions are started for every enabled device (BLE through ``drivers.ble``/``drivers.session``,
serial through ``drivers.serial``), stopped when a caregiver removes or disables one, and
restarted when its settings change — the settings watcher wakes us, no restart needed.
``StoreLedger`` tells backfill what the gateway already holds, from the store itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .clock import kernel_clock_synchronized
from .logfmt import log

if TYPE_CHECKING:
    from .daemon import Daemon
    from .drivers.backfill import RecordMark
    from .store import BatchWriter, Store

LOG = logging.getLogger("edge_gateway.devices")

CONNECTED_STATES = frozenset({"connected", "backfilling", "streaming"})


class StoreLedger:
    """:class:`~edge_gateway.drivers.backfill.RecordLedger` over the store."""

    def __init__(self, store: Store, writer: BatchWriter | None = None,
                 on_reset: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.writer = writer
        self.on_reset = on_reset

    def _epoch(self, device_id: str) -> int:
        row = self.store.conn.execute("SELECT reset_epoch FROM devices WHERE id = ?",
                                      (device_id,)).fetchone()
        return int(row[0]) if row else 0

    def last_record(self, device_id: str, characteristic: str) -> RecordMark | None:
        from .drivers.backfill import RecordMark, glucose_mark

        if self.writer is not None:
            self.writer.flush()  # what is queued counts as held
        conn = self.store.conn
        epoch = self._epoch(device_id)
        if characteristic == "2a18":
            row = conn.execute(
                "SELECT f.payload FROM readings r JOIN raw_frames f ON f.id = r.raw_frame_id"
                " WHERE r.device_id = ? AND r.characteristic = '2a18' AND r.kind = 'glucose'"
                " AND r.reset_epoch = ? AND r.record_key LIKE 'seq:%'"
                " ORDER BY CAST(substr(r.record_key, 5) AS INTEGER) DESC LIMIT 1",
                (device_id, epoch)).fetchone()
            return glucose_mark(bytes(row[0])) if row and row[0] is not None else None
        if characteristic == "2aa7":
            row = conn.execute(
                "SELECT max(CAST(substr(record_key, instr(record_key, ':off:') + 5)"
                " AS INTEGER)) FROM readings WHERE device_id = ? AND characteristic = '2aa7'"
                " AND kind = 'cgm_glucose' AND reset_epoch = ?", (device_id, epoch)).fetchone()
            sess = conn.execute(
                "SELECT payload FROM raw_frames WHERE device_id = ? AND characteristic = '2aaa'"
                " AND status = 'ok' ORDER BY id DESC LIMIT 1", (device_id,)).fetchone()
            if row is None or row[0] is None or sess is None or sess[0] is None:
                return None
            return RecordMark(int(row[0]), bytes(sess[0]))
        return None

    def reset_detected(self, device_id: str, characteristic: str, reason: str) -> None:
        if self.writer is not None:
            self.writer.flush()  # records before the reset keep the old epoch
        with self.store.transaction() as conn:
            conn.execute("UPDATE devices SET reset_epoch = reset_epoch + 1 WHERE id = ?",
                         (device_id,))
        self.store.bump("device.resets")
        log(LOG, logging.WARNING, "device.reset_detected", device=device_id,
            char=characteristic, reason=reason, epoch=self._epoch(device_id))
        if self.on_reset is not None:
            self.on_reset(device_id)


class DeviceSupervisor:
    def __init__(self, daemon: Daemon) -> None:
        assert daemon.store is not None and daemon.pipeline is not None
        self.d = daemon
        self.store = daemon.store
        self.pipeline = daemon.pipeline
        self.limiter = asyncio.Semaphore(daemon.cfg.ble.max_connections)
        self.tasks: dict[str, tuple[asyncio.Task[None], Any, str]] = {}
        self.states: dict[str, str] = {}
        self.ledger = StoreLedger(self.store, daemon.writer, on_reset=self._refresh)

    def _refresh(self, _device_id: str) -> None:
        self.pipeline.refresh()

    def _wanted(self) -> dict[str, tuple[str, str, str | None, str]]:
        rows = self.store.conn.execute(
            "SELECT id, transport, address, details, coalesce(name, id) FROM devices"
            " WHERE enabled = 1").fetchall()
        out = {}
        for dev_id, transport, address, details, name in rows:
            # The fingerprint restarts a session when its connection settings change.
            out[dev_id] = (transport, f"{transport}|{address}|{details}", address, name)
        return out

    def on_state(self, device_id: str, state: str) -> None:
        before = self.states.get(device_id)
        self.states[device_id] = state
        was = before in CONNECTED_STATES
        now = state in CONNECTED_STATES
        if was != now or before is None:
            self.store.set_connected(device_id, now, datetime.now(UTC))
        log(LOG, logging.INFO, "device.state", device=device_id, state=state)

    def on_clock(self, device_id: str, offset_s: float, corrected: bool) -> None:
        self.store.update_device_state(device_id, clock_offset_s=offset_s)
        self.pipeline.refresh()
        log(LOG, logging.INFO, "device.clock", device=device_id, offset_s=round(offset_s, 1),
            corrected=corrected)

    def _clock_trusted(self) -> bool:
        return bool(kernel_clock_synchronized())

    def _make(self, dev_id: str, transport: str, address: str | None, details: str | None,
              name: str) -> Any:
        cfg = self.d.cfg
        if transport == "serial":
            from .drivers.serial import SerialSession

            opts = json.loads(details) if details else {}
            return SerialSession(dev_id, address or dev_id, self.pipeline.on_frame,
                                 protocol=opts.get("protocol", "masimo-rad8"),
                                 on_state=self.on_state)
        from .drivers.ble import BleTransport
        from .drivers.session import Backoff, DeviceSession

        return DeviceSession(
            dev_id, BleTransport(address or dev_id, adapter=cfg.ble.adapter, name=name),
            self.pipeline.on_frame, self.limiter, ledger=self.ledger,
            clock_trusted=self._clock_trusted, max_drift_s=cfg.ble.max_device_drift_s,
            set_clock=cfg.ble.set_device_clock,
            backoff=Backoff(initial=cfg.ble.backoff_initial_s, cap=cfg.ble.backoff_max_s),
            on_state=self.on_state, on_clock=self.on_clock)

    async def reconcile(self) -> None:
        wanted = self._wanted()
        for dev_id in list(self.tasks):
            task, _session, fp = self.tasks[dev_id]
            if dev_id not in wanted or wanted[dev_id][1] != fp or task.done():
                await self._stop_one(dev_id)
        for dev_id, (transport, fp, address, name) in wanted.items():
            if dev_id in self.tasks:
                continue
            details = fp.split("|", 2)[2]
            try:
                session = self._make(dev_id, transport, address,
                                     None if details == "None" else details, name)
            except Exception as err:
                log(LOG, logging.ERROR, "device.session_refused", device=dev_id, reason=str(err))
                continue
            task = asyncio.get_running_loop().create_task(session.run(),
                                                          name=f"session:{dev_id}")
            self.tasks[dev_id] = (task, session, fp)
            log(LOG, logging.INFO, "device.session_started", device=dev_id, transport=transport)

    async def _stop_one(self, dev_id: str) -> None:
        task, session, _ = self.tasks.pop(dev_id)
        if hasattr(session, "stop"):
            session.stop()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 3.0)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.store.set_connected(dev_id, False, datetime.now(UTC))
        self.states.pop(dev_id, None)

    async def run(self) -> None:
        try:
            while not self.d.stop_event.is_set():
                await self.reconcile()
                self.d.settings_changed.clear()
                waits = [asyncio.ensure_future(self.d.settings_changed.wait()),
                         asyncio.ensure_future(self.d.stop_event.wait())]
                _, pending = await asyncio.wait(waits, timeout=30.0,
                                                return_when=asyncio.FIRST_COMPLETED)
                for p in pending:
                    p.cancel()
        finally:
            await asyncio.gather(*(self._stop_one(dev_id) for dev_id in list(self.tasks)),
                                 return_exceptions=True)


async def devices_task(d: Daemon) -> None:
    await DeviceSupervisor(d).run()



