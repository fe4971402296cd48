"""Scenario files: loaded by name, validated at load, built into configured devices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hardware_sim.peripherals.blood_pressure import BloodPressureCuff
from hardware_sim.peripherals.cgm import CgmSensor
from hardware_sim.peripherals.glucose_meter import GlucoseMeter
from hardware_sim.peripherals.heart_rate import HeartRateStrap
from hardware_sim.peripherals.pulse_oximeter import PulseOximeter
from hardware_sim.peripherals.thermometer import Thermometer
from hardware_sim.scenario import build_scenario, load_scenario, parse_duration, scenario_names

from edge_gateway.errors import ConfigError

START = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)


def test_shipped_scenarios_load() -> None:
    assert {"demo", "faults"} <= set(scenario_names())
    for name in scenario_names():
        spec = load_scenario(name)
        assert spec.name == name and spec.description
        assert build_scenario(spec, start=START).peripherals


def test_demo_has_one_of_each_with_history_and_scripted_events(tmp_path: Path) -> None:
    sim = build_scenario(load_scenario("demo"), start=START, clock=lambda: START,
                         runtime_dir=tmp_path)
    kinds = {type(p) for p in sim.peripherals}
    assert kinds == {HeartRateStrap, CgmSensor, GlucoseMeter, BloodPressureCuff, PulseOximeter,
                     Thermometer}
    assert len({p.address for p in sim.peripherals}) == len(sim.peripherals)
    strap = sim.peripheral("HR strap")
    assert isinstance(strap, HeartRateStrap)
    assert any(e.kind == "af" and e.start > START for e in strap.rr_profile.episodes)
    cgm = sim.peripheral("CGM")
    assert isinstance(cgm, CgmSensor)
    assert cgm.cgm_profile.lows == (datetime(2026, 11, 25, 3, 10, tzinfo=UTC),)
    assert cgm.session_start == datetime(2026, 11, 12, tzinfo=UTC)  # midnight before 13.5 d
    meter = sim.peripheral("C0:FF:EE:00:00:03")
    assert isinstance(meter, GlucoseMeter) and meter.passkey == 246810
    assert meter.requires_pairing and len(meter.stored) >= 40
    assert START - meter.stored[0].taken_at > timedelta(days=13)
    assert len(sim.serial) == 1 and sim.serial[0].link_path == tmp_path / "ttyRAD8"


def test_faults_scenario_sets_every_knob() -> None:
    sim = build_scenario(load_scenario("faults"), start=START)
    f = {p.name: p for p in sim.peripherals}
    assert f["HR strap (flaky)"].faults.link_loss_after == 6.0
    assert f["HR strap (flaky)"].frame_faults.corrupt_every == 10
    meter = f["Glucose meter (reset)"]
    assert meter.frame_faults.clock_offset == -timedelta(days=3 * 365)
    assert meter.frame_faults.reboot_before_connect == 2
    assert meter.faults.indication_delay == pytest.approx(0.2)
    assert f["CGM (new session)"].faults.refuse_connections == 2
    assert f["CGM (new session)"].frame_faults.truncate_every == 9
    assert f["BP cuff (slow, clock off)"].frame_faults.clock_offset == timedelta(minutes=7)
    assert f["Pulse oximeter (slow link)"].faults.link_loss_once is False
    assert sim.serial[0].faults.unplug_at == 10.0 and sim.serial[0].faults.sensor_off


def test_same_seed_same_devices() -> None:
    a = build_scenario(load_scenario("demo"), start=START)
    b = build_scenario(load_scenario("demo"), start=START)
    ma, mb = a.peripheral("Glucose meter"), b.peripheral("Glucose meter")
    assert isinstance(ma, GlucoseMeter) and isinstance(mb, GlucoseMeter)
    assert ma.stored == mb.stored


def test_a_run_a_day_later_meets_the_same_stored_records() -> None:
    """Re-running the demo on the same database must continue, not clash: the devices' history
    is tied to calendar days, so records overlap exactly (times, values, sequence numbers)."""
    spec = load_scenario("demo")
    later = START + timedelta(days=1, hours=3)
    a = build_scenario(spec, start=START, clock=lambda: START)
    b = build_scenario(spec, start=later, clock=lambda: later)
    for name in ("Glucose meter", "BP cuff", "Thermometer"):
        pa, pb = a.peripheral(name), b.peripheral(name)
        sa = {(r.taken_at, repr(getattr(r, "item", r))): r for r in getattr(pa, "stored", [])}
        sb = {(r.taken_at, repr(getattr(r, "item", r))): r for r in getattr(pb, "stored", [])}
        overlap = set(sa) & set(sb)
        assert len(overlap) >= 0.8 * len(sa), name
        assert sa.keys() - sb.keys() == {k for k in sa if k[0] < later - timedelta(days=14)}
    ma, mb = a.peripheral("Glucose meter"), b.peripheral("Glucose meter")
    assert isinstance(ma, GlucoseMeter) and isinstance(mb, GlucoseMeter)
    by_seq = {r.sequence: r for r in ma.stored}
    assert all(by_seq[r.sequence] == r for r in mb.stored if r.sequence in by_seq)
    assert mb.stored[-1].sequence > ma.stored[-1].sequence


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('seed = "x"', "seed"),
        ('[[peripheral]]\nkind = "toaster"\naddress = "C0:FF:EE:00:00:01"', "peripheral[0].kind"),
        ('[[peripheral]]\nkind = "scale"\naddress = "nope"', "peripheral[0].address"),
        ('[[peripheral]]\nkind = "scale"\naddress = "C0:FF:EE:00:00:01"\ncolour = 1',
         "peripheral[0].colour"),
        ('[[peripheral]]\nkind = "scale"\naddress = "C0:FF:EE:00:00:01"\nhistory = "2 weeks"',
         "peripheral[0].history"),
        ('[[peripheral]]\nkind = "cgm"\naddress = "C0:FF:EE:00:00:01"\nlows = [{at = "27:00"}]',
         "peripheral[0].lows[0].at"),
        ('[[peripheral]]\nkind = "scale"\naddress = "C0:FF:EE:00:00:01"\n'
         '[[peripheral]]\nkind = "scale"\naddress = "c0:ff:ee:00:00:01"', "peripheral[1].address"),
        ('[[peripheral]]\nkind = "heart_rate"\naddress = "C0:FF:EE:00:00:01"\n'
         'faults = { link_loss_soon = 1 }', "peripheral[0].faults.link_loss_soon"),
        ('[[peripheral]]\nkind = "heart_rate"\naddress = "C0:FF:EE:00:00:01"\n'
         'episodes = [{ kind = "afib", duration = "1m" }]', "peripheral[0].episodes[0].kind"),
    ],
)
def test_bad_scenarios_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_scenario(path)
    assert e.value.key == key and e.value.path == str(path)


def test_unknown_scenario_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError) as e:
        load_scenario("nosuch")
    assert "demo" in str(e.value)


def test_parse_duration() -> None:
    assert parse_duration("13d12h") == timedelta(days=13, hours=12)
    assert parse_duration("-3y") == -timedelta(days=3 * 365)
    assert parse_duration("300ms") == timedelta(milliseconds=300)
    assert parse_duration(90) == timedelta(seconds=90)
    assert parse_duration("+1m30s") == timedelta(seconds=90)
    for bad in ("", "5 minutes", "1h-2m", True):
        with pytest.raises(ConfigError):
            parse_duration(bad)
