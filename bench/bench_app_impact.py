"""`scripts/bench --scenario app-impact`: what a backfill costs an application that keeps serving,
and whether the throttle keeps that cost inside the targets (app_impact_report.py reports them).

Runs, in this order (each on a fresh copy of tpl, CHECKPOINTed, cache warmed, standby caught up):

  unthrottled  the backfill alone, no application, no hold signal: the reference rows/s
  max-tps      pgbench unthrottled for --max-tps-seconds: the application's max TPS (skipped
               when --rate is given)
  baseline     pgbench at the fixed rate for --duration seconds, no backfill
  no-throttle  the same pgbench run; the backfill starts --lead-in seconds in, no hold signal
  canary       the same, with throttle.max_canary_latency (--canary-latency, by default derived
               from the baseline p99)
  replica-lag  the same, with throttle.max_replica_lag (--replica-lag)

With --shapes/--rate-percents/--sweep/--budget-throttle (the shape/rate matrix, run_matrix)
the runs are instead, for each shape (pgbench --builtin) in turn:

  max-tps                     that shape's pgbench unthrottled: its max TPS
  and for each rate percent of it (a group, e.g. select-only@30%):
  SHAPE-P-baseline            pgbench at P% of that max alone: the group's baseline p99
  SHAPE-P-sweep-R             the same pgbench, the backfill held to max_rows_per_second R (one
                              worker, no other hold signal), for each --sweep step R: the oracle
  SHAPE-P-throttle-default    the same, the plan without throttle keys
  SHAPE-P-throttle-budget     the same, throttle: { --budget-throttle } verbatim
  SHAPE-P-throttle-p99        the same, throttle: { command: app_p99_ratio.py ... }: the
                              application's own client-side p99 over the last 3 s as a share of
                              the group's budget is the engine's signal (beside its defaults;
                              not with --no-p99-run)

pgbench then runs with -j 1 (one thread) pinned to one CPU with taskset, and the server,
pgbackfill and the lag sampler to another (--pin), so that neither the benchmark's own clients
nor the server's backends take the CPU pgbench measures its latency on.

A run kind is one function (run_backfill_alone, run_app_alone, run_app_with_backfill) around
measured_run, which prepares the database, samples the server around the kind's processes,
checks the rows and records an AppRun. A backfill that is still running when pgbench ends is
stopped with SIGTERM (it finishes the batches in flight and exits 3, resumable): the measurement
window is the backfill's, clipped to pgbench's run. The standby's lag is sampled every 200 ms from
the backfill's start until the standby has replayed everything written up to the backfill's end.
"""

import dataclasses
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time

import app_impact_report
from bench_harness import (BenchError, cpu_pressure_between, cpu_stall, drop_database,
                           fresh_copy, make_template, print_tail, read_time_file, rows_of,
                           sample_after, sample_before, section, server_ticks, timed)

RUN_ORDER = ("unthrottled", "baseline", "no-throttle", "canary", "replica-lag")
# The matrix's runs of the throttle under test, in this order after each group's sweep.
THROTTLED_ROLES = ("throttle-default", "throttle-budget", "throttle-p99")
# The throttle-p99 run's throttle.command runs this script under Debian's interpreter (the one
# scripts/bench uses; the first python3 on PATH may be another).
PYTHON = "/usr/bin/python3"
P99_SCRIPT = "app_p99_ratio.py"
STANDBY_WAIT_SECONDS = 120
# pgbackfill's exit status after SIGTERM: the batches in flight committed, resumable.
EXIT_INTERRUPTED = 3

