"""`scripts/bench --scenario follow`: a move that follows its source while pgbench writes to the
source, then its end: pgbackfill's `follow: true` and `pgbackfill cutover`, side by side with
`pgcopydb clone --follow` (Debian's pgcopydb 0.10, through wal2json).

Per scale the template (pgbench -i -s N) is built once. A contender (--contenders) is a write rate
in transactions per second, `RATE` or `pgbackfill@RATE` for pgbackfill and `pgcopydb@RATE` for
pgcopydb (default "1000 5000 pgcopydb@1000 pgcopydb@5000"); --repeat rounds, the order reversed
every other round. Per run the source is a fresh copy of the template; pgbench runs UPDATES_SQL
(one UPDATE of a random pgbench_accounts row per transaction: one change of the moved table) at
the rate with -c 4 -j 1 and a per-transaction log, from 2 s before the copy until the end; the
tool (GNU time: peak RSS of its largest process, CPU of all of them) copies pgbench_accounts and
follows; after WINDOW_S seconds of following the run ends the way each tool ends:

  pgbackfill  the target database has the same empty pgbench_accounts (pg_dump --schema-only);
              `pgbackfill run PLAN --json` (2 workers), then `pgbackfill cutover` while pgbench
              writes on: the cutover blocks the source's writes, drains and installs its trigger
  pgcopydb    an empty target database; `pgcopydb clone --follow --filters` (only
              pgbench_accounts, --table-jobs 2 --index-jobs 2, schema and index made by it);
              then pgbench stops (the operator stopping the application's writes) and
              `pgcopydb stream sentinel set endpos --current` asks it to apply up to there and exit

Measured the same way for both, on the target's own record of what it committed (pgbackfill's
job store `follows.applied_lsn`; pgcopydb's replication origin `remote_lsn`), sampled every
SAMPLE_S against the source's WAL position, and pgbench's log for the changes in between:

  copy s         from the tool's start until its applied position first moves
  catch-up       changes applied per second from then until the lag is first under 1 s: the
                 apply's own speed, with the backlog of the copy's time to work through
  steady lag     lag (now minus when the source had written what the target has) over the last
                 WINDOW_S seconds before the end: median and max (target: under 5 s)
  write block    pgbackfill: the `cutover` event's write_block_ms; pgcopydb: from pgbench's stop
                 until the clone exits with everything applied (what the application waits for
                 with each tool; target: 1 s at the median)
  check          count and row hash of pgbench_accounts, source against target, after the end

pgbackfill's own events (its catch-up, lag, spool) are kept in the JSON records too.
"""

import bisect
import dataclasses
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import types

import psycopg2

from bench_harness import (drop_database, fresh_copy, make_template, read_time_file,
                           remove_time_files, section, timed)
from bench_table import Output, fmt, machine_line, write_report_json

SOURCE_DB = "follow_src"
TARGET_DB = "follow_tgt"
DEFAULT_CONTENDERS = "1000 5000 pgcopydb@1000 pgcopydb@5000"
TOOLS = ("pgbackfill", "pgcopydb")
# The bench-only Debian packages of the pgcopydb contender (0.10 follows through wal2json).
PACKAGES = ("pgcopydb", "postgresql-15-wal2json")
JOB = "follow-accounts"
# pgcopydb's names for its slot and its replication origin (its defaults, given explicitly).
PGCOPYDB_SLOT = "pgcopydb"
PGCOPYDB_ORIGIN = "pgcopydb"
# How long pgcopydb gets to start applying, and to exit once its endpos is set (its apply may
# end or stall while the clone itself goes on).
PGCOPYDB_PATIENCE_S = 60
# Seconds of following before the end (the steady window the lag is read over).
WINDOW_S = 20
# How often the sampler reads both positions.
SAMPLE_S = 0.2


def parse_contender(name):
    """(tool, rate) of `RATE`, `pgbackfill@RATE` or `pgcopydb@RATE`; None if it is neither."""
    match = re.fullmatch(rf"(?:({'|'.join(TOOLS)})@)?([1-9][0-9]*)", name)
    return (match.group(1) or "pgbackfill", int(match.group(2))) if match else None


