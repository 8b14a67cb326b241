"""`scripts/bench --scenario follow`: a move that follows its source (`follow: true`) while
pgbench writes to the source, then `pgbackfill cutover`.

Per scale the template (pgbench -i -s N) is built once. Per run (--contenders are write rates in
transactions per second, default "1000 5000"; --repeat rounds): the source is a fresh copy of
the template, the target a database with the same, empty, pgbench_accounts; pgbench runs the
built-in simple-update script (one UPDATE of pgbench_accounts, one SELECT, one INSERT into
pgbench_history per transaction: one change of the moved table each) at the rate with -c 4 -j 1,
from before the copy until after the cutover; `pgbackfill run PLAN --json` (GNU time: peak RSS)
copies pgbench_accounts, follows, and after --duration seconds of following `pgbackfill cutover`
ends it (--duration is app-impact's; the window here is WINDOW_S). Measured from the run's events:

  copy s         the backfill phase (the writes of that time wait in the slot)
  catch-up       changes applied per second from the first `following` event until the lag
                 first drops under 1 s: the apply's own speed, with a backlog to work through
  steady lag     the `following` events of the last --duration seconds before the cutover:
                 lag seconds median and max (target: under 5 s), changes/s
  write block    the `cutover` event's write_block_ms (target: 1 s at the median)
  spool          the largest spool on disk
  check          count and row hash of pgbench_accounts, source against target, after cutover

pgcopydb clone --follow is not run here (see bench/README.md).
"""

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
import types

from bench_harness import (drop_database, fresh_copy, make_template, read_time_file,
                           remove_time_files, section, timed)
from bench_table import Output, fmt, machine_line, write_report_json

SOURCE_DB = "follow_src"
TARGET_DB = "follow_tgt"
DEFAULT_CONTENDERS = "1000 5000"
JOB = "follow-accounts"
# Seconds of following before the cutover (the steady window the lag is read over).
WINDOW_S = 20


@dataclasses.dataclass
class FollowRecord:
    rate: int
    round_no: int
    ok: bool
    copy_s: float = 0.0
    catch_up_changes_per_s: float = 0.0
    steady_lag_median_s: float = 0.0
    steady_lag_max_s: float = 0.0
    steady_changes_per_s: float = 0.0
    write_block_ms: int = 0
    spool_max_bytes: int = 0
    peak_rss_kib: int = 0
    pgbench_tps: float = 0.0
    note: str = ""


def count_hash(ctx, db):
    return tuple(ctx.cluster.query(
        db, "SELECT count(*), coalesce(sum(hashtext(a::text)), 0) FROM pgbench_accounts a")[0])


def prepare(ctx):
    drop_database(ctx, SOURCE_DB, if_exists=True)
    drop_database(ctx, TARGET_DB, if_exists=True)
    fresh_copy(ctx, SOURCE_DB)
    schema = ctx.path("follow-target.sql")
    with open(schema, "w", encoding="utf-8") as out:
        ctx.cluster.run(["pg_dump", "--schema-only", "--no-owner", "-t", "public.pgbench_accounts",
                         SOURCE_DB], stdout=out, check=True)
    ctx.cluster.query("postgres", f"CREATE DATABASE {TARGET_DB}")
    ctx.cluster.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", TARGET_DB, "-f", schema],
                    stdout=subprocess.DEVNULL, check=True)


def write_plan(ctx):
    path = ctx.path("follow-plan.yaml")
    with open(path, "w", encoding="utf-8") as plan:
        plan.write(f"""version: 1
name: {JOB}
source_dsn: {ctx.cluster.dsn(SOURCE_DB)}
target_dsn: {ctx.cluster.dsn(TARGET_DB)}
table: pgbench_accounts
into: public.pgbench_accounts
follow: true
workers: 2
verify: false
batch: {{ rows: 50000, target: 1s, max_rows: 500000 }}
throttle: {{ max_replica_lag: 0, application: off }}
""")
    return path


def events_of(log):
    with open(log, encoding="utf-8", errors="replace") as text:
        for line in text:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def stamp(event):
    return time.mktime(time.strptime(event["time"][:19], "%Y-%m-%dT%H:%M:%S")) + \
        float("0" + event["time"][19:23])


def wait_for(log, kind, timeout_s, process):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(e.get("event") == kind for e in events_of(log)):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def summarize(record, log, duration):
    events = list(events_of(log))
    started = next((stamp(e) for e in events if e.get("event") == "job_started"), None)
    follow = next((stamp(e) for e in events
                   if e.get("event") == "phase_started" and e.get("phase") == "follow"), None)
    if started is not None and follow is not None:
        record.copy_s = follow - started
    following = [e for e in events if e.get("event") == "following"]
    if following:
        first = following[0]
        caught = next((e for e in following[1:] if e["lag_seconds"] < 1.0), following[-1])
        span = stamp(caught) - stamp(first)
        if span > 0:
            record.catch_up_changes_per_s = (caught["changes"] - first["changes"]) / span
        end = stamp(following[-1])
        steady = [e for e in following if stamp(e) >= end - duration and stamp(e) > stamp(caught)]
        if steady:
            lags = [e["lag_seconds"] for e in steady]
            record.steady_lag_median_s = statistics.median(lags)
            record.steady_lag_max_s = max(lags)
            span = stamp(steady[-1]) - stamp(steady[0])
            if span > 0:
                record.steady_changes_per_s = (steady[-1]["changes"] - steady[0]["changes"]) / span
        record.spool_max_bytes = max(e["spool_bytes"] for e in following)
    cutover = next((e for e in events if e.get("event") == "cutover"), None)
    if cutover:
        record.write_block_ms = cutover["write_block_ms"]