# Samples the standby's lag every 200 ms, one line per sample: epoch seconds, replay_lag in
# seconds (NULL, i.e. nothing to replay, as 0), WAL bytes not yet replayed. One psql session
# (\watch), so the sampling itself costs no connection per sample. No line while the standby is
# disconnected.
LAG_SQL = """SELECT extract(epoch FROM clock_timestamp()),
       coalesce(extract(epoch FROM replay_lag), 0), pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)
  FROM pg_stat_replication WHERE application_name = 'standby' \\watch 0.2
"""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the runs share that the scenario derives on the way: the fixed rate (from max-tps)
    and the canary limit (from the baseline)."""
    rate: int | None
    canary_ms: int | None
    script: str | None = None    # pgbench's --builtin of the matrix's shape; None: --builtin


@dataclasses.dataclass
class MaxTps:
    """The record of the max-tps run."""
    name: str = "max-tps"
    kind: str = "max-tps"
    exit_status: int = 0
    tps: float = 0.0
    dir: str = ""
    shape: str = ""              # the matrix's shape (pgbench --builtin); "" outside the matrix


@dataclasses.dataclass
class AppRun:
    """The record of one run, in the fields app_impact_report.py reads (times in ns since the
    epoch, 0 when the run has no such moment; statuses None when the process did not run)."""
    name: str
    kind: str = "app"
    with_app: int = 0
    with_backfill: int = 0
    dir: str = ""
    throttle: str = ""
    pgbench_status: int | None = None
    pgbackfill_status: int | None = None
    stopped: int = 0
    t0_ns: int = 0
    pgbench_end_ns: int = 0
    backfill_start_ns: int = 0
    backfill_end_ns: int = 0
    standby_caught_up_ns: int = 0
    filled_rows: int | None = None
    wrong_rows: int | None = None
    touched_rows: int | None = None
    wall_ns: int = 0
    server_ticks: int = 0
    standby_ticks: int = 0
    client_ticks: int = 0
    machine_ticks: int = 0
    wal_bytes: int = 0
    checkpoints: int = 0
    # The shape/rate matrix ("" / None outside it): the group (SHAPE@P%), its shape, rate
    # percent and fixed rate, the run's role (baseline, sweep, throttle-default,
    # throttle-budget, throttle-p99), the sweep's max_rows_per_second, the plan's throttle keys
    # as written (None: no throttle: section), workers, and the CPUs the clients were pinned to.
    group: str = ""
    shape: str = ""
    rate_percent: str = ""
    rate: int | None = None
    role: str = ""
    cap: int | None = None
    plan_throttle: str | None = None
    workers: int | None = None
    pin: list | None = None
    # Each client's own CPU (GNU time), pgbench's wall time.
    pgbench_ticks: int = 0
    pgbackfill_ticks: int = 0
    pgbench_wall_s: float | None = None
    # The machine's CPU pressure (/proc/pressure/cpu "some", a share) from the end of the lead-in
    # to pgbench's end: the application's window. None without PSI or without the application.
    cpu_pressure: float | None = None


# ---- the pieces of a run ----

def wait_standby(ctx, limit):
    """Waits (up to `limit` seconds) until the standby has replayed all WAL the primary had
    written when called; False, with a warning, when it has not."""
    cluster = ctx.cluster
    deadline = time.monotonic() + limit
    target = cluster.value("postgres", "SELECT pg_current_wal_lsn()")
    while not cluster.value("postgres", f"SELECT coalesce(bool_and(replay_lsn >= '{target}'), "
                                        "false) FROM pg_stat_replication "
                                        "WHERE application_name = 'standby'"):
        if time.monotonic() >= deadline:
            print(f"bench: the standby has not replayed up to {target} after {limit}s",
                  file=sys.stderr)
            return False
        time.sleep(0.2)
    return True


def fresh_db(ctx, db):
    """A fresh copy of tpl, checkpointed, its cache warmed alike for every run: a sequential
    scan of the tables (operating system cache; a large table's seq scan reads through a small
    ring buffer) and an index-only scan of pgbench_accounts_pkey (shared_buffers, where every
    pgbench transaction and every batch walks it). Then the standby catches up, so every run
    starts with no lag."""
    fresh_copy(ctx, db)
    ctx.cluster.query(db, "SELECT count(*) FROM pgbench_accounts",
                      "SELECT count(*) FROM pgbench_tellers",
                      "SELECT count(*) FROM pgbench_branches",
                      "SET enable_seqscan = off", "SET enable_bitmapscan = off",
                      "SELECT count(*) FROM pgbench_accounts WHERE aid > 0")
    if not wait_standby(ctx, STANDBY_WAIT_SECONDS):
        raise BenchError(f"the standby did not catch up before the run on {db}")


def throttle_keys(app, name, canary_ms):
    """The throttle keys of one run (a YAML flow mapping's entries): the run's own signal, every
    other hold signal off, so that each run measures one signal. max_replica_lag defaults to 5s,
    which would hold every run on the standby; lock waiters are always checked (0 = any waiter
    holds), so the largest limit turns their hold off (any waiter still counts as pressure: fewer
    workers, smaller batches; the engine has no switch for that). --throttle-extra adds keys to
    the canary and replica-lag runs and replaces a default of the same name."""
    own = {"canary": f"max_canary_latency: {canary_ms}ms",
           "replica-lag": f"max_replica_lag: {app.replica_lag}"}.get(name, "")
    extra = app.throttle_extra if own else ""
    keys = [own] if own else []
    for default in ("max_replica_lag: 0", "max_lock_waiters: 2147483647"):
        if default.split(":")[0] + ":" not in f"{own}, {extra}":
            keys.append(default)
    if extra:
        keys.append(extra)
    return ", ".join(keys)


def write_plan(ctx, name, path, throttle):
    """The plan of one run: the throughput scenario's batch settings (batch.target from
    --batch-target), the first --workers count, and the run's throttle keys."""
    app = ctx.cfg.app
    with open(path, "w", encoding="utf-8") as plan:
        plan.write(f"""version: 1
name: app-{name}
table: public.pgbench_accounts
set:
  c: abalance * 100
batch: {{ rows: 10000, target: {app.batch_target}, min_rows: 1000, max_rows: 100000 }}
workers: {app.workers}
throttle: {{ {throttle}, interval: {app.interval} }}
# The harness checks the rows itself; verify would also fail on rows pgbench changed after the
# backfill passed them, and its time is not backfill time.
verify: false
""")


