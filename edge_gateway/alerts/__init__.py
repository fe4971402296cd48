"""Alerts: pure rules, per-patient thresholds, the life-cycle engine and the local hooks."""
