"""All PostgreSQL code of the cloud side: schema migrations, partitions, batch commits, status."""
