"""Role assignments and the audit log, handed out as plain frozen values.

Much of what is audited comes from requests (a client id, a scope, a path), so each field is cut to its column
and stripped of line breaks and other control characters: a caller can neither grow the log nor forge lines in
what is read from it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from azurine.storage.database import session_factory
from azurine.storage.installation import administrator_id
from azurine.storage.tables import AuditEvent, RoleAssignmentRow

DETAIL_MAX = 1024  # the most an audited detail keeps; the other fields keep what their columns hold
CONTROL = dict.fromkeys([*range(32), 127], " ")


@dataclass(frozen=True)
class AssignmentRecord:
    id: str
    scope: str
    role_definition_id: str
    principal_id: str
    principal_tenant: str  # the principal's directory; "" for an assignment too old to know it
    principal_type: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class AuditRecord:
    at: datetime
    principal: str
    action: str
    scope: str
    outcome: str
    detail: str = ""


def _assignment(row: RoleAssignmentRow) -> AssignmentRecord:
    return AssignmentRecord(row.id, row.scope, row.role_definition_id, row.principal_id, row.principal_tenant,
                            row.principal_type, row.created_by, row.created_at)


def clip(value: str, limit: int) -> str:
    """`value` on one line and at most `limit` characters, a cut one ending in an ellipsis."""
    value = value.translate(CONTROL)
    return value if len(value) <= limit else value[: limit - 1] + "…"


class AccessStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def admin_object_id(self) -> str:
        """The built-in administrator's object id, random per install."""
        return administrator_id(self.engine)

    def put_assignment(self, name: str, scope: str, role_definition_id: str, principal_id: str,
                       principal_type: str, created_by: str, principal_tenant: str) -> tuple[AssignmentRecord, bool]:
        """Create the assignment `name` (a GUID), or return the existing one; whether it was created."""
        with self._sessions.begin() as session:
            row = session.get(RoleAssignmentRow, name.lower())
            created = row is None
            if row is None:
                row = RoleAssignmentRow(id=name.lower(), scope=scope, role_definition_id=role_definition_id,
                                        principal_id=principal_id.lower(), principal_tenant=principal_tenant,
                                        principal_type=principal_type, created_by=clip(created_by, 64))
                session.add(row)
                session.flush()
            return _assignment(row), created

    def assignment(self, name: str) -> AssignmentRecord | None:
        with self._sessions() as session:
            row = session.get(RoleAssignmentRow, name.lower())
            return _assignment(row) if row else None

    def delete_assignment(self, name: str) -> AssignmentRecord | None:
        with self._sessions.begin() as session:
            row = session.get(RoleAssignmentRow, name.lower())
            if row is None:
                return None
            found = _assignment(row)
            session.execute(delete(RoleAssignmentRow).where(RoleAssignmentRow.id == row.id))
            return found

    def assignments(self, principal_id: str | None = None) -> list[AssignmentRecord]:
        with self._sessions() as session:
            query = select(RoleAssignmentRow).order_by(RoleAssignmentRow.created_at, RoleAssignmentRow.id)
            if principal_id is not None:
                query = query.where(RoleAssignmentRow.principal_id == principal_id.lower())
            return [_assignment(row) for row in session.scalars(query)]

    def audit(self, events: list[AuditRecord]) -> None:
        with self._sessions.begin() as session:
            session.add_all(AuditEvent(id=str(uuid.uuid4()), at=e.at, principal=clip(e.principal, 128),
                                       action=clip(e.action, 256), scope=clip(e.scope, 512),
                                       outcome=clip(e.outcome, 16), detail=clip(e.detail, DETAIL_MAX))
                            for e in events)

    def audit_events(self, since: datetime | None = None, outcome: str | None = None,
                     limit: int = 100) -> list[AuditRecord]:
        """The newest first."""
        with self._sessions() as session:
            query = select(AuditEvent).order_by(AuditEvent.at.desc()).limit(limit)
            if since is not None:
                query = query.where(AuditEvent.at >= since)
            if outcome is not None:
                query = query.where(AuditEvent.outcome == outcome)
            return [AuditRecord(row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC), row.principal, row.action,
                                row.scope, row.outcome, row.detail) for row in session.scalars(query)]

    def count_assignments(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(RoleAssignmentRow)) or 0)
