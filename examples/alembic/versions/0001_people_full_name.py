"""people.full_name, filled online by pgbackfill

An expand-contract migration in one revision:
  expand    Alembic adds the nullable column (committed at once, see below);
  backfill  `pgbackfill run` installs the dual-write trigger, fills every row in small batches
            over key ranges and verifies the result;
  contract  `pgbackfill contract` makes the column NOT NULL without a long ACCESS EXCLUSIVE scan
            and drops the trigger.

The contract drops the trigger that fills full_name for rows the application writes, and the
column is NOT NULL afterwards: only deploy this revision once the application writes full_name
itself. Otherwise split it: this revision without the contract, and a later one that runs
`pgbackfill contract` after the application is deployed.

Revision ID: 0001
Revises:
Create Date: 2024-01-01 00:00:00
"""

import os

import sqlalchemy as sa
from alembic import op

from pgbackfill_step import job_state, plan_job_name, run_pgbackfill

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Absolute, so that the migration works from any working directory.
PLAN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plans",
                    "full_name.yaml")
JOB = plan_job_name(PLAN)  # the job id in pgbackfill's job store: the plan's `name:`


def _has_full_name() -> bool:
    columns = sa.inspect(op.get_bind()).get_columns("people", schema="public")
    return any(column["name"] == "full_name" for column in columns)


def _refuse_offline() -> None:
    if op.get_context().as_sql:
        raise RuntimeError(
            "revision 0001 runs pgbackfill and cannot be rendered as a SQL script "
            "(alembic upgrade --sql); run it online, or run the steps by hand: add the column, "
            f"then `pgbackfill run {PLAN}` and `pgbackfill contract {PLAN}`")


def upgrade() -> None:
    _refuse_offline()
    # Alembic runs a migration inside one transaction. pgbackfill is another session: it would not
    # see a column added in our uncommitted transaction (its preflight would refuse the plan), and
    # ADD COLUMN holds an ACCESS EXCLUSIVE lock on people until our transaction ends, so its
    # trigger installation and every batch would wait on us while we wait on it, a deadlock the
    # server cannot see, and the application would be locked out of people for the whole
    # backfill. autocommit_block() commits Alembic's transaction and runs the block in
    # autocommit mode: the ADD COLUMN commits (and releases its lock) at once, and nothing of
    # ours is open while pgbackfill runs. pgbackfill commits batch by batch itself.
    with op.get_context().autocommit_block():
        # An interrupted backfill (exit 3: Ctrl-C, deploy, lost connection) fails the migration,
        # so Alembic does not record it, but the column is committed. Running `alembic upgrade`
        # again must skip the ADD COLUMN and let pgbackfill resume where committed work ended.
        if not _has_full_name():
            # ADD COLUMN without a default only touches the catalog, but its ACCESS EXCLUSIVE lock
            # queues behind any long transaction on people, and every application query queues
            # behind it. Give up after a few seconds instead (run the migration again).
            op.execute("SET lock_timeout = '5s'")
            op.add_column("people", sa.Column("full_name", sa.Text(), nullable=True))
            op.execute("RESET lock_timeout")

        url = op.get_bind().engine.url
        # expand (the dual-write trigger), backfill, verify. Raises unless pgbackfill exits 0.
        # A job that `alembic downgrade` rolled back is refused by `run` (exit 2) unless told to
        # start over: upgrading again after a downgrade is exactly that, so pass --restart then.
        # Never otherwise: an interrupted job must resume, not start again.
        run_args = ["run", PLAN]
        if job_state(JOB, url=url) == "rolled_back":
            run_args.append("--restart")
        run_pgbackfill(run_args, url=url)
        # not_null: [full_name] and the trigger dropped.
        run_pgbackfill(["contract", PLAN], url=url)


def downgrade() -> None:
    _refuse_offline()
    # pgbackfill first, in autocommit mode like upgrade: its rollback drops the dual-write trigger
    # and function (and a NOT NULL check constraint a half-done contract left), which needs locks
    # on people that our transaction must not hold. It must come before the column goes:
    # PL/pgSQL bodies are not tracked as dependencies, so DROP COLUMN would leave a trigger that
    # fails every INSERT and UPDATE on people ("record new has no field full_name").
    with op.get_context().autocommit_block():
        run_pgbackfill(["rollback", PLAN], url=op.get_bind().engine.url)
    # Then the column. One owner for the schema: Alembic added it, Alembic drops it; the plan has
    # no `expand:`/`rollback:` DDL, so pgbackfill removes only what it created itself. The schema
    # change stays readable in this file (and visible to autogenerate), and the plan stays a pure
    # data step. IF EXISTS-style check: a column dropped by hand must not fail the downgrade.
    if _has_full_name():
        op.execute("SET LOCAL lock_timeout = '5s'")
        op.drop_column("people", "full_name")