def pinned(ctx, who, argv):
    """argv under `taskset -c CPU` in the matrix with --pin: pgbench ("app") on one CPU, the
    backfill and the lag sampler ("backfill") on another. taskset execs the command, so GNU time
    still measures the client itself."""
    pin = ctx.cfg.app.pin if ctx.cfg.app.matrix else None
    if pin is None:
        return argv
    return ["taskset", "-c", str(pin[0] if who == "app" else pin[1]), *argv]


def write_matrix_plan(ctx, run, path):
    """The plan of a matrix run: batch.target (20ms unless --batch-target), run.workers, and
    run.plan_throttle verbatim under throttle: (no throttle: section when None)."""
    job = re.sub(r"[^A-Za-z0-9_-]", "-", run.name)
    throttle = ("" if run.plan_throttle is None
                else f"throttle: {{ {run.plan_throttle} }}\n")
    with open(path, "w", encoding="utf-8") as plan:
        plan.write(f"""version: 1
name: app-{job}
table: public.pgbench_accounts
set:
  c: abalance * 100
batch: {{ target: {ctx.cfg.app.batch_target} }}
workers: {run.workers}
{throttle}# The harness checks the rows itself.
verify: false
""")


def start_pgbench(ctx, db, run_dir, seconds, rate, script=None):
    """pgbench against db for `seconds`, output in run_dir; with a rate, at that fixed rate (-R)
    with a per-transaction log (run_dir/pgbench.*: latency measured from the scheduled start, so
    it includes the wait behind a slow server, as an application sees it). -n: no VACUUM or
    TRUNCATE of pgbench's tables before the run (each run has a fresh copy of tpl anyway)."""
    app = ctx.cfg.app
    argv = ["pgbench", "-n", "-b", script or app.script, "-c", str(app.clients),
            "-j", str(app.threads),
            "-T", str(seconds), "-P", "1", f"--random-seed={app.seed}"]
    if rate is not None:
        argv += ["-R", str(rate), "--log", f"--log-prefix={run_dir}/pgbench"]
    with open(os.path.join(run_dir, "pgbench.out"), "w", encoding="utf-8") as out:
        return ctx.cluster.popen(timed(os.path.join(run_dir, "pgbench.time"),
                                       pinned(ctx, "app", [*argv, db])),
                                 stdout=out, stderr=subprocess.STDOUT)


