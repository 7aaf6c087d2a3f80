"""Reads and writes of accounts and deployments, handed out as plain frozen values."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from azurine.storage.database import session_factory
from azurine.storage.installation import administrator_id
from azurine.storage.tables import (
    Account,
    AccountChild,
    Deployment,
    DeploymentPeriod,
    EndpointName,
    FilterEvent,
    Operation,
    QuotaLimit,
    SigningKeyRow,
    UsageMinute,
    UsageRegionMinute,
)


def new_key() -> str:
    """A key shaped as Azure's: 32 hexadecimal characters."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class AccountRecord:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    kind: str
    location: str
    custom_subdomain: str | None
    key1: str
    key2: str
    sku_name: str = "S0"
    properties: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    identity: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    etag: str = ""
    created_by: str = ""
    updated_by: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0

    def key_matches(self, candidate: str) -> bool:
        """In constant time, and against both keys every time, so that timing tells nothing of either."""
        matches = [secrets.compare_digest(candidate.encode(), k.encode()) for k in (self.key1, self.key2)]
        return any(matches)


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    account_id: str
    name: str
    model_format: str
    model_name: str
    model_version: str
    sku_name: str
    sku_capacity: int
    rai_policy_name: str
    upstream_url: str | None
    upstream_model: str | None
    upstream_api_key: str | None
    created_at: float
    updated_at: float
    version_upgrade_option: str = "OnceNewDefaultVersionAvailable"
    properties: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    etag: str = ""
    created_by: str = ""
    updated_by: str = ""
    # the operator's weights for an in-process engine, and that engine's bounds (never shown over ARM)
    model_path: str | None = None
    engine_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class ChildRecord:
    """A raiPolicy, raiBlocklist or raiBlocklistItem."""

    id: str
    account_id: str
    kind: str
    parent: str
    name: str
    properties: dict[str, Any]
    tags: dict[str, str]
    etag: str
    created_by: str
    updated_by: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_pem: str
    active: bool = True
    created_at: float = 0.0


@dataclass(frozen=True)
class OperationRecord:
    id: str
    resource_id: str
    status: str
    created_at: float
    ended_at: float | None


@dataclass(frozen=True)
class FilterEventRow:
    """A blocking content filter that fired: when, where, on which side, why; the content if opted in."""

    at: float
    account_id: str
    deployment: str
    source: str
    category: str
    severity: str
    content: str | None = None


@dataclass(frozen=True)
class UsageRow:
    """The counts of one account's deployment in one minute (unix epoch seconds // 60)."""

    account_id: str
    deployment: str
    minute: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    estimated_tokens: int
    billed_tokens: int = 0  # prompt + completion at the deployment's price: half for batch deployments
    audio_seconds: float = 0.0  # of audio heard (transcriptions, translations) or spoken (speech)
    # a fine-tuning job's training (`deployment` is then the job's id): the seconds of its steps, and its tokens
    training_seconds: float = 0.0
    trained_tokens: int = 0


@dataclass(frozen=True)
class RegionUsageRow:
    """Where one deployment's online requests of one minute ran, and their tokens there."""

    account_id: str
    deployment: str
    region: str
    minute: int
    requests: int
    prompt_tokens: int
    completion_tokens: int


# what a usage row counts: added up per minute, summed per bucket
_COUNTED = ("requests", "prompt_tokens", "completion_tokens", "estimated_tokens", "billed_tokens", "audio_seconds",
            "training_seconds", "trained_tokens")
_FRACTIONAL = ("audio_seconds", "training_seconds")


def _count(name: str, value: Any) -> int | float:
    """A database's sum as the row holds it: seconds are fractional, everything else a whole count."""
    return float(value or 0) if name in _FRACTIONAL else int(value or 0)


@dataclass(frozen=True)
class PeriodRecord:
    """A deployment's model and type from `started_at` until `ended_at` (None: it still exists), unix seconds."""

    account_id: str
    deployment: str
    model: str
    sku: str
    started_at: float
    ended_at: float | None