def follow_run(ctx, rate, round_no):
    section(f"follow at {rate} tps (round {round_no}/{ctx.cfg.repeat})")
    prepare(ctx)
    plan = write_plan(ctx)
    duration = WINDOW_S
    name = f"follow-{rate}"
    log = ctx.path(f"{name}.log")
    remove_time_files(ctx, name)
    record = FollowRecord(rate, round_no, False)
    # Long enough for the copy, the catch-up and the window; stopped after the cutover.
    writes = ctx.cluster.popen(
        ["pgbench", "-n", "-b", "simple-update", "-R", str(rate), "-c", "4", "-j", "1",
         "-T", str(600), SOURCE_DB],
        stdout=open(ctx.path(f"{name}.pgbench"), "w", encoding="utf-8"),
        stderr=subprocess.STDOUT)
    time.sleep(2)
    with open(log, "w", encoding="utf-8") as out, \
            open(log + ".stderr", "w", encoding="utf-8") as err:
        run = ctx.cluster.popen(timed(ctx.path(f"{name}.time.0"),
                                      [ctx.pgbackfill, "run", plan, "--json"]),
                                stdout=out, stderr=err)
        if not wait_for(log, "following", 900, run):
            record.note = "never followed"
        else:
            time.sleep(duration)
            ctx.cluster.run([ctx.pgbackfill, "cutover", JOB, "--dsn", ctx.cluster.dsn(TARGET_DB)],
                            stdout=subprocess.DEVNULL, check=False)
        status = run.wait(timeout=900)
    writes.terminate()
    writes.wait()
    if status == 0:
        summarize(record, log, duration)
        record.peak_rss_kib = read_time_file(ctx.path(f"{name}.time.0"))[3]
        same = count_hash(ctx, SOURCE_DB) == count_hash(ctx, TARGET_DB)
        record.ok = same
        if not same:
            record.note = "target differs from source"
    else:
        record.note = record.note or f"run exited {status}"
    print(f"{name}: {dataclasses.asdict(record)}", flush=True)
    return record


def report(ctx, scale, records):
    out = Output()
    out.line()
    out.line(f"== results: follow, pgbench_accounts scale {scale}, {ctx.cfg.repeat} round(s), "
             f"{machine_line(ctx.pg_version)}")
    out.line(f"pgbackfill: {ctx.build_info}")
    rows = []
    for rate in sorted({r.rate for r in records}):
        group = [r for r in records if r.rate == rate]
        good = [r for r in group if r.ok]

        def med(field, spec, group=good):
            values = [getattr(r, field) for r in group]
            if not values:
                return "-"
            return (f"{format(statistics.median(values), spec)} "
                    f"({format(min(values), spec)}-{format(max(values), spec)})")
        rows.append((rate, med("copy_s", ".1f"), med("catch_up_changes_per_s", ",.0f"),
                     med("steady_changes_per_s", ",.0f"), med("steady_lag_median_s", ".2f"),
                     med("steady_lag_max_s", ".2f"), med("write_block_ms", ".0f"),
                     fmt(max((r.write_block_ms for r in good), default=None), "d"),
                     med("spool_max_bytes", ",.0f"), med("peak_rss_kib", ",.0f"),
                     f"{len(good)}/{len(group)} ok"
                     + "".join(f"; {r.note}" for r in group if r.note)))
    out.table(("tps", "copy s", "catch-up changes/s", "steady changes/s", "steady lag s (median)",
               "steady lag s (max)", "write block ms", "write block max ms", "spool bytes max",
               "peak RSS KiB", "check"), rows, left=(10,), title="follow")
    if ctx.cfg.json_out:
        args = types.SimpleNamespace(build=ctx.build_info, pg_version=ctx.pg_version)
        write_report_json(ctx.cfg.json_out, "follow", args, out, {
            "scale": scale, "runs": [dataclasses.asdict(r) for r in records]})
    return 0 if all(r.ok for r in records) else 1


def run(ctx):
    status = 0
    rates = [int(c) for c in ctx.cfg.contenders]
    for scale in ctx.cfg.scales:
        make_template(ctx, scale, with_column_c=False)
        records = []
        for round_no in range(1, ctx.cfg.repeat + 1):
            for rate in (rates if round_no % 2 else rates[::-1]):
                records.append(follow_run(ctx, rate, round_no))
        drop_database(ctx, SOURCE_DB, if_exists=True)
        drop_database(ctx, TARGET_DB, if_exists=True)
        status = max(status, report(ctx, scale, records))
    if status:
        print("bench: a run failed or left a target that differs (see above)", file=sys.stderr)
    return status
