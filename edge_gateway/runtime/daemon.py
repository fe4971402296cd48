"""The daemon: one asyncio TaskGroup with a named task per job.

Tasks: the batched writer, the systemd watchdog, the settings watcher (caregiver changes made
through the CLI take effect without a restart), device supervision (a session per device),
the DSP scheduler, the alert ticker and the sync loop.  SIGTERM/SIGINT stop it within a few
seconds with every received reading committed and the WAL checkpointed; SIGHUP reloads the
config (a bad new config is refused and the old one kept).

Before READY the database passes a bounded start-up check (``store/check.py``: header,
schema, an integrity quick-check cut off after 3 s) and a write probe (one committed row);
a damaged, non-database or unwritable file, or a full disk, stops the start with exit 1 and
one log line saying why and what to do.  Once running, a failing commit never stops it: the
writer holds the batch and retries, and the storage alert is raised (and resolved).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_gateway.backoff import Backoff
from edge_gateway.config import Config, load_config
from edge_gateway.drivers.pipeline import FramePipeline
from edge_gateway.errors import GatewayError, StorageFull, StoreError
from edge_gateway.logfmt import log
from edge_gateway.reading import Reading, Summary
from edge_gateway.runtime.systemd import Notifier, watchdog_interval_s
from edge_gateway.store import BatchWriter, Store

LOG = logging.getLogger("edge_gateway.runtime.daemon")

#: How long the daemon gives its tasks to finish after a stop signal before cancelling them.
STOP_GRACE_S = 3.0


@dataclass(frozen=True, slots=True)
class Component:
    """A long-running job of the daemon, started as a named task."""

    name: str
    run: Callable[[Daemon], Coroutine[Any, Any, None]]
    #: A critical job's failure stops the daemon (exit 1, systemd restarts it); any other
    #: job is restarted with backoff, so a bug in one part never stops readings being stored.
    critical: bool = False


class Daemon:
    def __init__(
        self, cfg: Config, *, config_path: Path | None = None,
        notifier: Notifier | None = None, components: list[Component] | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.stop_event = asyncio.Event()
        self.settings_changed = asyncio.Event()
        self.outbox_wake = asyncio.Event()
        self._extra = components or []
        self.store: Store | None = None
        self.writer: BatchWriter | None = None
        self.pipeline: FramePipeline | None = None
        self._settings_version: str | None = None
        self.exit_code = 0
        self.alert_engine: Any = None
        self.deliver_alerts: Callable[[list[Any]], None] | None = None
        self.sync_service: Any = None
        #: On stop, how long the sync may keep publishing what is queued (the demo uses 30 s).
        self.drain_on_stop_s = 0.0
        #: ``system_alert(rule, active, message)``: raise or resolve a gateway alert (set by
        #: the alerts task; until then faults are only logged).
        self.system_alert: Callable[[str, bool, str], None] | None = None
        self._refused_saved = 0

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        self.stop_event.set()

    def reload(self) -> None:
        """Re-read the config file; keep the old one when the new one is bad."""
        self.notifier.reloading()
        try:
            new = load_config(self.config_path, required=self.config_path is not None)
        except GatewayError as err:
            log(LOG, logging.ERROR, "config.reload_refused", reason=str(err))
        else:
            if new.storage.db_path != self.cfg.storage.db_path:
                log(LOG, logging.WARNING, "config.reload_partial",
                    reason="storage.db_path changes need a restart; keeping the open database")
                new = _keep_db(new, self.cfg)
            self.cfg = new
            self.settings_changed.set()
            log(LOG, logging.INFO, "config.reloaded", source=new.source)
        self.notifier.ready("running (config reloaded)")

    # ------------------------------------------------------------------ main
    def open_store(self) -> Store:
        """The start-up check, the open and the write probe; raises what stops the start."""
        from datetime import timedelta

        from edge_gateway.store.check import startup_check

        path = Path(self.cfg.storage.db_path)
        startup_check(path)
        store = Store.open(path, cap_bytes=self.cfg.storage.max_bytes)
        store.retention = timedelta(days=self.cfg.storage.retention_days)
        try:
            try:
                store.probe_write()
            except StorageFull:
                store.evict(force=True)
                store.probe_write()
        except StorageFull as err:
            # At the cap with nothing evictable: run anyway, the writer holds and alerts.
            log(LOG, logging.WARNING, "storage.full_at_start", reason=str(err))
        except BaseException:
            with contextlib.suppress(sqlite3.Error, StoreError):
                store.conn.close()
            raise
        return store

    async def run(self) -> int:
        cfg = self.cfg
        try:
            self.store = self.open_store()
        except (StoreError, OSError) as err:
            reason = str(err) if isinstance(err, StoreError) else \
                f"{cfg.storage.db_path}: {err.strerror or err}"
            log(LOG, logging.ERROR, "daemon.refused", db=str(cfg.storage.db_path),
                reason=reason, action="not starting; `edge-gateway db check` says what is "
                "wrong, `edge-gateway db recover --out NEW.db` saves a damaged database")
            self.notifier.close()
            return 1
        self.writer = BatchWriter(self.store, max_frames=cfg.storage.batch_max_frames,
                                  max_delay_s=cfg.storage.batch_max_delay_s,
                                  on_fault=self._storage_fault,
                                  on_recovered=self._storage_recovered)
        self.pipeline = FramePipeline(self.store, self.writer)
        self._settings_version = self.store.meta("settings_version")
        loop = asyncio.get_running_loop()
        # A small, fixed pool for to_thread work (DSP): every extra thread may get its own
        # malloc arena, and resident memory on a small board must stay flat.
        from concurrent.futures import ThreadPoolExecutor

        executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="edge-gateway")
        loop.set_default_executor(executor)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        log(LOG, logging.INFO, "daemon.started", db=str(self.store.path), db_id=self.store.db_id,
            gateway=cfg.gateway_id, broker=cfg.mqtt.url or "none", config=cfg.source)
        self.notifier.ready(f"running db={self.store.path}")
        components = [
            Component("writer", lambda d: d._writer_task(), critical=True),
            Component("watchdog", lambda d: d._watchdog()),
            Component("settings", lambda d: d._settings_watch()),
            Component("maintenance", lambda d: d._maintenance()),
            *default_components(),
            *self._extra,
        ]
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._supervise(c), name=c.name) for c in components]
                await self.stop_event.wait()
                log(LOG, logging.INFO, "daemon.stopping")
                self.notifier.stopping()
                # Let tasks that watch stop_event finish their own way, then cancel the rest.
                _, pending = await asyncio.wait(
                    tasks, timeout=STOP_GRACE_S + self.drain_on_stop_s)
                for t in pending:
                    t.cancel()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.writer.flush(force=True)
            if self.writer.pending:
                log(LOG, logging.ERROR, "storage.unsaved", frames=self.writer.pending,
                    error=self.writer.stats.last_error, note="stored records are fetched "
                    "again from the devices at the next start; stream frames are lost")
            try:
                self.store.close()
            except (sqlite3.Error, StoreError) as err:
                log(LOG, logging.ERROR, "storage.close_failed", error=str(err))
            executor.shutdown(wait=False, cancel_futures=True)
            log(LOG, logging.INFO, "daemon.stopped", frames=self.writer.stats.frames,
                readings=self.writer.stats.readings_new, rejected=self.writer.stats.rejected,
                refused=self.writer.stats.refused_stream_frames)
            self.notifier.close()
        return self.exit_code

    async def _supervise(self, c: Component) -> None:
        # 1 s, doubling to 60 s, no jitter: one process, nothing to spread out.  Never reset:
        # a job that keeps failing keeps waiting the longest.
        backoff = Backoff(1.0, 60.0, jitter=False)
        while True:
            try:
                await c.run(self)
                return
            except Exception as err:
                if c.critical:
                    log(LOG, logging.ERROR, "daemon.component_failed", component=c.name,
                        error=f"{type(err).__name__}: {err}", action="stopping; systemd "
                        "restarts the daemon")
                    self.exit_code = 1
                    self.stop()
                    return
                delay = backoff.next()
                LOG.exception("daemon.component_restart", extra={"fields": {
                    "component": c.name, "error": f"{type(err).__name__}: {err}",
                    "retry_in_s": delay}})
                if await self.sleep(delay):
                    return

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the daemon is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), seconds)
        return self.stop_event.is_set()

    # ------------------------------------------------------------------ storage faults
    def _storage_fault(self, err: Exception) -> None:
        """A commit failed (first time, or differently): say so, raise the storage alert."""
        assert self.writer is not None
        log(LOG, logging.ERROR, "storage.failing", error=f"{type(err).__name__}: {err}",
            held_frames=self.writer.pending, held_bytes=self.writer.pending_bytes,
            action="readings are held in memory and retried; past "
            f"{self.writer.max_pending_bytes} bytes stream frames are refused")
        self._system_alert("storage_fault", True, f"Readings cannot be stored: {err}")

    def _storage_recovered(self, held_s: float) -> None:
        assert self.writer is not None and self.store is not None
        refused = self.writer.stats.refused_stream_frames
        log(LOG, logging.WARNING, "storage.recovered", held_s=round(held_s, 1),
            refused_stream_frames=refused)
        self._save_refused()
        self._system_alert("storage_fault", False, "Readings are stored again")

    def _save_refused(self) -> None:
        """Count refused stream frames in the store (``status`` shows them)."""
        assert self.writer is not None and self.store is not None
        delta = self.writer.stats.refused_stream_frames - self._refused_saved
        if delta > 0:
            try:
                self.store.bump("refused.stream_frames", delta)
            except (sqlite3.Error, StoreError):
                return
            self._refused_saved += delta

    def _system_alert(self, rule: str, active: bool, message: str) -> None:
        if self.system_alert is None:
            return
        try:
            self.system_alert(rule, active, message)
        except Exception:  # an alert must never stop the writer
            LOG.exception("alerts.system_failed")

    # ------------------------------------------------------------------ built-in tasks
    async def _writer_task(self) -> None:
        assert self.writer is not None
        writer = self.writer
        interval = writer.max_delay_s / 4
        while not await self.sleep(interval):
            if writer.due():
                writer.flush()
        writer.flush(force=True)

    async def _watchdog(self) -> None:
        interval = watchdog_interval_s()
        if interval is None:
            return
        while not await self.sleep(interval):
            # Only ping while the writer keeps up: a wedged commit loop must get us restarted.
            # A held batch (a known storage fault, retried with backoff) is not wedged: the
            # daemon keeps running and alerting rather than being restarted into it.
            if self.writer is not None and (
                    self.writer.pending < 10 * self.writer.max_frames or self.writer.holding):
                self.notifier.watchdog()

    async def _settings_watch(self) -> None:
        assert self.store is not None
        while not await self.sleep(self.cfg.daemon.settings_poll_s):
            version = self.store.meta("settings_version")
            if version != self._settings_version:
                self._settings_version = version
                if self.pipeline is not None:
                    self.pipeline.refresh()
                self.settings_changed.set()
                log(LOG, logging.INFO, "settings.changed", version=version)

    async def _maintenance(self) -> None:
        assert self.store is not None
        from datetime import timedelta

        while not await self.sleep(60.0):
            self._save_refused()
            self.store.prune_stats()
            deleted = self.store.evict(retention=timedelta(days=self.cfg.storage.retention_days))
            if deleted:
                log(LOG, logging.WARNING, "storage.evicted", rows=deleted,
                    used_bytes=self.store.used_bytes(), cap_bytes=self.store.cap_bytes)


def default_components() -> list[Component]:
    """The jobs other modules contribute: alerts, DSP, sync (and device sessions)."""
    from edge_gateway.drivers.fleet import ble_component
    from edge_gateway.drivers.serial_fleet import serial_task

    return [
        # bleak keeps a stale picture of BlueZ after bluetoothd restarts: a fresh process is
        # the reliable cure, so a fleet failure stops the daemon for systemd to restart.
        Component("ble", ble_component, critical=True),
        Component("serial", serial_task),
        Component("alerts", _alerts_task),
        Component("dsp", _dsp_task),
        Component("sync", _sync_task),
        # Home Assistant discovery and Nightscout uploads (runtime/integrations.py; each
        # returns at once when its config section is off).
        Component("homeassistant", _integration("homeassistant")),
        Component("nightscout", _integration("nightscout")),
    ]


def _integration(name: str) -> Callable[[Daemon], Coroutine[Any, Any, None]]:
    async def run(d: Daemon) -> None:
        from edge_gateway.runtime import integrations

        await getattr(integrations, name)(d)

    return run


async def _alerts_task(d: Daemon) -> None:
    """Alert rules on every committed batch and on every summary; a tick each minute for
    silent devices, low batteries, the unsynced outbox, re-notify and escalation."""
    from datetime import UTC, datetime

    from edge_gateway.alerts.engine import AlertEngine, AlertTransition
    from edge_gateway.alerts.hooks import HookRunner
    from edge_gateway.alerts.thresholds import ThresholdLoader

    assert d.store is not None and d.writer is not None
    engine = AlertEngine(d.store, ThresholdLoader(d.store))
    hooks = HookRunner(d.cfg.alerts.hook, d.cfg.alerts.hook_timeout_s, d.cfg.alerts.hook_retries)
    d.alert_engine = engine

    def deliver(transitions: list[AlertTransition]) -> None:
        if not transitions:
            return
        for t in transitions:
            a = t.to_alert()
            log(LOG, logging.WARNING, "alert." + t.event, rule=a.rule, severity=a.severity,
                patient=a.patient_id or "-", message=a.message)
        hooks.submit(t.to_json() for t in transitions)
        d.outbox_wake.set()

    def on_commit(readings: list[Reading]) -> None:
        try:
            deliver(engine.on_readings(readings))
        except Exception:  # alerts must never stop readings from being stored
            LOG.exception("alerts.failed")

    def system_alert(rule: str, active: bool, message: str) -> None:
        """A gateway alert (storage fault) through the engine; when the store cannot take
        it, straight to the log and the hook."""
        from edge_gateway.alerts.engine import OpenAlert
        from edge_gateway.alerts.rules import Observation

        now = datetime.now(UTC)
        key = f"{rule}:gateway"
        try:
            deliver(engine._apply([Observation(key, rule, at=now, active=active,
                                               severity="urgent", message=message)]))
        except Exception:
            if active:
                deliver([AlertTransition("raised", now, OpenAlert(
                    key, rule, None, None, "urgent", 1, "raised", message, now))])

    d.writer.on_commit = on_commit
    d.deliver_alerts = deliver
    d.system_alert = system_alert
    try:
        while not await d.sleep(60.0):
            try:
                deliver(engine.tick(datetime.now(UTC)))
            except Exception:
                LOG.exception("alerts.tick_failed")
    finally:
        await hooks.drain(timeout_s=2.0)


async def _dsp_task(d: Daemon) -> None:
    from edge_gateway.runtime.dsp_scheduler import run_scheduler

    assert d.store is not None

    def on_summary(summary: Summary, summary_id: int) -> None:
        d.outbox_wake.set()
        if d.alert_engine is not None and d.deliver_alerts is not None:
            try:
                d.deliver_alerts(d.alert_engine.on_summary(summary))
            except Exception:
                LOG.exception("alerts.summary_failed")

    await run_scheduler(d.store, d.cfg.tz, d.cfg.daemon.dsp_interval_s, d.sleep,
                        on_summary=on_summary, short_minutes=d.cfg.daemon.short_window_min)


async def _sync_task(d: Daemon) -> None:
    """Publish the outbox while a broker is configured; otherwise keep it (store-and-forward)."""
    from edge_gateway.config import resolve_mqtt
    from edge_gateway.store.outbox import Outbox
    from edge_gateway.sync.service import SyncService

    assert d.store is not None
    Outbox(d.store, d.cfg.gateway_id)  # records the gateway id used in message ids
    mqtt = resolve_mqtt(d.cfg)
    if mqtt is None:
        log(LOG, logging.INFO, "sync.disabled", reason="no broker configured (mqtt.host)",
            hint="summaries and alerts wait in the outbox")
        return
    service = SyncService(d.store, mqtt, d.cfg.sync, d.cfg.gateway_id, d.cfg.gateway.site,
                          commands=_command_handler(d))
    d.sync_service = service
    await service.run(d.stop_event, wake=d.outbox_wake, drain_timeout_s=d.drain_on_stop_s)


def _command_handler(d: Daemon) -> Callable[[str, bytes], object] | None:
    """The console's commands applier when ``[commands]`` pins a key (docs/mqtt.md)."""
    from edge_gateway.config import console_key

    assert d.store is not None
    try:
        key = console_key(d.cfg)
    except OSError as err:
        log(LOG, logging.ERROR, "commands.disabled", reason=f"cannot read "
            f"commands.console_public_key_file: {err.strerror}", hint="fix it and restart")
        return None
    if key is None:
        return None
    from edge_gateway.runtime.commands import CommandApplier

    def transitions(ts: list[Any]) -> None:
        if d.deliver_alerts is not None:
            d.deliver_alerts(ts)

    applier = CommandApplier(d.store, public_key=key, gateway=d.cfg.gateway_id,
                             site=d.cfg.gateway.site, on_transitions=transitions)
    log(LOG, logging.INFO, "commands.enabled",
        topic=f"{d.cfg.mqtt.topic_prefix}/{d.cfg.gateway.site}/{d.cfg.gateway_id}/cmd/+")
    return applier.handle


def _keep_db(new: Config, old: Config) -> Config:
    import dataclasses

    return dataclasses.replace(
        new, storage=dataclasses.replace(new.storage, db_path=old.storage.db_path))
