"""`scripts/bench --scenario keys`: the same rows under different primary keys, filled by
pgbackfill, to show what the key's shape costs. Per scale (scale x 100,000 rows; default 40: 4M
rows) four template databases hold table `accounts (..., v int, filler text, c
bigint)` with the same v and filler in every row, keyed:

  dense      id bigint: 1..N
  skewed     id bigint: 1..N-2 and two ids near 4e18 and 8e18, so that an arithmetic split of the
             key space puts every dense id in the first range
  composite  (k text, u uuid): k one of 1,000 tenant names, u md5 of the row number, the rows
             stored in key order (as the dense ids are)
  shuffled   the same composite key, the rows stored in generation order: a tenant's rows lie
             all over the table, as a uuid key's do

Runs (--contenders; each on a fresh copy of its template, CHECKPOINTed, the table read once):

  bigint-1     dense, one worker, 1,000-row batches (rows, min_rows and max_rows 1000)
  composite-1  composite, the same: the price of a composite key (target >= 0.6x bigint-1)
  shuffled-1   shuffled, the same: what a key uncorrelated with the table's order adds (each
               batch's rows on as many pages as it has rows)
  dense-2      dense, two workers, the throughput scenario's batch settings
  skewed-2     skewed, the same: ranges that split themselves keep both workers busy
               (target >= 0.9x dense-2)

Every plan fills `c = v * 100` with `verify: false` and `throttle: { application: off }` (the key
is measured, not the throttle); the harness counts the rows whose c is not v * 100 after each run.
Rounds alternate the order. Reported: medians (min-max) of rows/s, the ratios, the ranges the job
ended with (more than planned: ranges split at run time) and the share of progress events with
fewer workers than configured.
"""

import dataclasses
import statistics
import sys
import types

from bench_harness import (drop_database, keep_log, remove_time_files, report_failure,
                           run_record, sample_after, sample_before, section, timed)
from bench_table import Output, fmt, json_events, machine_line, ratio, write_report_json

RUN_DB = "keys_run"
SHAPES = ("dense", "skewed", "composite", "shuffled")
DEFAULT_SCALE = 40
# (shape, workers, fixed 1,000-row batches) of each contender.
CONTENDERS = {
    "bigint-1": ("dense", 1, True),
    "composite-1": ("composite", 1, True),
    "shuffled-1": ("shuffled", 1, True),
    "dense-2": ("dense", 2, False),
    "skewed-2": ("skewed", 2, False),
}
DEFAULT_CONTENDERS = " ".join(CONTENDERS)
# Contender over reference, the target for the ratio of their median rows/s.
TARGETS = (("composite-1", "bigint-1", 0.6), ("skewed-2", "dense-2", 0.9))
# Reported beside them, no target: the shuffled heap against the same key in key order.
COMPARED = (("shuffled-1", "composite-1"),)

ROWS_SQL = """INSERT INTO accounts ({key}, v, filler)
SELECT {values}, i % 100000, repeat('x', 84)
  FROM generate_series(1, {rows}) AS i{order}"""
KEY_DDL = {
    "dense": ("id bigint PRIMARY KEY", "id", "i"),
    "skewed": ("id bigint PRIMARY KEY", "id",
               "CASE WHEN i = {rows} - 1 THEN 4000000000000000000 "
               "WHEN i = {rows} THEN 8000000000000000000 ELSE i END"),
    "composite": ("k text, u uuid, PRIMARY KEY (k, u)", "k, u",
                  "'tenant-' || lpad((i % 1000)::text, 4, '0'), md5(i::text)::uuid"),
}
KEY_DDL["shuffled"] = KEY_DDL["composite"]
# Rows stored in key order: the composite table as the dense one is (ids in insertion order).
ORDER = {"composite": " ORDER BY 1, 2"}


@dataclasses.dataclass(frozen=True)
class KeyRun:
    name: str
    shape: str
    workers: int
    fixed_batches: bool


def template_db(shape):
    return f"keys_{shape}"


