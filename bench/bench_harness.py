"""Shared by the scenarios of scripts/bench (bench_throughput.py, bench_slow_link.py,
bench_app_impact.py, bench_move.py): the options (Config), the throwaway cluster, the template
database, the measurements around a run (GNU time for the clients, the server's CPU from /proc,
WAL, checkpoints) and the raw results file, one JSON object per line, that the reports read.

Nothing here is global: bench_main.py builds one Context and every function gets what it needs
from it.
"""

import dataclasses
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import time

import psycopg2

GNU_TIME = "/usr/bin/time"
# What GNU time writes per client process: wall seconds, user and system CPU seconds, peak RSS KiB.
TIME_FORMAT = "%e %U %S %M"
ROWS_PER_SCALE = 100000
# Settle time around a CPU sample (see sample_before).
REAP_SECONDS = 0.3


class BenchError(Exception):
    """Ends the benchmark with `bench: MESSAGE` on stderr and exit status 1."""


@dataclasses.dataclass(frozen=True)
class AppOptions:
    """The options of --scenario app-impact (defaults in bench_main.py's usage)."""
    duration: int
    lead_in: str             # seconds as given: passed on to the report as text
    rate_percent: str
    rate: int | None         # None: rate_percent of the measured max TPS
    max_tps_seconds: int
    clients: int
    threads: int
    seed: str
    script: str              # pgbench's --builtin
    workers: int             # the first --workers count
    batch_target: str
    interval: str
    canary_ms: int | None    # None: derived from the baseline run
    replica_lag: str
    throttle_extra: str
    # The shape/rate matrix (--shapes, --rate-percents, --sweep, --budget-throttle): off (the
    # runs above) unless one of those options is given.
    matrix: bool = False
    shapes: tuple[str, ...] = ()
    rate_percents: tuple[str, ...] = ()    # as given: they name the runs
    sweep: tuple[int, ...] = ()            # throttle.max_rows_per_second steps
    budget_throttle: str = ""              # verbatim under throttle: of the budget run
    pin: tuple[int, int] | None = None     # (pgbench's CPU, the backfill client's CPU)
    p99_run: bool = True                   # the throttle-p99 runs (--no-p99-run: none)
    p99_window: int | None = None          # their signal's window, seconds (None: the script's)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything scripts/bench was asked to do, checked by bench_main.py."""
    root: str
    scenario: str
    scales: tuple[int, ...]
    workers: tuple[int, ...]
    contenders: tuple[str, ...]
    repeat: int
    json_out: str | None     # absolute
    plots_dir: str | None    # absolute; None for --plots none
    keep: bool
    build: bool
    build_dir: str
    vacuum_every: str
    link_delay_ms: str       # as given: it names the proxied contenders (NAME@1ms)
    proxy: str | None
    app: AppOptions


def section(text):
    print(f"== {text}", flush=True)


def rows_of(scale):
    return scale * ROWS_PER_SCALE


def json_number(text):
    """A number given as text (e.g. --link-delay-ms 1.5) as the JSON number it spells."""
    return int(text) if re.fullmatch(r"[0-9]+", text) else float(text)


def print_tail(paths, lines=5):
    """The last lines of each existing file to stderr, like `tail -n 5 FILE...`."""
    existing = [p for p in paths if os.path.isfile(p)]
    for path in existing:
        if len(existing) > 1:
            print(f"==> {path} <==", file=sys.stderr)
        with open(path, encoding="utf-8", errors="replace") as handle:
            sys.stderr.writelines(handle.readlines()[-lines:])
    sys.stderr.flush()


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A cluster started by scripts/pg-cluster: its directory and the environment its `env` file
    exports (PGHOST, PGPORT, PGUSER), which every client process of the benchmark gets."""
    dir: str
    env: dict

    @property
    def host(self):
        return self.env["PGHOST"]

    @property
    def port(self):
        return self.env["PGPORT"]

    @property
    def user(self):
        return self.env["PGUSER"]

    def dsn(self, dbname, host=None, port=None):
        return f"host={host or self.host} port={port or self.port} user={self.user} dbname={dbname}"

    def postmaster_pid(self, node="primary"):
        with open(os.path.join(self.dir, node, "postmaster.pid"), encoding="utf-8") as pid_file:
            return int(pid_file.readline())

    def query(self, dbname, *statements):
        """Runs the statements in one new session (autocommit, like psql -c) and returns the
        last one's rows. A session per call, as psql was: its backend exits with it, so that
        sample_before/sample_after see it reaped."""
        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=dbname)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def value(self, dbname, *statements):
        """The first column of the last statement's first row (None without rows)."""
        rows = self.query(dbname, *statements)
        return rows[0][0] if rows else None

    def popen(self, argv, **kwargs):
        return subprocess.Popen(argv, env=self.env, **kwargs)

    def run(self, argv, check=False, **kwargs):
        return subprocess.run(argv, env=self.env, check=check, **kwargs)


