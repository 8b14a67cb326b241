"""End-to-end benchmark: pgbackfill against the ways a DBA would fill a new column by hand.

On a throwaway PostgreSQL 15 it builds one template database with `pgbench -i -s N` plus
`ALTER TABLE pgbench_accounts ADD COLUMN c bigint`, then, for every contender, makes a fresh copy
(CREATE DATABASE ... TEMPLATE), CHECKPOINTs, fills `c = abalance * 100`, checks the result and
drops the copy. Contenders:

  update        one plain `UPDATE pgbench_accounts SET c = abalance * 100` (psql)
  psql-1        one psql session, 10,000-row autocommit batches over aid ranges (a generated
                SQL file fed to psql: the client overhead is psql's, like a hand-written loop)
  psql-2        two such sessions at once, each walking its half of the aid space
  pgbackfill-W  `pgbackfill run` with W workers, for each W in --workers
  pgbackfill+vacuum  (named pgbackfill-W+vacuum) the same with 2 workers (the first --workers
                count when 2 is not among them) and
                the plan key `vacuum_every: V` (--vacuum-every, default 5%): bloat control
  pgbackfill+verify  (named pgbackfill-W+verify, W as for +vacuum) the same plan with `verify:
                true`: the backfill and its verify phase, the run a user waits for (not in the
                default list)
  pgbackfill-PxW  P `pgbackfill run` processes of W workers each, started at once, sharing one
                job (not in the default list); its target: >= 0.9x the rows/s of pgbackfill-(P*W)

For each: wall seconds, rows/s, ratio to the plain UPDATE, client CPU and peak RSS (GNU time),
server CPU (postmaster + all its children, reaped ones included), WAL bytes, checkpoints and
autovacuum runs during the run, the CPU of everything else on the machine (interference), and
the table's growth: pg_table_size + pg_indexes_size of pgbench_accounts after / before.
The targets it reports against (not assertions) are in bench/README.md.

  scripts/bench [--scale N | --scales "30 100"] [--workers "1 2 4"] [--repeat N]
                [--contenders "update psql-1 psql-2 pgbackfill pgbackfill+vacuum"]
                [--vacuum-every 5%|ROWS] [--json FILE] [--plots DIR|none] [--keep] [--no-build]

--repeat N runs every contender N times, in N rounds of all contenders (so slow drift of the
machine hits every contender alike); the tables show each contender's median run by wall time.
--scales "30 100" (or --scale given more than once) runs everything at each scale in turn, one
template at a time (the previous one is dropped), and adds a scaling table: rows/s and peak RSS
per contender per scale and the rows/s ratio between the last and the first scale.
--plots DIR writes PNGs (gnuplot; installed when missing, skipped when it cannot be):
throughput.png (rows/s per contender), scaling.png (with several scales), slow-link.png,
app-impact.png (backfill rows/s and the application's p99 per second). Default: beside the
--json file, else bench/results/; `none` for no plots.

--scenario slow-link runs the contenders (default psql-1 psql-2 pgbackfill, --workers default
"1 2") twice each: directly over TCP (127.0.0.1) and through a delay proxy that holds every
packet --link-delay-ms (1) in each direction (${BUILD_DIR}/bench/proxy/pgbackfill_delay_proxy,
or --proxy PATH), and reports each one's rows/s through the proxy against its own direct rate.

  scripts/bench --scenario slow-link [--link-delay-ms MS] [--proxy PATH] [--scale(s) ...]
                [--workers "1 2"] [--contenders "psql-1 psql-2 pgbackfill"] [--repeat N]
                [--json FILE] [--plots DIR|none] [--keep] [--no-build]

--scenario app-impact (the default scenario is `throughput`, above) measures what a backfill
costs an application that keeps serving, on a cluster with a streaming standby: pgbench
(built-in tpcb-like: it updates pgbench_accounts.abalance, which the backfill reads, so the
application writes the rows the backfill writes) at a fixed rate of --rate-percent of its
measured max TPS, without and with a backfill (no hold signal, throttle.max_canary_latency,
throttle.max_replica_lag), reporting the application's latency percentiles and failed
transactions during the backfill, the backfill's rows/s against an unthrottled one, how long
the job was held, and the standby's lag. Runs (--contenders; default all, always in this order):

  unthrottled   the backfill alone, no hold signal: the reference rows/s
  baseline      pgbench at the fixed rate for --duration seconds, no backfill
  no-throttle   the same pgbench run, a backfill without hold signal from --lead-in seconds on
  canary        the same, with throttle.max_canary_latency (--canary-latency; default
                max(2 ms, 1.2 x baseline p99) in whole ms, rounded up)
  replica-lag   the same, with throttle.max_replica_lag (--replica-lag, default 2s)

  scripts/bench --scenario app-impact [--scale N] [--duration S] [--lead-in S]
                [--rate-percent P | --rate TPS] [--max-tps-seconds S] [--clients C] [--threads J]
                [--seed N] [--builtin tpcb-like|simple-update|select-only]
                [--workers W] [--batch-target DUR] [--throttle-interval DUR]
                [--canary-latency MS] [--replica-lag DUR] [--throttle-extra "KEY: V, ..."]
                [--contenders "..."] [--json FILE] [--plots DIR|none] [--keep] [--no-build]

Defaults: --duration 30, --lead-in 3, --rate-percent 50, --max-tps-seconds 15, --clients 4,
--threads 2, --seed 42, --builtin tpcb-like, --workers 2 (the first count given is used),
--batch-target 200ms, --throttle-interval 1s, --replica-lag 2s. Each run turns on one hold signal only (lock-waiter
and replica-lag holds off otherwise); --throttle-extra adds plan throttle keys to the canary and
replica-lag runs (e.g. "max_lock_waiters: 0"). A backfill still running when pgbench ends is
stopped (SIGTERM, resumable) and its rows/s counts the rows it did. Details and targets:
bench/README.md.

The shape/rate matrix of app-impact (on when --shapes, --rate-percents, --sweep or
--budget-throttle is given; the runs above are then not made): for each shape (pgbench
--builtin) its max TPS, and for each rate percent of it: a baseline (pgbench at that rate alone),
an oracle sweep (the backfill beside it held to each --sweep step of
throttle.max_rows_per_second: one worker, batch target 20ms, max_replica_lag: 0,
max_lock_waiters: 100, application: off), then the throttle under test: the plan without throttle keys, the plan
with throttle: { --budget-throttle } (passed on verbatim), and the plan with throttle: { command:
"/usr/bin/python3 bench/app_p99_ratio.py --log-prefix RUN_DIR/pgbench --budget-ms B" } (its
signal: the application's own p99 over the last --p99-window seconds, default 3, / the group's
budget B, beside the engine's
defaults; --no-p99-run leaves this run out). The oracle is the highest measured sweep rate whose
window kept the app p99 <= B = 1.25 x baseline p99 + 2 ms; the throttled runs report their p99
against that budget, failed transactions and rows/s / the oracle's.

  scripts/bench --scenario app-impact [--shapes "select-only tpcb-like"] [--rate-percents "30 50"]
                [--sweep "5000 10000 20000 40000 80000"] [--budget-throttle "KEY: V, ..."]
                [--no-p99-run] [--p99-window S] [--pin "APP_CPU BACKFILL_CPU" | --pin none]
                [--scale N] [--duration S] [--lead-in S] [--max-tps-seconds S] [--clients C]
                [--threads J] [--seed N] [--workers W] [--batch-target DUR] [--json FILE]
                [--plots DIR|none] [--keep] [--no-build]

Defaults there: --budget-throttle "max_statement_latency: 1.1x, max_commit_latency: 2x + 2ms"
(tighter than the plan's defaults), --threads 1, --batch-target 20ms, --pin "LAST 0" (pgbench on
the last CPU; the PostgreSQL server, pgbackfill and the lag sampler on CPU 0, with taskset, as
an application on hosts of its own would be; none on one CPU); the throttled runs use --workers
(2).

--scenario move measures pgbackfill's data mover (copy mode between databases: source_dsn and
target_dsn in the plan) against `pgcopydb copy table-data` (Debian package pgcopydb, installed
when missing) and a single `psql | psql` COPY pipe. The source is the template database
(`pgbench -i -s N`, no column c); before every run a second database is created again with the
same empty pgbench_accounts (pg_dump --schema-only of the source). Runs (--contenders; default
all; pgcopydb and pgbackfill once per --workers count J, default 2), in alternating order from
round to round:

  pgcopydb-J    pgcopydb copy table-data --table-jobs J, filtered to public.pgbench_accounts,
                --split-tables-larger-than just above table size / J (J parts)
  psql-pipe     psql -c '\\copy (select * from pgbench_accounts) to stdout' | psql -c '\\copy
                pgbench_accounts from stdin'
  pgbackfill-J  pgbackfill run PLAN --json, copy mode, workers: J, verify: false

  scripts/bench --scenario move [--scale(s) ...] [--workers "2"] [--repeat N]
                [--contenders "pgcopydb psql-pipe pgbackfill"] [--json FILE] [--plots DIR|none]
                [--keep] [--no-build]

Each run must leave the target with the source's row count and row hash
(sum(hashtext(a::text))). Reported: wall seconds, rows/s, client CPU, CPU seconds per GB
(pg_table_size of the source table), peak RSS, server CPU, and the rows/s ratio of pgbackfill
to pgcopydb.

--scenario keys fills the same rows under three primary keys, each in a template database of
its own (scale x 100,000 rows; default scale 40, 4M rows): dense bigint ids, skewed bigint ids
(dense plus two ids near 4e18 and 8e18), a composite (text, uuid) key with the rows stored in key
order, and the same key with the rows stored in generation order (shuffled). Runs (--contenders,
default all; each on a fresh copy, rounds in alternating order):

  bigint-1      dense key, one worker, 1,000-row batches
  composite-1   composite key, the same (target: >= 0.6x bigint-1)
  shuffled-1    the shuffled composite table, the same (reported against composite-1)
  dense-2       dense key, two workers, the throughput scenario's batches
  skewed-2      skewed key, the same (target: >= 0.9x dense-2)

  scripts/bench --scenario keys [--scale(s) ...] [--repeat N] [--contenders "..."]
                [--json FILE] [--keep] [--no-build]

Reported: median rows/s (min-max), the two ratios, the ranges each job planned and ended with
(more: ranges split at run time) and the share of progress events with fewer live workers than
configured.

--scenario follow moves pgbench_accounts between two databases while pgbench (simple-update,
-c 4) writes to the source: pgbackfill with `follow: true`, ended by `pgbackfill cutover`, and
`pgcopydb clone --follow` (wal2json), ended by stopping pgbench and setting pgcopydb's endpos.
A contender is a write rate in transactions/s, RATE or pgbackfill@RATE, or pgcopydb@RATE
(default "1000 5000 pgcopydb@1000 pgcopydb@5000"); each follows for 20 s before its end.
Reported per tool and rate, measured on the target's own applied position: the copy's seconds,
the catch-up's changes/s, the steady lag (median, max; target under 5 s) and changes/s, the
write block at the end (median, max; target 1 s at the median), peak RSS, client CPU, and
whether source and target ended equal (count and row hash).

  scripts/bench --scenario follow [--scale(s) ...] [--repeat N]
                [--contenders "1000 5000 pgcopydb@1000 pgcopydb@5000"]
                [--json FILE] [--keep] [--no-build]
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import bench_app_impact
import bench_follow
import bench_keys
import bench_move
import bench_slow_link
import bench_throughput
from bench_harness import (GNU_TIME, AppOptions, BenchError, Config, Context, Results,
                           start_cluster, section, stop_cluster)

SCENARIOS = {
    "throughput": bench_throughput.run,
    "slow-link": bench_slow_link.run,
    "app-impact": bench_app_impact.run,
    "move": bench_move.run,
    "keys": bench_keys.run,
    "follow": bench_follow.run,
}
VALUE_OPTIONS = (
    "--scenario", "--duration", "--lead-in", "--rate-percent", "--rate", "--max-tps-seconds",
    "--clients", "--threads", "--seed", "--builtin", "--batch-target", "--throttle-interval",
    "--canary-latency", "--replica-lag", "--throttle-extra", "--scale", "--scales", "--workers",
    "--contenders", "--vacuum-every", "--link-delay-ms", "--proxy", "--repeat", "--json",
    "--plots", "--shapes", "--rate-percents", "--sweep", "--budget-throttle", "--pin",
    "--p99-window")
DEFAULTS = {
    "--scenario": "throughput", "--vacuum-every": "5%", "--link-delay-ms": "1", "--repeat": "1",
    "--duration": "30", "--lead-in": "3", "--rate-percent": "50", "--max-tps-seconds": "15",
    "--clients": "4", "--threads": "2", "--seed": "42", "--builtin": "tpcb-like",
    "--batch-target": "200ms", "--throttle-interval": "1s", "--replica-lag": "2s",
    "--throttle-extra": "",
}
DEFAULT_CONTENDERS = {
    "throughput": "update psql-1 psql-2 pgbackfill pgbackfill+vacuum",
    "slow-link": "psql-1 psql-2 pgbackfill",
    "app-impact": " ".join(bench_app_impact.RUN_ORDER),
    "move": "pgcopydb psql-pipe pgbackfill",
    "keys": bench_keys.DEFAULT_CONTENDERS,
    "follow": bench_follow.DEFAULT_CONTENDERS,
}
# --scenario app-impact's shape/rate matrix: any of these options turns it on; the others take
# these defaults.
MATRIX_OPTIONS = ("--shapes", "--rate-percents", "--sweep", "--budget-throttle")
MATRIX_DEFAULTS = {
    "--shapes": "select-only tpcb-like", "--rate-percents": "30 50",
    "--sweep": "5000 10000 20000 40000 80000",
    "--budget-throttle": "max_statement_latency: 1.1x, max_commit_latency: 2x + 2ms",
}
# Options of the single-shape runs that mean nothing in the matrix.
NOT_IN_MATRIX = ("--contenders", "--rate", "--rate-percent", "--builtin", "--canary-latency",
                 "--replica-lag", "--throttle-extra")
BUILTINS = ("tpcb-like", "simple-update", "select-only")
# The bench-only Debian package of the plots. Not in common.sh's list (the build and the tests
# do not need it); a failure to install it only costs the plots.
PLOT_PACKAGES = ("gnuplot-nox",)
# Free disk needed, in MiB: the largest template, a copy of it that an UPDATE doubles, WAL up to
# max_wal_size (1GB) and a margin; twice the data with the standby of app-impact. About 16 MB per
# scale unit.
MIB_PER_SCALE = 16
POSITIVE = re.compile(r"[1-9][0-9]*")
DECIMAL = re.compile(r"[0-9]+([.][0-9]+)?")


class UsageError(Exception):
    """A wrong option: `bench: MESSAGE`, exit status 2."""


def usage():
    print(__doc__.rstrip("\n"), file=sys.stderr)
    sys.exit(2)


def read_options(argv):
    """The options as given (--scale accumulates), plus the flags --keep and --no-build."""
    given, flags = {}, set()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            usage()
        elif arg in ("--keep", "--no-build", "--no-p99-run"):
            flags.add(arg)
        elif arg in VALUE_OPTIONS:
            if not args or not args[0]:
                raise UsageError(f"{arg} needs a value")
            value = args.pop(0)
            if arg == "--scale" and given.get("--scales"):
                value = given["--scales"] + " " + value
            given["--scales" if arg == "--scale" else arg] = value
        else:
            print(f"bench: unknown argument: {arg}", file=sys.stderr)
            usage()
    return given, flags


def positive(option, text):
    if not POSITIVE.fullmatch(text):
        raise UsageError(f"{option} must be a positive integer")
    return int(text)


def check_contenders(scenario, contenders, vacuum_every, link_delay_ms):
    """The names of one scenario's contenders, checked before anything starts."""
    if scenario in ("throughput", "slow-link"):
        if scenario == "slow-link" and not DECIMAL.fullmatch(link_delay_ms):
            raise UsageError("--link-delay-ms must be a number of milliseconds")
        for name in contenders:
            if not re.fullmatch(r"update|psql-[1-9][0-9]?|pgbackfill|pgbackfill\+(vacuum|verify)"
                                r"|pgbackfill-[1-9]x[1-9]", name):
                raise UsageError(f"unknown contender {name} (update, psql-K, pgbackfill, "
                                 "pgbackfill+vacuum, pgbackfill+verify, pgbackfill-PxW)")
        if ("pgbackfill+vacuum" in contenders
                and not re.fullmatch(r"[1-9][0-9]*|[0-9]+([.][0-9]+)?%", vacuum_every)):
            raise UsageError("--vacuum-every: a row count (150000) or a percentage of the table "
                             "(5%)")
    elif scenario == "move":
        for name in contenders:
            if name not in DEFAULT_CONTENDERS["move"].split():
                raise UsageError(f"unknown move contender {name} (pgcopydb, psql-pipe, "
                                 "pgbackfill)")
    elif scenario == "follow":
        for name in contenders:
            if bench_follow.parse_contender(name) is None:
                raise UsageError(f"--contenders of --scenario follow are write rates in "
                                 f"transactions per second, RATE or TOOL@RATE (pgbackfill, "
                                 f"pgcopydb), e.g. \"1000 pgcopydb@1000\"; got {name}")
    elif scenario == "keys":
        for name in contenders:
            if name not in bench_keys.CONTENDERS:
                raise UsageError(f"unknown keys contender {name} "
                                 f"({', '.join(bench_keys.CONTENDERS)})")


