"""Prometheus metrics (`metrics.py`), served at `/metrics` on the operator's listener only.

Usage records are `azurine.usage`'s ledger; the audit log is the `audit_events` table written through
`storage/access.py` (`azurine audit show` reads it).
"""
