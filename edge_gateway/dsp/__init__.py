"""On-device signal processing: pure numpy, arrays in, frozen results out.

``clean`` (ectopic beats, gaps), ``hrv`` with ``spectral`` and ``nonlinear``, ``rhythm`` (AF,
pauses, brady/tachycardia), ``glucose`` (consensus CGM metrics, MAGE, AGP, trend), ``bp``
(guideline classes).  ``edge_gateway.runtime.dsp_scheduler`` turns windows of stored readings into
Summaries with these functions.  Nothing
here does I/O, reads a clock or logs.  SciPy is not a dependency of the hub: the spline, the
median filter, Welch and Lomb are written with numpy (scipy.interpolate and scipy.ndimage
cost 80 MB resident on a board that has 512 MB); the tests compare them with SciPy.
Definitions and their differences from the reference libraries: docs/dsp.md.
"""
