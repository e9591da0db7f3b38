"""Settlement: dated device perimeters (primary substation, market zone, region), plants, statute rules.

Revision ID: 0002
"""
from alembic import op

from lec.registry import schema as t

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in t.SETTLEMENT_TABLES:  # 0001 already made them on a database created after this change
        table.create(bind, checkfirst=True)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(t.SETTLEMENT_TABLES):
        table.drop(bind, checkfirst=True)
