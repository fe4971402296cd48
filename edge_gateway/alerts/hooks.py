"""Local alert delivery: run a caregiver-chosen command with the alert JSON on stdin.

This is what makes an alert reach someone when the internet is down: the hook can drive a
buzzer, a GPIO LED, a local SMS modem or a desktop notification.  The command is split like a
shell would (``shlex``) but run without a shell, so alert text can never become shell syntax.

A hook that fails (non-zero exit, cannot start, or runs past its timeout and is killed) is
retried with a growing pause and every attempt is logged; delivery runs as its own task so the
pipeline never waits for a slow modem.  ``HookRunner.submit`` is the fire-and-forget entry
point; ``deliver`` is the awaitable one (tests, or a caller that wants the outcome).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge_gateway.errors import ConfigError

LOG = logging.getLogger("edge_gateway.alerts.hooks")
#: Keep only this much of a hook's stderr in the log: a chatty script must not flood it.
_MAX_STDERR = 500


@dataclass(frozen=True, slots=True)
class HookResult:
    ok: bool
    attempts: int
    returncode: int | None  # None: timed out or could not start
    error: str | None = None


class HookRunner:
    """Run ``cmd`` once per alert transition, with a timeout and retries.

    ``backoff_s`` is the pause before the first retry; it doubles per retry (capped at 60 s).
    """

    def __init__(self, cmd: str | list[str], timeout_s: float = 10.0, retries: int = 3,
                 *, backoff_s: float = 1.0, env: dict[str, str] | None = None) -> None:
        try:
            self.argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        except ValueError as err:  # an unbalanced quote: say so at start, not at 3 a.m.
            raise ConfigError("<config>", "alerts.hook", f"cannot split {cmd!r}: {err}") from err
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.env = env
        self._tasks: set[asyncio.Task[HookResult]] = set()
        self._last: dict[str, asyncio.Task[HookResult]] = {}  # newest delivery per alert key

    @property
    def enabled(self) -> bool:
        return bool(self.argv)

    async def deliver(self, alert_json: str) -> HookResult:
        """Run the hook until it succeeds or the retries are spent; never raises."""
        if not self.argv:
            return HookResult(True, 0, None, "no hook configured")
        attempts, pause = 0, self.backoff_s
        result = HookResult(False, 0, None, "not run")
        while attempts <= self.retries:
            attempts += 1
            rc, error = await self._run_once(alert_json)
            result = HookResult(rc == 0, attempts, rc, error)
            if result.ok:
                LOG.info("alert hook delivered %s (attempt %d)", _key(alert_json), attempts)
                return result
            LOG.warning("alert hook failed for %s (attempt %d of %d): %s", _key(alert_json),
                        attempts, self.retries + 1, error)
            if attempts <= self.retries:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 60.0)
        LOG.error("alert hook gave up on %s after %d attempts: %s", _key(alert_json), attempts,
                  result.error)
        return result

    def submit(self, alert_jsons: Iterable[str]) -> list[asyncio.Task[HookResult]]:
        """Start delivery of each alert in the background and return at once.

        Transitions of one alert (same ``key``) are delivered in order, so a hook never sees
        ``resolved`` before ``raised``; different alerts do not wait for each other, so a
        hook retrying a battery notice never holds back a level 2 low.  Tasks are kept
        referenced here until done (asyncio itself only keeps weak references).
        """
        if not self.argv:
            return []
        loop = asyncio.get_running_loop()
        started = []
        for item in alert_jsons:
            key = _key(item)
            before = self._last.get(key)
            task = loop.create_task(self._after(before, item), name=f"alert-hook:{key}")
            self._last[key] = task
            self._tasks.add(task)
            task.add_done_callback(self._done)
            started.append(task)
        return started

    async def _after(self, before: asyncio.Task[HookResult] | None, item: str) -> HookResult:
        if before is not None and not before.done():
            await asyncio.wait({before})
        return await self.deliver(item)

    def _done(self, task: asyncio.Task[HookResult]) -> None:
        self._tasks.discard(task)
        for key, last in list(self._last.items()):
            if last is task:
                del self._last[key]

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for deliveries in flight (at shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def _run_once(self, alert_json: str) -> tuple[int | None, str | None]:
        # The main fields as variables too, so a two-line shell hook needs no JSON parser.
        env = {**os.environ, **(self.env or {}), **_variables(alert_json)}
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
        except OSError as err:
            return None, f"cannot start {self.argv[0]!r}: {err.strerror or err}"
        try:
            _, stderr = await asyncio.wait_for(
                proc.communicate(alert_json.encode("utf-8")), self.timeout_s)
        except TimeoutError:
            # start_new_session put the hook in its own process group: kill the whole group,
            # so a shell script's children (a stuck `curl`) die with it.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()
            return None, f"timed out after {self.timeout_s:g} s"
        if proc.returncode == 0:
            return 0, None
        text = stderr.decode("utf-8", "replace").strip()[:_MAX_STDERR]
        return proc.returncode, f"exit status {proc.returncode}" + (f": {text}" if text else "")


def _key(alert_json: str) -> str:
    """The alert's de-duplication key, for logs and per-alert ordering ("?" if none)."""
    try:
        obj = json.loads(alert_json)
    except ValueError:
        return "?"
    if not isinstance(obj, dict):
        return "?"
    return str(obj.get("key", "?"))


#: JSON field -> environment variable given to the hook.
ENV_FIELDS = {"event": "ALERT_EVENT", "severity": "ALERT_SEVERITY", "rule": "ALERT_RULE",
              "patient": "ALERT_PATIENT", "device": "ALERT_DEVICE", "message": "ALERT_MESSAGE",
              "alert_id": "ALERT_ID", "state": "ALERT_STATE"}


def _variables(alert_json: str) -> dict[str, str]:
    try:
        obj: Any = json.loads(alert_json)
    except ValueError:
        return {}
    if not isinstance(obj, dict):
        return {}
    return {var: "" if obj.get(k) is None else str(obj[k]) for k, var in ENV_FIELDS.items()}
