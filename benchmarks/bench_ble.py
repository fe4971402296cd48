"""BLE path: gateway CPU per 1,000 notifications, and memory holding six sessions.

The virtual BlueZ runs in its own process (``python -m hardware_sim.run_bluez``) on a private
dbus-daemon, with six load straps notifying every 10 ms; this process is the gateway: bleak's
BlueZ backend, six DeviceSessions, and an ``on_frame`` that only counts (the store's cost is
measured by bench_store.py; the daemon adds it).

1. CPU time of this process (user + system) per 1,000 notifications received, end to end
   (D-Bus signal parsing in dbus-fast, bleak's dispatch, the session's routing, on_frame):
   once with an ``on_frame`` that only counts, once into SQLite through the frame pipeline
   (decode, raw frame + readings, batched commits) as the daemon does.
2. Resident memory (VmRSS, and its peak VmHWM) of this process holding the six sessions and
   the store.  Target <= 80 MB.
3. The real daemon (``edge-gateway run`` in its own process, every component: writer, alerts,
   DSP, sync without a broker, the BLE fleet) holding the same six devices: its RSS and its CPU
   per 1,000 notifications stored, read from /proc/<pid>.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from hardware_sim.dbus_daemon import ENV_VAR, start_private_bus

from edge_gateway.drivers import ble
from edge_gateway.drivers.pipeline import FramePipeline
from edge_gateway.drivers.session import DeviceSession
from edge_gateway.store import BatchWriter, Store

DEVICES = 6
PERIOD_S = 0.01
MEASURE_S = 5.0


def proc_status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB -> MB
    return float("nan")


async def gateway(db: Path | None) -> tuple[int, float, float]:
    count = 0
    pipeline = writer = store = None
    if db is not None:
        store = Store.open(db)
        writer = BatchWriter(store)
        pipeline = FramePipeline(store, writer)

    def on_frame(device: str, char: str, at: datetime, payload: bytes) -> None:
        nonlocal count
        count += 1
        if pipeline is not None:
            pipeline.on_frame(device, char, at, payload)
            if writer is not None and writer.due():
                writer.flush()

    found = await ble.scan(1.0, ["180d"])
    assert len(found) == DEVICES, found
    limiter = asyncio.Semaphore(7)
    sessions = [DeviceSession(f"strap{i}", ble.BleTransport(f.address), on_frame, limiter)
                for i, f in enumerate(found)]
    async with asyncio.TaskGroup() as tg:
        for s in sessions:
            tg.create_task(s.run(), name=f"session-{s.device_id}")
        while not all(s.state == "streaming" for s in sessions):  # noqa: ASYNC110 - 6 sessions
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # warm up
        n0, c0 = count, time.process_time()
        await asyncio.sleep(MEASURE_S)
        n1, c1 = count, time.process_time()
        rss = proc_status("VmRSS")
        for s in sessions:
            s.stop()
    if store is not None and writer is not None:
        writer.flush()
        store.close()
    return n1 - n0, c1 - c0, rss


def daemon_figures(address: str, tmp: Path) -> tuple[float, float, int]:
    """(RSS MB, CPU ms per 1,000 frames, frames) of ``edge-gateway run`` over MEASURE_S."""
    db = tmp / "daemon.db"
    store = Store.open(db)
    for i in range(DEVICES):
        addr = f"B0:00:00:00:00:{i:02X}"
        store.upsert_device(addr, profile="heart_rate", address=addr)
    store.close()
    cfg = tmp / "gateway.toml"
    cfg.write_text(f'[storage]\ndb_path = "{db}"\n[ble]\nmax_connections = 7\n'
                   '[daemon]\nlog_level = "warning"\n')
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address, EDGE_GATEWAY_CONFIG=str(cfg))
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "edge-gateway"), "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reader = Store.open(db, readonly=True)

    def frames() -> int:
        return int(reader.conn.execute("SELECT count(*) FROM raw_frames").fetchone()[0])

    def cpu_s() -> float:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and reader.conn.execute(
                "SELECT count(*) FROM devices WHERE connected = 1").fetchone()[0] < DEVICES:
            time.sleep(0.2)
        time.sleep(2.0)
        f0, c0 = frames(), cpu_s()
        time.sleep(MEASURE_S)
        f1, c1 = frames(), cpu_s()
        rss = 0.0
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        reader.close()
    n = max(f1 - f0, 1)
    return rss, (c1 - c0) / n * 1e6, n


def main() -> None:
    bus = start_private_bus()
    os.environ[ENV_VAR] = bus.address
    sim = subprocess.Popen(
        [sys.executable, "-m", "hardware_sim.run_bluez", "--bus", bus.address,
         "--straps", str(DEVICES), "--period", str(PERIOD_S)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert sim.stdout is not None
        ready = sim.stdout.readline()
        assert ready.startswith("READY"), ready
        frames, cpu, rss = asyncio.run(gateway(None))
        with tempfile.TemporaryDirectory() as tmp:
            frames_db, cpu_db, rss_db = asyncio.run(gateway(Path(tmp) / "bench.db"))
            d_rss, d_cpu, d_frames = daemon_figures(bus.address, Path(tmp))
    finally:
        sim.terminate()
        sim.wait(timeout=10)
        bus.stop()
    per_1000 = cpu / frames * 1000 * 1000  # ms
    print(f"ble.cpu_ms_per_1000_notifications: {per_1000:.0f} ms "
          f"({frames} notifications from {DEVICES} devices in {MEASURE_S:.0f} s, "
          f"{frames / MEASURE_S:.0f}/s; gateway process only, on_frame counts)")
    per_1000_db = cpu_db / frames_db * 1000 * 1000
    print(f"ble.cpu_ms_per_1000_notifications_into_sqlite: {per_1000_db:.0f} ms "
          f"({frames_db} notifications; decode + raw frame + readings, batched commits)")
    print(f"ble.rss_six_sessions: {rss_db:.1f} MB with the store ({rss:.1f} MB without; "
          f"peak {proc_status('VmHWM'):.1f} MB; ratio {rss_db / 80:.2f} vs 80 MB target)")
    print(f"ble.daemon_rss_six_devices: {d_rss:.1f} MB (edge-gateway run, all components; "
          f"ratio {d_rss / 80:.2f} vs 80 MB target)")
    print(f"ble.daemon_cpu_ms_per_1000_frames_stored: {d_cpu:.0f} ms ({d_frames} frames in "
          f"{MEASURE_S:.0f} s)")


if __name__ == "__main__":
    main()