def start_lag_sampler(ctx, path):
    with open(path, "w", encoding="utf-8") as out, \
            open(path + ".stderr", "w", encoding="utf-8") as err:
        proc = ctx.cluster.popen(pinned(ctx, "backfill", ["psql", "-X", "-q", "-A", "-t", "-F",
                                                          " ", "-d", "postgres"]),
                                 stdin=subprocess.PIPE, stdout=out, stderr=err, text=True)
    proc.stdin.write(LAG_SQL)
    proc.stdin.close()
    return proc


def stop_lag_sampler(proc):
    """psql ends \\watch on SIGINT, then reads the end of its input and exits."""
    proc.send_signal(signal.SIGINT)
    proc.wait()


def start_backfill(ctx, run, db):
    """The lag sampler, then `pgbackfill run` under GNU time; returns both processes."""
    lag = start_lag_sampler(ctx, os.path.join(run.dir, "lag.txt"))
    run.backfill_start_ns = time.time_ns()
    with open(os.path.join(run.dir, "pgbackfill.jsonl"), "w", encoding="utf-8") as out, \
            open(os.path.join(run.dir, "pgbackfill.stderr"), "w", encoding="utf-8") as err:
        backfill = ctx.cluster.popen(
            timed(os.path.join(run.dir, "pgbackfill.time"),
                  pinned(ctx, "backfill", [ctx.pgbackfill, "run",
                                           os.path.join(run.dir, "plan.yaml"),
                                           "--dsn", ctx.cluster.dsn(db), "--json"])),
            stdout=out, stderr=err)
    return backfill, lag


def finish_backfill(ctx, run, backfill, lag):
    """Waits for the backfill, then for the standby to replay what it wrote (the lag samples
    cover that too)."""
    run.pgbackfill_status = backfill.wait()
    run.backfill_end_ns = time.time_ns()
    wait_standby(ctx, STANDBY_WAIT_SECONDS)
    run.standby_caught_up_ns = time.time_ns()
    stop_lag_sampler(lag)


def stop_backfill(backfill):
    """The application's run is over: stop the backfill the way an operator would (SIGTERM to
    pgbackfill, the child of GNU time): it commits the batches in flight and exits 3."""
    subprocess.run(["pkill", "-TERM", "-P", str(backfill.pid)], check=False)


def wait_first(*procs):
    """Blocks until one of the processes exits and returns it (not reaped yet)."""
    fds = {os.pidfd_open(proc.pid): proc for proc in procs}
    try:
        ready, _, _ = select.select(list(fds), [], [])
        return fds[ready[0]]
    finally:
        for fd in fds:
            os.close(fd)


def check_rows(ctx, run, db):
    """pgbench never writes c, so every non-NULL c is the backfill's, written once: their count
    must be the job's rows. Rows pgbench updated after the backfill passed them keep the c of
    their old abalance, which is right for a backfill without dual_write; every row pgbench
    never touched (no pgbench_history line) must hold exactly abalance * 100."""
    cluster = ctx.cluster
    run.filled_rows = cluster.value(db, "SELECT count(c) FROM pgbench_accounts")
    run.wrong_rows = cluster.value(db, """SELECT count(*) FROM pgbench_accounts a
        WHERE c IS NOT NULL AND c IS DISTINCT FROM abalance * 100
          AND NOT EXISTS (SELECT FROM pgbench_history h WHERE h.aid = a.aid)""")
    run.touched_rows = cluster.value(db, "SELECT count(DISTINCT aid) FROM pgbench_history")


