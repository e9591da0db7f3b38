"""devices.rated_power_w and flows.max_lateness_s (streams bound energy and lateness with them).

Revision ID: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# 0001 creates tables from the current schema.py (create_all), so a fresh registry already has the columns:
# add them only where an older registry lacks them.
COLUMNS = (("devices", sa.Column("rated_power_w", sa.Float(), nullable=True)),
           ("flows", sa.Column("max_lateness_s", sa.Integer(), nullable=True)))


def upgrade() -> None:
    insp = sa.inspect(op.get_bind())
    for table, column in COLUMNS:
        if column.name not in {c["name"] for c in insp.get_columns(table)}:
            with op.batch_alter_table(table) as batch:
                batch.add_column(column)


def downgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column.name)
