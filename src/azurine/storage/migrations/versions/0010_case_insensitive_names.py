"""case-insensitive names: accounts' names and custom subdomains in one namespace; RAI names unique in any case

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

Accounts are reached by name or custom subdomain, both compared lowercased, but were unique only as written, so
`SQx` and `sqx`, or one account's name and another's subdomain, could coexist and the account a request reached
depended on row order. `endpoint_names` holds every label an account answers to, lowercased, once.

Existing data with collisions is resolved as the new rule would have resolved it had it always held: the first
claim wins. Accounts are taken in the order they were created (then by id), each one's name before its subdomain;
a label already claimed by another account is not registered for this one:
- a subdomain that loses is cleared from its account (the account keeps its name and answers to it; its owner may
  set a free subdomain);
- a name that loses cannot be cleared: the account stays, with its keys and deployments, but its name reaches the
  account that claimed the label first, and updating it is refused until it is deleted.
Each such case is logged as a warning naming both accounts.

RAI policies, blocklists and blocklist items were looked up in any case but unique only as written. Of names
differing only in case the first created stays: a later blocklist's items move to the list that stays, later
duplicate items and policies are deleted (lookups already returned the first), and each is logged.

Downgrade drops the table and the index; subdomains cleared or children merged here are not restored.
"""

import logging
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

log = logging.getLogger("azurine.migrations")
RAI_INDEX = "ux_account_children_lower_name"


def _register_account_labels(connection: sa.Connection) -> None:
    accounts = connection.execute(sa.text(
        "SELECT id, name, custom_subdomain FROM accounts ORDER BY created_at, id")).all()
    holders: dict[str, Any] = {}
    names = {row.id: row.name for row in accounts}
    for row in accounts:
        for label, is_name in ((row.name, True), (row.custom_subdomain, False)):
            if label is None:
                continue
            holder = holders.setdefault(label.lower(), row.id)
            if holder == row.id:
                continue
            if is_name:
                log.warning("account %s (%s): its name is already the subdomain or name of account %s (%s), which "
                            "keeps it; delete one of the two", names[row.id], row.id, names[holder], holder)
            else:
                log.warning("account %s (%s): custom subdomain %r cleared, already the name or subdomain of account "
                            "%s (%s)", names[row.id], row.id, label, names[holder], holder)
                connection.execute(sa.text("UPDATE accounts SET custom_subdomain = NULL WHERE id = :id"),
                                   {"id": row.id})
    if holders:
        connection.execute(sa.text("INSERT INTO endpoint_names (label, account_id) VALUES (:label, :account_id)"),
                           [{"label": label, "account_id": holder} for label, holder in holders.items()])


def _first_of_each_name(connection: sa.Connection, kind: str) -> list[tuple[Any, Any]]:
    """(kept, duplicate) rows of `kind` whose names differ only in case, the first created kept."""
    rows = connection.execute(sa.text(
        "SELECT id, account_id, parent, name FROM account_children WHERE kind = :kind ORDER BY created_at, id"),
        {"kind": kind}).all()
    kept: dict[tuple[str, str, str], Any] = {}
    pairs = []
    for row in rows:
        first = kept.setdefault((row.account_id, row.parent.lower(), row.name.lower()), row)
        if first is not row:
            pairs.append((first, row))
    return pairs


def _merge_rai_names(connection: sa.Connection) -> None:
    for kept, duplicate in _first_of_each_name(connection, "raiBlocklists"):
        log.warning("account %s: blocklist %r merged into %r", kept.account_id, duplicate.name, kept.name)
        connection.execute(sa.text(
            "UPDATE account_children SET parent = :kept WHERE account_id = :account AND kind = 'raiBlocklistItems' "
            "AND parent = :duplicate"), {"kept": kept.name, "account": kept.account_id, "duplicate": duplicate.name})
        connection.execute(sa.text("DELETE FROM account_children WHERE id = :id"), {"id": duplicate.id})
    for kind in ("raiBlocklistItems", "raiPolicies"):
        for kept, duplicate in _first_of_each_name(connection, kind):
            log.warning("account %s: %s %r deleted, a duplicate of %r", kept.account_id, kind, duplicate.name,
                        kept.name)
            connection.execute(sa.text("DELETE FROM account_children WHERE id = :id"), {"id": duplicate.id})


def upgrade() -> None:
    op.create_table(
        "endpoint_names",
        sa.Column("label", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.CheckConstraint("label = lower(label)", name="ck_endpoint_names_lowercase"),
    )
    op.create_index("ix_endpoint_names_account_id", "endpoint_names", ["account_id"])
    connection = op.get_bind()
    _register_account_labels(connection)
    _merge_rai_names(connection)
    op.create_index(RAI_INDEX, "account_children",
                    ["account_id", "kind", sa.text("lower(parent)"), sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index(RAI_INDEX, table_name="account_children")
    op.drop_index("ix_endpoint_names_account_id", table_name="endpoint_names")
    op.drop_table("endpoint_names")
