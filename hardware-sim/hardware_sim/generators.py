"""Physiological generators for the simulated peripherals.

Everything here is pure: a ``numpy.random.Generator`` and a ``start`` datetime go in, arrays or
frozen records come out.  Nothing reads the wall clock, so a scenario with a fixed seed replays
byte for byte, and a test can check statistics on the exact series a peripheral would send.

Models, and why they were chosen:

* **RR intervals** follow McSharry et al. (2003), "A dynamical model for generating synthetic
  electrocardiogram signals", IEEE TBME 50(3): the sinus tachogram is noise shaped by a
  bimodal spectrum (Mayer waves near 0.1 Hz, respiratory sinus arrhythmia near 0.25 Hz) with
  random phases.  On top: scripted atrial fibrillation (irregularly irregular, uncorrelated RR),
  ectopic beats (premature beat then a full compensatory pause, so the two RR sum to two
  sinus cycles), brady/tachycardia segments with smooth ramps, and sensor-contact loss.
  The AF defaults (CV 0.22, no beat-to-beat memory) sit inside what the MIT-BIH Atrial
  Fibrillation Database shows (shared/data/rr/afdb: CV 0.22–0.32, lag-1 correlation −0.05–0.36,
  median |ΔRR| 68–148 ms across records).
* **CGM**: a fasting baseline with a dawn rise, one gamma-shaped excursion per meal, scripted
  night-time lows shaped to reach their nadir exactly, and AR(1) sensor noise (CGM error is
  strongly autocorrelated over 5-minute samples, so white noise would look too jumpy).
* Spot measurements (meter, cuff, thermometer, scale) are drawn around per-user baselines at
  jittered local times of day.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
StrArray = NDArray[np.str_]

#: Episode kinds understood by :func:`rr_series`.
RR_EPISODES = frozenset({"af", "brady", "tachy", "contact_loss", "ectopy"})


@dataclass(frozen=True, slots=True)
class Episode:
    """A scripted stretch of time: an arrhythmia, a desaturation, a fever, a lost contact.

    ``rate`` means the ventricular rate in /min for ``af``/``brady``/``tachy``, premature beats
    per minute for ``ectopy``, the SpO2 nadir in % for ``desaturation`` and the peak in °C for
    ``fever``; ``None`` takes the profile's default.
    """

    kind: str
    start: datetime
    duration: timedelta
    rate: float | None = None

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    def seconds_from(self, origin: datetime) -> tuple[float, float]:
        """(start, end) in seconds relative to ``origin``."""
        s = (self.start - origin).total_seconds()
        return s, s + self.duration.total_seconds()


def _in_any(t_s: FloatArray, spans: Sequence[tuple[float, float]]) -> BoolArray:
    mask = np.zeros(t_s.shape, dtype=np.bool_)
    for a, b in spans:
        mask |= (t_s >= a) & (t_s < b)
    return mask


# --------------------------------------------------------------------------------------------
# Heart: RR intervals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RRProfile:
    """How one person's heart behaves at rest; episodes are scripted on top."""

    mean_hr_bpm: float = 64.0
    #: Standard deviation of the short-term sinus modulation, in ms at the mean rate.
    modulation_sd_ms: float = 38.0
    lf_hz: float = 0.1
    hf_hz: float = 0.25
    #: LF/HF power ratio; ~0.5–2 at rest in healthy adults.
    lf_hf_ratio: float = 1.0
    #: Slow drift of the mean rate over minutes (posture, activity), in /min.
    drift_bpm: float = 4.0
    ectopic_per_hour: float = 4.0
    brady_bpm: float = 42.0
    tachy_bpm: float = 128.0
    af_bpm: float = 105.0
    #: Coefficient of variation of RR during AF; published AF series sit around 0.15–0.3.
    af_cv: float = 0.22
    episodes: tuple[Episode, ...] = ()


@dataclass(frozen=True, slots=True)
class RRSeries:
    """Beats from ``start``: each RR interval ends at ``beat_s`` (seconds from ``start``).

    ``label`` uses WFDB beat symbols (``N`` normal, ``V`` premature ventricular); ``rhythm``
    names the rhythm in force (``N``, ``AFIB``, ``BRADY``, ``TACHY``) like the AF database
    does; ``contact`` is False where the strap lost skin contact and would not see the beat.
    """

    start: datetime
    beat_s: FloatArray
    rr_ms: FloatArray
    label: StrArray
    rhythm: StrArray
    contact: BoolArray

    def __len__(self) -> int:
        return int(self.rr_ms.size)

    def between(self, t0_s: float, t1_s: float) -> slice:
        """Index range of beats with ``t0_s <= beat_s < t1_s`` (the series is sorted)."""
        a = int(np.searchsorted(self.beat_s, t0_s, side="left"))
        b = int(np.searchsorted(self.beat_s, t1_s, side="left"))
        return slice(a, b)


