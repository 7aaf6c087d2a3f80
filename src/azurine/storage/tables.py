"""The tables. Changing one means adding an Alembic migration beside the others."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Account(Base):
    """An Azure OpenAI resource (`Microsoft.CognitiveServices/accounts`)."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    subscription_id: Mapped[str] = mapped_column(String(64))
    resource_group: Mapped[str] = mapped_column(String(90))
    kind: Mapped[str] = mapped_column(String(32), default="OpenAI")
    location: Mapped[str] = mapped_column(String(64))
    sku_name: Mapped[str] = mapped_column(String(16), default="S0")
    custom_subdomain: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    key1: Mapped[str] = mapped_column(String(64))
    key2: Mapped[str] = mapped_column(String(64))
    # the writable ARM properties (publicNetworkAccess, networkAcls, encryption, disableLocalAuth, …)
    properties: Mapped[dict] = mapped_column(JSON, default=dict)
    tags: Mapped[dict] = mapped_column(JSON, default=dict)
    identity: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    etag: Mapped[str] = mapped_column(String(64), default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    updated_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    deployments: Mapped[list[Deployment]] = relationship(
        back_populates="account", cascade="all, delete-orphan"
    )


class EndpointName(Base):
    """A name an account answers to, in the lowercased form its lookup uses: the account's own name and its custom
    subdomain. Hosts and paths reach an account by either and DNS ignores case, so both share one namespace across
    all accounts; the primary key keeps each label to one account (written by `StateStore` with the account)."""

    __tablename__ = "endpoint_names"
    __table_args__ = (CheckConstraint("label = lower(label)", name="ck_endpoint_names_lowercase"),)

    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)


class Deployment(Base):
    """A model deployed under a name in an account (`accounts/deployments`)."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    model_format: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    sku_name: Mapped[str] = mapped_column(String(32))
    sku_capacity: Mapped[int] = mapped_column(Integer)
    rai_policy_name: Mapped[str] = mapped_column(String(128), default="Microsoft.DefaultV2")
    version_upgrade_option: Mapped[str] = mapped_column(String(64), default="OnceNewDefaultVersionAvailable")
    # set when the model is served elsewhere by an OpenAI-compatible server (vLLM, llama.cpp, Ollama…)
    upstream_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    upstream_model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    upstream_api_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # set by the operator only: the directory of weights an in-process engine loads (a diffusers pipeline), and that
    # engine's bounds (an image model's `steps` and `resolution`); never shown over ARM
    model_path: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    engine_options: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # writable ARM properties beyond the columns (capacitySettings, spilloverDeploymentName, …)
    properties: Mapped[dict] = mapped_column(JSON, default=dict)
    tags: Mapped[dict] = mapped_column(JSON, default=dict)
    etag: Mapped[str] = mapped_column(String(64), default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    updated_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    account: Mapped[Account] = relationship(back_populates="deployments")


class AccountChild(Base):
    """A resource under an account stored with its ARM shape: raiPolicies, raiBlocklists, their items."""

    __tablename__ = "account_children"
    # looked up in any case (ARM names are case-insensitive), so unique in any case
    __table_args__ = (UniqueConstraint("account_id", "kind", "parent", "name"),
                      Index("ux_account_children_lower_name", "account_id", "kind", text("lower(parent)"),
                            text("lower(name)"), unique=True))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    parent: Mapped[str] = mapped_column(String(128), default="")
    name: Mapped[str] = mapped_column(String(128))
    properties: Mapped[dict] = mapped_column(JSON, default=dict)
    tags: Mapped[dict] = mapped_column(JSON, default=dict)
    etag: Mapped[str] = mapped_column(String(64), default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    updated_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Operation(Base):
    """A long-running ARM operation, polled through `Azure-AsyncOperation`."""

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SigningKeyRow(Base):
    """A key of the built-in token issuer."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # a key rotated out signs nothing but verifies until every token it signed has expired
    retires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class QuotaLimit(Base):
    """A subscription's quota for one usage name (`OpenAI.<SkuName>.<model>`) in one location."""

    __tablename__ = "quota_limits"
    __table_args__ = (UniqueConstraint("subscription_id", "location", "usage_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(String(64))
    usage_name: Mapped[str] = mapped_column(String(256))
    limit: Mapped[int] = mapped_column(Integer)


class UsageMinute(Base):
    """The tokens (and seconds of audio) one deployment of one account actually used in one minute: what usage and
    billing read.

    Rate limits charge an estimate when a request arrives; this table holds the settled counts.
    """

    __tablename__ = "usage_minutes"

    account_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(Integer, primary_key=True)  # unix epoch seconds // 60
    requests: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    estimated_tokens: Mapped[int] = mapped_column(Integer, default=0)
    billed_tokens: Mapped[int] = mapped_column(Integer, default=0)  # at the deployment's price: batch is half
    # heard by transcriptions and translations, spoken by speech: Azure bills Whisper by the hour of audio
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # a fine-tuning job's (`deployment` is then the job's id): Azure bills training by its hours or its tokens
    training_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    trained_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageRegionMinute(Base):
    """Where one deployment's online requests of one minute ran (the gateway's own region, or the model server's the
    fleet routed them to: what `x-ms-region` said), and the tokens they used there."""

    __tablename__ = "usage_regions"

    account_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(64), primary_key=True)
    region: Mapped[str] = mapped_column(String(64), primary_key=True)  # an Azure region name, as `location` is
    minute: Mapped[int] = mapped_column(Integer, primary_key=True)  # unix epoch seconds // 60
    requests: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)


