"""Seed tables 6-26 and the decode tables, with their decode values.

Revision ID: 0001
"""
from alembic import op
from sqlalchemy import insert

from lec.registry import schema as t

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    t.metadata.create_all(bind)
    for table in t.DECODE_TABLES:
        if table.name == "t_frequence":
            rows = [{"code": c, "description": d, "seconds": s, "cron": cron} for c, d, s, cron in t.FREQUENCIES]
        else:
            rows = [{"code": c, "description": d} for c, d in t.DECODE_VALUES.get(table.name, [])]
        if rows:
            bind.execute(insert(table), rows)
    bind.execute(insert(t.roles), [{"code": c, "description": d} for c, d in t.ROLES])


def downgrade() -> None:
    t.metadata.drop_all(op.get_bind())