def _shaped_noise(n: int, fs: float, rng: np.random.Generator, p: RRProfile) -> FloatArray:
    """Unit-variance noise with the McSharry bimodal (LF + HF) spectrum, sampled at ``fs``."""
    freqs = np.fft.rfftfreq(n, d=1.0 / fs)
    width = 0.01  # Hz: the spectral peaks' standard deviation used by McSharry et al.
    lf = p.lf_hf_ratio * np.exp(-0.5 * ((freqs - p.lf_hz) / width) ** 2)
    hf = np.exp(-0.5 * ((freqs - p.hf_hz) / width) ** 2)
    amplitude = np.sqrt(lf + hf)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=freqs.size)
    signal = np.fft.irfft(amplitude * np.exp(1j * phases), n=n)
    sd = float(signal.std())
    return signal / sd if sd > 0 else signal


def _ramped_level(
    t: FloatArray, base: FloatArray, spans: Sequence[tuple[float, float, float]], ramp_s: float
) -> FloatArray:
    """Move ``base`` towards each span's level with raised-cosine ramps at both edges."""
    out = base.copy()
    for a, b, level in spans:
        w = np.clip(np.minimum(t - a, b - t) / ramp_s, 0.0, 1.0)
        w = 0.5 - 0.5 * np.cos(np.pi * w)
        out = out * (1.0 - w) + level * w
    return out


def rr_series(
    start: datetime, duration: timedelta, rng: np.random.Generator, profile: RRProfile
) -> RRSeries:
    """Generate every heartbeat in ``[start, start + duration)``.

    Episodes outside the window are ignored, so a long-running peripheral can call this for
    consecutive chunks with the same profile (phases of the rhythms restart at chunk edges,
    which a receiver cannot tell from a breath or a change of posture).
    """
    total = duration.total_seconds()
    fs = 4.0
    n = int(total * fs) + int(8 * fs) + 2  # a few seconds of slack past the end
    t = np.arange(n) / fs

    drift_steps = max(2, int(total / 120.0) + 2)  # one random drift value every two minutes
    drift = np.interp(t, np.arange(drift_steps) * 120.0, rng.normal(0.0, 1.0, drift_steps))
    hr = profile.mean_hr_bpm + profile.drift_bpm * drift
    rates = {"brady": profile.brady_bpm, "tachy": profile.tachy_bpm, "af": profile.af_bpm}
    spans: list[tuple[float, float, float]] = []
    af_spans: list[tuple[float, float]] = []
    loss_spans: list[tuple[float, float]] = []
    ectopy_spans: list[tuple[float, float, float]] = []
    for ep in profile.episodes:
        if ep.kind not in RR_EPISODES:
            kinds = ", ".join(sorted(RR_EPISODES))
            raise ValueError(f"unknown heart episode kind {ep.kind!r}; use one of {kinds}")
        a, b = ep.seconds_from(start)
        if b <= 0 or a >= total:
            continue
        if ep.kind in rates:
            spans.append((a, b, ep.rate if ep.rate is not None else rates[ep.kind]))
        if ep.kind == "af":
            af_spans.append((a, b))
        elif ep.kind == "contact_loss":
            loss_spans.append((a, b))
        elif ep.kind == "ectopy":
            ectopy_spans.append((a, b, ep.rate if ep.rate is not None else 6.0))
    hr = _ramped_level(t, hr, spans, ramp_s=20.0)
    base_rr = 60_000.0 / hr
    # Faster hearts vary less beat to beat; scale the modulation with the cycle length.
    scale = base_rr / (60_000.0 / profile.mean_hr_bpm)
    sinus_rr = base_rr + profile.modulation_sd_ms * scale * _shaped_noise(n, fs, rng, profile)

    # Random draws are made up front, one per potential beat, so the loop stays cheap.
    max_beats = int(total * 240.0 / 60.0) + 16  # RR is clipped at 250 ms: at most 240/min
    u_ectopic = rng.uniform(size=max_beats)
    prematurity = rng.uniform(0.55, 0.72, size=max_beats)
    af_sigma = np.sqrt(np.log1p(profile.af_cv**2))
    af_draw = rng.lognormal(-0.5 * af_sigma**2, af_sigma, size=max_beats)
    jitter = rng.normal(0.0, 4.0, size=max_beats)  # beat detection jitter, ms

    beats: list[float] = []
    rrs: list[float] = []
    labels: list[str] = []
    now = 0.0
    pending_pause = 0.0
    ectopic_p = profile.ectopic_per_hour / 3600.0
    i = 0
    while i < max_beats:
        k = min(int(now * fs), n - 1)
        in_af = any(a <= now < b for a, b in af_spans)
        if in_af:
            rr = float(base_rr[k] * af_draw[i])
            label = "N"
            pending_pause = 0.0
        elif pending_pause > 0.0:
            rr, label, pending_pause = pending_pause, "N", 0.0
        else:
            rr = float(sinus_rr[k] + jitter[i])
            per_min = next((r for a, b, r in ectopy_spans if a <= now < b), None)
            p = ectopic_p * rr / 1000.0 if per_min is None else per_min / 60.0 * rr / 1000.0
            if u_ectopic[i] < p:
                premature = rr * float(prematurity[i])
                pending_pause = 2.0 * rr - premature  # full compensatory pause
                rr, label = premature, "V"
            else:
                label = "N"
        rr = float(np.clip(rr, 250.0, 2500.0))
        now += rr / 1000.0
        if now >= total:
            break
        beats.append(now)
        rrs.append(rr)
        labels.append(label)
        i += 1

    beat_s = np.asarray(beats, dtype=np.float64)
    rhythm = np.full(beat_s.shape, "N", dtype="<U5")
    for ep in profile.episodes:
        if ep.kind in ("af", "brady", "tachy"):
            a, b = ep.seconds_from(start)
            rhythm[(beat_s >= a) & (beat_s < b)] = "AFIB" if ep.kind == "af" else ep.kind.upper()
    return RRSeries(
        start=start,
        beat_s=beat_s,
        rr_ms=np.asarray(rrs, dtype=np.float64),
        label=np.asarray(labels, dtype="<U1"),
        rhythm=rhythm,
        contact=~_in_any(beat_s, loss_spans),
    )