def pin_cpus(text):
    """--pin "APP BACKFILL" (two CPU numbers) or "none"."""
    if text == "none":
        return None
    words = text.split()
    cpus = os.cpu_count() or 1
    if (len(words) != 2 or not all(re.fullmatch(r"[0-9]+", w) for w in words)
            or words[0] == words[1] or max(int(w) for w in words) >= cpus):
        raise UsageError(f"--pin: two different CPU numbers below {cpus} (pgbench's, then the "
                         "backfill client's), or none")
    return int(words[0]), int(words[1])


def matrix_options(given):
    """The shape/rate matrix's own options, checked: (shapes, rate percents, sweep steps, budget
    throttle keys, pinned CPUs)."""
    for option in NOT_IN_MATRIX:
        if option in given:
            raise UsageError(f"{option} is not used with --shapes/--rate-percents/--sweep/"
                             "--budget-throttle (the shape/rate matrix)")
    opt = dict(MATRIX_DEFAULTS, **given)
    shapes = tuple(opt["--shapes"].split())
    for shape in shapes:
        if shape not in BUILTINS:
            raise UsageError(f"--shapes: {shape} is not one of {', '.join(BUILTINS)}")
    percents = tuple(opt["--rate-percents"].split())
    for pct in percents:
        if not DECIMAL.fullmatch(pct) or not 0 < float(pct) <= 100:
            raise UsageError(f"--rate-percents: {pct} is not a percentage in (0, 100]")
    sweep = tuple(positive("--sweep (rows/s)", w) for w in opt["--sweep"].split())
    if (not shapes or not percents or not sweep or len(set(shapes)) != len(shapes)
            or len(set(percents)) != len(percents) or len(set(sweep)) != len(sweep)):
            raise UsageError("--shapes, --rate-percents, --sweep: not empty, no value twice")
    budget = opt["--budget-throttle"].strip()
    if "\n" in budget or budget.startswith("{"):
        raise UsageError('--budget-throttle: "KEY: V, ..." on one line, without braces')
    cpus = os.cpu_count() or 1
    pin = pin_cpus(given.get("--pin") or (f"{cpus - 1} 0" if cpus >= 2 else "none"))
    return shapes, percents, tuple(sorted(sweep)), budget, pin


