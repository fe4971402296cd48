"""Simulated health devices built on :mod:`hardware_sim.peripheral` and the gateway's codecs."""

from .base import FrameFaults, SimPeripheral
from .blood_pressure import BloodPressureCuff
from .cgm import CgmSensor
from .glucose_meter import GlucoseMeter
from .heart_rate import HeartRateStrap
from .pulse_oximeter import PulseOximeter
from .thermometer import Scale, Thermometer

__all__ = [
    "BloodPressureCuff", "CgmSensor", "FrameFaults", "GlucoseMeter", "HeartRateStrap",
    "PulseOximeter", "Scale", "SimPeripheral", "Thermometer",
]
