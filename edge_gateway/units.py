"""Units, conversion factors and the table of kinds: the one place that knows them.

Units are UCUM *codes* (``mg/dL``, ``mmol/L``, ``mm[Hg]``, ``/min``, ``ms``, ``%``, ``Cel``,
``kg``): what FHIR and every UCUM field carry.  A :class:`Kind` names one measured or derived
quantity (a reading kind such as ``heart_rate``, or a summary metric such as ``sdnn``) with its
LOINC code, its FHIR category and the units it is stored in.  Reading kinds are declared by the
profile that emits them (``PROFILE.kinds``, collected by :mod:`edge_gateway.drivers.registry`);
the kinds the DSP derives are declared here.  Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

#: 1 mmol/L of glucose in mg/dL (molar mass of glucose 180.16 g/mol).
MGDL_PER_MMOLL = 18.016
#: 1 kPa in mmHg.
MMHG_PER_KPA = 7.500_62

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"

#: UCUM units the gateway emits.  Anything else is a programming error.
UCUM_UNITS = frozenset(
    {
        "mg/dL", "mmol/L", "mmHg", "kPa", "/min", "ms", "%", "kJ", "Cel", "[degF]", "kg",
        "[lb_av]", "m", "[in_i]", "kg/m2", "1", "mg/dL/min", "mmol/L/min", "s",
    }
)


@dataclass(frozen=True, slots=True)
class Kind:
    """One quantity: its LOINC code and display (``None`` when no code fits), its FHIR
    observation category (``vital-signs``, ``laboratory``) and the UCUM units it comes in."""

    name: str
    loinc: str | None
    display: str
    category: str
    units: tuple[str, ...]
