"""backoff.py: the one reconnect/restart backoff, with each user's numbers."""

from __future__ import annotations

import random

from edge_gateway.backoff import Backoff, ceiling, full_jitter


def test_without_jitter_it_doubles_to_the_cap_and_stays() -> None:
    b = Backoff(1.0, 60.0, jitter=False)  # the daemon's job restarts
    assert [b.next() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_full_jitter_draws_below_the_growing_ceiling_and_is_seedable() -> None:
    draws = [Backoff(0.5, 30.0, rng=random.Random(4)).next() for _ in range(2)]
    assert draws[0] == draws[1]  # same seed, same pause
    b = Backoff(0.5, 30.0, rng=random.Random(1))
    for n in range(40):
        assert 0.0 <= b.next() <= ceiling(n, 0.5, 30.0)
    late = [full_jitter(40, 1.0, 300.0, random.Random(i)) for i in range(200)]
    assert max(late) > 150 > min(late)  # spread over the whole range at the cap


def test_reset_after_a_stable_run_and_straight_to_the_cap() -> None:
    b = Backoff(1.0, 300.0, stable_s=30.0, rng=random.Random(2))
    for _ in range(5):
        b.next()
    b.ran(29.0)
    assert b.attempt == 5  # too short to count as stable
    b.ran(30.0)
    assert b.attempt == 0 and b.next() <= 1.0
    b.to_cap()
    assert ceiling(b.attempt, 1.0, 300.0) == 300.0
