"""Pure codecs: one module per Bluetooth SIG profile or serial protocol.

A module here that defines ``PROFILE`` (or ``PROFILES``, for support.py's three small
services) is a profile: one :class:`~edge_gateway.drivers.profiles.base.Profile` says
everything about it — service, codecs, measurements, what a session subscribes to and reads,
streams, bonding, RACP backfill, its own reading kinds.  The registry
(:mod:`edge_gateway.drivers.registry`) finds it by itself; nothing else needs editing.  Helper
modules (``base``, ``layout``, ``racp``, ``ieee11073``, ``e2e_crc``, ``cgm_socp``) declare
none.  Codecs import only the core (``edge_gateway.reading``, ``errors``, ``units``) and this
package.
"""