def app_options(opt, scales, repeat, workers, contenders, given=None, flags=frozenset()):
    """The options of --scenario app-impact, checked."""
    given = given or {}
    matrix = any(option in given for option in MATRIX_OPTIONS)
    if len(scales) != 1:
        raise UsageError("--scales is not supported by --scenario app-impact")
    duration = positive("--duration", opt["--duration"])
    max_tps_seconds = positive("--max-tps-seconds", opt["--max-tps-seconds"])
    clients = positive("--clients", opt["--clients"])
    threads = positive("--threads", opt["--threads"])
    rate = positive("--rate", opt["--rate"]) if opt.get("--rate") else None
    canary_ms = (positive("--canary-latency (whole ms)", opt["--canary-latency"])
                 if opt.get("--canary-latency") else None)
    if not re.fullmatch(r"[0-9]+", opt["--seed"]):
        raise UsageError("--seed must be an integer")
    if opt["--builtin"] not in BUILTINS:
        raise UsageError("--builtin: tpcb-like, simple-update or select-only")
    if not DECIMAL.fullmatch(opt["--rate-percent"]) or float(opt["--rate-percent"]) <= 0:
        raise UsageError("--rate-percent must be a positive number")
    if not DECIMAL.fullmatch(opt["--lead-in"]) or float(opt["--lead-in"]) >= duration:
        raise UsageError("--lead-in must be a number of seconds below --duration")
    if repeat != 1:
        raise UsageError("--repeat is not supported by --scenario app-impact")
    for name in contenders:
        if name not in bench_app_impact.RUN_ORDER:
            raise UsageError(f"unknown app-impact run {name}")
    if "canary" in contenders and "baseline" not in contenders and canary_ms is None:
        raise UsageError("the canary run needs the baseline run or --canary-latency MS")
    for option in ("--pin", "--no-p99-run", "--p99-window"):
        if (option in given or option in flags) and not matrix:
            raise UsageError(f"{option} is for the shape/rate matrix (--shapes, "
                             "--rate-percents, --sweep, --budget-throttle)")
    extra = {}
    batch_target = opt["--batch-target"]
    if matrix:
        shapes, percents, sweep, budget, pin = matrix_options(given)
        # One pgbench thread (it runs pinned to one CPU) unless --threads says otherwise; the
        # matrix's batches aim at 20 ms unless --batch-target says otherwise.
        threads = threads if "--threads" in given else 1
        extra = {"matrix": True, "shapes": shapes, "rate_percents": percents, "sweep": sweep,
                 "budget_throttle": budget, "pin": pin, "p99_run": "--no-p99-run" not in flags,
                 "p99_window": (positive("--p99-window (seconds)", given["--p99-window"])
                                if "--p99-window" in given else None)}
        batch_target = given.get("--batch-target", "20ms")
    return AppOptions(
        duration=duration, lead_in=opt["--lead-in"], rate_percent=opt["--rate-percent"],
        rate=rate, max_tps_seconds=max_tps_seconds, clients=clients, threads=threads,
        seed=opt["--seed"], script=opt["--builtin"], workers=workers[0],
        batch_target=batch_target, interval=opt["--throttle-interval"],
        canary_ms=canary_ms, replica_lag=opt["--replica-lag"],
        throttle_extra=opt["--throttle-extra"], **extra)


