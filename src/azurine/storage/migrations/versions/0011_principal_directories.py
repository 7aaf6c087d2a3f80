"""principal directories: each role assignment names its principal's directory; a random administrator id

An object id names one principal only within the directory (tenant or issuer) that made it, so an assignment now
says which directory its principal belongs to. Existing assignments are bound as their principals could have
been signed in: a principal of the built-in directory to it; any other to the one trusted issuer when
`AZURINE_TRUSTED_ISSUERS` names exactly one, to the built-in directory when it names none (only the built-in
issuer's tokens could have used them), and otherwise to no directory (they then grant nothing until given again
with `principalTenantId`). The built-in administrator gets a random id in place of the fixed one every install
shared.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import logging
import os
import re
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BUILT_IN_TENANT = "00000000-0000-0000-0000-00000000a2e0"
ENTRA = re.compile(r"^https://(sts\.windows\.net/(?P<v1>[^/]+)/?|login\.microsoftonline\.com/(?P<v2>[^/]+)/v2\.0/?)$")


def _directory(issuer: str) -> str:
    """As `azurine.identity.issuers` names an issuer's directory today: an Entra tenant by its id, any other
    issuer by its URL."""
    entra = ENTRA.match(issuer)
    if entra:
        return (entra["v1"] or entra["v2"]).lower()
    return issuer.rstrip("/")


def upgrade() -> None:
    op.create_table(
        "installation",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(512), nullable=False),
    )
    op.execute(sa.text("INSERT INTO installation (name, value) VALUES ('admin_object_id', :value)")
               .bindparams(value=str(uuid.uuid4())))
    with op.batch_alter_table("role_assignments") as batch:
        batch.add_column(sa.Column("principal_tenant", sa.String(512), nullable=False, server_default=""))
    op.execute(sa.text("UPDATE role_assignments SET principal_tenant = :tenant WHERE principal_id IN "
                       "(SELECT object_id FROM principals)").bindparams(tenant=BUILT_IN_TENANT))
    trusted = [i.strip() for i in os.environ.get("AZURINE_TRUSTED_ISSUERS", "").split(",") if i.strip()]
    others = {_directory(issuer) for issuer in trusted}
    if len(others) <= 1:
        op.execute(sa.text("UPDATE role_assignments SET principal_tenant = :tenant WHERE principal_tenant = ''")
                   .bindparams(tenant=others.pop() if others else BUILT_IN_TENANT))
    else:
        unbound = op.get_bind().scalar(sa.text("SELECT count(*) FROM role_assignments WHERE principal_tenant = ''"))
        if unbound:
            logging.getLogger("azurine").warning(
                "%d role assignments name principals of no known directory and grant nothing until given again "
                "with principalTenantId: several trusted issuers could have signed them in", unbound)


def downgrade() -> None:
    with op.batch_alter_table("role_assignments") as batch:
        batch.drop_column("principal_tenant")
    op.drop_table("installation")