def report_failures(run):
    if (run.with_backfill and run.pgbackfill_status != 0
            and not (run.stopped and run.pgbackfill_status == EXIT_INTERRUPTED)):
        log = os.path.join(run.dir, "pgbackfill.jsonl")
        print(f"{run.name}: pgbackfill exit status {run.pgbackfill_status}; log: {log}",
              file=sys.stderr)
        print_tail([log, os.path.join(run.dir, "pgbackfill.stderr")])
    if run.with_app and run.pgbench_status != 0:
        out = os.path.join(run.dir, "pgbench.out")
        print(f"{run.name}: pgbench exit status {run.pgbench_status}; output: {out}",
              file=sys.stderr)
        print_tail([out])


def client_ticks(ctx, run):
    """User+system CPU of pgbench and pgbackfill (their GNU time files) in clock ticks, in all
    and each; pgbench's wall seconds."""
    total = 0
    for name in sorted(os.listdir(run.dir)):
        if name.endswith(".time"):
            wall, user, system, _ = read_time_file(os.path.join(run.dir, name))
            ticks = int((user + system) * ctx.clk_tck)
            total += ticks
            if name == "pgbench.time":
                run.pgbench_ticks, run.pgbench_wall_s = ticks, wall
            elif name == "pgbackfill.time":
                run.pgbackfill_ticks = ticks
    return total


def measured_run(ctx, run, settings, processes):
    """Runs `processes(run, db)` (the run kind's clients) on a fresh database between two
    samples of the server and the standby, checks the rows and appends the run's record."""
    app = ctx.cfg.app
    what = "backfill alone"
    if run.with_app:
        what = f"pgbench -R {settings.rate} for {app.duration} s"
        if run.group:
            what = f"pgbench -b {run.shape} " + what.split(" ", 1)[1]
            if run.with_backfill:
                what += (f", backfill from {app.lead_in} s, {run.workers} worker(s), "
                         + ("no throttle keys" if run.plan_throttle is None
                            else f"throttle: {{ {run.plan_throttle} }}"))
        elif run.with_backfill:
            what += f", backfill from {app.lead_in} s (throttle: {{ {run.throttle} }})"
    section(f"{run.name}: {what}")
    db = "app_" + re.sub(r"[^a-z0-9]", "_", run.name.lower())
    shutil.rmtree(run.dir, ignore_errors=True)
    os.makedirs(run.dir)
    if run.with_backfill and run.group:
        write_matrix_plan(ctx, run, os.path.join(run.dir, "plan.yaml"))
    elif run.with_backfill:
        write_plan(ctx, run.name, os.path.join(run.dir, "plan.yaml"), run.throttle)
    fresh_db(ctx, db)

    standby_pid = ctx.cluster.postmaster_pid("standby")
    mark = sample_before(ctx)
    standby0 = server_ticks(standby_pid)
    run.t0_ns = time.time_ns()
    processes(run, db)
    measurement = sample_after(ctx, mark)
    run.standby_ticks = server_ticks(standby_pid) - standby0

    check_rows(ctx, run, db)
    report_failures(run)
    run.client_ticks = client_ticks(ctx, run)
    run.wall_ns = measurement.wall_ns
    run.server_ticks = measurement.server_ticks
    run.machine_ticks = measurement.machine_ticks
    run.wal_bytes = measurement.wal_bytes
    run.checkpoints = measurement.checkpoints
    ctx.results.append(dataclasses.asdict(run))
    drop_database(ctx, db)
    return run


def new_run(ctx, name, settings, with_app, with_backfill):
    throttle = throttle_keys(ctx.cfg.app, name, settings.canary_ms) if with_backfill else ""
    return AppRun(name=name, with_app=int(with_app), with_backfill=int(with_backfill),
                  dir=ctx.path(name), throttle=throttle)