class DeploymentPeriod(Base):
    """A deployment's model and type from when it was written until it was deleted or changed (`ended_at` None while
    it lasts): the hours a fine-tuned deployment is billed for hosting, deleted or not."""

    __tablename__ = "deployment_periods"
    __table_args__ = (Index("ix_deployment_periods_account", "account_id", "deployment"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36))
    deployment: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    sku: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[float] = mapped_column(Float)  # unix seconds
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class FilterEvent(Base):
    """A prompt refused or an answer cut by a blocking content filter: what an operator audits.

    The content itself is kept only for accounts that opt in (tag `azurine-record-filtered-content`).
    """

    __tablename__ = "filter_events"
    __table_args__ = (Index("ix_filter_events_account_at", "account_id", "at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    account_id: Mapped[str] = mapped_column(String(36))
    deployment: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # prompt or completion
    category: Mapped[str] = mapped_column(String(64))  # hate, jailbreak, … or the blocklist's name
    severity: Mapped[str] = mapped_column(String(16))  # low/medium/high, or "detected"
    content: Mapped[str | None] = mapped_column(Text, nullable=True)


class StoredFile(Base):
    """A file of an account (`/openai/files`): what it is; its bytes are in `file_chunks`."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_account_created", "account_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # file- and 32 hexadecimal characters
    # deleting an account deletes its files with it: customer content outlives no account
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(1024))
    bytes: Mapped[int] = mapped_column(BigInteger)  # the size the customer uploaded, before sealing
    status: Mapped[str] = mapped_column(String(16))
    status_details: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FileChunk(Base):
    """One piece, at most 4 MiB, of a file's sealed content, so a big file never needs one huge row."""

    __tablename__ = "file_chunks"

    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0, 1, 2, … in the order they join
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Batch(Base):
    """A batch job: one input file of requests run on a Batch deployment within its completion window."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_status", "status"), Index("ix_batches_account_created", "account_id",
                                                                   "created_at"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36))
    deployment: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(32))
    input_file_id: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    # when each status was entered, by name (in_progress_at, finalizing_at, completed_at, …)
    times: Mapped[dict] = mapped_column(JSON, default=dict)
    output_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    errors: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    batch_metadata: Mapped[dict | None] = mapped_column("metadata", JSON, nullable=True)
    enqueued_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class BatchLine(Base):
    """One request of a batch: pending until a worker stores its result, in the same row, exactly once.

    A worker holds the lines it runs under a lease; a worker that dies leaves its leases to expire, and
    another (or itself, restarted) takes the lines again.
    """

    __tablename__ = "batch_lines"
    __table_args__ = (Index("ix_batch_lines_state", "batch_id", "state"),)

    batch_id: Mapped[str] = mapped_column(String(64), ForeignKey("batches.id", ondelete="CASCADE"),
                                          primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    custom_id: Mapped[str] = mapped_column(String(512))
    body: Mapped[bytes] = mapped_column(LargeBinary)  # sealed JSON of the request body
    estimate: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, succeeded, failed
    result: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # sealed output or error line
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the worker that stored the result


class RoleAssignmentRow(Base):
    """`Microsoft.Authorization/roleAssignments`: a role given to a principal at a scope and beneath it."""

    __tablename__ = "role_assignments"
    __table_args__ = (Index("ix_role_assignments_principal", "principal_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the assignment's name, a GUID
    scope: Mapped[str] = mapped_column(String(512))
    role_definition_id: Mapped[str] = mapped_column(String(512))
    principal_id: Mapped[str] = mapped_column(String(64))
    # the directory the principal belongs to (the built-in tenant, an Entra tenant or a trusted issuer): an object
    # id means one principal only within its directory; "" (an assignment too old to know) matches no one
    principal_tenant: Mapped[str] = mapped_column(String(512), default="")
    principal_type: Mapped[str] = mapped_column(String(32), default="User")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class InstallationValue(Base):
    """A value made once per install and kept for its life, such as the built-in administrator's object id."""

    __tablename__ = "installation"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512))


