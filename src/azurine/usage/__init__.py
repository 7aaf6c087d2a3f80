"""Settled usage: the tokens every request actually used, per account, deployment and minute."""

from azurine.usage.ledger import UsageLedger

__all__ = ["UsageLedger"]