def start_cluster(root, cluster_dir, standby, cpu=None):
    """scripts/pg-cluster start (fsync off and the other settings it documents); with `cpu`,
    under taskset, so that every server process (they inherit it) runs on that CPU only."""
    argv = [os.path.join(root, "scripts", "pg-cluster"), "start", cluster_dir]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    if standby:
        argv.append("--standby")
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ)
    with open(os.path.join(cluster_dir, "env"), encoding="utf-8") as exports:
        for line in exports:
            words = shlex.split(line)
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                key, value = words[1].split("=", 1)
                env[key] = value
    return Cluster(cluster_dir, env)


def stop_cluster(root, cluster_dir):
    """Stops the cluster and removes its directory (also after a start that failed halfway)."""
    subprocess.run([os.path.join(root, "scripts", "pg-cluster"), "stop", cluster_dir],
                   check=False)


class Results:
    """The raw measurements: one JSON object per line, read by the reports."""

    def __init__(self, path):
        self.path = path
        with open(path, "w", encoding="utf-8"):
            pass

    def append(self, record, echo=True):
        line = json.dumps(record, separators=(",", ":"))
        with open(self.path, "a", encoding="utf-8") as results:
            results.write(line + "\n")
        if echo:
            print(line, flush=True)


@dataclasses.dataclass(frozen=True)
class Context:
    """The benchmark once its cluster runs: the options, the cluster, the private copies of the
    binaries, the results file and what every report prints about the run."""
    cfg: Config
    cluster: Cluster
    work: str
    pgbackfill: str
    proxy: str | None
    results: Results
    postmaster_pid: int
    clk_tck: int
    build_info: str
    pg_version: str

    def path(self, *names):
        return os.path.join(self.work, *names)

    def report_args(self):
        """The arguments every report takes, before its own."""
        raw = self.results.path
        if not self.cfg.keep:
            raw += " (removed with the cluster; use --json or --keep)"
        args = ["--clk-tck", str(self.clk_tck), "--build", self.build_info,
                "--pg-version", self.pg_version, "--raw", raw]
        if self.cfg.json_out:
            args += ["--json", self.cfg.json_out]
        if self.cfg.plots_dir:
            args += ["--plots", self.cfg.plots_dir]
        return args


