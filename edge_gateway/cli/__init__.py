"""Command-line interface.  Each module below registers its commands on ``main``."""

from __future__ import annotations

from . import (
    analyze,  # noqa: F401
    core,  # noqa: F401  (registers run, status, config, db)
    decode,  # noqa: F401
)
from .base import main

__all__ = ["main"]
