"""`scripts/bench` (--scenario throughput): pgbackfill against the ways a DBA would fill a new
column by hand, every contender on a fresh copy of the template database, on the unix socket.
bench_slow_link.py runs the same contenders over TCP, directly and through a delay proxy.
"""

import dataclasses
import os
import re
import subprocess

import bench_report
from bench_harness import (drop_database, fresh_copy, json_number, keep_log, make_template,
                           process_ticks, remove_time_files, report_failure, rows_of, run_record,
                           sample_after, sample_before, section, table_sizes, timed)

# Rows per statement of the hand-written loops (psql-K).
LOOP_BATCH = 10000
FILL_SQL = "UPDATE pgbench_accounts SET c = abalance * 100"


@dataclasses.dataclass(frozen=True)
class Link:
    """How the clients reach the server: `unix` (the socket; the throughput scenario), `direct`
    (TCP to 127.0.0.1) or `proxy` (through the delay proxy of bench_slow_link.py)."""
    kind: str = "unix"
    port: str | None = None   # the proxy's port
    proxy_pid: int | None = None
    delay_ms: str | None = None

    def suffix(self):
        return f"@{self.delay_ms}ms" if self.kind == "proxy" else ""

    def host_port(self, cluster):
        if self.kind == "unix":
            return cluster.host, cluster.port
        return "127.0.0.1", self.port or cluster.port

    def record_delay(self):
        if self.kind == "unix":
            return None
        return 0 if self.kind == "direct" else json_number(self.delay_ms)

    def ticks(self):
        return process_ticks(self.proxy_pid) if self.kind == "proxy" else 0


@dataclasses.dataclass(frozen=True)
class Contender:
    """One contender run: its name, kind (update, loop, pgbackfill), argument (sessions, or
    workers over all processes) and, for pgbackfill, its plan, vacuum_every and how many
    `pgbackfill run` processes share the job."""
    name: str
    kind: str
    arg: int
    plan: str | None = None
    vacuum_every: str | None = None
    processes: int = 1


def write_loop_sql(ctx, sessions, rows):
    """Batch files for the hand-written loops: session s of `sessions` walks its share of aid
    space."""
    for s in range(sessions):
        lo, hi = rows * s // sessions, rows * (s + 1) // sessions
        with open(ctx.path(f"loop-{sessions}-{s}.sql"), "w", encoding="utf-8") as sql:
            for a in range(lo, hi, LOOP_BATCH):
                sql.write(f"{FILL_SQL} WHERE aid > {a} AND aid <= {min(a + LOOP_BATCH, hi)};\n")


def write_plan(ctx, workers, vacuum_every=None, verify=False):
    """The plan of pgbackfill-W, with bloat control when vacuum_every is given, with the verify
    phase after the backfill when verify is set."""
    suffix = ("-vacuum" if vacuum_every else "") + ("-verify" if verify else "")
    path = ctx.path(f"plan-{workers}{suffix}.yaml")
    with open(path, "w", encoding="utf-8") as plan:
        plan.write(f"""version: 1
name: bench-w{workers}{suffix}
table: public.pgbench_accounts
set:
  c: abalance * 100
batch: {{ rows: 10000, target: 200ms, min_rows: 1000, max_rows: 100000 }}
workers: {workers}
# The harness checks every row itself after each contender; the psql contenders do not verify
# either, so the timed run is the backfill alone (pgbackfill+verify: the run a user waits for).
verify: {"true" if verify else "false"}
""")
        if vacuum_every:
            plan.write(f"vacuum_every: {vacuum_every}\n")
    return path


def contenders_of(ctx, rows):
    """The --contenders of one round, in order, their files written."""
    cfg = ctx.cfg
    # Bloat control and verify are compared with the same worker count without them: 2 (the
    # headline contender) when measured, else the first count.
    vacuum_workers = 2 if 2 in cfg.workers else cfg.workers[0]
    out = []
    for name in cfg.contenders:
        if name == "update":
            out.append(Contender("update", "update", 0))
        elif name.startswith("psql-"):
            sessions = int(name.removeprefix("psql-"))
            write_loop_sql(ctx, sessions, rows)
            out.append(Contender(name, "loop", sessions))
        elif name == "pgbackfill":
            out += [Contender(f"pgbackfill-{w}", "pgbackfill", w, write_plan(ctx, w))
                    for w in cfg.workers]
        elif re.fullmatch(r"pgbackfill-[0-9]+x[0-9]+", name):
            # pgbackfill-PxW: P processes of W workers each join one job (the job store's leases).
            processes, workers = map(int, name.removeprefix("pgbackfill-").split("x"))
            out.append(Contender(name, "pgbackfill", processes * workers, write_plan(ctx, workers),
                                 processes=processes))
        elif name == "pgbackfill+verify":
            out.append(Contender(f"pgbackfill-{vacuum_workers}+verify", "pgbackfill",
                                 vacuum_workers, write_plan(ctx, vacuum_workers, verify=True)))
        elif name == "pgbackfill+vacuum":
            out.append(Contender(f"pgbackfill-{vacuum_workers}+vacuum", "pgbackfill",
                                 vacuum_workers, write_plan(ctx, vacuum_workers, cfg.vacuum_every),
                                 cfg.vacuum_every))
    return out