class AuditEvent(Base):
    """What was done, or refused, by whom, where and when: management changes, role changes, key reads and
    regenerations, denied requests."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    principal: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(256))
    scope: Mapped[str] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(16))  # allowed, denied
    detail: Mapped[str] = mapped_column(Text, default="")


class PrincipalRow(Base):
    """A user, service principal or workload identity of the built-in issuer."""

    __tablename__ = "principals"

    object_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # User | ServicePrincipal | ManagedIdentity
    display_name: Mapped[str] = mapped_column(String(256))
    app_id: Mapped[str | None] = mapped_column(String(36), nullable=True, unique=True)  # the client id
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PrincipalSecret(Base):
    """A client secret, kept only as its SHA-256: secrets are 256-bit random, so no slower hash is needed."""

    __tablename__ = "principal_secrets"

    key_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(36), ForeignKey("principals.object_id", ondelete="CASCADE"),
                                           index=True)
    hint: Mapped[str] = mapped_column(String(8))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CustomerKeyRow(Base):
    """One version of a key of the built-in key store; its material is wrapped by the service key."""

    __tablename__ = "customer_keys"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, 3, … in the order the versions were made
    material: Mapped[bytes] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DataKeyRow(Base):
    """An account's data key, which encrypts its stored content, kept only wrapped by the key that protects it."""

    __tablename__ = "data_keys"

    # deleting an account deletes its data key, which leaves any copy of its content unreadable
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))  # named in every blob it seals
    source: Mapped[str] = mapped_column(String(32))  # service, local, vault, azure-key-vault
    key_name: Mapped[str] = mapped_column(String(256), default="")
    key_vault_uri: Mapped[str] = mapped_column(String(1024), default="")
    key_version: Mapped[str] = mapped_column(String(256), default="")  # the version that wrapped it
    follows_latest: Mapped[bool] = mapped_column(Boolean, default=True)  # rewrapped when the key rotates
    identity_client_id: Mapped[str] = mapped_column(String(64), default="")
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class StoredResponse(Base):
    """A response of the Responses API, kept until `expires_at`; the response object itself is sealed in `body`."""

    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_expires_at", "expires_at"),
                      Index("ix_responses_previous_id", "previous_id"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # resp_…
    # deleting an account deletes its responses with it: customer content outlives no account
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # the stored response this one continues, whose conversation comes before its own items; a response is deleted
    # only once those continuing it hold what it read and said, so the key refuses a delete that would break one
    previous_id: Mapped[str | None] = mapped_column(ForeignKey("responses.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # queued, in_progress, completed, incomplete, failed, cancelled
    background: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)  # unix epoch seconds
    expires_at: Mapped[int] = mapped_column(BigInteger)
    # while a background response runs, the time by which its runner renews this; past it, the runner is gone
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)  # sealed JSON of the response object


class ResponseItem(Base):
    """One input item of a stored response's own, in order, each item sealed; the conversation before them is the
    chain of responses it continues (`StoredResponse.previous_id`)."""

    __tablename__ = "response_items"
    __table_args__ = (Index("ix_response_items_item", "response_id", "item_id"),)

    response_id: Mapped[str] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True)
    # in conversation order: 0, 1, 2, …, and below 0 for what a deleted response it continued read and said
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)  # sealed JSON of the item