def plots_dir(root, given, json_out):
    """Where the PNGs go: --plots DIR; by default beside the --json file, else bench/results/ in
    the repository; `none` turns them off."""
    if given == "none":
        return None
    if given:
        os.makedirs(given, exist_ok=True)
        return os.path.abspath(given)
    return os.path.dirname(json_out) if json_out else os.path.join(root, "bench", "results")


def parse_config(root, argv):
    """The checked options (UsageError on a wrong one)."""
    given, flags = read_options(argv)
    opt = dict(DEFAULTS, **given)
    scenario = opt["--scenario"]
    default_scale = str(bench_keys.DEFAULT_SCALE) if scenario == "keys" else "30"
    scale_words = (opt.get("--scales") or default_scale).split()
    for word in scale_words:
        if not POSITIVE.fullmatch(word):
            raise UsageError("--scale(s) must be positive integers")
    if not scale_words:
        raise UsageError("--scales is empty")
    scales = tuple(int(s) for s in scale_words)
    repeat = positive("--repeat", opt["--repeat"])
    # slow-link compares one and two pgbackfill workers by default; the others use two.
    worker_words = (opt.get("--workers") or ("1 2" if scenario == "slow-link" else "2")).split()
    for word in worker_words:
        if not POSITIVE.fullmatch(word):
            raise UsageError(f"--workers: not a count: {word}")
    if not worker_words:
        raise UsageError("--workers is empty")
    workers = tuple(int(w) for w in worker_words)
    if len(set(scales)) != len(scales):
        raise UsageError("--scales: a scale is given twice")
    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario} "
                         "(throughput, slow-link, app-impact, move, keys, follow)")
    contenders = tuple((opt.get("--contenders") or DEFAULT_CONTENDERS[scenario]).split())
    check_contenders(scenario, contenders, opt["--vacuum-every"], opt["--link-delay-ms"])
    if scenario != "app-impact":
        for option in (*MATRIX_OPTIONS, "--pin", "--no-p99-run", "--p99-window"):
            if option in given or option in flags:
                raise UsageError(f"{option} is an option of --scenario app-impact")
    app = (app_options(opt, scales, repeat, workers, contenders, given, flags)
           if scenario == "app-impact" else None)
    json_out = opt.get("--json")
    if json_out:
        json_out = os.path.abspath(json_out)
        if not os.path.isdir(os.path.dirname(json_out)):
            raise UsageError(f"--json: no directory {os.path.dirname(json_out)}")
    return Config(root=root, scenario=scenario, scales=scales, workers=workers,
                  contenders=contenders, repeat=repeat, json_out=json_out,
                  plots_dir=plots_dir(root, opt.get("--plots"), json_out),
                  keep="--keep" in flags, build="--no-build" not in flags,
                  build_dir=os.environ.get("BUILD_DIR", "build"),
                  vacuum_every=opt["--vacuum-every"], link_delay_ms=opt["--link-delay-ms"],
                  proxy=opt.get("--proxy"), app=app)