def add_usage_in(session: Session, rows: list[UsageRow]) -> None:
    """Add the counts to the stored minutes, creating those not there yet, in `session`'s transaction.

    Rows of the same key are summed first; keys are written in sorted order so that replicas adding to the same
    minutes at once take their row locks in the same order and cannot deadlock."""
    totals: dict[tuple[str, str, int], dict[str, float]] = {}
    for row in rows:
        counts = totals.setdefault((row.account_id, row.deployment, row.minute), dict.fromkeys(_COUNTED, 0))
        for name in _COUNTED:
            counts[name] += getattr(row, name)
    if not totals:
        return
    statement = _upsert(session)(UsageMinute)
    statement = statement.on_conflict_do_update(
        index_elements=[UsageMinute.account_id, UsageMinute.deployment, UsageMinute.minute],
        set_={name: getattr(UsageMinute, name) + getattr(statement.excluded, name) for name in _COUNTED},
    )
    parameters = [{"account_id": account_id, "deployment": deployment, "minute": minute, **counts}
                  for (account_id, deployment, minute), counts in sorted(totals.items())]
    session.execute(statement, parameters)


def _upsert(session: Session) -> Any:
    """The dialect's INSERT, which has ON CONFLICT DO UPDATE."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"usage is stored on SQLite and PostgreSQL, not {dialect}")
    return insert


_REGION_COUNTED = ("requests", "prompt_tokens", "completion_tokens")


def add_region_usage_in(session: Session, rows: list[RegionUsageRow]) -> None:
    """Add the counts to the stored region minutes, as `add_usage_in` does (keys in sorted order)."""
    totals: dict[tuple[str, str, str, int], dict[str, int]] = {}
    for row in rows:
        counts = totals.setdefault((row.account_id, row.deployment, row.region, row.minute),
                                   dict.fromkeys(_REGION_COUNTED, 0))
        for name in _REGION_COUNTED:
            counts[name] += getattr(row, name)
    if not totals:
        return
    statement = _upsert(session)(UsageRegionMinute)
    statement = statement.on_conflict_do_update(
        index_elements=[UsageRegionMinute.account_id, UsageRegionMinute.deployment, UsageRegionMinute.region,
                        UsageRegionMinute.minute],
        set_={name: getattr(UsageRegionMinute, name) + getattr(statement.excluded, name) for name in _REGION_COUNTED},
    )
    session.execute(statement, [{"account_id": account_id, "deployment": deployment, "region": region,
                                 "minute": minute, **counts}
                                for (account_id, deployment, region, minute), counts in sorted(totals.items())])


def _open_period(session: Session, account_id: str, name: str, model: str, sku: str, now: float) -> None:
    """Start the deployment's period at `now` unless the open one has this model and type; the open one, if any
    other, ends then."""
    current = session.scalar(select(DeploymentPeriod).where(
        DeploymentPeriod.account_id == account_id, DeploymentPeriod.deployment == name,
        DeploymentPeriod.ended_at.is_(None)))
    if current is not None and (current.model, current.sku) == (model, sku):
        return
    if current is not None:
        current.ended_at = now
    session.add(DeploymentPeriod(id=str(uuid.uuid4()), account_id=account_id, deployment=name, model=model,
                                 sku=sku, started_at=now, ended_at=None))


def _end_periods(session: Session, account_id: str, name: str | None, now: float) -> None:
    """End the open period of the account's deployment `name` (None: of all its deployments) at `now`."""
    query = update(DeploymentPeriod).where(DeploymentPeriod.account_id == account_id,
                                           DeploymentPeriod.ended_at.is_(None))
    if name is not None:
        query = query.where(DeploymentPeriod.deployment == name)
    session.execute(query.values(ended_at=now).execution_options(synchronize_session=False))


def _ts(value: datetime | None) -> float:
    if value is None:
        return 0.0
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _retired(row: SigningKeyRow) -> bool:
    return row.retires_at is not None and _ts(row.retires_at) <= datetime.now(UTC).timestamp()


def _signing_key(row: SigningKeyRow) -> SigningKey:
    return SigningKey(row.kid, row.private_pem, row.active, _ts(row.created_at))