class SubscriptionRow(Base):
    """A subscription (`/subscriptions/{id}`): what every resource group, account and quota belongs to. Made by
    operators (`azurine subscription create`); a principal sees those where it holds a role."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # a GUID, lowercased
    display_name: Mapped[str] = mapped_column(String(128))
    tenant_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="Enabled")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ResourceGroupRow(Base):
    """A resource group (`Microsoft.Resources/resourceGroups`): an account lives in one that exists."""

    __tablename__ = "resource_groups"
    # ARM's names are case-insensitive: one group per name in any case within a subscription
    __table_args__ = (Index("ux_resource_groups_lower_name", "subscription_id", text("lower(name)"), unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(90))
    location: Mapped[str] = mapped_column(String(64))
    tags: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MetricMinute(Base):
    """One Azure Monitor metric of one account in one minute, for one set of dimension values: how many
    observations, their sum, and their extremes (replicas add to the first two and widen the others)."""

    __tablename__ = "metric_minutes"

    account_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(Integer, primary_key=True)  # unix epoch seconds // 60
    dimensions: Mapped[str] = mapped_column(String(1024), primary_key=True)  # JSON, keys sorted
    count: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[float] = mapped_column(Float, default=0.0)
    minimum: Mapped[float] = mapped_column(Float, default=0.0)
    maximum: Mapped[float] = mapped_column(Float, default=0.0)


class FineTuningJobRow(Base):
    """A fine-tuning job (`/openai/fine_tuning/jobs`): its request, its status and, once trained, its adapter.

    A worker trains it under a lease, as batch lines are held; checkpoints and events are rows of their own."""

    __tablename__ = "fine_tuning_jobs"
    __table_args__ = (Index("ix_fine_tuning_jobs_status", "status"),
                      Index("ix_fine_tuning_jobs_account_created", "account_id", "created_at"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # ftjob- and 32 hexadecimal characters
    account_id: Mapped[str] = mapped_column(String(36))
    model: Mapped[str] = mapped_column(String(128))  # the catalog model trained on
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hyperparameters: Mapped[dict] = mapped_column(JSON, default=dict)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    estimated_finish: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    result_files: Mapped[list] = mapped_column(JSON, default=list)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # the LoRA adapter as llama.cpp reads it (GGUF), sealed under the account's data key; none once the model is
    # deleted. Deferred: listing jobs or models reads no adapter
    adapter: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class FineTuningEventRow(Base):
    """One event of a job (a message, or a step's metrics), numbered in the order it happened."""

    __tablename__ = "fine_tuning_events"

    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(16))  # message or metrics
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class FineTuningCheckpointRow(Base):
    """A job's training state at a step (one per epoch): the adapter, and for the latest the optimizer too, so
    that a worker that dies resumes there."""

    __tablename__ = "fine_tuning_checkpoints"

    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # sealed; dropped once a later one exists


class GeneratedImage(Base):
    """An image the images API made and serves by a signed link until `expires_at`; the PNG is sealed in `body`."""

    __tablename__ = "generated_images"
    __table_args__ = (Index("ix_generated_images_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # img_ and 32 hexadecimal characters
    # deleting an account deletes its images with it: customer content outlives no account
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    created_at: Mapped[int] = mapped_column(BigInteger)  # unix epoch seconds
    expires_at: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[bytes] = mapped_column(LargeBinary)