@dataclasses.dataclass
class FollowRecord:
    rate: int
    round_no: int
    ok: bool
    tool: str = "pgbackfill"
    # Measured on the target's applied position (the module's docstring), for both tools.
    copy_s: float = 0.0
    catch_up_changes_per_s: float = 0.0
    # None: no steady window (the catch-up had not ended when the end came).
    steady_lag_median_s: float | None = None
    steady_lag_max_s: float | None = None
    steady_changes_per_s: float | None = None
    write_block_ms: int = 0
    peak_rss_kib: int = 0
    client_cpu_s: float = 0.0
    pgbench_tps: float = 0.0
    # pgbackfill's own events (0 for pgcopydb).
    events_copy_s: float = 0.0
    events_catch_up_changes_per_s: float = 0.0
    events_steady_lag_max_s: float = 0.0
    spool_max_bytes: int = 0
    note: str = ""


def count_hash(ctx, db):
    return tuple(ctx.cluster.query(
        db, "SELECT count(*), coalesce(sum(hashtext(a::text)), 0) FROM pgbench_accounts a")[0])


def drop_leftovers(ctx):
    """A slot on the source keeps DROP DATABASE from running, and a replication origin outlives
    its database: what a failed run of either tool may have left, once the sessions that may
    still hold them (a killed client's backends, a walsender) are gone."""
    ctx.cluster.query("postgres",
                      "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
                      f" WHERE datname IN ('{SOURCE_DB}', '{TARGET_DB}')"
                      " AND pid <> pg_backend_pid()")
    ctx.cluster.query("postgres",
                      "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                      f" WHERE database = '{SOURCE_DB}' AND NOT active")
    ctx.cluster.query("postgres",
                      "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin"
                      f" WHERE roname = '{PGCOPYDB_ORIGIN}'")


def prepare(ctx, tool):
    """A fresh source; the target database, with the same empty pgbench_accounts for pgbackfill
    (pgcopydb makes the table itself)."""
    drop_leftovers(ctx)
    drop_database(ctx, SOURCE_DB, if_exists=True)
    drop_database(ctx, TARGET_DB, if_exists=True)
    fresh_copy(ctx, SOURCE_DB)
    ctx.cluster.query("postgres", f"CREATE DATABASE {TARGET_DB}")
    if tool != "pgbackfill":
        return
    schema = ctx.path("follow-target.sql")
    with open(schema, "w", encoding="utf-8") as out:
        ctx.cluster.run(["pg_dump", "--schema-only", "--no-owner", "-t", "public.pgbench_accounts",
                         SOURCE_DB], stdout=out, check=True)
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


def write_filters(ctx):
    path = ctx.path("follow-filters.ini")
    with open(path, "w", encoding="utf-8") as filters:
        filters.write("[include-only-table]\npublic.pgbench_accounts\n")
    return path


# The target's applied position, as the source's WAL position in bytes (NULL until there is one).
APPLIED_SQL = {
    "pgbackfill": ("SELECT (applied_lsn - '0/0')::int8 FROM pgbackfill.follows"
                   f" WHERE job_name = '{JOB}'"),
    "pgcopydb": ("SELECT (remote_lsn - '0/0')::int8 FROM pg_replication_origin_status"
                 f" WHERE external_id = '{PGCOPYDB_ORIGIN}'"),
}


class PositionSampler:
    """Every SAMPLE_S on one session of the target database: (time, the source's WAL position,
    the target's applied position or None). Both databases are on the one cluster, so the WAL
    position is the source's. A statement that fails (the job store not made yet) counts as no
    applied position."""

    def __init__(self, ctx, tool):
        self.samples = []
        self._stop = threading.Event()
        self._conn = psycopg2.connect(host=ctx.cluster.host, port=ctx.cluster.port,
                                      user=ctx.cluster.user, dbname=TARGET_DB)
        self._conn.autocommit = True
        self._sql = APPLIED_SQL[tool]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        with self._conn.cursor() as cur:
            while not self._stop.wait(SAMPLE_S):
                cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8,"
                            " (pg_current_wal_lsn() - '0/0')::int8")
                taken, current = cur.fetchone()
                try:
                    cur.execute(self._sql)
                    row = cur.fetchone()
                    applied = row[0] if row else None
                except psycopg2.Error:
                    applied = None
                self.samples.append((taken, current, applied))

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._conn.close()


def pgbench_commits(prefix):
    """The end times of the transactions in pgbench's per-transaction logs, sorted."""
    ends = []
    for path in glob.glob(glob.escape(prefix) + ".[0-9]*"):
        with open(path, encoding="utf-8") as log:
            for line in log:
                fields = line.split()
                if len(fields) >= 6 and fields[2] != "failed":
                    ends.append(int(fields[4]) + int(fields[5]) / 1e6)
    ends.sort()
    return ends