def make_templates(ctx, rows):
    for shape in SHAPES:
        db = template_db(shape)
        section(f"template {db}: {rows:,} rows, {shape} key")
        ctx.cluster.query("postgres", "SET client_min_messages = warning",
                          f"DROP DATABASE IF EXISTS {db}")
        ctx.cluster.query("postgres", f"CREATE DATABASE {db}")
        key_ddl, key_cols, values = KEY_DDL[shape]
        ctx.cluster.query(db, f"CREATE TABLE accounts ({key_ddl}, v int NOT NULL, filler text, "
                              "c bigint)")
        ctx.cluster.query(db, ROWS_SQL.format(key=key_cols, values=values.format(rows=rows),
                                              rows=rows, order=ORDER.get(shape, "")))
        ctx.cluster.query(db, "VACUUM ANALYZE accounts")
    ctx.cluster.query("postgres", "CHECKPOINT")


def write_plan(ctx, run):
    path = ctx.path(f"keys-{run.name}.yaml")
    batch = ("{ rows: 1000, min_rows: 1000, max_rows: 1000 }" if run.fixed_batches
             else "{ rows: 10000, target: 200ms, min_rows: 1000, max_rows: 100000 }")
    with open(path, "w", encoding="utf-8") as plan:
        plan.write(f"""version: 1
name: keys-{run.name}
dsn: {ctx.cluster.dsn(RUN_DB)}
table: public.accounts
set:
  c: v * 100
batch: {batch}
workers: {run.workers}
throttle: {{ application: off, max_replica_lag: 0 }}
verify: false
""")
    return path


def ranges_at_end(ctx, name):
    """The job's ranges in the job store after the run (planned ones and those split at run
    time); None when the run failed before it made the store."""
    if ctx.cluster.value(RUN_DB, "SELECT to_regclass('pgbackfill.ranges') IS NULL"):
        return None
    return ctx.cluster.value(RUN_DB, "SELECT count(*) FROM pgbackfill.ranges "
                                     f"WHERE job_name = 'keys-{name}'")


def engine_summary(log, workers):
    """From the run's JSON events: the ranges planned, and the share of progress events that
    show fewer live workers than configured (the tail a single range keeps on one worker)."""
    planned, progress, short = None, 0, 0
    for event in json_events(log):
        kind = event.get("event")
        if kind == "job_started" and planned is None:
            planned = event.get("ranges_total")
        elif kind == "progress" and not event.get("throttle"):
            progress += 1
            short += event.get("workers", 0) < workers
    return planned, (short / progress if progress else None)


def key_run(ctx, run, rows, scale, round_no):
    section(f"{run.name} (round {round_no}/{ctx.cfg.repeat})")
    drop_database(ctx, RUN_DB, if_exists=True)
    ctx.cluster.query("postgres",
                      f"CREATE DATABASE {RUN_DB} TEMPLATE {template_db(run.shape)} "
                      "STRATEGY FILE_COPY")
    ctx.cluster.query("postgres", "CHECKPOINT")
    ctx.cluster.query(RUN_DB, "SELECT count(*) FROM accounts")
    plan = write_plan(ctx, run)
    log = ctx.path(f"{run.name}.log")
    remove_time_files(ctx, run.name)
    mark = sample_before(ctx)
    with open(log, "w", encoding="utf-8") as out, \
            open(log + ".stderr", "w", encoding="utf-8") as err:
        status = ctx.cluster.run(timed(ctx.path(f"{run.name}.time.0"),
                                       [ctx.pgbackfill, "run", plan, "--json"]),
                                 stdout=out, stderr=err).returncode
    measurement = sample_after(ctx, mark)
    report_failure(run.name, status, [log, log + ".stderr"])
    wrong = ctx.cluster.value(RUN_DB, "SELECT count(*) FROM accounts "
                                      "WHERE c IS DISTINCT FROM v::bigint * 100")
    ranges_after = ranges_at_end(ctx, run.name)
    planned, short_share = engine_summary(log, run.workers)
    kept = keep_log(ctx, run.name, log, scale, round_no)
    record = run_record(ctx, RUN_DB, name=run.name, kind="keys", arg=run.workers,
                        round_no=round_no, status=status, wrong_rows=wrong,
                        measurement=measurement, log=kept)
    record.update({"scale": scale, "rows": rows, "shape": run.shape,
                   "fixed_batches": run.fixed_batches, "ranges_planned": planned,
                   "ranges_after": ranges_after, "short_of_workers_share": short_share})
    ctx.results.append(record)
    return record