# ---- the run kinds ----

def measure_max_tps(ctx, shape=""):
    """The application's maximum throughput: pgbench unthrottled on a fresh copy (the matrix's
    `shape`, else --builtin)."""
    app = ctx.cfg.app
    name = f"{shape}-max-tps" if shape else "max-tps"
    run_dir, db = ctx.path(name), "app_" + name.replace("-", "_")
    section(f"{name}: pgbench -b {shape or app.script} -c {app.clients} -j {app.threads}, "
            f"{app.max_tps_seconds} s unthrottled")
    os.makedirs(run_dir, exist_ok=True)
    fresh_db(ctx, db)
    status = start_pgbench(ctx, db, run_dir, app.max_tps_seconds, None, shape or None).wait()
    out = os.path.join(run_dir, "pgbench.out")
    with open(out, encoding="utf-8", errors="replace") as text:
        tps = re.findall(r"^tps = ([0-9.]+) ", text.read(), re.M)
    if status != 0 or not tps:
        print_tail([out], 20)
        raise BenchError(f"the max-tps pgbench run failed (exit {status})")
    result = MaxTps(exit_status=status, tps=float(tps[-1]), dir=run_dir, shape=shape)
    ctx.results.append(dataclasses.asdict(result))
    drop_database(ctx, db)
    return result


def run_backfill_alone(ctx, name, settings):
    """The backfill alone, no application: the reference rows/s."""
    def processes(run, db):
        backfill, lag = start_backfill(ctx, run, db)
        finish_backfill(ctx, run, backfill, lag)
    return measured_run(ctx, new_run(ctx, name, settings, False, True), settings, processes)


def app_alone(ctx, settings):
    """The processes of a run of pgbench at the fixed rate for --duration seconds, no backfill."""
    def processes(run, db):
        pgbench = start_pgbench(ctx, db, run.dir, ctx.cfg.app.duration, settings.rate,
                                settings.script)
        time.sleep(float(ctx.cfg.app.lead_in))
        stall = cpu_stall()
        run.pgbench_status = pgbench.wait()
        run.pgbench_end_ns = time.time_ns()
        run.cpu_pressure = cpu_pressure_between(stall, cpu_stall())
    return processes


def app_with_backfill(ctx, settings):
    """The processes of a run of pgbench at the fixed rate with the backfill from --lead-in
    seconds on, stopped when pgbench ends first."""
    def processes(run, db):
        app = ctx.cfg.app
        pgbench = start_pgbench(ctx, db, run.dir, app.duration, settings.rate, settings.script)
        time.sleep(float(app.lead_in))
        stall = cpu_stall()
        backfill, lag = start_backfill(ctx, run, db)
        if wait_first(pgbench, backfill) is pgbench:
            run.pgbench_status = pgbench.wait()
            run.pgbench_end_ns = time.time_ns()
            run.cpu_pressure = cpu_pressure_between(stall, cpu_stall())
            run.stopped = 1
            stop_backfill(backfill)
        finish_backfill(ctx, run, backfill, lag)
        if run.pgbench_status is None:
            run.pgbench_status = pgbench.wait()
            run.pgbench_end_ns = time.time_ns()
            run.cpu_pressure = cpu_pressure_between(stall, cpu_stall())
    return processes


def run_app_alone(ctx, name, settings):
    """pgbench at the fixed rate for --duration seconds, no backfill."""
    return measured_run(ctx, new_run(ctx, name, settings, True, False), settings,
                        app_alone(ctx, settings))


def run_app_with_backfill(ctx, name, settings):
    """pgbench at the fixed rate, the backfill from --lead-in seconds on, stopped when pgbench
    ends first."""
    return measured_run(ctx, new_run(ctx, name, settings, True, True), settings,
                        app_with_backfill(ctx, settings))


RUN_KINDS = {
    "unthrottled": run_backfill_alone,
    "baseline": run_app_alone,
    "no-throttle": run_app_with_backfill,
    "canary": run_app_with_backfill,
    "replica-lag": run_app_with_backfill,
}


