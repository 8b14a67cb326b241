"""`scripts/bench --scenario move`: pgbackfill's data mover (copy mode between two databases,
`source_dsn` / `target_dsn`) against `pgcopydb copy table-data` and a single `psql | psql` COPY
pipe, moving pgbench_accounts from the template database (the source, `pgbench -i -s N`) into a
second database of the same cluster.

Per scale: the template is built once and is the source; its row count, row hash
(sum(hashtext(a::text))), pg_table_size and schema (`pg_dump --schema-only -t pgbench_accounts`)
are taken once. Per run: the target database is dropped and created again from that schema
(empty table, same columns and primary key; pgbackfill's job store, schema pgbackfill, goes with
the database), CHECKPOINT, the source is read once (a sequential scan, so every run starts with
the same cache), then the contender runs under GNU time, then the target's count and row hash
must equal the source's (a mismatch is printed at once and fails the run in the report).

Contenders (--contenders names; pgcopydb and pgbackfill once per --workers count J):

  pgcopydb-J   pgcopydb copy table-data --table-jobs J --filters (include-only-table
               public.pgbench_accounts) --split-tables-larger-than ceil(1.01 x table / J) bytes
               (so the one table is copied in J parts by J processes), a fresh --dir per run;
               default consistency (one exported snapshot on the source)
  psql-pipe    psql -c "\\copy (select * from pgbench_accounts) to stdout" | psql -c
               "\\copy pgbench_accounts from stdin": one text COPY stream
  pgbackfill-J pgbackfill run PLAN --json, the plan in copy mode with source_dsn/target_dsn,
               workers: J, verify: false

The rounds alternate the order: round 1 runs the contenders as listed, round 2 in reverse, ...
"""

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile

import move_report
from bench_harness import (BenchError, drop_database, keep_log, make_template, remove_time_files,
                           report_failure, run_record, sample_after, sample_before, section,
                           table_sizes, table_stats, timed)

SOURCE_DB = "tpl"
TARGET_DB = "move_tgt"
# The bench-only Debian package of this scenario. Not in common.sh's list: the build and the
# tests do not need it.
PACKAGES = ("pgcopydb",)


@dataclasses.dataclass(frozen=True)
class Source:
    """The source table of one scale, measured once."""
    rows: int
    row_hash: int
    table_bytes: int
    indexes_bytes: int
    schema_file: str
    filters_file: str


@dataclasses.dataclass(frozen=True)
class MoveRun:
    """One run: `name` is kind-J (psql-pipe has no J: jobs 0)."""
    name: str
    kind: str
    jobs: int


def count_hash(ctx, db):
    return tuple(ctx.cluster.query(
        db, "SELECT count(*), coalesce(sum(hashtext(a::text)), 0) FROM pgbench_accounts a")[0])


def prepare_source(ctx):
    """After make_template: the source's rows, hash, size and the target's schema."""
    rows, row_hash = count_hash(ctx, SOURCE_DB)
    table_bytes = ctx.cluster.value(SOURCE_DB, "SELECT pg_table_size('public.pgbench_accounts')")
    indexes_bytes = ctx.cluster.value(SOURCE_DB,
                                      "SELECT pg_indexes_size('public.pgbench_accounts')")
    schema_file, filters_file = ctx.path("move-target.sql"), ctx.path("move-filters.ini")
    with open(schema_file, "w", encoding="utf-8") as schema:
        ctx.cluster.run(["pg_dump", "--schema-only", "--no-owner", "-t", "public.pgbench_accounts",
                         SOURCE_DB], stdout=schema, check=True)
    with open(filters_file, "w", encoding="utf-8") as filters:
        filters.write("[include-only-table]\npublic.pgbench_accounts\n")
    print(f"source: {rows} rows, pg_table_size {table_bytes // 1048576} MiB, row hash {row_hash}",
          flush=True)
    return Source(rows, row_hash, table_bytes, indexes_bytes, schema_file, filters_file)


def recreate_target(ctx, source):
    """Drops the target database (and with it pgbackfill's job store) and creates it again with
    the source's definition of pgbench_accounts, empty."""
    drop_database(ctx, TARGET_DB, if_exists=True)
    ctx.cluster.query("postgres", f"CREATE DATABASE {TARGET_DB}")
    ctx.cluster.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", TARGET_DB,
                     "-f", source.schema_file], stdout=subprocess.DEVNULL, check=True)
    if ctx.cluster.value(TARGET_DB, "SELECT count(*) FROM pgbench_accounts") != 0:
        raise BenchError(f"the new target database {TARGET_DB} is not empty")


