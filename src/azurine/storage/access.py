"""Role assignments and the audit log, handed out as plain frozen values."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from azurine.storage.database import session_factory
from azurine.storage.tables import AuditEvent, RoleAssignmentRow


@dataclass(frozen=True)
class AssignmentRecord:
    id: str
    scope: str
    role_definition_id: str
    principal_id: str
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
    return AssignmentRecord(row.id, row.scope, row.role_definition_id, row.principal_id, row.principal_type,
                            row.created_by, row.created_at)


class AccessStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def put_assignment(self, name: str, scope: str, role_definition_id: str, principal_id: str,
                       principal_type: str, created_by: str) -> tuple[AssignmentRecord, bool]:
        """Create the assignment `name` (a GUID), or return the existing one; whether it was created."""
        with self._sessions.begin() as session:
            row = session.get(RoleAssignmentRow, name.lower())
            created = row is None
            if row is None:
                row = RoleAssignmentRow(id=name.lower(), scope=scope, role_definition_id=role_definition_id,
                                        principal_id=principal_id.lower(), principal_type=principal_type,
                                        created_by=created_by)
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
            session.add_all(AuditEvent(id=str(uuid.uuid4()), at=e.at, principal=e.principal, action=e.action,
                                       scope=e.scope, outcome=e.outcome, detail=e.detail) for e in events)

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
