"""The caregiver's library: patients, thresholds, alerts and audit; export; the report."""
