"""On-device signal processing: pure numpy/scipy, arrays in, frozen results out.

``clean`` (ectopic beats, gaps), ``hrv`` with ``spectral`` and ``nonlinear``, ``rhythm`` (AF,
pauses, brady/tachycardia), ``glucose`` (consensus CGM metrics, MAGE, AGP, trend), ``bp``
(guideline classes).  ``edge_gateway.runtime.dsp_scheduler`` turns windows of stored readings into
Summaries with these functions.  Nothing
here does I/O, reads a clock or logs; scipy is imported inside the functions that need it.
Definitions and their differences from the reference libraries: docs/dsp.md.
"""