def install_packages(cfg, packages):
    """Installs Debian packages with common.sh's installer (the project's one), giving it this
    list instead of the project's; True when it succeeded."""
    script = ('source scripts/lib/common.sh && PGBACKFILL_DEBIAN_PACKAGES=("$@") '
              '&& pgbf_install_packages')
    return subprocess.run(["bash", "-c", script, "bench", *packages], cwd=cfg.root,
                          check=False).returncode == 0


def install_tools(cfg):
    """The bench-only tools: gnuplot for the plots (skipped when it cannot be installed),
    pgcopydb for the move scenario's pgcopydb contender, pgcopydb and wal2json for the follow
    scenario's (required where asked for)."""
    section("installing")
    if cfg.plots_dir and not shutil.which("gnuplot") and not install_packages(cfg, PLOT_PACKAGES):
        print(f"bench: could not install {' '.join(PLOT_PACKAGES)}: the plots will be skipped",
              file=sys.stderr)
    if cfg.scenario == "move" and "pgcopydb" in cfg.contenders and not shutil.which("pgcopydb"):
        if not install_packages(cfg, bench_move.PACKAGES) or not shutil.which("pgcopydb"):
            raise BenchError("pgcopydb is needed for the pgcopydb contender "
                             "(apt-get install pgcopydb)")
    if cfg.scenario == "follow" and any(bench_follow.parse_contender(c)[0] == "pgcopydb"
                                        for c in cfg.contenders):
        if not install_packages(cfg, bench_follow.PACKAGES) or not shutil.which("pgcopydb"):
            raise BenchError("pgcopydb and wal2json are needed for the pgcopydb contenders "
                             f"(apt-get install {' '.join(bench_follow.PACKAGES)})")