def rmssd(rr_ms: FloatArray) -> float:
    """Root mean square of successive differences, ms (the classic short-term HRV index)."""
    d = np.diff(rr_ms)
    return float(np.sqrt(np.mean(d * d))) if d.size else 0.0


# --------------------------------------------------------------------------------------------
# Local times of day
# --------------------------------------------------------------------------------------------


def daily_times(
    start: datetime,
    duration: timedelta,
    hour: float,
    rng: np.random.Generator,
    *,
    jitter_min: float = 0.0,
    utc_offset: timedelta = timedelta(0),
) -> Iterator[datetime]:
    """Each day's ``hour`` (local time, ``utc_offset`` east of UTC) inside the window, jittered."""
    end = start + duration
    local_midnight = (start + utc_offset).replace(hour=0, minute=0, second=0, microsecond=0)
    day = local_midnight - utc_offset - timedelta(days=1)
    while day < end:
        jitter = float(rng.normal(0.0, jitter_min)) if jitter_min > 0 else 0.0
        # Whole seconds: device clocks (Date Time, 0x2A08) have no finer resolution.
        t = day + timedelta(seconds=round(hour * 3600.0 + jitter * 60.0))
        if start <= t < end:
            yield t
        day += timedelta(days=1)


def last_local_time(
    before: datetime, hour: float, *, days_ago: int = 0, utc_offset: timedelta = timedelta(0)
) -> datetime:
    """The latest local ``hour`` at or before ``before``, ``days_ago`` days further back."""
    local = before + utc_offset
    t = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=hour)
    if t > local:
        t -= timedelta(days=1)
    return t - utc_offset - timedelta(days=days_ago)


# --------------------------------------------------------------------------------------------
# Continuous glucose
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Meal:
    hour: float  # local time of day
    carbs_g: float