# ---- the scenario ----

def fixed_rate(ctx):
    """--rate-percent of the measured max TPS, at least 1."""
    app = ctx.cfg.app
    max_tps = measure_max_tps(ctx)
    rate = max(1, int(max_tps.tps * float(app.rate_percent) / 100 + 0.5))
    print(f"fixed rate: {app.rate_percent}% of {max_tps.tps:f} tps = {rate} tps", flush=True)
    return rate


def derived_canary_ms(ctx, baseline):
    limit = app_impact_report.canary_limit_ms(dataclasses.asdict(baseline),
                                              float(ctx.cfg.app.lead_in))
    if limit is None:
        raise BenchError("the baseline has no transactions to derive the canary limit from")
    print(f"canary limit: {limit} ms (max(2 ms, 1.2 x baseline p99), whole ms, rounded up)",
          flush=True)
    return limit


def report(ctx, settings):
    app = ctx.cfg.app
    scale = ctx.cfg.scales[0]
    args = ["report", "--rows", str(rows_of(scale)), "--scale", str(scale), *ctx.report_args(),
            "--script", app.script, "--clients", str(app.clients), "--threads", str(app.threads),
            "--max-tps-seconds", str(app.max_tps_seconds), "--rate-percent", app.rate_percent,
            "--duration", str(app.duration), "--lead-in", app.lead_in,
            "--workers", str(app.workers), "--batch-target", app.batch_target,
            "--interval", app.interval, "--replica-lag", app.replica_lag,
            "--throttle-extra", app.throttle_extra,
            "--canary-source", "given" if app.canary_ms else "max(2 ms, 1.2 x baseline p99)",
            ctx.results.path]
    if settings.rate is not None:
        args += ["--rate", str(settings.rate)]
    if settings.canary_ms is not None:
        args += ["--canary-ms", str(settings.canary_ms)]
    return app_impact_report.main(args)


# ---- the shape/rate matrix ----

def yaml_quoted(text):
    """`text` as a YAML double-quoted scalar, safe inside a flow mapping: commas, braces, colons
    and # are plain characters there; backslash, the quote and control characters (a newline
    would be folded into a space) are escaped."""
    return '"' + "".join(yaml_escaped(c) for c in text) + '"'


def yaml_escaped(char):
    if char in '\\"':
        return "\\" + char
    if char < " " or char == "\x7f":
        return f"\\x{ord(char):02x}"
    return char


def p99_command(ctx, run_dir, budget_ms):
    """The throttle-p99 run's throttle keys: `command:` running app_p99_ratio.py on this run's
    pgbench log against the group's budget, quoted for the shell, then for YAML."""
    argv = [PYTHON, os.path.join(ctx.cfg.root, "bench", P99_SCRIPT),
            "--log-prefix", os.path.join(run_dir, "pgbench"), "--budget-ms", f"{budget_ms:.3f}"]
    if ctx.cfg.app.p99_window is not None:
        argv += ["--window", str(ctx.cfg.app.p99_window)]
    return "command: " + yaml_quoted(shlex.join(argv))


def matrix_throttle(ctx, role, cap, run_dir, budget_ms):
    """The plan's throttle keys of a role, as written under throttle: (None: no section)."""
    if role == "sweep":
        return (f"max_rows_per_second: {cap}, max_replica_lag: 0, max_lock_waiters: 100, "
                "application: off")
    if role == "throttle-budget":
        return ctx.cfg.app.budget_throttle
    if role == "throttle-p99":
        return p99_command(ctx, run_dir, budget_ms)
    return None


