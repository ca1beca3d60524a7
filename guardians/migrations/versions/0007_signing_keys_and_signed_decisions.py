"""signing keys and signed decisions

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("public_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("revoked_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_key"),
    )
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signing_keys_person"), ["person"], unique=False)

    # Decisions and sign-offs made before this revision are unsigned: the new columns stay NULL.
    for table in ("decisions", "signoffs"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("signing_key_id", sa.Integer(), nullable=True))
            batch_op.add_column(sa.Column("signed_statement", sa.Text(), nullable=True))
            batch_op.add_column(sa.Column("signature", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
            batch_op.create_foreign_key(f"fk_{table}_signing_key_id", "signing_keys", ["signing_key_id"], ["id"])


def downgrade() -> None:
    for table in ("signoffs", "decisions"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_signing_key_id", type_="foreignkey")
            batch_op.drop_column("signature")
            batch_op.drop_column("signed_statement")
            batch_op.drop_column("signing_key_id")

    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_keys_person"))
    op.drop_table("signing_keys")