def write_plan(ctx, jobs):
    path = ctx.path(f"move-plan-{jobs}.yaml")
    with open(path, "w", encoding="utf-8") as plan:
        plan.write(f"""version: 1
name: move-accounts
source_dsn: {ctx.cluster.dsn(SOURCE_DB)}
target_dsn: {ctx.cluster.dsn(TARGET_DB)}
# Unqualified (public.pgbench_accounts on the source through the search_path): parsers of
# plans up to commit c666947 refuse an into naming the same table as table even between two
# databases, and this spelling runs on those builds too.
table: pgbench_accounts
into: public.pgbench_accounts
workers: {jobs}
# The harness compares count and row hash of source and target itself after each run.
verify: false
batch: {{ rows: 50000, target: 1s, max_rows: 500000 }}
throttle: {{ max_replica_lag: 0 }}
""")
    return path


def split_bytes(source, jobs):
    """pgcopydb splits a table larger than the threshold into ceil(size / threshold) parts: a
    threshold just above size / J gives J parts (1% margin for the size pgcopydb measures)."""
    return (source.table_bytes * 101 // 100 + jobs - 1) // jobs


def _psql(db, command):
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", command]


def run_pgcopydb(ctx, run, source, log, split, work_dir):
    argv = ["pgcopydb", "copy", "table-data", "--source", ctx.cluster.dsn(SOURCE_DB),
            "--target", ctx.cluster.dsn(TARGET_DB), "--table-jobs", str(run.jobs),
            "--filters", source.filters_file, "--dir", work_dir]
    if split is not None:
        argv += ["--split-tables-larger-than", str(split)]
    with open(log, "w", encoding="utf-8") as out:
        return ctx.cluster.run(timed(ctx.path(f"{run.name}.time.0"), argv),
                               stdout=out, stderr=subprocess.STDOUT).returncode


def run_psql_pipe(ctx, run, log):
    """Both psql under GNU time; the run fails with either's non-zero status (the reader's
    stderr goes after the writer's output in the log)."""
    with open(log + ".out", "w", encoding="utf-8") as reader_err, \
            open(log, "w", encoding="utf-8") as out:
        reader = ctx.cluster.popen(
            timed(ctx.path(f"{run.name}.time.0"),
                  _psql(SOURCE_DB, "\\copy (select * from pgbench_accounts) to stdout")),
            stdout=subprocess.PIPE, stderr=reader_err)
        writer = ctx.cluster.popen(
            timed(ctx.path(f"{run.name}.time.1"),
                  _psql(TARGET_DB, "\\copy pgbench_accounts from stdin")),
            stdin=reader.stdout, stdout=out, stderr=subprocess.STDOUT)
        reader.stdout.close()  # the writer holds the pipe now; the reader sees it close with it
        statuses = [reader.wait(), writer.wait()]
    with open(log + ".out", encoding="utf-8", errors="replace") as reader_err, \
            open(log, "a", encoding="utf-8") as out:
        out.write(reader_err.read())
    os.remove(log + ".out")
    return next((s for s in reversed(statuses) if s != 0), 0)


def run_pgbackfill(ctx, run, log, plan):
    with open(log, "w", encoding="utf-8") as out, \
            open(log + ".stderr", "w", encoding="utf-8") as err:
        return ctx.cluster.run(timed(ctx.path(f"{run.name}.time.0"),
                                     [ctx.pgbackfill, "run", plan, "--json"]),
                               stdout=out, stderr=err).returncode


def copy_parts(log, jobs):
    """How many ways pgcopydb split the table: "Table ... is 128 MB large, 2 COPY processes will
    be used"; no such line: not split."""
    parts = 1
    with open(log, encoding="utf-8", errors="replace") as text:
        for line in text:
            if found := re.search(r" ([0-9]+) COPY processes will be used", line):
                parts = int(found.group(1))
    if parts != jobs:
        print(f"bench: note: pgcopydb split the table {parts} ways, not {jobs}", file=sys.stderr)
    return parts


def move_run(ctx, run, source, scale, round_no, position):
    """One run on a fresh target; appends its record."""
    section(f"{run.name} (scale {scale}, round {round_no}/{ctx.cfg.repeat})")
    recreate_target(ctx, source)
    ctx.cluster.query("postgres", "CHECKPOINT")
    # Every run starts with the source read once (operating system cache alike for all).
    ctx.cluster.query(SOURCE_DB, "SELECT count(*) FROM pgbench_accounts")
    log = ctx.path(f"{run.name}.log")
    remove_time_files(ctx, run.name)
    split = split_bytes(source, run.jobs) if run.kind == "pgcopydb" and run.jobs > 1 else None
    # Files the clients need are made outside the measured window.
    plan = write_plan(ctx, run.jobs) if run.kind == "pgbackfill" else None
    work_dir = (tempfile.mkdtemp(prefix="pgcopydb.", dir=ctx.work) if run.kind == "pgcopydb"
                else None)
    mark = sample_before(ctx)
    if run.kind == "pgcopydb":
        status = run_pgcopydb(ctx, run, source, log, split, work_dir)
    elif run.kind == "psql-pipe":
        status = run_psql_pipe(ctx, run, log)
    else:
        status = run_pgbackfill(ctx, run, log, plan)
    measurement = sample_after(ctx, mark)
    if work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)

    rows, row_hash = count_hash(ctx, TARGET_DB)
    sizes = table_sizes(ctx, TARGET_DB, "after")
    # VACUUM / ANALYZE the client ran on the target (pgcopydb runs VACUUM ANALYZE after its COPY).
    vacuums, analyzes = table_stats(ctx, TARGET_DB, "vacuum_count", "analyze_count")
    parts = copy_parts(log, run.jobs) if run.kind == "pgcopydb" else None
    report_failure(run.name, status, [log, log + ".stderr"])
    if (rows, row_hash) != (source.rows, source.row_hash):
        print(f"bench: MISMATCH after {run.name}: target has {rows} rows, row hash {row_hash}; "
              f"source {source.rows} rows, row hash {source.row_hash}", file=sys.stderr)
    kept = keep_log(ctx, run.name, log, scale, round_no)
    record = run_record(ctx, TARGET_DB, name=run.name, kind=run.kind, arg=run.jobs,
                        round_no=round_no, status=status, wrong_rows=rows - source.rows,
                        measurement=measurement, log=kept)
    record.update({"scale": scale, "rows": source.rows, "target_rows": rows,
                   "source_hash": source.row_hash, "target_hash": row_hash,
                   "source_table_bytes": source.table_bytes,
                   "source_indexes_bytes": source.indexes_bytes, "position": position,
                   "split_bytes": split, "copy_parts": parts, "vacuum_count": vacuums,
                   "analyze_count": analyzes, **sizes})
    ctx.results.append(record)


