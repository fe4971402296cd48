"""Commands from the clinic console, applied on the hub: verify, apply, remember, report.

The sync (layer 3) subscribes to ``<prefix>/<site>/<gateway>/cmd/+`` and hands every message to
:meth:`CommandApplier.handle`; this module (the runtime) owns what a command does.  One message
is one SQLite transaction: the change (through the caregiver functions the CLI uses, audited as
``console:<actor>``), the ``command_log`` row that makes a re-delivery a replay, the audit row,
the counter and the ``command`` result item in the outbox all commit together or not at all.
A change that fails (unknown alert, a threshold the patient's others contradict) is rolled back
to a savepoint and reported ``rejected`` with the reason.  See docs/mqtt.md.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from edge_gateway import commands as C
from edge_gateway.care import caregiver
from edge_gateway.errors import GatewayError, StoreError
from edge_gateway.logfmt import log
from edge_gateway.reading import iso
from edge_gateway.store import Store
from edge_gateway.store import audit as audit_log
from edge_gateway.store import commands as command_rows
from edge_gateway.store.outbox import PRIORITY_ALERT, Outbox

LOG = logging.getLogger("edge_gateway.runtime.commands")

#: The actor a refusal is audited under when the signature did not hold: the claimed console
#: user is a forger's word, never written as if that clinician had acted.
UNVERIFIED = "console:unverified"


def _now() -> datetime:
    return datetime.now(UTC)


class CommandApplier:
    """Applies the console's commands to one hub's store; ``handle(topic, payload)``.

    ``on_transitions`` receives alert transitions after the commit (the daemon logs them and
    runs the local alert hook, as for an acknowledgement made at the hub).
    """

    def __init__(
        self, store: Store, *, public_key: str, gateway: str, site: str,
        clock: Callable[[], datetime] = _now,
        on_transitions: Callable[[list[Any]], None] | None = None,
    ) -> None:
        C.decode_public_key(public_key)  # the config checked it; a bad key fails here, not later
        self.store = store
        self.public_key = public_key
        self.gateway = gateway
        self.site = site
        self.clock = clock
        self.on_transitions = on_transitions
        self.outbox = Outbox(store)

    def handle(self, topic: str, payload: bytes) -> str | None:
        """Handle one message; returns the outcome (``applied``, ``rejected``, ``expired``,
        ``replayed``), None for an empty payload (the console clearing a done command).

        Raises only storage errors (the message is then not acknowledged to the broker and
        comes again); junk, forgeries and failed changes are outcomes, never exceptions.
        """
        if not payload:
            return None
        topic_id = topic.rsplit("/", 1)[-1]
        sha = hashlib.sha256(payload).hexdigest()
        now = self.clock()
        if command_rows.seen(self.store, topic_id, sha):
            command_rows.count(self.store, "replayed")
            log(LOG, logging.DEBUG, "command.replayed", id=topic_id)
            return "replayed"
        try:
            cmd = C.verify(payload, self.public_key, gateway=self.gateway, site=self.site,
                           topic_command_id=topic_id, now=now)
        except C.CommandRefused as refused:
            return self._refused(topic_id, sha, now, refused)
        return self._apply(cmd, sha, now)

    # ------------------------------------------------------------------ outcomes
    def _apply(self, cmd: dict[str, Any], sha: str, now: datetime) -> str:
        transitions: list[Any] = []
        status, reason = "applied", None
        with self.store.transaction():
            try:
                with command_rows.savepoint(self.store):
                    reason = self._change(cmd, now, transitions)
            except (GatewayError, ValueError) as err:
                if isinstance(err, StoreError):
                    raise
                status = "rejected"
                reason = (err.reason if isinstance(err, C.CommandRefused)
                          else err.message if isinstance(err, GatewayError) else str(err))
                transitions.clear()
            self._settle(cmd["id"], cmd, sha, now, status, reason, signed=True)
        log(LOG, logging.INFO if status == "applied" else logging.WARNING,
            f"command.{status}", id=cmd["id"], command=cmd["command"], patient=cmd["patient"],
            actor=cmd["actor"], reason=reason or "-")
        if transitions and self.on_transitions is not None:
            try:
                self.on_transitions(transitions)
            except Exception:  # the change is committed; a hook problem must not undo that
                LOG.exception("command.hook_failed")
        return status

    def _change(self, cmd: dict[str, Any], now: datetime, transitions: list[Any]) -> str | None:
        """The change itself, through the caregiver functions; a note for the report."""
        from edge_gateway.alerts import engine as A

        actor = f"console:{cmd['actor']}"
        patient, args = cmd["patient"], cmd["args"]
        if cmd["command"] == "alert.ack":
            alert = A.load_alert(self.store, args["alert_id"])
            if alert.key != args["key"]:
                raise C.CommandRefused(f"alert {args['alert_id']} is not {args['key']!r} "
                                       f"on this hub (it is {alert.key!r})")
            if alert.patient_id != patient:
                raise C.CommandRefused(f"alert {args['alert_id']} is not patient "
                                       f"{patient!r}'s")
            _, t = caregiver.acknowledge(self.store, args["alert_id"], actor=actor, at=now)
            if t is None:
                return "already acknowledged"
            transitions.append(t)
            return None
        if cmd["command"] == "threshold.set":
            caregiver.set_threshold(self.store, patient, args["key"], args["value"], actor=actor)
            return None
        caregiver.reset_threshold(self.store, patient, args["key"], actor=actor)
        return None

    def _refused(self, topic_id: str, sha: str, now: datetime,
                 refused: C.CommandRefused) -> str:
        status = "expired" if refused.reason == "expired" else "rejected"
        claimed = refused.command
        # Unsigned, only the command's name is repeated (the console matches results by id and
        # shows what was refused); the claimed patient and actor are a forger's word.
        shown = claimed if refused.signed else {
            k: v for k, v in claimed.items() if k == "command" and v in C.COMMANDS}
        with self.store.transaction():
            self._settle(topic_id, shown, sha, now, status, refused.reason,
                         signed=refused.signed)
        log(LOG, logging.WARNING, f"command.{status}", id=topic_id,
            command=claimed.get("command", "-"), reason=refused.reason,
            actor=claimed.get("actor", "-") if refused.signed else "unverified")
        return status

    def _settle(self, command_id: str, cmd: dict[str, Any], sha: str, now: datetime,
                status: str, reason: str | None, *, signed: bool) -> None:
        """Inside the caller's transaction: the result item, the log row, audit, counter."""
        actor = cmd.get("actor") if signed else None
        patient = cmd.get("patient") if signed else None
        body = {"command_id": command_id, "command": cmd.get("command"), "status": status,
                "reason": reason, "actor": actor, "applied_at": iso(now)}
        msg_id = self.outbox.add("command", body, priority=PRIORITY_ALERT, created_at=now,
                                 patient_id=patient, ref_table="command_log")
        command_rows.record(self.store, command_rows.Handled(
            id=command_id, command=cmd.get("command"), patient_id=patient, actor=actor,
            status=status, reason=reason, verified=signed, payload_sha256=sha,
            received_at=iso(now) or "", result_msg_id=msg_id))
        audit_log.record(self.store, f"console:{actor}" if actor else UNVERIFIED,
                         f"command.{status}", patient,
                         {"id": command_id, "command": cmd.get("command"), "reason": reason},
                         at=now)
        command_rows.count(self.store, status)