class Timeline:
    """The samples read as: when the source had written a position, and how many of pgbench's
    transactions (one change of pgbench_accounts each) ended between two such times."""

    def __init__(self, samples, commits):
        self.samples = samples
        self._times = [s[0] for s in samples]
        self._positions = [s[1] for s in samples]
        self._commits = commits

    def written_at(self, position):
        """When the source's WAL position first reached `position` (interpolated)."""
        i = bisect.bisect_left(self._positions, position)
        if i == 0:
            return self._times[0]
        if i == len(self._positions):
            return self._times[-1]
        p0, p1 = self._positions[i - 1], self._positions[i]
        t0, t1 = self._times[i - 1], self._times[i]
        return t0 + (t1 - t0) * (position - p0) / max(p1 - p0, 1)

    def lag(self, sample):
        taken, current, applied = sample
        return 0.0 if applied >= current else max(0.0, taken - self.written_at(applied))

    def changes(self, since, until):
        return (bisect.bisect_right(self._commits, until)
                - bisect.bisect_right(self._commits, since))


def measure(record, timeline, started, ended):
    """copy s, catch-up, steady lag and changes/s from the target's applied position."""
    applied = [s for s in timeline.samples if s[2] is not None]
    if not applied:
        record.note = record.note or "never applied"
        return
    first = applied[0][2]
    moved = next((i for i, s in enumerate(applied) if s[2] > first), None)
    if moved is None:
        record.note = record.note or "the applied position never moved"
        return
    # From the first sample that moved: the value before it may be a placeholder (an origin's
    # first remote_lsn is 0/0), which would count the copy's changes as applied.
    begun = applied[moved]
    record.copy_s = begun[0] - started
    caught = next((s for s in applied[moved:] if timeline.lag(s) < 1.0), applied[-1])
    span = caught[0] - begun[0]
    if span > 0:
        record.catch_up_changes_per_s = timeline.changes(
            timeline.written_at(begun[2]), timeline.written_at(caught[2])) / span
    # Up to a second before the end: pgbench's log may lose its last lines when it is stopped.
    steady = [s for s in applied if ended - WINDOW_S <= s[0] <= ended - 1 and s[0] > caught[0]]
    if steady:
        lags = [timeline.lag(s) for s in steady]
        record.steady_lag_median_s = statistics.median(lags)
        record.steady_lag_max_s = max(lags)
        span = steady[-1][0] - steady[0][0]
        if span > 0:
            record.steady_changes_per_s = timeline.changes(
                timeline.written_at(steady[0][2]), timeline.written_at(steady[-1][2])) / span


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


def wait_until(condition, timeout_s, process):
    """Polls `condition` until it holds (True), `process` has exited or the time is up (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def wait_for(log, kind, timeout_s, process):
    """Until the log has an event of `kind`."""
    return wait_until(lambda: any(e.get("event") == kind for e in events_of(log)), timeout_s,
                      process)


def wait_applying(sampler, timeout_s, process):
    """Until the applied position first moves (the copy is over, the apply has begun)."""
    def moved():
        applied = [s[2] for s in list(sampler.samples) if s[2] is not None]
        return bool(applied) and applied[-1] > applied[0]
    return wait_until(moved, timeout_s, process)


def summarize_events(record, log, duration):
    """pgbackfill's own view, from its events."""
    events = list(events_of(log))
    started = next((stamp(e) for e in events if e.get("event") == "job_started"), None)
    follow = next((stamp(e) for e in events
                   if e.get("event") == "phase_started" and e.get("phase") == "follow"), None)
    if started is not None and follow is not None:
        record.events_copy_s = follow - started
    following = [e for e in events if e.get("event") == "following"]
    if following:
        first = following[0]
        caught = next((e for e in following[1:] if e["lag_seconds"] < 1.0), following[-1])
        span = stamp(caught) - stamp(first)
        if span > 0:
            record.events_catch_up_changes_per_s = (caught["changes"] - first["changes"]) / span
        end = stamp(following[-1])
        steady = [e for e in following if stamp(e) >= end - duration and stamp(e) > stamp(caught)]
        if steady:
            record.events_steady_lag_max_s = max(e["lag_seconds"] for e in steady)
        record.spool_max_bytes = max(e["spool_bytes"] for e in following)
    cutover = next((e for e in events if e.get("event") == "cutover"), None)
    if cutover:
        record.write_block_ms = cutover["write_block_ms"]