def build(cfg):
    section(f"building ({cfg.build_dir})")
    subprocess.run(["cmake", "-S", ".", "-B", cfg.build_dir, "-G", "Ninja",
                    "--log-level=WARNING"], cwd=cfg.root, check=True, stdout=subprocess.DEVNULL)
    targets = ["pgbackfill"]
    if cfg.scenario == "slow-link" and not cfg.proxy:
        targets.append("pgbackfill_delay_proxy")
    subprocess.run(["ninja", "-C", cfg.build_dir, "-j", os.environ.get("JOBS", "2"), *targets],
                   cwd=cfg.root, check=True)


def built_binaries(cfg):
    """The engine and (slow-link) the delay proxy as built, checked to exist."""
    engine = os.path.join(cfg.root, cfg.build_dir, "engine", "pgbackfill")
    if not os.access(engine, os.X_OK):
        raise BenchError(f"{engine} not built")
    proxy = None
    if cfg.scenario == "slow-link":
        proxy = cfg.proxy or os.path.join(cfg.root, cfg.build_dir, "bench", "proxy",
                                          "pgbackfill_delay_proxy")
        if not os.access(proxy, os.X_OK):
            raise BenchError(f"the delay proxy {proxy} is not built (--proxy PATH)")
    return engine, proxy


