"""item_deciders: who may decide each work item, one indexed row each, so an inbox is an index range

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from dew.guardians.identity import person_key

    op.create_table(
        "item_deciders",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("person", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["work_items.id"]),
        sa.PrimaryKeyConstraint("item_id", "person", "rule"),
    )
    op.create_index("ix_item_deciders_person_status_item", "item_deciders", ["person", "status", "item_id"])
    op.create_index("ix_work_items_status_id", "work_items", ["status", "id"])
    # Every existing item's deciders, from its own fields, a batch at a time (memory stays flat).
    items = sa.table(
        "work_items",
        sa.column("id", sa.Integer()),
        sa.column("guardian", sa.String()),
        sa.column("backups", sa.JSON()),
        sa.column("escalated_to", sa.JSON()),
        sa.column("status", sa.String()),
    )
    deciders = sa.table(
        "item_deciders", sa.column("item_id"), sa.column("person"), sa.column("rule"), sa.column("status")
    )
    conn = op.get_bind()
    after = 0
    while True:
        batch = conn.execute(sa.select(items).where(items.c.id > after).order_by(items.c.id).limit(5000)).all()
        if not batch:
            break
        rows = []
        for item_id, guardian, backups, escalated_to, status in batch:
            people = {(person_key(guardian), "owner")}
            people |= {(person_key(b), "backup") for b in backups or []}
            people |= {(person_key(e), "escalation") for e in escalated_to or []}
            rows += [{"item_id": item_id, "person": p, "rule": r, "status": status} for p, r in sorted(people)]
        conn.execute(sa.insert(deciders), rows)
        after = batch[-1][0]


def downgrade() -> None:
    op.drop_index("ix_work_items_status_id", table_name="work_items")
    op.drop_index("ix_item_deciders_person_status_item", table_name="item_deciders")
    op.drop_table("item_deciders")