def runs_of(ctx):
    out = []
    for name in ctx.cfg.contenders:
        if name == "psql-pipe":
            out.append(MoveRun("psql-pipe", "psql-pipe", 0))
        else:
            out += [MoveRun(f"{name}-{w}", name, w) for w in ctx.cfg.workers]
    return out


def tool_versions(ctx):
    """The first line of `pgcopydb --version` ("" without pgcopydb) and of `psql --version`."""
    def first_line(argv):
        try:
            out = ctx.cluster.run(argv, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL).stdout
        except OSError:
            return ""
        return out.strip().split("\n")[0]
    return {"kind": "move_setup", "pgcopydb": first_line(["pgcopydb", "--version"]),
            "psql": first_line(["psql", "--version"])}


def run(ctx):
    """Every scale: the template (the source), then --repeat rounds of all contenders in
    alternating order; the source's count and hash are checked again at the end of each scale."""
    runs = runs_of(ctx)
    ctx.results.append(tool_versions(ctx), echo=False)
    for scale in ctx.cfg.scales:
        make_template(ctx, scale, with_column_c=False)
        source = prepare_source(ctx)
        for round_no in range(1, ctx.cfg.repeat + 1):
            ordered = runs if round_no % 2 else runs[::-1]
            for position, each in enumerate(ordered, start=1):
                move_run(ctx, each, source, scale, round_no, position)
        drop_database(ctx, TARGET_DB, if_exists=True)
        rows, row_hash = count_hash(ctx, SOURCE_DB)
        if (rows, row_hash) != (source.rows, source.row_hash):
            print(f"bench: MISMATCH: the source changed during scale {scale}: {rows} rows, "
                  f"row hash {row_hash}", file=sys.stderr)
            ctx.results.append({"kind": "move_source_changed", "scale": scale}, echo=False)
    return move_report.main([*ctx.report_args(), ctx.results.path])