def build_info(cfg, engine):
    """Which engine was measured: the commit, whether engine sources differ from it, the
    binary's date."""
    def git(*args):
        out = subprocess.run(["git", "-C", cfg.root, *args], capture_output=True, text=True,
                             check=False)
        return out.stdout.strip() if out.returncode == 0 else ""
    info = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", "engine", "include"):
        info += "+dirty"
    built = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(engine)))
    return f"{info}, binary built {built}"


def mount_point(path):
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def check_disk(cfg, cluster_dir):
    largest = max(cfg.scales)
    if cfg.scenario == "app-impact":
        need_mib = largest * MIB_PER_SCALE * 6 + 3072
    else:
        need_mib = largest * MIB_PER_SCALE * 3 + 2048
    disk = os.statvfs(cluster_dir)
    free_mib = disk.f_bavail * disk.f_frsize // 1048576
    print(f"disk: {free_mib} MiB free on {mount_point(cluster_dir)}, scale {largest} needs about "
          f"{need_mib} MiB", flush=True)
    if free_mib < need_mib:
        raise BenchError(f"not enough free disk for scale {largest} (set TMPDIR to use another "
                         "disk)")


def private_copy(path, work):
    """A private copy, so that a rebuild of the build directory during the run cannot mix two
    engine versions."""
    copy = os.path.join(work, os.path.basename(path))
    shutil.copy2(path, copy)
    return copy


