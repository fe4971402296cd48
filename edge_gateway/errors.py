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

    #: (frames, new readings) of a batch committed before the rest failed (a batch too big
    #: for the room at the storage cap is written in parts; they are a prefix of it).
    committed: tuple[int, int] = (0, 0)


class MigrationError(StoreError):
    def __init__(self, version: int, reason: str) -> None:
        self.version = version
        self.reason = reason
        super().__init__(
            f"migration {version:04d} failed: {reason}",
            hint="the database was left at the previous version; restore a backup or report this",
        )


class StorageFull(StoreError):
    """The storage cap (``storage.max_bytes``, SQLite's ``max_page_count``) is reached and
    nothing more can be evicted."""

    retryable = True

    def __init__(self, path: str, cap_bytes: int | None, *, hint: str | None = None) -> None:
        self.path = path
        self.cap_bytes = cap_bytes
        super().__init__(
            f"{path}: storage cap of {cap_bytes} bytes (storage.max_bytes) reached and nothing"
            " left to evict",
            hint=hint or "raise storage.max_bytes, or let the outbox drain so more is evictable")


class DiskFull(StoreError):
    """The file system holding the database has no space left (not the storage cap)."""

    retryable = True

    def __init__(self, path: str, free_bytes: int | None = None) -> None:
        self.path = path
        self.free_bytes = free_bytes
        free = "" if free_bytes is None else f" ({free_bytes} bytes free)"
        super().__init__(
            f"{path}: the disk holding the database is full{free}",
            hint="free space on that file system or move storage.db_path to a larger one")


class StoreCorrupt(StoreError):
    """The database file is damaged or is not a SQLite database."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"{path}: the database is damaged or not a database: {reason}",
            hint="stop the daemon, then `edge-gateway db recover --out NEW.db` saves what can "
                 "be saved; or restore the latest backup")


class StoreReadOnly(StoreError):
    """The database (its file or its folder) cannot be written by this process."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"{path}: the database cannot be written: {reason}",
            hint="give the service user write access to the file and its folder, or remount"
                 " a read-only file system read-write")


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