@dataclass(frozen=True, slots=True)
class CgmProfile:
    baseline_mg_dl: float = 118.0
    dawn_rise_mg_dl: float = 15.0
    meals: tuple[Meal, ...] = (Meal(7.5, 45.0), Meal(12.75, 70.0), Meal(19.25, 80.0))
    #: Peak rise per gram of carbohydrate (a person with diabetes on treatment).
    rise_per_g: float = 1.35
    meal_peak_min: float = 55.0
    noise_sd_mg_dl: float = 7.0
    interval_min: int = 5
    warmup_min: int = 60
    low_nadir_mg_dl: float = 48.0
    low_duration_min: float = 100.0
    #: Nadir times of scripted lows (absolute).
    lows: tuple[datetime, ...] = ()
    utc_offset: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True)
class CgmSeries:
    """Samples of one sensor session from ``session_start``.

    ``offset_min`` is minutes since the session started (what the CGM Measurement's Time
    Offset carries); samples inside the warm-up are not produced at all, as real sensors
    stay silent until calibrated.  ``trend`` is mg/dL/min, ``quality`` a percentage.
    """

    session_start: datetime
    offset_min: NDArray[np.int64]
    glucose_mg_dl: FloatArray
    truth_mg_dl: FloatArray
    trend: FloatArray
    quality: FloatArray

    def time_of(self, i: int) -> datetime:
        return self.session_start + timedelta(minutes=int(self.offset_min[i]))


def _meal_curve(tau_min: FloatArray, peak_min: float) -> FloatArray:
    """Gamma-shaped excursion, 1 at ``peak_min``, back near zero after ~4 peak times."""
    x = np.clip(tau_min, 0.0, None) / peak_min
    return x * np.exp(1.0 - x)


def glucose_truth(
    session_start: datetime, minutes: FloatArray, rng: np.random.Generator, p: CgmProfile
) -> FloatArray:
    """True interstitial glucose (mg/dL) at ``minutes`` after ``session_start``."""
    local_h = ((minutes / 60.0) + _hours_of_day(session_start + p.utc_offset)) % 24.0
    # Dawn phenomenon: a gentle rise between 04:00 and 08:00 local.
    g = p.baseline_mg_dl + p.dawn_rise_mg_dl * np.exp(-0.5 * ((local_h - 6.5) / 1.2) ** 2)
    span = timedelta(minutes=float(minutes[-1]) + p.interval_min) if minutes.size else timedelta()
    for meal in p.meals:
        # Two days of margin before the window so a meal eaten before it still tails off.
        for when in daily_times(
            session_start - timedelta(days=1), span + timedelta(days=1), meal.hour, rng,
            jitter_min=25.0, utc_offset=p.utc_offset,
        ):
            at = (when - session_start).total_seconds() / 60.0
            carbs = meal.carbs_g * float(rng.uniform(0.7, 1.3))
            g = g + p.rise_per_g * carbs * _meal_curve(minutes - at, p.meal_peak_min)
    for nadir in p.lows:
        at = (nadir - session_start).total_seconds() / 60.0
        # A flat-bottomed dip (super-Gaussian): real nocturnal lows linger near their nadir
        # for half an hour or more, long enough to count as an event (≥ 15 min < 54 mg/dL).
        bump = np.exp(-0.5 * ((minutes - at) / (p.low_duration_min / 3.0)) ** 4)
        depth = float(np.interp(at, minutes, g)) - p.low_nadir_mg_dl if minutes.size else 0.0
        g = g - max(depth, 0.0) * bump
    return np.asarray(g, dtype=np.float64)


def _hours_of_day(t: datetime) -> float:
    return t.hour + t.minute / 60.0 + t.second / 3600.0