def matrix_run(ctx, settings, group, pct, role, cap=None, budget_ms=None):
    """One run of a group: the baseline (pgbench alone), or pgbench with a backfill whose plan
    the role says (sweep: held to `cap` rows/s, one worker, no other hold signal; the throttle
    under test: no throttle keys, --budget-throttle verbatim, or the app's p99 against
    `budget_ms` through throttle.command)."""
    app = ctx.cfg.app
    name = f"{settings.script}-{pct}-{role}" + (f"-{cap}" if cap is not None else "")
    run_dir = os.path.abspath(ctx.path(name))
    plan_throttle = matrix_throttle(ctx, role, cap, run_dir, budget_ms)
    with_backfill = role != "baseline"
    run = AppRun(name=name, with_app=1, with_backfill=int(with_backfill), dir=run_dir,
                 throttle=plan_throttle or "", group=group, shape=settings.script,
                 rate_percent=pct, rate=settings.rate, role=role, cap=cap,
                 plan_throttle=plan_throttle,
                 workers=(1 if role == "sweep" else app.workers) if with_backfill else None,
                 pin=list(app.pin) if app.pin else None)
    processes = (app_with_backfill if with_backfill else app_alone)(ctx, settings)
    measured_run(ctx, run, settings, processes)
    stats = app_impact_report.latency_stats(dataclasses.asdict(run), float(app.lead_in))
    if stats and stats["p99_ms"] is not None:
        print(f"{name}: app p99 {stats['p99_ms']:.2f} ms over {stats['window_seconds']:.1f} s, "
              f"{stats['failed']} failed", flush=True)
    return run, stats


def throttled_roles(app, group, budget_ms):
    """The group's runs of the throttle under test: throttle-p99 needs the budget (a baseline
    without transactions has none) and can be left out (--no-p99-run)."""
    roles = list(THROTTLED_ROLES)
    if not app.p99_run or budget_ms is None:
        roles.remove("throttle-p99")
        if app.p99_run:
            print(f"{group}: no p99 budget (the baseline has no transactions): no throttle-p99 "
                  "run", flush=True)
    return roles


def run_matrix(ctx):
    """For each shape its max TPS, then for each rate percent of it: the baseline, the oracle
    sweep and the runs of the throttle under test; then the report."""
    app = ctx.cfg.app
    make_template(ctx, ctx.cfg.scales[0])
    for shape in app.shapes:
        max_tps = measure_max_tps(ctx, shape)
        for pct in app.rate_percents:
            rate = max(1, int(max_tps.tps * float(pct) / 100 + 0.5))
            group = f"{shape}@{pct}%"
            print(f"{group}: fixed rate {pct}% of {max_tps.tps:f} tps = {rate} tps", flush=True)
            settings = Settings(rate, None, shape)
            _, base = matrix_run(ctx, settings, group, pct, "baseline")
            budget_ms = app_impact_report.p99_budget_ms(base["p99_ms"] if base else None)
            if budget_ms is not None:
                print(f"{group}: p99 budget {budget_ms:.2f} ms (1.25 x baseline p99 + 2 ms)",
                      flush=True)
            for cap in app.sweep:
                matrix_run(ctx, settings, group, pct, "sweep", cap)
            for role in throttled_roles(app, group, budget_ms):
                matrix_run(ctx, settings, group, pct, role, budget_ms=budget_ms)
    return report(ctx, Settings(None, None))


def run(ctx):
    """The selected runs in RUN_ORDER, deriving the fixed rate and the canary limit on the way,
    then the report."""
    if ctx.cfg.app.matrix:
        return run_matrix(ctx)
    make_template(ctx, ctx.cfg.scales[0])
    settings = Settings(ctx.cfg.app.rate, ctx.cfg.app.canary_ms)
    done = {}
    for name in (n for n in RUN_ORDER if n in ctx.cfg.contenders):
        if name != "unthrottled" and settings.rate is None:
            settings = dataclasses.replace(settings, rate=fixed_rate(ctx))
        if name == "canary" and settings.canary_ms is None:
            settings = dataclasses.replace(settings,
                                           canary_ms=derived_canary_ms(ctx, done["baseline"]))
        done[name] = RUN_KINDS[name](ctx, name, settings)
    return report(ctx, settings)
