"""Alembic environment of the pgbackfill example: online migrations against PostgreSQL."""

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# $DATABASE_URL wins over sqlalchemy.url in alembic.ini. ConfigParser interpolates %, so a
# percent-encoded URL must be escaped before it goes back into the config.
if os.environ.get("DATABASE_URL"):
    config.set_main_option("sqlalchemy.url", os.environ["DATABASE_URL"].replace("%", "%%"))

target_metadata = None


def run_migrations_offline() -> None:
    # `alembic upgrade --sql` writes a script instead of connecting. Migrations that call
    # pgbackfill refuse it: a backfill cannot be a line of SQL in a script (see 0001's upgrade).
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # One transaction per migration file, not one for the whole upgrade: a migration that
            # calls pgbackfill commits inside (autocommit_block), and Alembic recommends this
            # setting for such migrations so that each revision is recorded as soon as it is done.
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