def cgm_series(
    session_start: datetime, duration: timedelta, rng: np.random.Generator, p: CgmProfile
) -> CgmSeries:
    """A sensor session from ``session_start``: truth, noisy readings, trend and quality."""
    n = int(duration.total_seconds() // (60 * p.interval_min))
    minutes = np.arange(n, dtype=np.float64) * p.interval_min
    truth = glucose_truth(session_start, minutes, rng, p)
    phi = 0.8
    shocks = rng.normal(0.0, p.noise_sd_mg_dl * np.sqrt(1.0 - phi**2), size=n)
    noise = np.zeros(n)
    for i in range(1, n):
        noise[i] = phi * noise[i - 1] + shocks[i]
    # CGM error grows with the level (accuracy is quoted as a relative difference, MARD), so
    # the noise is scaled by the glucose level around a reference of 120 mg/dL.
    scaled = noise * np.clip(truth / 120.0, 0.5, 1.5)
    measured = np.clip(np.round(truth + scaled), 40.0, 400.0)  # the sensor's reportable range
    # Trend over the last 15 minutes, as receivers show it (a least-squares slope).
    # With equally spaced samples the slope is a fixed weighted sum: a convolution.
    trend = np.zeros(n)
    k = max(1, 15 // p.interval_min)
    if n > k:
        x = np.arange(k + 1, dtype=np.float64) - k / 2.0
        w = x / (np.sum(x * x) * p.interval_min)
        trend[k:] = np.convolve(measured, w[::-1], mode="valid")
    quality = np.clip(100.0 - 3.0 * np.abs(scaled - np.roll(scaled, 1)), 60.0, 100.0).round()
    keep = minutes >= p.warmup_min
    return CgmSeries(
        session_start=session_start,
        offset_min=minutes[keep].astype(np.int64),
        glucose_mg_dl=measured[keep],
        truth_mg_dl=truth[keep],
        trend=np.round(trend[keep], 1),
        quality=quality[keep],
    )


# --------------------------------------------------------------------------------------------
# Spot measurements: meter, cuff, oximeter, thermometer, scale
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GlucoseSpot:
    time: datetime
    mg_dl: float
    meal: str  # "fasting", "preprandial", "postprandial", "bedtime"


def glucose_spots(
    start: datetime,
    duration: timedelta,
    rng: np.random.Generator,
    *,
    utc_offset: timedelta = timedelta(0),
) -> list[GlucoseSpot]:
    """Finger-stick checks: fasting, before lunch, after dinner and at bedtime."""
    plan = (
        (7.0, "fasting", 118.0, 14.0),
        (12.5, "preprandial", 125.0, 18.0),
        (21.0, "postprandial", 172.0, 30.0),
        (23.0, "bedtime", 140.0, 22.0),
    )
    out: list[GlucoseSpot] = []
    for hour, meal, mean, sd in plan:
        for t in daily_times(start, duration, hour, rng, jitter_min=20.0, utc_offset=utc_offset):
            if meal == "bedtime" and rng.uniform() < 0.5:
                continue  # half the evenings the patient skips the bedtime check
            out.append(GlucoseSpot(t, float(np.clip(round(rng.normal(mean, sd)), 20, 600)), meal))
    out.sort(key=lambda s: s.time)
    return out


@dataclass(frozen=True, slots=True)
class BpUser:
    index: int  # the cuff's user slot (1-based, as the profile's User ID)
    systolic: float
    diastolic: float
    pulse: float
    morning_hour: float = 7.0
    evening_hour: float = 21.0
    #: Share of readings with the irregular-pulse flag (e.g. a person with AF).
    irregular_share: float = 0.0


DEFAULT_BP_USERS = (
    BpUser(1, 142.0, 88.0, 72.0, irregular_share=0.1),
    BpUser(2, 121.0, 77.0, 66.0, morning_hour=7.75, evening_hour=22.0),
)


@dataclass(frozen=True, slots=True)
class BpMeasurement:
    time: datetime
    user: int
    systolic: float
    diastolic: float
    mean_arterial: float
    pulse: float
    irregular_pulse: bool
    body_movement: bool


def bp_measurements(
    start: datetime,
    duration: timedelta,
    rng: np.random.Generator,
    users: Sequence[BpUser] = DEFAULT_BP_USERS,
    *,
    utc_offset: timedelta = timedelta(0),
) -> list[BpMeasurement]:
    """Morning and evening cuff readings per user; mornings run higher (the morning surge)."""
    out: list[BpMeasurement] = []
    for user in users:
        for hour, surge in ((user.morning_hour, 6.0), (user.evening_hour, 0.0)):
            times = daily_times(start, duration, hour, rng, jitter_min=25.0, utc_offset=utc_offset)
            for t in times:
                sys_ = round(rng.normal(user.systolic + surge, 8.0))
                dia = round(min(rng.normal(user.diastolic + surge / 2, 5.0), sys_ - 20))
                out.append(
                    BpMeasurement(
                        time=t,
                        user=user.index,
                        systolic=float(sys_),
                        diastolic=float(dia),
                        mean_arterial=float(round(dia + (sys_ - dia) / 3.0)),
                        pulse=float(round(rng.normal(user.pulse, 6.0))),
                        irregular_pulse=bool(rng.uniform() < user.irregular_share),
                        body_movement=bool(rng.uniform() < 0.03),
                    )
                )
    out.sort(key=lambda m: (m.time, m.user))
    return out


@dataclass(frozen=True, slots=True)
class Spo2Series:
    start: datetime
    t_s: FloatArray
    spo2: FloatArray
    pulse: FloatArray
    perfusion_index: FloatArray


def spo2_series(
    start: datetime,
    duration: timedelta,
    rng: np.random.Generator,
    *,
    interval_s: float = 1.0,
    baseline: float = 97.0,
    pulse_bpm: float = 68.0,
    episodes: Sequence[Episode] = (),
) -> Spo2Series:
    """A 1 Hz oximeter stream: slow SpO2 wander, pulse with drift, scripted desaturations."""
    n = max(1, int(duration.total_seconds() / interval_s))
    t = np.arange(n, dtype=np.float64) * interval_s
    wander = np.cumsum(rng.normal(0.0, 0.08, n))
    wander -= np.linspace(0.0, wander[-1], n)  # pin the random walk's ends so it cannot drift off
    spo2 = baseline + wander + rng.normal(0.0, 0.4, n)
    for ep in episodes:
        if ep.kind != "desaturation":
            continue
        a, b = ep.seconds_from(start)
        nadir = ep.rate if ep.rate is not None else 86.0
        # Saturation falls and recovers over ~30 s (circulation delay to the finger).
        ramp = max(min((b - a) / 3.0, 30.0), 1.0)
        w = np.clip(np.minimum(t - a, b - t) / ramp, 0.0, 1.0)
        spo2 = spo2 * (1.0 - w) + (nadir + rng.normal(0.0, 0.4, n)) * w
    pulse = pulse_bpm + 3.0 * np.sin(2 * np.pi * t / 300.0) + rng.normal(0.0, 1.0, n)
    pi = np.clip(rng.normal(2.5, 0.4, n), 0.2, 20.0)
    return Spo2Series(
        start=start,
        t_s=t,
        spo2=np.clip(np.round(spo2), 50.0, 100.0),
        pulse=np.round(pulse),
        perfusion_index=np.round(pi, 2),
    )


@dataclass(frozen=True, slots=True)
class Spot:
    """One spot value of a single quantity (body temperature in °C, weight in kg)."""

    time: datetime
    value: float


def temperatures(
    start: datetime,
    duration: timedelta,
    rng: np.random.Generator,
    *,
    hours: Sequence[float] = (8.0, 20.0),
    baseline_c: float = 36.7,
    episodes: Sequence[Episode] = (),
    utc_offset: timedelta = timedelta(0),
) -> list[Spot]:
    """Oral temperature twice a day; evenings ~0.3 °C warmer (circadian); scripted fevers."""
    out: list[Spot] = []
    for hour in hours:
        circadian = 0.3 if hour >= 14.0 else 0.0
        for t in daily_times(start, duration, hour, rng, jitter_min=30.0, utc_offset=utc_offset):
            c = baseline_c + circadian + rng.normal(0.0, 0.15)
            for ep in episodes:
                if ep.kind == "fever" and ep.start <= t < ep.end:
                    c = max(c, (ep.rate if ep.rate is not None else 38.9) + rng.normal(0.0, 0.2))
            out.append(Spot(t, round(float(c), 1)))
    out.sort(key=lambda s: s.time)
    return out


def weights(
    start: datetime,
    duration: timedelta,
    rng: np.random.Generator,
    *,
    baseline_kg: float = 78.0,
    trend_kg_per_week: float = -0.2,
    hour: float = 7.25,
    utc_offset: timedelta = timedelta(0),
    trend_origin: datetime | None = None,
) -> list[Spot]:
    """One morning weighing a day, with a slow trend (from ``trend_origin``, default
    ``start``) and day-to-day water swings."""
    origin = start if trend_origin is None else trend_origin
    out: list[Spot] = []
    for t in daily_times(start, duration, hour, rng, jitter_min=15.0, utc_offset=utc_offset):
        weeks = (t - origin).total_seconds() / (7 * 86400.0)
        kg = baseline_kg + trend_kg_per_week * weeks + rng.normal(0.0, 0.35)
        out.append(Spot(t, round(float(kg) * 20) / 20))  # 50 g resolution, like home scales
    return out


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent, reproducible random stream for ``name`` under one scenario seed.

    The name is hashed into the seed sequence, so adding a peripheral never shifts the others.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, *name.encode()]))