def summarize(records):
    """Per contender: median rows/s with min and max, ranges, worker shortfall, ok."""
    out = {}
    for rec in records:
        entry = out.setdefault(rec["name"], {"rates": [], "records": []})
        entry["rates"].append(rec["rows"] / (rec["wall_ns"] / 1e9))
        entry["records"].append(rec)
    for name, entry in out.items():
        recs = entry["records"]
        entry["median"] = statistics.median(entry["rates"])
        entry["min"], entry["max"] = min(entry["rates"]), max(entry["rates"])
        entry["ok"] = all(r["exit_status"] == 0 and r["wrong_rows"] == 0 for r in recs)
        entry["ranges_planned"] = recs[-1]["ranges_planned"]
        entry["ranges_after"] = [r["ranges_after"] for r in recs]
        shares = [r["short_of_workers_share"] for r in recs
                  if r["short_of_workers_share"] is not None]
        entry["short_share"] = statistics.median(shares) if shares else None
        entry["name"] = name
    return out


def report(ctx, scale, rows, records):
    summary = summarize(records)
    out = Output()
    out.line()
    out.line(f"== results: keys, {rows:,} rows (scale {scale}), {ctx.cfg.repeat} round(s), "
             f"{machine_line(ctx.pg_version)}")
    out.line(f"pgbackfill: {ctx.build_info}")
    out.line(f"raw measurements: {ctx.results.path}")
    table = []
    for name, entry in summary.items():
        table.append((name, CONTENDERS[name][0], CONTENDERS[name][1],
                      f"{entry['median']:,.0f}",
                      f"{entry['min']:,.0f}-{entry['max']:,.0f}",
                      fmt(entry["ranges_planned"], "d"),
                      " ".join(str(r) for r in entry["ranges_after"]),
                      fmt(entry["short_share"] * 100 if entry["short_share"] is not None
                          else None, ".0f"),
                      "ok" if entry["ok"] else "FAIL"))
    out.table(("run", "key", "workers", "rows/s (median)", "min-max", "ranges planned",
               "ranges at end", "% progress short of workers", "check"), table,
              left=(0, 1, 8), title="keys")
    lines = []
    for contender, reference, target in TARGETS:
        if contender in summary and reference in summary:
            value = summary[contender]["median"] / summary[reference]["median"]
            verdict = "met" if value >= target else f"missed by {(1 - value / target):.0%}"
            lines.append(f"{contender} / {reference}: {ratio(value)} (target >= {target}x: "
                         f"{verdict})")
    for contender, reference in COMPARED:
        if contender in summary and reference in summary:
            lines.append(f"{contender} / {reference}: "
                         f"{ratio(summary[contender]['median'] / summary[reference]['median'])}")
    out.line()
    for line in lines:
        out.line(line)
    if ctx.cfg.json_out:
        args = types.SimpleNamespace(build=ctx.build_info, pg_version=ctx.pg_version)
        write_report_json(ctx.cfg.json_out, "keys", args, out, {
            "scale": scale, "rows": rows,
            "contenders": [{k: v for k, v in e.items() if k != "records"}
                           for e in summary.values()],
            "ratio_lines": lines, "runs": records})
    return 0 if all(e["ok"] for e in summary.values()) else 1


def run(ctx):
    """Per scale: the three templates, then --repeat rounds of the contenders in alternating
    order, then the report."""
    runs = [KeyRun(name, *CONTENDERS[name]) for name in ctx.cfg.contenders]
    status = 0
    for scale in ctx.cfg.scales:
        rows = scale * 100000
        make_templates(ctx, rows)
        records = []
        for round_no in range(1, ctx.cfg.repeat + 1):
            for each in (runs if round_no % 2 else runs[::-1]):
                records.append(key_run(ctx, each, rows, scale, round_no))
        drop_database(ctx, RUN_DB, if_exists=True)
        status = max(status, report(ctx, scale, rows, records))
        for shape in SHAPES:
            drop_database(ctx, template_db(shape), if_exists=True)
    if status:
        print("bench: a run failed or left wrong rows (see above)", file=sys.stderr)
    return status
