"""`accounts/raiPolicies`, `accounts/raiBlocklists` and their items, stored with Azure's shapes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
