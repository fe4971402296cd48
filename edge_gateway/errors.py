"""One exception tree for the gateway.

Every error carries its fields (file/key, device, raw bytes, offset, retryable) so that the
caller can decide what to do; only the CLI turns them into messages.  ``str(err)`` is always a
complete one-line message that says what went wrong and, where it helps, what to do next.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    #: True when trying the same thing again later may succeed (link down, broker busy).
    retryable: bool = False
    #: Exit status the CLI uses for this error.
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class ConfigError(GatewayError):
    """A configuration file (or value) is invalid: names the file, the key and the reason."""

    exit_code = 2

    def __init__(self, path: str, key: str, reason: str, *, hint: str | None = None) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {reason}", hint=hint)


class UsageError(GatewayError):
    """Bad input given on the command line or in an input file (line numbers are 1-based)."""

    exit_code = 2

    def __init__(
        self, reason: str, *, file: str | None = None, line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.reason = reason
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(f"{where}{reason}", hint=hint)


class MalformedPayload(GatewayError, ValueError):
    """A device payload does not fit its specification.

    Carries the raw bytes so the daemon can keep the frame as a rejected record.
    """

    exit_code = 2

    def __init__(self, characteristic: str, offset: int, reason: str, raw: bytes) -> None:
        self.characteristic = characteristic
        self.offset = offset
        self.reason = reason
        self.raw = bytes(raw)
        super().__init__(f"{characteristic}: offset {offset}: {reason} (payload {self.raw.hex()})")


class StoreError(GatewayError):
    """The database could not do what was asked."""


class MigrationError(StoreError):
    def __init__(self, version: int, reason: str) -> None:
        self.version = version
        self.reason = reason
        super().__init__(
            f"migration {version:04d} failed: {reason}",
            hint="the database was left at the previous version; restore a backup or report this",
        )


class StorageFull(StoreError):
    """The storage cap is reached and nothing more can be evicted."""

    retryable = True


class NotFound(GatewayError):
    """A patient, device, alert or other named thing does not exist."""

    exit_code = 2

    def __init__(self, what: str, ident: str, *, hint: str | None = None) -> None:
        self.what = what
        self.ident = ident
        super().__init__(f"no {what} {ident!r}", hint=hint)


class DeviceError(GatewayError):
    """A device could not be reached or misbehaved."""

    def __init__(
        self, device: str, reason: str, *, retryable: bool = True, hint: str | None = None
    ) -> None:
        self.device = device
        self.reason = reason
        self.retryable = retryable
        super().__init__(f"device {device}: {reason}", hint=hint)


class SyncError(GatewayError):
    """Publishing to the broker failed."""

    def __init__(self, reason: str, *, retryable: bool = True, hint: str | None = None) -> None:
        self.reason = reason
        self.retryable = retryable
        super().__init__(reason, hint=hint)
