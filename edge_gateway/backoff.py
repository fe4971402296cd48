"""The one reconnect/restart backoff: exponential, full jitter or none, reset when stable.

Used by the BLE sessions, the serial sessions, the sync's broker reconnects and the daemon's
job restarts; each keeps its own numbers (first pause, cap, jitter) and shares the arithmetic.
Pure: no clock and no sleeping; the caller sleeps for what ``next`` returns.  Pass a seeded
``random.Random`` for repeatable tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

#: Exponents stop growing here: far past any cap, and 2.0 ** n stays a small float.
_MAX_EXPONENT = 30


def full_jitter(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """AWS-style full jitter: uniform in [0, min(cap, initial·2^attempt)].

    Spreading the pause over the whole range (rather than adding a little noise) keeps many
    clients that lost the same link at once from coming back in step.
    """
    return rng.uniform(0.0, ceiling(attempt, initial, cap))


def ceiling(attempt: int, initial: float, cap: float) -> float:
    """The longest pause after ``attempt`` failures: ``min(cap, initial·2^attempt)``."""
    return min(cap, initial * (2.0 ** min(attempt, _MAX_EXPONENT)))


@dataclass
class Backoff:
    """Pauses between attempts: ``initial``, doubling per failure up to ``cap``.

    With ``jitter`` (the default) each pause is drawn uniformly from [0, that ceiling]; without,
    it is the ceiling itself (1, 2, 4 … s).  ``ran(seconds)`` resets the count once an attempt
    lasted ``stable_s``: a link that held for a while starts again from short pauses.
    """

    initial: float = 1.0
    cap: float = 300.0
    jitter: bool = True
    #: How long an attempt must last before it counts as stable (see ``ran``).
    stable_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    #: Failures counted so far (the exponent of the next pause).
    attempt: int = 0

    def next(self) -> float:
        """The pause before the next attempt; counts one more failure."""
        n = self.attempt
        self.attempt += 1
        if self.jitter:
            return full_jitter(n, self.initial, self.cap, self.rng)
        return ceiling(n, self.initial, self.cap)

    def reset(self) -> None:
        self.attempt = 0

    def ran(self, seconds: float) -> None:
        """An attempt lasted ``seconds``: reset when that is at least ``stable_s``."""
        if seconds >= self.stable_s:
            self.reset()

    def to_cap(self) -> None:
        """Wait the longest from now on: retrying soon cannot help (e.g. pairing needed)."""
        self.attempt = _MAX_EXPONENT