def run_pgbackfill(ctx, name, record, sampler, writes):
    """`pgbackfill run`, WINDOW_S of following, `pgbackfill cutover` while pgbench writes on.
    Returns (exit status, when the end began)."""
    plan = write_plan(ctx)
    log = ctx.path(f"{name}.log")
    with open(log, "w", encoding="utf-8") as out, \
            open(log + ".stderr", "w", encoding="utf-8") as err:
        run = ctx.cluster.popen(timed(ctx.path(f"{name}.time.0"),
                                      [ctx.pgbackfill, "run", plan, "--json"]),
                                stdout=out, stderr=err)
        ended = time.time()
        if not wait_for(log, "following", 900, run):
            record.note = "never followed"
        else:
            time.sleep(WINDOW_S)
            ended = time.time()
            ctx.cluster.run([ctx.pgbackfill, "cutover", JOB, "--dsn", ctx.cluster.dsn(TARGET_DB)],
                            stdout=subprocess.DEVNULL, check=False)
        status = run.wait(timeout=900)
    writes.terminate()
    writes.wait()
    if status == 0:
        summarize_events(record, log, WINDOW_S)
    return status, ended


def run_pgcopydb(ctx, name, record, sampler, writes):
    """`pgcopydb clone --follow`, WINDOW_S of applying, then pgbench stopped and the sentinel's
    endpos set to the source's position: the clone applies up to there and exits. Returns
    (exit status, when the end began)."""
    log = ctx.path(f"{name}.log")
    work_dir = ctx.path(f"{name}.pgcopydb")
    subprocess.run(["rm", "-rf", work_dir], check=True)
    source, target = ctx.cluster.dsn(SOURCE_DB), ctx.cluster.dsn(TARGET_DB)
    argv = ["pgcopydb", "clone", "--follow", "--source", source, "--target", target,
            "--dir", work_dir, "--filters", write_filters(ctx), "--table-jobs", "2",
            "--index-jobs", "2", "--no-owner", "--no-acl", "--skip-extensions",
            "--slot-name", PGCOPYDB_SLOT, "--origin", PGCOPYDB_ORIGIN]
    with open(log, "w", encoding="utf-8") as out:
        run = ctx.cluster.popen(timed(ctx.path(f"{name}.time.0"), argv),
                                stdout=out, stderr=subprocess.STDOUT)
        ended = time.time()
        if not wait_applying(sampler, PGCOPYDB_PATIENCE_S, run):
            record.note = f"applied nothing in {PGCOPYDB_PATIENCE_S} s: " + first_error(log)
            writes.terminate()
        else:
            time.sleep(WINDOW_S)
            ended = time.time()
            writes.terminate()
        writes.wait()
        stopped = time.time()
        ctx.cluster.run(["pgcopydb", "stream", "sentinel", "set", "endpos", "--current",
                         "--source", source], stdout=out, stderr=subprocess.STDOUT, check=False)
        try:
            status = run.wait(timeout=PGCOPYDB_PATIENCE_S)
        except subprocess.TimeoutExpired:
            # pgcopydb's processes, not GNU time's above them (it reports when its child ends).
            subprocess.run(["pkill", "-KILL", "-f", f"^pgcopydb .*{work_dir}"], check=False)
            status = run.wait()
            error = first_error(log)
            record.note = record.note or (f"did not reach endpos in {PGCOPYDB_PATIENCE_S} s"
                                          + (f": {error}" if error else ""))
        record.write_block_ms = round((time.time() - stopped) * 1000)
        ctx.cluster.run(["pgcopydb", "stream", "cleanup", "--source", source, "--target", target,
                         "--dir", work_dir], stdout=out, stderr=subprocess.STDOUT, check=False)
    return status, ended


# The source's writes: only the moved table. (pgbench's simple-update also inserts into
# pgbench_history, which pgcopydb 0.10 applies despite --filters, and fails on the target.)
UPDATES_SQL = """\\set aid random(1, 100000 * :scale)
\\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
"""


def first_error(log):
    """The first ERROR line of a pgcopydb log, for the note."""
    with open(log, encoding="utf-8", errors="replace") as text:
        line = next((line for line in text if " ERROR " in line), "")
    return line.split(" ERROR ", 1)[-1].strip()[:160]