def run_benchmark(cfg):
    """Everything after the options: tools, build, cluster, the scenario and its report; the
    report's exit status."""
    if not os.access(GNU_TIME, os.X_OK):
        raise BenchError(f"GNU time ({GNU_TIME}) is required")
    install_tools(cfg)
    if cfg.build:
        build(cfg)
    engine, proxy = built_binaries(cfg)
    info = build_info(cfg, engine)

    section("starting a throwaway PostgreSQL")
    cluster_dir = tempfile.mkdtemp(prefix="pgbackfill-bench.",
                                   dir=os.environ.get("TMPDIR", "/tmp"))
    try:
        check_disk(cfg, cluster_dir)
        # The app-impact scenario watches a streaming standby's lag (application_name "standby").
        # Pinned, the server shares the backfill's CPU: a batch's backend must not take pgbench's
        # CPU, or pgbench's own wait for it reads as the application's latency.
        pin = cfg.app.pin if cfg.scenario == "app-impact" and cfg.app is not None else None
        cluster = start_cluster(cfg.root, cluster_dir, standby=cfg.scenario == "app-impact",
                                cpu=pin[1] if pin else None)
        work = os.path.join(cluster_dir, "bench")
        os.makedirs(work)
        os.chmod(work, 0o755)
        ctx = Context(cfg=cfg, cluster=cluster, work=work, pgbackfill=private_copy(engine, work),
                      proxy=private_copy(proxy, work) if proxy else None,
                      results=Results(os.path.join(work, "results.jsonl")),
                      postmaster_pid=cluster.postmaster_pid(),
                      clk_tck=os.sysconf("SC_CLK_TCK"), build_info=info,
                      pg_version=cluster.value("postgres", "SHOW server_version"))
        print(f"pgbackfill: {info}", flush=True)
        return SCENARIOS[cfg.scenario](ctx)
    finally:
        if cfg.keep:
            print(f"cluster kept: source {cluster_dir}/env; stop with scripts/pg-cluster stop "
                  f"{cluster_dir}")
        else:
            stop_cluster(cfg.root, cluster_dir)


def main(argv):
    sys.stdout.reconfigure(line_buffering=True)
    # SIGTERM ends the run like Ctrl-C: the cluster is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    try:
        cfg = parse_config(root, argv)
    except UsageError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    try:
        return run_benchmark(cfg)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