def _psql(host, port, db, *args):
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-d", db, *args]


def run_client(ctx, contender, name, host, port, db, log):
    """Runs the contender's client process(es) under GNU time; returns the exit status (the last
    non-zero one of several sessions)."""
    cluster = ctx.cluster
    if contender.kind == "update":
        with open(log, "w", encoding="utf-8") as out:
            return cluster.run(timed(ctx.path(f"{name}.time.0"),
                                     _psql(host, port, db, "-c", FILL_SQL)),
                               stdout=out, stderr=subprocess.STDOUT).returncode
    if contender.kind == "loop":
        return _run_at_once(ctx, name, log, [
            _psql(host, port, db, "-f", ctx.path(f"loop-{contender.arg}-{s}.sql"))
            for s in range(contender.arg)], stderr_apart=False)
    # Every process at once, as a deploy starting P replicas would; the job store lets the first
    # create the job and the others join it.
    dsn = cluster.dsn(db, host, port)
    return _run_at_once(ctx, name, log, [
        [ctx.pgbackfill, "run", contender.plan, "--dsn", dsn, "--json"]
        for _ in range(contender.processes)], stderr_apart=True)


def _run_at_once(ctx, name, log, argvs, stderr_apart):
    """Runs every argv at once, each under GNU time (NAME.time.I), and waits for all; their
    output goes to LOG one after the other (stderr to LOG.stderr when stderr_apart). Returns the
    last non-zero exit status, else 0."""
    suffixes = ("", ".stderr") if stderr_apart else ("",)
    procs = []
    for i, argv in enumerate(argvs):
        outputs = [open(f"{log}.{i}{suffix}", "w", encoding="utf-8") for suffix in suffixes]
        procs.append(ctx.cluster.popen(timed(ctx.path(f"{name}.time.{i}"), argv),
                                       stdout=outputs[0], stderr=outputs[-1] if stderr_apart
                                       else subprocess.STDOUT))
        for output in outputs:
            output.close()  # the child has its own descriptors
    status = 0
    for proc in procs:
        status = proc.wait() or status
    for suffix in suffixes:
        with open(log + suffix, "w", encoding="utf-8") as out:
            for i in range(len(argvs)):
                with open(f"{log}.{i}{suffix}", encoding="utf-8", errors="replace") as part:
                    out.write(part.read())
                os.remove(f"{log}.{i}{suffix}")
    return status


def run_contender(ctx, contender, link, scale, round_no):
    """Runs one contender on a fresh copy of tpl over `link` and appends its record."""
    cluster = ctx.cluster
    name = contender.name + link.suffix()
    db = "run_" + re.sub(r"[^a-z0-9]", "_", name)
    section(f"{name} (scale {scale}, round {round_no}/{ctx.cfg.repeat})")
    fresh_copy(ctx, db)
    host, port = link.host_port(cluster)
    log = ctx.path(f"{name}.log")
    remove_time_files(ctx, name)
    sizes_before = table_sizes(ctx, db, "before")
    mark = sample_before(ctx)
    proxy0 = link.ticks()
    status = run_client(ctx, contender, name, host, port, db, log)
    proxy1 = link.ticks()
    measurement = sample_after(ctx, mark)
    sizes_after = table_sizes(ctx, db, "after")
    wrong = cluster.value(db, "SELECT count(*) FROM pgbench_accounts "
                              "WHERE c IS DISTINCT FROM abalance * 100")
    report_failure(name, status, [log, log + ".stderr"])
    kept = keep_log(ctx, name, log, scale, round_no)
    record = run_record(ctx, db, name=name, kind=contender.kind, arg=contender.arg,
                        round_no=round_no, status=status, wrong_rows=wrong,
                        measurement=measurement, log=kept)
    record.update({"scale": scale, "rows": rows_of(scale), "base": contender.name,
                   "link": link.kind, "link_delay_ms": link.record_delay(),
                   "proxy_ticks": proxy1 - proxy0, "vacuum_every": contender.vacuum_every,
                   "processes": contender.processes,
                   **sizes_before, **sizes_after})
    ctx.results.append(record)
    drop_database(ctx, db)


def run_scales(ctx, links):
    """Every scale in turn (one template at a time), --repeat rounds of all contenders, each
    contender once per link."""
    for scale in ctx.cfg.scales:
        make_template(ctx, scale)
        for round_no in range(1, ctx.cfg.repeat + 1):
            for contender in contenders_of(ctx, rows_of(scale)):
                for link in links:
                    run_contender(ctx, contender, link, scale, round_no)


def report(ctx):
    args = ["--scenario", ctx.cfg.scenario, *ctx.report_args(), ctx.results.path]
    if "pgbackfill+vacuum" in ctx.cfg.contenders:
        args += ["--vacuum-every", ctx.cfg.vacuum_every]
    return bench_report.main(args)


def run(ctx):
    run_scales(ctx, [Link()])
    return report(ctx)
