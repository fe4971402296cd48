"""Pure codecs: one module per Bluetooth SIG profile or serial protocol.

A module here that defines ``PROFILE`` is a profile; the registry
(:mod:`edge_gateway.drivers.registry`) finds it by itself.  Codecs import only the core
(``edge_gateway.reading``, ``errors``, ``units``) and the helpers in this package.
"""
