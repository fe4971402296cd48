"""The receiving end: fleet ingest from an MQTT 5 broker (cluster) into PostgreSQL.

Optional: needs the ``[cloud]`` extra (psycopg, zstandard).  Nothing on the hub imports this
package; ``edge-gateway cloud`` imports it lazily.  ``docs/fleet.md`` describes it.
"""
