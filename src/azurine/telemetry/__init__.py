"""Metrics, usage records and (later) the audit log."""
