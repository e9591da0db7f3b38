from alembic import context

from lec.registry.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if connection.dialect.name == "postgresql":  # one migrator at a time (SQLite: a lock file, migrate.py)
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7460001)")
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
