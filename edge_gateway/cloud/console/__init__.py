"""The clinic console (``edge-gateway cloud console``): a server-rendered web app over the
fleet-ingest database, and the signed commands it sends back to hubs.  docs/fleet.md."""
