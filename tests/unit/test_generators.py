"""The physiological generators' statistics: what a clinician would expect to see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hardware_sim.generators import (
    CgmProfile,
    Episode,
    RRProfile,
    bp_measurements,
    cgm_series,
    glucose_spots,
    last_local_time,
    rmssd,
    rr_series,
    spo2_series,
    stream,
    temperatures,
    weights,
)

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def _scripted() -> tuple[RRProfile, dict[str, tuple[float, float]]]:
    spans = {"af": (20, 30), "brady": (35, 40), "tachy": (45, 50), "contact_loss": (55, 56)}
    episodes = tuple(Episode(k, START + a * MIN, (b - a) * MIN) for k, (a, b) in spans.items())
    return RRProfile(episodes=episodes), spans


def test_rr_series_is_reproducible_from_its_seed() -> None:
    p, _ = _scripted()
    a = rr_series(START, 10 * MIN, stream(1, "hr"), p)
    b = rr_series(START, 10 * MIN, stream(1, "hr"), p)
    c = rr_series(START, 10 * MIN, stream(2, "hr"), p)
    assert np.array_equal(a.rr_ms, b.rr_ms)
    assert not np.array_equal(a.rr_ms[:50], c.rr_ms[:50])
    # Beats tile time: each beat time is the previous one plus its RR interval.
    assert np.allclose(np.diff(a.beat_s), a.rr_ms[1:] / 1000.0)


def test_sinus_rhythm_has_resting_hrv_and_a_respiratory_peak() -> None:
    s = rr_series(START, 10 * MIN, stream(3, "hr"), RRProfile(ectopic_per_hour=0.0))
    assert 55 <= 60_000 / s.rr_ms.mean() <= 75
    assert 15.0 <= rmssd(s.rr_ms) <= 80.0  # healthy adults at rest
    # Resample the tachogram at 4 Hz: the spectrum must show the HF (respiratory) and LF peaks.
    t = np.arange(s.beat_s[0], s.beat_s[-1], 0.25)
    x = np.interp(t, s.beat_s, s.rr_ms)
    power = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(x.size))) ** 2
    f = np.fft.rfftfreq(x.size, 0.25)
    band = lambda lo, hi: power[(f >= lo) & (f < hi)].sum()  # noqa: E731
    assert band(0.2, 0.3) > 3 * band(0.4, 0.5)
    assert band(0.07, 0.13) > 3 * band(0.4, 0.5)


def test_scripted_segments_change_the_rhythm() -> None:
    p, spans = _scripted()
    s = rr_series(START, 60 * MIN, stream(4, "hr"), p)

    def seg(kind: str) -> np.ndarray:
        a, b = spans[kind]
        # Skip the ramps at the edges.
        m = (s.beat_s >= a * 60 + 30) & (s.beat_s < b * 60 - 30) & (s.label == "N")
        return s.rr_ms[m]

    sinus = s.rr_ms[(s.beat_s < 19 * 60) & (s.label == "N")]
    af, brady, tachy = seg("af"), seg("brady"), seg("tachy")
    # AF: irregularly irregular — large successive differences, no beat-to-beat memory.
    assert np.median(np.abs(np.diff(af))) > 3 * np.median(np.abs(np.diff(sinus)))
    assert abs(np.corrcoef(af[:-1], af[1:])[0, 1]) < 0.2
    assert np.corrcoef(sinus[:-1], sinus[1:])[0, 1] > 0.5
    assert 90 <= 60_000 / af.mean() <= 120
    assert 60_000 / brady.mean() < 50
    assert 60_000 / tachy.mean() > 110
    assert set(s.rhythm[(s.beat_s >= 21 * 60) & (s.beat_s < 29 * 60)]) == {"AFIB"}
    lost = ~s.contact
    assert lost.any() and np.all((s.beat_s[lost] >= 55 * 60) & (s.beat_s[lost] < 56 * 60))


def test_ectopic_beats_are_premature_then_compensated() -> None:
    ep = Episode("ectopy", START, 10 * MIN, rate=4.0)
    s = rr_series(START, 10 * MIN, stream(5, "hr"), RRProfile(episodes=(ep,)))
    idx = np.flatnonzero(s.label == "V")
    assert 20 <= idx.size <= 70  # ~4 a minute
    # Compare with a plain sinus beat before it (not the pause after an earlier ectopic).
    plain = [i for i in idx if 2 <= i < len(s) - 1 and s.label[i - 2] == s.label[i - 1] == "N"]
    assert len(plain) >= 10
    for i in plain:
        before, premature, pause = s.rr_ms[i - 1], s.rr_ms[i], s.rr_ms[i + 1]
        assert premature < 0.8 * before
        assert pause > before
        assert premature + pause == pytest.approx(2 * before, rel=0.15)


def test_cgm_day_has_meals_a_night_low_and_a_silent_warm_up() -> None:
    session = datetime(2026, 11, 6, 9, 0, tzinfo=UTC)
    low = datetime(2026, 11, 19, 3, 10, tzinfo=UTC)
    profile = CgmProfile(lows=(low,), low_nadir_mg_dl=46.0)
    s = cgm_series(session, timedelta(days=14), stream(6, "cgm"), profile)
    assert s.offset_min[0] == 60  # nothing during the one-hour warm-up
    assert np.all(np.diff(s.offset_min) == 5)
    night = [(s.time_of(i) - low).total_seconds() for i in range(len(s.offset_min))]
    near = np.abs(np.asarray(night)) <= 30 * 60
    assert s.glucose_mg_dl[near].min() < 54  # level 2 hypoglycaemia, at night ...
    below = "".join("1" if g < 54 else "0" for g in s.glucose_mg_dl[near])
    assert "111" in below  # ... lasting an event's 15 minutes (three 5-minute samples)
    others = np.abs(np.asarray(night)) > 6 * 3600
    assert s.glucose_mg_dl[others].min() > 54  # ... and only there
    hours = np.asarray([s.time_of(i).hour for i in range(len(s.offset_min))])
    after_meals = np.isin(hours, (13, 14, 20, 21))
    assert s.truth_mg_dl[after_meals].mean() > s.truth_mg_dl[np.isin(hours, (4, 5))].mean() + 30
    residual = s.glucose_mg_dl - s.truth_mg_dl
    assert 3.0 <= residual.std() <= 12.0  # sensor noise, MARD-like ~5–10 %
    assert s.glucose_mg_dl.min() >= 40 and s.glucose_mg_dl.max() <= 400
    assert np.all((s.quality >= 60) & (s.quality <= 100))
    # The trend follows the curve: rising after lunch, falling into the low.
    i_low = int(np.argmin(np.where(near, s.glucose_mg_dl, np.inf)))
    assert s.trend[i_low - 6 : i_low - 1].mean() < 0


def test_spot_generators_follow_the_clock_and_the_users() -> None:
    rng = stream(7, "spots")
    span = timedelta(days=14)
    spots = glucose_spots(START, span, rng)
    assert 14 * 3 <= len(spots) <= 14 * 4
    assert {s.meal for s in spots} == {"fasting", "preprandial", "postprandial", "bedtime"}
    fasting = np.mean([s.mg_dl for s in spots if s.meal == "fasting"])
    post = np.mean([s.mg_dl for s in spots if s.meal == "postprandial"])
    assert post > fasting + 20
    bp = bp_measurements(START, span, rng)
    assert {m.user for m in bp} == {1, 2} and 54 <= len(bp) <= 58  # 2 users x 2 a day
    assert all(m.systolic > m.diastolic + 15 for m in bp)
    user1 = np.mean([m.systolic for m in bp if m.user == 1])
    user2 = np.mean([m.systolic for m in bp if m.user == 2])
    assert user1 > user2 + 10
    assert all(m.time.microsecond == 0 for m in bp)
    temps = temperatures(START, span, rng)
    assert all(35.5 <= t.value <= 38.0 for t in temps)
    kg = weights(START, span, rng)
    assert 13 <= len(kg) <= 14 and abs(kg[-1].value - kg[0].value) < 3


def test_spo2_desaturation_reaches_its_nadir() -> None:
    ep = Episode("desaturation", START + 5 * MIN, 3 * MIN, rate=85.0)
    s = spo2_series(START, 15 * MIN, stream(8, "spo2"), episodes=(ep,))
    assert s.spo2.size == 15 * 60
    assert s.spo2[:240].min() >= 93 and s.spo2[:240].max() <= 100
    assert s.spo2[5 * 60 : 8 * 60].min() <= 87


def test_last_local_time() -> None:
    now = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    assert last_local_time(now, 3.0) == datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    assert last_local_time(now, 21.0, days_ago=1) == datetime(2026, 11, 23, 21, 0, tzinfo=UTC)
    cet = timedelta(hours=1)
    assert last_local_time(now, 3.0, utc_offset=cet) == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