def follow_run(ctx, tool, rate, round_no, scale):
    section(f"{tool} follow at {rate} tps (round {round_no}/{ctx.cfg.repeat})")
    prepare(ctx, tool)
    name = f"follow-{tool}-{rate}"
    remove_time_files(ctx, name)
    prefix = ctx.path(f"{name}.pgbench")
    for path in glob.glob(glob.escape(prefix) + ".[0-9]*"):
        os.remove(path)
    record = FollowRecord(rate, round_no, False, tool)
    sampler = PositionSampler(ctx, tool)
    # Long enough for the copy, the catch-up and the window; stopped at the end.
    script = ctx.path("follow-updates.sql")
    with open(script, "w", encoding="utf-8") as out:
        out.write(UPDATES_SQL)
    writes = ctx.cluster.popen(
        ["pgbench", "-n", "-f", script, "-s", str(scale), "-R", str(rate), "-c", "4", "-j", "1",
         "-T", str(900), "--log", f"--log-prefix={prefix}", SOURCE_DB],
        stdout=open(ctx.path(f"{name}.pgbench.out"), "w", encoding="utf-8"),
        stderr=subprocess.STDOUT)
    time.sleep(2)
    started = time.time()
    status, ended = (run_pgbackfill if tool == "pgbackfill" else run_pgcopydb)(
        ctx, name, record, sampler, writes)
    sampler.stop()
    commits = pgbench_commits(prefix)
    if commits and commits[-1] > commits[0]:
        record.pgbench_tps = len(commits) / (commits[-1] - commits[0])
    # Measured whatever the end: how far a run that failed got is part of the result.
    if sampler.samples:
        measure(record, Timeline(sampler.samples, commits), started, ended)
    try:
        _, user, system, rss = read_time_file(ctx.path(f"{name}.time.0"))
        record.peak_rss_kib, record.client_cpu_s = rss, round(user + system, 2)
    except (OSError, IndexError, ValueError):
        record.note = record.note or "no GNU time report"
    if status == 0:
        same = count_hash(ctx, SOURCE_DB) == count_hash(ctx, TARGET_DB)
        record.ok = same and not record.note
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
    for tool, rate in sorted({(r.tool, r.rate) for r in records}, key=lambda k: (k[1], k[0])):
        group = [r for r in records if r.tool == tool and r.rate == rate]
        good = [r for r in group if r.ok]

        def med(field, spec, group=good):
            values = [getattr(r, field) for r in group if getattr(r, field) is not None]
            if not values:
                return "-"
            return (f"{format(statistics.median(values), spec)} "
                    f"({format(min(values), spec)}-{format(max(values), spec)})")
        rows.append((tool, rate, med("copy_s", ".1f"), med("catch_up_changes_per_s", ",.0f"),
                     med("steady_changes_per_s", ",.0f"), med("steady_lag_median_s", ".2f"),
                     med("steady_lag_max_s", ".2f"), med("write_block_ms", ".0f"),
                     fmt(max((r.write_block_ms for r in good), default=None), "d"),
                     med("peak_rss_kib", ",.0f"), med("client_cpu_s", ".1f"),
                     f"{len(good)}/{len(group)} ok"
                     + "".join(f"; {r.note}" for r in group if r.note)))
    out.table(("tool", "tps", "copy s", "catch-up changes/s", "steady changes/s",
               "steady lag s (median)", "steady lag s (max)", "write block ms",
               "write block max ms", "peak RSS KiB", "client CPU s", "check"),
              rows, left=(0, 11), title="follow")
    if ctx.cfg.json_out:
        args = types.SimpleNamespace(build=ctx.build_info, pg_version=ctx.pg_version)
        write_report_json(ctx.cfg.json_out, "follow", args, out, {
            "scale": scale, "runs": [dataclasses.asdict(r) for r in records]})
    return 0 if all(r.ok for r in records) else 1


def run(ctx):
    status = 0
    contenders = [parse_contender(c) for c in ctx.cfg.contenders]
    for scale in ctx.cfg.scales:
        make_template(ctx, scale, with_column_c=False)
        records = []
        for round_no in range(1, ctx.cfg.repeat + 1):
            for tool, rate in (contenders if round_no % 2 else contenders[::-1]):
                records.append(follow_run(ctx, tool, rate, round_no, scale))
        drop_leftovers(ctx)
        drop_database(ctx, SOURCE_DB, if_exists=True)
        drop_database(ctx, TARGET_DB, if_exists=True)
        status = max(status, report(ctx, scale, records))
    if status:
        print("bench: a run failed or left a target that differs (see above)", file=sys.stderr)
    return status