def _account(row: Account) -> AccountRecord:
    return AccountRecord(
        id=row.id, name=row.name, subscription_id=row.subscription_id, resource_group=row.resource_group,
        kind=row.kind, location=row.location, custom_subdomain=row.custom_subdomain,
        key1=row.key1, key2=row.key2, sku_name=row.sku_name, properties=dict(row.properties or {}),
        tags=dict(row.tags or {}), identity=row.identity, etag=row.etag, created_by=row.created_by,
        updated_by=row.updated_by, created_at=_ts(row.created_at), updated_at=_ts(row.updated_at),
    )


def _deployment(row: Deployment) -> DeploymentRecord:
    return DeploymentRecord(
        id=row.id, account_id=row.account_id, name=row.name, model_format=row.model_format,
        model_name=row.model_name, model_version=row.model_version, sku_name=row.sku_name,
        sku_capacity=row.sku_capacity, rai_policy_name=row.rai_policy_name,
        upstream_url=row.upstream_url, upstream_model=row.upstream_model,
        upstream_api_key=row.upstream_api_key, created_at=_ts(row.created_at), updated_at=_ts(row.updated_at),
        version_upgrade_option=row.version_upgrade_option, properties=dict(row.properties or {}),
        tags=dict(row.tags or {}), etag=row.etag, created_by=row.created_by, updated_by=row.updated_by,
        model_path=row.model_path, engine_options=dict(row.engine_options or {}),
    )


def _child(row: AccountChild) -> ChildRecord:
    return ChildRecord(
        id=row.id, account_id=row.account_id, kind=row.kind, parent=row.parent, name=row.name,
        properties=dict(row.properties or {}), tags=dict(row.tags or {}), etag=row.etag,
        created_by=row.created_by, updated_by=row.updated_by, created_at=_ts(row.created_at),
        updated_at=_ts(row.updated_at),
    )


def new_etag() -> str:
    return f'"{uuid.uuid4()}"'


class Conflict(Exception):
    """A write that would break a uniqueness rule (a name or subdomain in use); `label` is the name or subdomain
    another account holds, when that is what broke it."""

    def __init__(self, message: str, label: str | None = None) -> None:
        super().__init__(message)
        self.label = label


def _labels(name: str, subdomain: str | None) -> set[str]:
    """What an account answers to, as lookups compare it."""
    return {name.lower()} | ({subdomain.lower()} if subdomain else set())


def _claim_labels(session: Session, account_id: str, labels: set[str]) -> None:
    """Make `labels` the account's; Conflict naming the first one another account holds. The primary key on the
    lowercased label refuses a writer that raced past this check."""
    held = session.scalars(select(EndpointName).where(EndpointName.label.in_(labels))).all()
    taken = sorted(row.label for row in held if row.account_id != account_id)
    if taken:
        raise Conflict(f"'{taken[0]}' is another account's name or subdomain", taken[0])
    session.execute(delete(EndpointName).where(EndpointName.account_id == account_id,
                                               EndpointName.label.not_in(labels)))
    mine = {row.label for row in held}
    session.add_all(EndpointName(label=label, account_id=account_id) for label in sorted(labels - mine))


class StateStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def has_accounts(self) -> bool:
        with self._sessions() as session:
            return bool(session.scalar(select(func.count()).select_from(Account)))

    def account_named(self, name: str) -> AccountRecord | None:
        """The account whose name or custom subdomain is `name` (both case-insensitive, as DNS is): one at most,
        as each label belongs to one account."""
        with self._sessions() as session:
            row = session.scalar(select(Account).join(EndpointName, EndpointName.account_id == Account.id)
                                 .where(EndpointName.label == name.lower()))
            return _account(row) if row else None

    def first_account(self) -> AccountRecord | None:
        with self._sessions() as session:
            row = session.scalar(select(Account).order_by(Account.created_at).limit(1))
            return _account(row) if row else None

    def create_account(
        self, name: str, *, location: str, subscription_id: str, resource_group: str,
        kind: str = "OpenAI", key1: str | None = None, custom_subdomain: str | None = None,
    ) -> AccountRecord:
        with self._sessions.begin() as session:
            row = Account(
                id=str(uuid.uuid4()), name=name, subscription_id=subscription_id,
                resource_group=resource_group, kind=kind, location=location, sku_name="S0",
                custom_subdomain=custom_subdomain, key1=key1 or new_key(), key2=new_key(), properties={},
                tags={}, etag=new_etag(),
            )
            session.add(row)
            session.flush()
            # what the label's primary key refuses is an IntegrityError here, as for the name (see bootstrap)
            session.add_all(EndpointName(label=label, account_id=row.id)
                            for label in sorted(_labels(name, custom_subdomain)))
            session.flush()
            return _account(row)

    def deployment(self, account_id: str, name: str) -> DeploymentRecord | None:
        with self._sessions() as session:
            row = session.scalar(
                select(Deployment).where(Deployment.account_id == account_id, Deployment.name == name)
            )
            return _deployment(row) if row else None

    def deployments(self, account_id: str) -> list[DeploymentRecord]:
        with self._sessions() as session:
            rows = session.scalars(
                select(Deployment).where(Deployment.account_id == account_id).order_by(Deployment.name)
            )
            return [_deployment(r) for r in rows]

    def create_deployment(
        self, account_id: str, name: str, *, model_name: str, model_version: str, model_format: str,
        sku_name: str, sku_capacity: int, upstream_url: str | None = None,
        upstream_model: str | None = None, upstream_api_key: str | None = None, model_path: str | None = None,
        engine_options: dict[str, Any] | None = None,
    ) -> DeploymentRecord:
        with self._sessions.begin() as session:
            row = Deployment(
                id=str(uuid.uuid4()), account_id=account_id, name=name, model_format=model_format,
                model_name=model_name, model_version=model_version, sku_name=sku_name,
                sku_capacity=sku_capacity, rai_policy_name="Microsoft.DefaultV2",
                version_upgrade_option="OnceNewDefaultVersionAvailable", upstream_url=upstream_url,
                upstream_model=upstream_model, upstream_api_key=upstream_api_key, properties={}, tags={},
                etag=new_etag(), model_path=model_path, engine_options=engine_options,
            )
            session.add(row)
            session.flush()
            _open_period(session, account_id, name, model_name, sku_name, _ts(row.created_at))
            return _deployment(row)

    # the management plane -----------------------------------------------------------------------------

    def accounts(self, subscription_id: str, resource_group: str | None = None) -> list[AccountRecord]:
        with self._sessions() as session:
            query = select(Account).where(func.lower(Account.subscription_id) == subscription_id.lower())
            if resource_group is not None:
                query = query.where(func.lower(Account.resource_group) == resource_group.lower())
            return [_account(r) for r in session.scalars(query.order_by(Account.name))]

    def arm_account(self, subscription_id: str, resource_group: str, name: str) -> AccountRecord | None:
        with self._sessions() as session:
            row = self._arm_account_row(session, subscription_id, resource_group, name)
            return _account(row) if row else None

    @staticmethod
    def _arm_account_row(session: Session, subscription_id: str, resource_group: str, name: str) -> Account | None:
        return session.scalar(select(Account).where(
            func.lower(Account.subscription_id) == subscription_id.lower(),
            func.lower(Account.resource_group) == resource_group.lower(),
            func.lower(Account.name) == name.lower()))

    def put_account(self, subscription_id: str, resource_group: str, name: str, *, kind: str, location: str,
                    sku_name: str, custom_subdomain: str | None, properties: dict[str, Any],
                    tags: dict[str, str], identity: dict[str, Any] | None, principal: str
                    ) -> tuple[AccountRecord, bool]:
        """Create or replace an account's settings (keys and deployments stay); True when created."""
        try:
            with self._sessions.begin() as session:
                row = self._arm_account_row(session, subscription_id, resource_group, name)
                created = row is None
                if row is None:
                    row = Account(id=str(uuid.uuid4()), name=name, subscription_id=subscription_id,
                                  resource_group=resource_group, key1=new_key(), key2=new_key(),
                                  created_by=principal)
                    session.add(row)
                row.kind, row.location, row.sku_name = kind, location, sku_name
                row.custom_subdomain, row.properties, row.tags = custom_subdomain, properties, tags
                row.identity, row.etag, row.updated_by = identity, new_etag(), principal
                session.flush()
                _claim_labels(session, row.id, _labels(row.name, custom_subdomain))
                session.flush()
                return _account(row), created
        except IntegrityError as error:
            raise Conflict(str(error.orig)) from error

    def delete_account(self, account_id: str) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(AccountChild).where(AccountChild.account_id == account_id))
            session.execute(delete(Deployment).where(Deployment.account_id == account_id))
            _end_periods(session, account_id, None, datetime.now(UTC).timestamp())
            session.execute(delete(EndpointName).where(EndpointName.account_id == account_id))
            session.execute(delete(Account).where(Account.id == account_id))

    def regenerate_key(self, account_id: str, which: str) -> AccountRecord:
        with self._sessions.begin() as session:
            row = session.get(Account, account_id)
            assert row is not None
            if which == "key1":
                row.key1 = new_key()
            else:
                row.key2 = new_key()
            row.etag = new_etag()
            session.flush()
            return _account(row)

    def put_deployment(self, account_id: str, name: str, *, model_format: str, model_name: str,
                       model_version: str, sku_name: str, sku_capacity: int, rai_policy_name: str,
                       version_upgrade_option: str, properties: dict[str, Any], tags: dict[str, str],
                       principal: str, upstream: tuple[str, str | None, str | None] | None = None,
                       local: tuple[str, dict[str, Any]] | None = None) -> tuple[DeploymentRecord, bool]:
        """Create or replace; `upstream` (url, model, key) and `local` (the weights' directory and the engine's
        options) are set only when given, so a replace keeps them."""
        with self._sessions.begin() as session:
            row = session.scalar(select(Deployment).where(Deployment.account_id == account_id,
                                                          Deployment.name == name))
            created = row is None
            if row is None:
                row = Deployment(id=str(uuid.uuid4()), account_id=account_id, name=name, created_by=principal)
                session.add(row)
            row.model_format, row.model_name, row.model_version = model_format, model_name, model_version
            row.sku_name, row.sku_capacity, row.rai_policy_name = sku_name, sku_capacity, rai_policy_name
            row.version_upgrade_option, row.properties, row.tags = version_upgrade_option, properties, tags
            row.etag, row.updated_by = new_etag(), principal
            if upstream is not None:
                row.upstream_url, row.upstream_model, row.upstream_api_key = upstream
            if local is not None:
                row.model_path, row.engine_options = local
            session.flush()
            _open_period(session, account_id, name, model_name, sku_name,
                         _ts(row.created_at) if created else datetime.now(UTC).timestamp())
            return _deployment(row), created

    def delete_deployment(self, account_id: str, name: str) -> bool:
        with self._sessions.begin() as session:
            result = session.execute(delete(Deployment).where(Deployment.account_id == account_id,
                                                              Deployment.name == name))
            if result.rowcount:
                _end_periods(session, account_id, name, datetime.now(UTC).timestamp())
            return bool(result.rowcount)

    def deployment_periods(self, account_ids: list[str], start: float, end: float) -> list[PeriodRecord]:
        """The periods of the accounts' deployments that overlap `start` to `end` (unix seconds), ended or not."""
        if not account_ids:
            return []
        with self._sessions() as session:
            rows = session.scalars(select(DeploymentPeriod).where(
                DeploymentPeriod.account_id.in_(account_ids), DeploymentPeriod.started_at < end,
                (DeploymentPeriod.ended_at.is_(None)) | (DeploymentPeriod.ended_at > start))
                .order_by(DeploymentPeriod.started_at))
            return [PeriodRecord(r.account_id, r.deployment, r.model, r.sku, r.started_at, r.ended_at)
                    for r in rows]

    def remove_deployments_older_than(self, sku: str, model_mark: str, started_before: float,
                                      now: float) -> list[tuple[str, str]]:
        """Delete the deployments of type `sku` whose model's name holds `model_mark` and whose current period
        (their model and type) started before `started_before`; their periods end at `now`. Returns the
        (account id, name) of each one removed."""
        removed: list[tuple[str, str]] = []
        with self._sessions.begin() as session:
            due = session.execute(select(DeploymentPeriod.account_id, DeploymentPeriod.deployment).where(
                DeploymentPeriod.ended_at.is_(None), DeploymentPeriod.sku == sku,
                DeploymentPeriod.model.contains(model_mark, autoescape=True),
                DeploymentPeriod.started_at < started_before)).all()
            for account_id, name in due:
                gone = session.execute(delete(Deployment).where(
                    Deployment.account_id == account_id, Deployment.name == name, Deployment.sku_name == sku))
                _end_periods(session, account_id, name, now)
                if gone.rowcount:
                    removed.append((account_id, name))
        return removed

    def deployments_in(self, subscription_id: str, location: str) -> list[DeploymentRecord]:
        """Every deployment of a subscription's accounts in one location: what its quota pays for."""
        with self._sessions() as session:
            rows = session.scalars(select(Deployment).join(Account).where(
                func.lower(Account.subscription_id) == subscription_id.lower(),
                func.lower(Account.location) == location.lower()))
            return [_deployment(r) for r in rows]

    def children(self, account_id: str, kind: str, parent: str = "") -> list[ChildRecord]:
        with self._sessions() as session:
            rows = session.scalars(select(AccountChild).where(
                AccountChild.account_id == account_id, AccountChild.kind == kind,
                func.lower(AccountChild.parent) == parent.lower()).order_by(AccountChild.name))
            return [_child(r) for r in rows]

    def child(self, account_id: str, kind: str, name: str, parent: str = "") -> ChildRecord | None:
        with self._sessions() as session:
            row = session.scalar(select(AccountChild).where(
                AccountChild.account_id == account_id, AccountChild.kind == kind,
                func.lower(AccountChild.parent) == parent.lower(),
                func.lower(AccountChild.name) == name.lower()))
            return _child(row) if row else None

    def put_child(self, account_id: str, kind: str, name: str, *, properties: dict[str, Any],
                  tags: dict[str, str], principal: str, parent: str = "") -> tuple[ChildRecord, bool]:
        """Create or replace. Names are unique in any case: of two writers creating one name at once (in any
        case), the second replaces what the first wrote, as a PUT after it would."""
        try:
            return self._put_child(account_id, kind, name, properties=properties, tags=tags, principal=principal,
                                   parent=parent)
        except IntegrityError:
            return self._put_child(account_id, kind, name, properties=properties, tags=tags, principal=principal,
                                   parent=parent)

    def _put_child(self, account_id: str, kind: str, name: str, *, properties: dict[str, Any],
                   tags: dict[str, str], principal: str, parent: str) -> tuple[ChildRecord, bool]:
        with self._sessions.begin() as session:
            row = session.scalar(select(AccountChild).where(
                AccountChild.account_id == account_id, AccountChild.kind == kind,
                func.lower(AccountChild.parent) == parent.lower(),
                func.lower(AccountChild.name) == name.lower()))
            created = row is None
            if row is None:
                row = AccountChild(id=str(uuid.uuid4()), account_id=account_id, kind=kind, parent=parent,
                                   name=name, created_by=principal)
                session.add(row)
            row.properties, row.tags, row.etag, row.updated_by = properties, tags, new_etag(), principal
            session.flush()
            return _child(row), created

    def delete_child(self, account_id: str, kind: str, name: str, parent: str = "") -> bool:
        with self._sessions.begin() as session:
            if kind == "raiBlocklists":  # a list takes its items along
                session.execute(delete(AccountChild).where(
                    AccountChild.account_id == account_id, AccountChild.kind == "raiBlocklistItems",
                    func.lower(AccountChild.parent) == name.lower()))
            result = session.execute(delete(AccountChild).where(
                AccountChild.account_id == account_id, AccountChild.kind == kind,
                func.lower(AccountChild.parent) == parent.lower(),
                func.lower(AccountChild.name) == name.lower()))
            return bool(result.rowcount)

    def add_operation(self, subscription_id: str, location: str, resource_id: str, status: str) -> str:
        with self._sessions.begin() as session:
            row = Operation(id=str(uuid.uuid4()), subscription_id=subscription_id, location=location,
                            resource_id=resource_id, status=status,
                            ended_at=datetime.now(UTC) if status in ("Succeeded", "Failed", "Canceled") else None)
            session.add(row)
            return row.id

    def operation(self, operation_id: str) -> OperationRecord | None:
        with self._sessions() as session:
            row = session.get(Operation, operation_id)
            if row is None:
                return None
            return OperationRecord(id=row.id, resource_id=row.resource_id, status=row.status,
                                   created_at=_ts(row.created_at), ended_at=_ts(row.ended_at) if row.ended_at else None)

    def admin_object_id(self) -> str:
        """The built-in administrator's object id, random per install."""
        return administrator_id(self.engine)

    def active_signing_key(self) -> SigningKey | None:
        with self._sessions() as session:
            row = session.scalar(select(SigningKeyRow).where(SigningKeyRow.active.is_(True))
                                 .order_by(SigningKeyRow.created_at.desc()).limit(1))
            return _signing_key(row) if row else None

    def add_signing_key(self, kid: str, private_pem: str) -> SigningKey:
        try:
            with self._sessions.begin() as session:
                session.add(SigningKeyRow(kid=kid, private_pem=private_pem, active=True))
        except IntegrityError:
            pass
        found = self.active_signing_key()
        assert found is not None
        return found

    def signing_key(self, kid: str) -> SigningKey | None:
        """A key that may verify tokens: the active one, or one rotated out whose tokens may not have expired."""
        with self._sessions() as session:
            row = session.get(SigningKeyRow, kid)
            return _signing_key(row) if row and not _retired(row) else None

    def verifying_keys(self) -> list[SigningKey]:
        with self._sessions() as session:
            rows = session.scalars(select(SigningKeyRow).order_by(SigningKeyRow.created_at.desc()))
            return [_signing_key(row) for row in rows if not _retired(row)]

    def rotate_signing_key(self, kid: str, private_pem: str, verify_old_for_s: float) -> None:
        """Make `kid` the signing key. The keys it replaces keep verifying for `verify_old_for_s` seconds (the
        tokens they signed live on); 0 retires them at once, for a key that may have leaked."""
        now = datetime.now(UTC)
        with self._sessions.begin() as session:
            for row in session.scalars(select(SigningKeyRow).where(SigningKeyRow.active.is_(True))):
                row.active = False
                row.retires_at = now + timedelta(seconds=verify_old_for_s)
            if verify_old_for_s <= 0:
                for row in session.scalars(select(SigningKeyRow).where(SigningKeyRow.retires_at.is_not(None))):
                    if not _retired(row):
                        row.retires_at = now
            session.add(SigningKeyRow(kid=kid, private_pem=private_pem, active=True, created_at=now))

    def quota_limits(self, subscription_id: str, location: str) -> dict[str, int]:
        with self._sessions() as session:
            rows = session.scalars(select(QuotaLimit).where(
                func.lower(QuotaLimit.subscription_id) == subscription_id.lower(),
                func.lower(QuotaLimit.location) == location.lower()))
            return {r.usage_name: r.limit for r in rows}

    def set_quota_limit(self, subscription_id: str, location: str, usage_name: str, limit: int) -> None:
        with self._sessions.begin() as session:
            row = session.scalar(select(QuotaLimit).where(
                func.lower(QuotaLimit.subscription_id) == subscription_id.lower(),
                func.lower(QuotaLimit.location) == location.lower(), QuotaLimit.usage_name == usage_name))
            if row is None:
                session.add(QuotaLimit(subscription_id=subscription_id, location=location, usage_name=usage_name,
                                       limit=limit))
            else:
                row.limit = limit

    # settled usage ------------------------------------------------------------------------------------

    def add_usage(self, rows: list[UsageRow], regions: list[RegionUsageRow] | None = None) -> None:
        """Add the counts to the stored minutes, creating those not there yet, and where the requests ran, in one
        transaction (`add_usage_in`, `add_region_usage_in`)."""
        if not rows and not regions:
            return
        with self._sessions.begin() as session:
            add_usage_in(session, rows)
            add_region_usage_in(session, regions or [])

    def usage_by_region(self, account_id: str | None, since_minute: int) -> list[RegionUsageRow]:
        """Where each deployment's online requests ran from `since_minute` on, summed per account, deployment and
        region, of one account or (None) of all; `minute` is the first minute counted."""
        query = (select(UsageRegionMinute.account_id, UsageRegionMinute.deployment, UsageRegionMinute.region,
                        func.min(UsageRegionMinute.minute),
                        *(func.sum(getattr(UsageRegionMinute, name)) for name in _REGION_COUNTED))
                 .where(UsageRegionMinute.minute >= since_minute)
                 .group_by(UsageRegionMinute.account_id, UsageRegionMinute.deployment, UsageRegionMinute.region)
                 .order_by(UsageRegionMinute.account_id, UsageRegionMinute.deployment, UsageRegionMinute.region))
        if account_id is not None:
            query = query.where(UsageRegionMinute.account_id == account_id)
        with self._sessions() as session:
            return [RegionUsageRow(account_id=a, deployment=d, region=r, minute=int(m), requests=int(q or 0),
                                   prompt_tokens=int(pt or 0), completion_tokens=int(ct or 0))
                    for a, d, r, m, q, pt, ct in session.execute(query)]

    def account_names(self) -> dict[str, str]:
        """Every account's name by its id."""
        with self._sessions() as session:
            return {id_: name for id_, name in session.execute(select(Account.id, Account.name))}

    def usage(self, account_id: str | None, since_minute: int) -> list[UsageRow]:
        """The stored minutes from `since_minute` on, of one account or (None) of all, by minute and deployment."""
        with self._sessions() as session:
            query = select(UsageMinute).where(UsageMinute.minute >= since_minute)
            if account_id is not None:
                query = query.where(UsageMinute.account_id == account_id)
            rows = session.scalars(query.order_by(UsageMinute.minute, UsageMinute.deployment,
                                                  UsageMinute.account_id))
            return [UsageRow(account_id=r.account_id, deployment=r.deployment, minute=r.minute,
                             requests=r.requests, prompt_tokens=r.prompt_tokens,
                             completion_tokens=r.completion_tokens, estimated_tokens=r.estimated_tokens,
                             billed_tokens=r.billed_tokens, audio_seconds=r.audio_seconds,
                             training_seconds=r.training_seconds, trained_tokens=r.trained_tokens)
                    for r in rows]

    def usage_sums(self, account_ids: list[str], start_minute: int, end_minute: int, unit: int) -> list[UsageRow]:
        """The accounts' stored minutes from `start_minute` up to, not including, `end_minute`, summed per account,
        deployment and `unit` minutes (60: hours, 1440: UTC days); each row's `minute` is its bucket's first.

        Summed by the database, so that a year of minutes comes back as at most a row per deployment and bucket."""
        if not account_ids:
            return []
        bucket = (UsageMinute.minute - UsageMinute.minute % unit).label("bucket")
        query = (select(UsageMinute.account_id, UsageMinute.deployment, bucket,
                        *(func.sum(getattr(UsageMinute, name)) for name in _COUNTED))
                 .where(UsageMinute.account_id.in_(account_ids), UsageMinute.minute >= start_minute,
                        UsageMinute.minute < end_minute)
                 .group_by(UsageMinute.account_id, UsageMinute.deployment, bucket))
        with self._sessions() as session:
            return [UsageRow(account_id=account_id, deployment=deployment, minute=int(minute),
                             **{name: _count(name, value) for name, value in zip(_COUNTED, sums, strict=True)})
                    for account_id, deployment, minute, *sums in session.execute(query)]

    def add_filter_events(self, events: list[FilterEventRow]) -> None:
        with self._sessions.begin() as session:
            session.add_all(FilterEvent(id=str(uuid.uuid4()), at=datetime.fromtimestamp(e.at, UTC),
                                        account_id=e.account_id, deployment=e.deployment, source=e.source,
                                        category=e.category, severity=e.severity, content=e.content)
                            for e in events)

    def filter_events(self, account_id: str | None, limit: int = 100) -> list[FilterEventRow]:
        """The newest events first, of one account or (None) of all."""
        with self._sessions() as session:
            query = select(FilterEvent)
            if account_id is not None:
                query = query.where(FilterEvent.account_id == account_id)
            rows = session.scalars(query.order_by(FilterEvent.at.desc()).limit(limit)).all()
            return [FilterEventRow(at=_ts(r.at), account_id=r.account_id, deployment=r.deployment, source=r.source,
                                   category=r.category, severity=r.severity, content=r.content) for r in rows]
