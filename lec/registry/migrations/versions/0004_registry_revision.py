"""registry_revision: a counter bumped by every registry change, carried by snapshots (monotonic order).

Revision ID: 0004
"""
from alembic import op

from lec.registry import schema as t

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    t.registry_revision.create(op.get_bind(), checkfirst=True)  # 0001 made it on a database created after this


def downgrade() -> None:
    t.registry_revision.drop(op.get_bind(), checkfirst=True)
