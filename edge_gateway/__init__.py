"""edge-gateway: a home-hub health gateway."""

__version__ = "0.1.0"