def make_template(ctx, scale, with_column_c=True):
    """The template database tpl of `scale`: pgbench -i plus the column c (the move scenario
    uses it as pgbench made it, as its source). Replaces the previous one (one template at a
    time, to save disk)."""
    cluster = ctx.cluster
    section(f"template database: pgbench -i -s {scale} ({rows_of(scale)} accounts)"
            + (" + column c" if with_column_c else ""))
    cluster.query("postgres", "SET client_min_messages = warning", "DROP DATABASE IF EXISTS tpl")
    cluster.query("postgres", "CREATE DATABASE tpl")
    env = dict(cluster.env, PGOPTIONS="-c client_min_messages=warning")
    init = subprocess.run(["pgbench", "-i", "-s", str(scale), "-q", "tpl"], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    # pgbench -i reports every step; only the unexpected is worth showing.
    noise = re.compile(r"^(dropping|creating|vacuuming|generating|done)|of .* tuples")
    for line in init.stdout.splitlines():
        if not noise.search(line):
            print(line)
    if init.returncode != 0:
        raise BenchError(f"pgbench -i -s {scale} failed (exit {init.returncode})")
    if with_column_c:
        cluster.query("tpl", "ALTER TABLE pgbench_accounts ADD COLUMN c bigint")
    # The throttle's statement-latency signal reads pg_stat_statements in the job's database;
    # scripts/pg-cluster preloads the library, and each copy of tpl inherits the extension.
    cluster.query("tpl", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    cluster.query("tpl", "VACUUM ANALYZE pgbench_accounts")
    cluster.query("postgres", "CHECKPOINT")
    size = cluster.value("tpl", "SELECT pg_size_pretty(pg_database_size('tpl'))")
    print(f"template size: {size}", flush=True)


def fresh_copy(ctx, db):
    """A new copy of tpl, then a CHECKPOINT, so that no run pays for the previous one's dirty
    pages."""
    ctx.cluster.query("postgres", f"CREATE DATABASE {db} TEMPLATE tpl STRATEGY FILE_COPY")
    ctx.cluster.query("postgres", "CHECKPOINT")


def drop_database(ctx, db, if_exists=False):
    ctx.cluster.query("postgres", "SET client_min_messages = warning",
                      f"DROP DATABASE {'IF EXISTS ' if if_exists else ''}{db} WITH (FORCE)")


# ---- CPU, WAL and checkpoints around a run ----

def _stat_fields(pid):
    """Fields of /proc/PID/stat after the ")" that closes the command name: state is [0], ppid
    [1], utime [11], stime [12], cutime [13], cstime [14]."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
        return stat.read().rsplit(") ", 1)[1].split()


def process_ticks(pid):
    """utime+stime clock ticks process `pid` has used so far (0 when it is gone)."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def server_ticks(postmaster_pid):
    """CPU clock ticks (utime+stime) the server has used: the postmaster's own and those of the
    children it reaped (cutime+cstime, which covers backends that exited), plus the live
    children's own."""
    fields = _stat_fields(postmaster_pid)
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(path, encoding="utf-8") as stat:
                fields = stat.read().rsplit(") ", 1)[1].split()
        except OSError:
            continue  # the process exited between the listing and the read
        if int(fields[1]) == postmaster_pid:
            total += int(fields[11]) + int(fields[12])
    return total


def machine_ticks():
    """Busy ticks of the whole machine (all CPUs): user+nice+system+irq+softirq+steal."""
    with open("/proc/stat", encoding="utf-8") as stat:
        cpu = stat.readline().split()
    return sum(int(cpu[i]) for i in (1, 2, 3, 6, 7, 8))


@dataclasses.dataclass(frozen=True)
class CpuStall:
    """Linux's count of the time in which at least one runnable task waited for a CPU
    (/proc/pressure/cpu, "some" total, µs), and when it was read."""
    total_us: int
    t_ns: int


def cpu_stall():
    """The machine's CPU stall count now; None without PSI (not Linux 4.20+, or turned off)."""
    try:
        with open("/proc/pressure/cpu", encoding="utf-8") as pressure:
            some = pressure.readline().split()
    except OSError:
        return None
    total = [w.split("=", 1)[1] for w in some if w.startswith("total=")]
    return CpuStall(int(total[0]), time.time_ns()) if total else None


def cpu_pressure_between(start, end):
    """The share of the time from `start` to `end` (CpuStall) in which a task waited for a CPU:
    what the engine's max_cpu_pressure reads on the database host. None when either is."""
    if start is None or end is None or end.t_ns <= start.t_ns:
        return None
    return (end.total_us - start.total_us) * 1000 / (end.t_ns - start.t_ns)


def _checkpoints(cluster):
    return cluster.value("postgres",
                         "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")


@dataclasses.dataclass(frozen=True)
class Mark:
    """The counters when a run started."""
    lsn: str
    checkpoints: int
    server_ticks: int
    machine_ticks: int
    t_ns: int


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What the server and the machine did during a run."""
    wall_ns: int
    server_ticks: int
    machine_ticks: int
    wal_bytes: int
    checkpoints: int


def sample_before(ctx):
    """The SQL probes run before the CPU sample (and after it in sample_after), and their
    backends are given time to be reaped, so they do not count as work of the contender."""
    lsn = ctx.cluster.value("postgres", "SELECT pg_current_wal_lsn()")
    checkpoints = _checkpoints(ctx.cluster)
    time.sleep(REAP_SECONDS)
    return Mark(lsn, checkpoints, server_ticks(ctx.postmaster_pid), machine_ticks(),
                time.time_ns())


def sample_after(ctx, mark):
    t_ns = time.time_ns()
    # Backends exit when their client disconnects; let the postmaster reap them into cutime.
    time.sleep(REAP_SECONDS)
    server = server_ticks(ctx.postmaster_pid)
    machine = machine_ticks()
    wal = ctx.cluster.value(
        "postgres", f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{mark.lsn}')::bigint")
    return Measurement(t_ns - mark.t_ns, server - mark.server_ticks, machine - mark.machine_ticks,
                       wal, _checkpoints(ctx.cluster) - mark.checkpoints)


# ---- client processes under GNU time ----

def timed(time_file, argv):
    """argv run under GNU time, which writes TIME_FORMAT to time_file when it exits."""
    return [GNU_TIME, "-f", TIME_FORMAT, "-o", time_file, *argv]


def read_time_file(path):
    """(wall, user, sys, max RSS KiB) from a GNU time file. GNU time prints "Command exited with
    non-zero status N" first when the command fails, so the numbers are the last line."""
    with open(path, encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    wall, user, system, rss = lines[-1].split()
    return float(wall), float(user), float(system), int(rss)


@dataclasses.dataclass(frozen=True)
class ClientUsage:
    """The client processes of a run: CPU summed, peak RSS of the largest one."""
    processes: int
    user_s: float
    sys_s: float
    max_rss_kib: int


def client_usage(time_files):
    usage = [read_time_file(path) for path in time_files if os.path.isfile(path)]
    return ClientUsage(len(usage), round(sum(u[1] for u in usage), 2),
                       round(sum(u[2] for u in usage), 2), max((u[3] for u in usage), default=0))


def time_files(ctx, name):
    return sorted(glob.glob(ctx.path(f"{glob.escape(name)}.time.*")))


def remove_time_files(ctx, name):
    for path in time_files(ctx, name):
        os.remove(path)


# ---- what a run left behind ----

def table_sizes(ctx, db, suffix):
    """pg_table_size (heap, TOAST, free space and visibility maps), pg_indexes_size and
    pg_total_relation_size (the two together) of pgbench_accounts, in bytes, as record fields
    with the suffix (before/after)."""
    row = ctx.cluster.query(db, "SELECT pg_table_size(t), pg_indexes_size(t), "
                                "pg_total_relation_size(t) "
                                "FROM CAST('public.pgbench_accounts' AS regclass) AS t")[0]
    return {f"table_bytes_{suffix}": row[0], f"indexes_bytes_{suffix}": row[1],
            f"total_bytes_{suffix}": row[2]}


def table_stats(ctx, db, *columns):
    """Counters of pgbench_accounts from pg_stat_user_tables (e.g. autovacuum_count)."""
    listed = ", ".join(f"coalesce({c}, 0)" for c in columns)
    rows = ctx.cluster.query(db, f"SELECT {listed} FROM pg_stat_user_tables "
                                 "WHERE relname = 'pgbench_accounts'")
    return rows[0] if rows else (None,) * len(columns)


def run_record(ctx, db, *, name, kind, arg, round_no, status, wrong_rows, measurement, log):
    """The raw measurements of one contender run, in the fields bench_report.py and
    move_report.py read; the caller adds its scenario's own."""
    usage = client_usage(time_files(ctx, name))
    autovacuums, autoanalyzes = table_stats(ctx, db, "autovacuum_count", "autoanalyze_count")
    return {
        "name": name, "kind": kind, "arg": arg, "round": round_no, "exit_status": status,
        "wrong_rows": wrong_rows, "wall_ns": measurement.wall_ns,
        "client_processes": usage.processes, "client_user_s": usage.user_s,
        "client_sys_s": usage.sys_s, "client_max_rss_kib": usage.max_rss_kib,
        "server_ticks": measurement.server_ticks, "machine_ticks": measurement.machine_ticks,
        "wal_bytes": measurement.wal_bytes, "checkpoints": measurement.checkpoints,
        "autovacuum_count": autovacuums, "autoanalyze_count": autoanalyzes, "log": log,
    }


def report_failure(name, status, logs):
    if status != 0:
        print(f"{name}: exit status {status}; log: {logs[0]}", file=sys.stderr)
        print_tail(logs)


def keep_log(ctx, name, log, scale, round_no):
    """Moves the run's log (and its .stderr) to a name that the next run does not overwrite."""
    kept = ctx.path(f"{name}.s{scale}.round{round_no}.log")
    os.replace(log, kept)
    if os.path.isfile(log + ".stderr"):
        os.replace(log + ".stderr", kept + ".stderr")
    return kept
