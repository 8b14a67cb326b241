#!/usr/bin/env python3
"""Report of `scripts/bench --scenario app-impact`: turns the raw run records (one JSON object per
line, written by bench_app_impact.py) plus the files they point at (pgbench's
per-transaction logs, the backfill's `--json` events, the standby-lag samples) into the results
table, the detail table, the target check and (with --json) a JSON document.

    app_impact_report.py report RESULTS --rows N --scale N ... [--json FILE]

Latency is pgbench's per-transaction `time` under --rate: from the transaction's scheduled start
to its end, so it includes any wait for a busy server (what the application sees). Percentiles
are nearest-rank over the transactions that ended inside the run's window: for the baseline, from
the lead-in to pgbench's end; for a run with a backfill, from the backfill's start to its end (or
pgbench's, whichever is first).

Records of the shape/rate matrix (they carry a `group`, e.g. select-only@30%) get the matrix
report instead (matrix_report): per group the baseline p99 and its budget (1.25 x p99 + 2 ms),
the oracle sweep (rate -> p99, in or out of the budget), the oracle (the highest measured sweep
rows/s whose window kept the p99 within the budget) and the runs of the throttle under test (no
throttle keys, --budget-throttle, the app's own p99 through throttle.command: p99 against the
budget, failed transactions, rows/s and its ratio to the oracle's), a summary table over the
groups, the targets, one PNG per run. Records without a group (older results files, the
single-shape runs) get the report above, unchanged.
"""

import argparse
import datetime
import glob
import json
import math
import os
import re
import sys

import app_p99_ratio
import bench_plots
from bench_table import Output, fmt, json_events, machine_line, ratio, write_report_json

# Targets from the throttling issue; reported against, never asserted.
TARGET_P99_FACTOR = 1.25     # app p99 during a canary-throttled backfill <= 1.25 x baseline p99
TARGET_P99_SLACK_MS = 2.0    # ... + 2 ms
TARGET_FAILED = 0            # failed application transactions during a throttled backfill
TARGET_RATE_SHARE = 0.5      # throttled backfill rows/s >= 50% of the unthrottled rows/s
TARGET_LAG_S = 3.0           # standby lag with max_replica_lag: 2s, at most
TARGET_ORACLE_SHARE = 0.7    # matrix: the throttle's rows/s >= 0.7 x the oracle's
# A matrix run's window shorter than this (the backfill finished early) gets a note.
MIN_WINDOW_S = 20.0
# The matrix's runs of the throttle under test and their columns' label in the summary table;
# throttle-p99's columns only when some group has that run (--no-p99-run, older results).
THROTTLED = {"throttle-default": "default", "throttle-budget": "budget",
             "throttle-p99": "p99-command"}
ALWAYS_SUMMARIZED = ("throttle-default", "throttle-budget")


def p99_window_s(runs):
    """The window of throttle-p99's signal: the --window its command was given (--p99-window),
    else the script's default."""
    for run in runs:
        if run["role"] == "throttle-p99":
            match = re.search(r"--window[ =']+([0-9.]+)", run.get("plan_throttle") or "")
            if match:
                return float(match.group(1))
    return app_p99_ratio.DEFAULT_WINDOW_S

# A run during which the rest of the machine used more than this share of all CPUs gets a note.
SHARED_MACHINE_SHARE = 0.2

# The canary limit derived from the baseline when --canary-latency is not given.
CANARY_FLOOR_MS = 2.0
CANARY_FACTOR = 1.2


def p99_budget_ms(baseline_p99_ms):
    """The application's p99 budget beside a backfill: 1.25 x the baseline p99 + 2 ms."""
    if baseline_p99_ms is None:
        return None
    return TARGET_P99_FACTOR * baseline_p99_ms + TARGET_P99_SLACK_MS


def percentile(ordered, pct):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def read_transactions(run_dir):
    """pgbench's per-transaction log lines (one file per thread): `client_id transaction_no time
    script_no time_epoch time_us [schedule_lag] ...`, where time is the latency in microseconds or
    `failed` / `skipped`. Returns (end epoch seconds, latency ms or None, status)."""
    out = []
    for path in sorted(glob.glob(os.path.join(run_dir, "pgbench.*"))):
        if path.endswith((".out", ".time")):
            continue
        with open(path, encoding="utf-8") as log:
            for line in log:
                parts = line.split()
                if len(parts) < 6:
                    continue
                try:
                    end = int(parts[4]) + int(parts[5]) / 1e6
                except ValueError:
                    continue
                if parts[2] in ("failed", "skipped"):
                    out.append((end, None, parts[2]))
                else:
                    out.append((end, int(parts[2]) / 1000.0, "ok"))
    return out


def pgbench_summary(run_dir):
    """Numbers from pgbench's own summary: tps, failed transactions, aborted run."""
    out = {"tps": None, "failed": None, "aborted": False}
    try:
        with open(os.path.join(run_dir, "pgbench.out"), encoding="utf-8") as text:
            for line in text:
                if line.startswith("tps = "):
                    out["tps"] = float(line.split()[2])
                elif line.startswith("number of failed transactions:"):
                    out["failed"] = int(line.split(":")[1].split()[0])
                elif "Run was aborted" in line or "client" in line and "aborted" in line:
                    out["aborted"] = True
    except OSError:
        pass
    return out


def app_window(rec, lead_in):
    """The [from, to] epoch seconds over which the application's latencies count."""
    if not rec["with_app"]:
        return None
    end = rec["pgbench_end_ns"] / 1e9
    if rec["with_backfill"]:
        return rec["backfill_start_ns"] / 1e9, min(rec["backfill_end_ns"] / 1e9, end)
    return rec["t0_ns"] / 1e9 + lead_in, end


def latency_stats(rec, lead_in):
    window = app_window(rec, lead_in)
    if window is None:
        return None
    lo, hi = window
    txns = [t for t in read_transactions(rec["dir"]) if lo <= t[0] <= hi]
    ok = sorted(t[1] for t in txns if t[1] is not None)
    seconds = hi - lo
    return {
        "window_from": lo,
        "window_to": hi,
        "window_seconds": seconds,
        "transactions": len(txns),
        "tps": len(txns) / seconds if seconds > 0 else None,
        "failed": sum(1 for t in txns if t[2] == "failed"),
        "skipped": sum(1 for t in txns if t[2] == "skipped"),
        "p50_ms": percentile(ok, 50),
        "p95_ms": percentile(ok, 95),
        "p99_ms": percentile(ok, 99),
        "max_ms": ok[-1] if ok else None,
        "mean_ms": sum(ok) / len(ok) if ok else None,
    }


def event_time(event):
    stamp = event.get("time", "")
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def read_events(rec):
    """The backfill's `--json` events (JSON Lines on its stdout)."""
    return list(json_events(os.path.join(rec["dir"], "pgbackfill.jsonl")))


def backfill_summary(rec):
    """The backfill's own account, from its `--json` events: the job_finished numbers, the hold
    episodes (`throttle` events: held ... running), progress seconds held, concurrency changes."""
    events = read_events(rec)
    finished = next((e for e in reversed(events) if e.get("event") == "job_finished"), {})
    end = event_time(finished) if finished else None
    if end is None:
        end = rec["backfill_end_ns"] / 1e9
    episodes = []
    held_since = None
    reason = None
    for event in events:
        if event.get("event") != "throttle":
            continue
        at = event_time(event)
        if event.get("state") == "held" and held_since is None:
            held_since, reason = at, event.get("reason")
        elif event.get("state") != "held" and held_since is not None:
            episodes.append({"from": held_since, "seconds": at - held_since, "reason": reason})
            held_since = None
    if held_since is not None:
        episodes.append({"from": held_since, "seconds": max(0.0, end - held_since),
                         "reason": reason, "open_at_end": True})
    progress = [e for e in events if e.get("event") == "progress"]
    held_progress = [e for e in progress if e.get("throttle")]
    concurrency = [{"time": e.get("time"), "active_workers": e.get("active_workers"),
                    "pressure": e.get("pressure")}
                   for e in events if e.get("event") == "concurrency"]
    reasons = []
    for text in [ep["reason"] for ep in episodes] + [e["throttle"] for e in held_progress]:
        if text and text not in reasons:
            reasons.append(text)
    actives = [c["active_workers"] for c in concurrency if c["active_workers"] is not None]
    return {
        "outcome": finished.get("outcome"),
        "exit_code": finished.get("exit_code"),
        "message": finished.get("message"),
        "rows": finished.get("rows"),
        "total_rows": finished.get("total_rows"),
        "batches": finished.get("batches"),
        "retries": finished.get("retries"),
        "engine_seconds": finished.get("seconds"),
        "engine_rows_per_second": finished.get("rows_per_second"),
        "holds": len(episodes),
        "held_seconds": sum(ep["seconds"] for ep in episodes),
        "hold_episodes": episodes[:50],
        "progress_events": len(progress),
        "progress_events_held": len(held_progress),
        "throttle_reasons": reasons[:20],
        "concurrency_events": concurrency[:50],
        "min_active_workers": min(actives) if actives else None,
        "verify_differing_rows": next((e.get("differing_rows") for e in reversed(events)
                                       if e.get("event") == "verify"), None),
    }


def lag_summary(rec):
    samples = []
    try:
        with open(os.path.join(rec["dir"], "lag.txt"), encoding="utf-8") as text:
            for line in text:
                parts = line.split()
                if len(parts) != 3:
                    continue
                try:
                    samples.append((float(parts[0]), float(parts[1]), float(parts[2])))
                except ValueError:
                    continue
    except OSError:
        return None
    return {
        "samples": len(samples),
        "max_replay_lag_s": max((s[1] for s in samples), default=None),
        "max_lag_bytes": max((s[2] for s in samples), default=None),
        "seconds_to_catch_up": ((rec["standby_caught_up_ns"] - rec["backfill_end_ns"]) / 1e9
                                if rec["standby_caught_up_ns"] else None),
    }


def summarize(rec, args, clk_tck):
    rec["app"] = latency_stats(rec, args.lead_in)
    rec["pgbench_summary"] = pgbench_summary(rec["dir"]) if rec["with_app"] else None
    problems = []
    if rec["with_app"]:
        if rec["pgbench_status"] != 0:
            problems.append(f"pgbench exit {rec['pgbench_status']}")
        if not rec["app"]["transactions"]:
            problems.append("no pgbench transactions in the window")
    if rec["with_backfill"]:
        bf = backfill_summary(rec)
        seconds = (rec["backfill_end_ns"] - rec["backfill_start_ns"]) / 1e9
        bf["seconds"] = seconds
        bf["rows_per_second"] = (bf["rows"] / seconds
                                 if bf["rows"] is not None and seconds > 0 else None)
        bf["percent_done"] = (100.0 * bf["total_rows"] / args.rows
                              if bf["total_rows"] is not None else None)
        rec["backfill"] = bf
        rec["standby"] = lag_summary(rec)
        status = rec["pgbackfill_status"]
        # A backfill that finished while the application ran: its verify phase sees the rows the
        # application updated after their batch (c of the old abalance; right without
        # dual_write) and exits 4. The checks below (c counts, untouched rows exact) decide.
        app_changed = (rec["with_app"] and status == 4 and bf["outcome"] == "verify_failed")
        bf["verify_failed_by_app"] = app_changed
        if not (status == 0 or (rec["stopped"] and status == 3) or app_changed):
            problems.append(f"pgbackfill exit {status}")
        if app_changed:
            pass
        elif bf["outcome"] not in ("done", "interrupted") or (
                bf["outcome"] == "interrupted" and not rec["stopped"]):
            problems.append(f"outcome {bf['outcome']}")
        if bf["total_rows"] is not None and rec["filled_rows"] != bf["total_rows"]:
            problems.append(f"c set on {rec['filled_rows']} rows, job says {bf['total_rows']}")
        if (bf["outcome"] == "done" or app_changed) and rec["filled_rows"] != args.rows:
            problems.append(f"{args.rows - rec['filled_rows']} rows left NULL")
        if not rec["standby"] or not rec["standby"]["samples"]:
            problems.append("no standby lag samples")
        # A probe that cannot be read holds the job (fail closed): the run then measures an
        # error, not the throttle.
        failed_probes = [r for r in bf["throttle_reasons"] if probe_failure(r)]
        if failed_probes:
            problems.append("throttle probe failed: " + failed_probes[0])
    else:
        rec["backfill"] = None
        rec["standby"] = None
    if rec["wrong_rows"] != 0:
        problems.append(f"{rec['wrong_rows']} wrong rows")
    rec["server_cpu_s"] = rec["server_ticks"] / clk_tck
    rec["standby_cpu_s"] = rec["standby_ticks"] / clk_tck
    rec["client_cpu_s"] = rec["client_ticks"] / clk_tck
    rec["other_cpu_s"] = max(0.0, rec["machine_ticks"] / clk_tck - rec["server_cpu_s"]
                             - rec["standby_cpu_s"] - rec["client_cpu_s"])
    rec["wal_mib"] = rec["wal_bytes"] / 1048576.0
    rec["ok"] = not problems
    rec["problems"] = problems
    return rec




def probe_failure(reason):
    """A hold reason that is a signal that could not be read: a failed probe, or a
    throttle.command that failed or printed something that is not a signal."""
    return any(text in reason for text in ("probe failed", "monitoring connection failed",
                                           "throttle command exited",
                                           "throttle command printed '"))


def timeline(rec):
    """The run second by second, x in seconds since the run started (t0, pgbench's launch):
    `backfill` [x, rows/s] from the `progress` events (rows_done between consecutive events, the
    last interval ending where the backfill phase ended), `app` [x, p99 ms, tps] of the
    transactions that ended in each second (nearest rank), `holds` [from, to] when the throttle
    held the job, `marks` [x, label] where the backfill started and ended."""
    t0 = rec["t0_ns"] / 1e9
    out = {"backfill": [], "app": [], "holds": [], "marks": []}
    if rec["with_backfill"]:
        start = rec["backfill_start_ns"] / 1e9
        end = rec["backfill_end_ns"] / 1e9
        out["marks"].append([start - t0, "backfill starts"])
        out["marks"].append([end - t0, "backfill stopped" if rec["stopped"] else "backfill ends"])
        events = read_events(rec)
        points = []
        for event in events:
            kind = event.get("event")
            if kind == "progress" and event.get("rows_done") is not None:
                points.append((event_time(event), event["rows_done"]))
            elif kind == "phase_started" and event.get("phase") == "verify" or kind == "job_finished":
                finished = next((e for e in events if e.get("event") == "job_finished"), {})
                done = finished.get("total_rows", finished.get("rows"))
                if done is not None:
                    points.append((event_time(event), done))
                break
        prev_t, prev_rows = start, 0
        for at, rows in points:
            if at is None or at - prev_t < 0.2:
                continue
            out["backfill"].append([round(at - t0, 3), (rows - prev_rows) / (at - prev_t)])
            prev_t, prev_rows = at, rows
        out["pace"] = pace_series(events, t0, end)
        for episode in (rec.get("backfill") or {}).get("hold_episodes", []):
            if episode.get("from") is not None:
                out["holds"].append([episode["from"] - t0,
                                     episode["from"] - t0 + episode["seconds"]])
    if rec["with_app"]:
        buckets = {}
        for end, latency, _ in read_transactions(rec["dir"]):
            second = int(end - t0)
            buckets.setdefault(second, []).append(latency)
        for second in sorted(buckets):
            ok = sorted(v for v in buckets[second] if v is not None)
            if ok:
                out["app"].append([second + 0.5, percentile(ok, 99), len(buckets[second])])
    return out


def pace_series(events, t0, end):
    """The throttle's pace as steps [x, rows/s or None when not pacing]: from `concurrency`
    events (pace_rows_per_second, absent = not pacing) and from `progress` events that carry
    pace_rows_per_second; the last value held up to the backfill's end."""
    points = []
    for event in events:
        kind = event.get("event")
        if kind == "concurrency" or (kind == "progress" and "pace_rows_per_second" in event):
            at = event_time(event)
            if at is not None:
                points.append([round(at - t0, 3), event.get("pace_rows_per_second")])
    if points:
        points.append([round(end - t0, 3), points[-1][1]])
    return points


def plot_timelines(args, runs, timelines, by_name):
    """app-impact.png: one panel per run, the backfill's rows/s (left axis) and the application's
    p99 per second (right axis, log), the hold episodes shaded, the baseline's p99 dashed."""
    baseline = by_name.get("baseline")
    base_p99 = (baseline["app"]["p99_ms"]
                if baseline and baseline.get("app") and baseline["app"]["p99_ms"] else None)
    panels = []
    for rec in runs:
        line = timelines[rec["name"]]
        what = {"unthrottled": "the backfill alone",
                "baseline": f"pgbench at {fmt(args.rate, ',d')} tps, no backfill",
                "no-throttle": "pgbench + a backfill without hold signal",
                "canary": f"pgbench + a backfill with max_canary_latency {args.canary_ms} ms",
                "replica-lag": f"pgbench + a backfill with max_replica_lag {args.replica_lag}",
                }.get(rec["name"], rec["name"])
        xs = ([p[0] for p in line["backfill"]] + [p[0] for p in line["app"]]
              + [m[0] for m in line["marks"]])
        panels.append({
            "title": f"{rec['name']}: {what}",
            "xmax": (max(xs) if xs else 1) + 1,
            "left": {"title": "backfill rows/s", "points": line["backfill"]},
            "left_label": "backfill rows/s",
            "right": {"title": "app p99 ms", "points": [p[:2] for p in line["app"]]},
            "right_label": "app p99 ms (log)",
            "right_hline": ((base_p99, f"baseline p99 {base_p99:.1f} ms")
                            if base_p99 and rec["with_app"] and rec["name"] != "baseline"
                            else None),
            "spans": line["holds"],
            "marks": line["marks"],
        })
    title = (f"app-impact, scale {args.scale}: backfill rows/s and application p99 per second "
             f"(pgbench -b {args.script} -c {args.clients} at {fmt(args.rate, ',d')} tps)\n"
             f"{os.cpu_count()} cores, PostgreSQL {(args.pg_version or '?').split()[0]}"
             + (f"; pgbackfill {args.build}" if args.build else ""))
    return bench_plots.time_panels(os.path.join(args.plots, "app-impact.png"), title, panels)


def report_head(args, title):
    """A new Output with the lines every app-impact report starts with: what, where, which
    binary, and the raw measurements' file."""
    out = Output()
    out.line(f"== results: {title}, scale {args.scale} ({args.rows:,} rows), "
             f"{machine_line(args.pg_version)}")
    out.line(f"pgbackfill: {args.build}")
    if args.raw:
        out.line(f"raw measurements: {args.raw}")
    return out


def report(args):
    with open(args.results, encoding="utf-8") as results:
        records = [json.loads(line) for line in results if line.strip()]
    if any(r.get("group") for r in records):
        return matrix_report(args, records)
    max_tps = next((r for r in records if r["kind"] == "max-tps"), None)
    runs = [summarize(r, args, args.clk_tck) for r in records if r["kind"] == "app"]
    by_name = {r["name"]: r for r in runs}
    unthrottled = by_name.get("unthrottled")
    ref_rate = (unthrottled["backfill"]["rows_per_second"]
                if unthrottled and unthrottled["ok"] else None)
    for rec in runs:
        bf = rec["backfill"]
        rec["rate_vs_unthrottled"] = (bf["rows_per_second"] / ref_rate
                                      if bf and ref_rate and bf["rows_per_second"] is not None
                                      else None)

    out = report_head(args, "app-impact")
    out.line(f"application: pgbench -b {args.script} -c {args.clients} -j {args.threads}"
          + (f"; max {max_tps['tps']:,.0f} tps ({args.max_tps_seconds} s unthrottled)"
             if max_tps else "")
          + f"; fixed rate {fmt(args.rate, ',d')} tps"
          + (f" ({args.rate_percent:g}% of max)" if max_tps else " (given)")
          + f"; {args.duration} s per run, backfill from {args.lead_in:g} s")
    out.line(f"backfill: workers {args.workers}, batch.target {args.batch_target}, "
          f"throttle.interval {args.interval}; canary limit "
          + (f"{args.canary_ms} ms ({args.canary_source})" if args.canary_ms else "-")
          + f"; replica lag limit {args.replica_lag}"
          + (f"; extra throttle keys {{ {args.throttle_extra} }}" if args.throttle_extra else ""))
    out.line()

    header = ("run", "app tps", "p50 ms", "p95 ms", "p99 ms", "max ms", "failed", "backfill",
              "rows/s", "vs unthrottled", "held s", "max lag s", "max lag MiB", "check")
    rows = []
    for rec in runs:
        app = rec["app"] or {}
        bf = rec["backfill"] or {}
        lag = rec["standby"] or {}
        if not rec["with_backfill"]:
            state = "-"
        elif bf.get("outcome") == "done":
            state = "done"
        elif bf.get("verify_failed_by_app"):
            state = f"done, {fmt(bf.get('verify_differing_rows'), ',d')} app-changed"
        else:
            state = f"{bf.get('outcome')} {fmt(bf.get('percent_done'), '.0f')}%"
        failed = None
        if app:
            failed = app["failed"] + app["skipped"]
        rows.append((rec["name"], fmt(app.get("tps"), ",.0f"), fmt(app.get("p50_ms"), ".2f"),
                     fmt(app.get("p95_ms"), ".2f"), fmt(app.get("p99_ms"), ".2f"),
                     fmt(app.get("max_ms"), ".1f"), fmt(failed, "d"), state,
                     fmt(bf.get("rows_per_second"), ",.0f"),
                     fmt(rec["rate_vs_unthrottled"], ".2f")
                     + ("x" if rec["rate_vs_unthrottled"] is not None else ""),
                     fmt(bf.get("held_seconds"), ".1f"), fmt(lag.get("max_replay_lag_s"), ".2f"),
                     fmt(lag["max_lag_bytes"] / 1048576.0 if lag.get("max_lag_bytes") is not None
                         else None, ",.1f"),
                     "ok" if rec["ok"] else "FAIL: " + ", ".join(
                         p if len(p) <= 70 else p[:67] + "..." for p in rec["problems"])))
    out.table(header, rows, left=(0, 7, len(header) - 1), title="results")

    out.line()
    header2 = ("run", "window s", "app txns", "holds", "held %", "progress held/all",
               "min workers", "retries", "catch-up s", "WAL MiB", "server CPU s",
               "standby CPU s", "client CPU s", "other CPU s", "first throttle reason")
    rows2 = []
    for rec in runs:
        app = rec["app"] or {}
        bf = rec["backfill"] or {}
        lag = rec["standby"] or {}
        held_pct = (100.0 * bf["held_seconds"] / bf["seconds"]
                    if bf and bf.get("seconds") else None)
        reason = bf.get("throttle_reasons", [None])[0] if bf.get("throttle_reasons") else None
        if reason and len(reason) > 60:
            reason = reason[:57] + "..."
        window = app.get("window_seconds") if app else bf.get("seconds")
        rows2.append((rec["name"], fmt(window, ".1f"), fmt(app.get("transactions"), ",d"),
                      fmt(bf.get("holds"), "d"), fmt(held_pct, ".0f"),
                      f"{bf['progress_events_held']}/{bf['progress_events']}" if bf else "-",
                      fmt(bf.get("min_active_workers"), "d"), fmt(bf.get("retries"), "d"),
                      fmt(lag.get("seconds_to_catch_up"), ".1f"), fmt(rec["wal_mib"], ",.0f"),
                      fmt(rec["server_cpu_s"], ".1f"), fmt(rec["standby_cpu_s"], ".1f"),
                      fmt(rec["client_cpu_s"], ".1f"),
                      fmt(rec["other_cpu_s"], ".1f"), reason or "-"))
    out.table(header2, rows2, left=(0, len(header2) - 1), title="details")

    cpus = os.cpu_count() or 1
    for rec in runs:
        capacity = rec["wall_ns"] / 1e9 * cpus
        if capacity > 0 and rec["other_cpu_s"] > SHARED_MACHINE_SHARE * capacity:
            out.line()
            out.line(f"note: {rec['name']}: other processes used {rec['other_cpu_s']:.1f} CPU s, "
                     f"{100.0 * rec['other_cpu_s'] / capacity:.0f}% of the machine's {cpus} cores "
                     "during the run: the machine was shared, latencies and rates are inflated")

    targets = check_targets(by_name, ref_rate)
    if targets:
        out.line()
        for line in targets:
            out.line(line)

    timelines = {rec["name"]: timeline(rec) for rec in runs}
    plots = {}
    if args.plots:
        plots["app-impact.png"] = plot_timelines(args, runs, timelines, by_name)
        out.line()
        for message in plots.values():
            out.line(message)

    if args.json:
        write_report_json(args.json, "app-impact", args, out, {
            "scale": args.scale,
            "rows": args.rows,
            "settings": {
                "pgbench_script": args.script, "clients": args.clients,
                "threads": args.threads, "max_tps": max_tps["tps"] if max_tps else None,
                "max_tps_seconds": args.max_tps_seconds, "rate": args.rate,
                "rate_percent": args.rate_percent if max_tps else None,
                "duration_s": args.duration, "lead_in_s": args.lead_in,
                "workers": args.workers, "batch_target": args.batch_target,
                "throttle_interval": args.interval, "canary_limit_ms": args.canary_ms,
                "canary_limit_source": args.canary_source, "max_replica_lag": args.replica_lag,
                "throttle_extra": args.throttle_extra,
            },
            "unthrottled_rows_per_second": ref_rate,
            "runs": runs,
            "targets": targets,
            "timelines": timelines,
            "plots": plots,
        })
    return 0 if all(rec["ok"] for rec in runs) else 1


def check_targets(by_name, ref_rate):
    lines = []

    def verdict(label, value, target, op, name):
        if value is None:
            lines.append(f"target {name}: {label}: not measured")
            return
        met = value <= target if op == "<=" else value >= target
        if met:
            result = "met"
        elif op == ">=":
            result = f"MISSED by {100.0 * (target - value) / target:.0f}%" if target else "MISSED"
        else:
            result = (f"MISSED: {value / target:.2f}x the limit" if target
                      else f"MISSED: {value:g}")
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        wanted = f"{target:.2f}" if isinstance(target, float) else str(target)
        lines.append(f"target {name}: {label} {shown} (want {op} {wanted}): {result}")

    baseline = by_name.get("baseline")
    canary = by_name.get("canary")
    if canary:
        if baseline and baseline["app"] and baseline["app"]["p99_ms"] is not None:
            limit = TARGET_P99_FACTOR * baseline["app"]["p99_ms"] + TARGET_P99_SLACK_MS
            verdict(f"app p99 ms (baseline {baseline['app']['p99_ms']:.2f})",
                    canary["app"]["p99_ms"] if canary["app"] else None, limit, "<=", "canary")
        else:
            verdict("app p99 ms vs baseline", None, None, "<=", "canary")
        failed = (canary["app"]["failed"] + canary["app"]["skipped"]) if canary["app"] else None
        verdict("failed app transactions", failed, TARGET_FAILED, "<=", "canary")
        rate = canary["backfill"]["rows_per_second"] if canary["backfill"] else None
        verdict("rows/s vs unthrottled",
                rate / ref_rate if rate is not None and ref_rate else None,
                TARGET_RATE_SHARE, ">=", "canary")
    lagged = by_name.get("replica-lag")
    if lagged:
        verdict("max standby replay lag s",
                lagged["standby"]["max_replay_lag_s"] if lagged["standby"] else None,
                TARGET_LAG_S, "<=", "replica-lag")
        failed = (lagged["app"]["failed"] + lagged["app"]["skipped"]) if lagged["app"] else None
        verdict("failed app transactions", failed, TARGET_FAILED, "<=", "replica-lag")
    return lines


# ---- the shape/rate matrix ----

def target_line(name, label, value, target, op):
    """`target NAME: LABEL VALUE (want OP TARGET): met|MISSED ...`."""
    if value is None or target is None:
        return f"target {name}: {label}: not measured"
    met = value <= target if op == "<=" else value >= target
    if met:
        result = "met"
    elif op == ">=":
        result = f"MISSED by {100.0 * (target - value) / target:.0f}%" if target else "MISSED"
    else:
        result = f"MISSED: {value / target:.2f}x the limit" if target else f"MISSED: {value:g}"
    shown = f"{value:.2f}" if isinstance(value, float) else str(value)
    wanted = f"{target:.2f}" if isinstance(target, float) else str(target)
    return f"target {name}: {label} {shown} (want {op} {wanted}): {result}"


def failed_of(rec):
    app = rec.get("app")
    return app["failed"] + app["skipped"] if app else None


def group_summary(name, recs, max_tps):
    """One group's numbers: baseline p99 and budget, each run's p99 in or out of it, the sweep,
    the oracle (the highest measured rows/s of a sweep run that passed its checks and kept the
    p99 within the budget) and each throttled run's ratio to it. Sets the runs' p99_budget_ms,
    in_budget and vs_oracle."""
    first = recs[0]
    base = next((r for r in recs if r["role"] == "baseline"), None)
    base_p99 = base["app"]["p99_ms"] if base and base.get("app") else None
    budget = p99_budget_ms(base_p99)
    for rec in recs:
        p99 = (rec.get("app") or {}).get("p99_ms")
        rec["p99_budget_ms"] = budget
        rec["in_budget"] = p99 <= budget if p99 is not None and budget is not None else None
    sweep = sorted((r for r in recs if r["role"] == "sweep"), key=lambda r: r["cap"])
    fits = [r for r in sweep if r["ok"] and r["in_budget"]
            and r["backfill"]["rows_per_second"] is not None]
    best = max(fits, key=lambda r: r["backfill"]["rows_per_second"], default=None)
    oracle = None
    if best:
        oracle = {"run": best["name"], "cap": best["cap"],
                  "rows_per_second": best["backfill"]["rows_per_second"],
                  "p99_ms": best["app"]["p99_ms"],
                  # the sweep's highest step kept the budget: the real limit lies above it
                  "lower_bound": best["cap"] == sweep[-1]["cap"]}
    oracle_rate = oracle["rows_per_second"] if oracle else None
    throttled = []
    for rec in recs:
        bf = rec.get("backfill") or {}
        rec["vs_oracle"] = (bf["rows_per_second"] / oracle_rate
                            if rec["role"] != "sweep" and rec["with_backfill"] and oracle_rate
                            and bf.get("rows_per_second") is not None else None)
        if rec["role"].startswith("throttle-"):
            throttled.append({"run": rec["name"], "role": rec["role"],
                              "plan_throttle": rec["plan_throttle"],
                              "p99_ms": (rec.get("app") or {}).get("p99_ms"),
                              "p99_budget_ms": budget, "in_budget": rec["in_budget"],
                              "failed": failed_of(rec), "rows_per_second": bf.get("rows_per_second"),
                              "vs_oracle": rec["vs_oracle"], "ok": rec["ok"],
                              "problems": "; ".join(rec["problems"])})
    return {
        "group": name, "shape": first["shape"], "rate_percent": float(first["rate_percent"]),
        "rate": first["rate"], "max_tps": max_tps["tps"] if max_tps else None,
        "baseline_run": base["name"] if base else None, "baseline_p99_ms": base_p99,
        "p99_budget_ms": budget,
        "sweep": [{"run": r["name"], "max_rows_per_second": r["cap"],
                   "rows_per_second": r["backfill"]["rows_per_second"],
                   "p99_ms": (r.get("app") or {}).get("p99_ms"), "in_budget": r["in_budget"],
                   "failed": failed_of(r), "ok": r["ok"]} for r in sweep],
        "oracle": oracle,
        "throttled": throttled,
    }


def group_targets(summary):
    lines = []
    for run in summary["throttled"]:
        name = f"{summary['group']} {run['role']}"
        if not run["ok"]:
            lines.append(f"target {name}: not measured: the run failed ({run['problems']})")
            continue
        lines.append(target_line(name, f"app p99 ms (baseline {fmt(summary['baseline_p99_ms'], '.2f')})",
                                 run["p99_ms"], summary["p99_budget_ms"], "<="))
        lines.append(target_line(name, "failed app transactions", run["failed"], TARGET_FAILED,
                                 "<="))
        lines.append(target_line(name, "rows/s vs the oracle", run["vs_oracle"],
                                 TARGET_ORACLE_SHARE, ">="))
    return lines


def last_line(path):
    """The last non-empty line of a file, or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as text:
            lines = [line.strip() for line in text if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def backfill_state(rec):
    bf = rec.get("backfill") or {}
    if not rec["with_backfill"]:
        return "-"
    if bf.get("outcome") == "done":
        return "done"
    if bf.get("verify_failed_by_app"):
        return f"done, {fmt(bf.get('verify_differing_rows'), ',d')} app-changed"
    if bf.get("outcome") is None:
        return f"no job (exit {rec['pgbackfill_status']})"
    return f"{bf.get('outcome')} {fmt(bf.get('percent_done'), '.0f')}%"


def check_text(rec):
    return "ok" if rec["ok"] else "FAIL: " + ", ".join(
        p if len(p) <= 70 else p[:67] + "..." for p in rec["problems"])


def pgbench_cpu_share(rec):
    """pgbench's CPU as a share of its one core over its run (pinned, -j 1)."""
    wall = rec.get("pgbench_wall_s")
    return 100.0 * rec["pgbench_cpu_s"] / wall if wall else None


def plot_matrix_run(args, rec, line, summary):
    """One PNG per run: backfill rows/s, the throttle's pace and the sweep's cap (left), the
    application's p99 per second with the baseline p99 and the budget (right, log), the holds
    shaded."""
    left_extra, left_hlines, right_hlines = [], [], []
    if any(p[1] is not None for p in line.get("pace") or []):
        left_extra.append({"title": "pace rows/s (throttle)", "points": line["pace"],
                           "style": "with steps lw 2 lc rgb '#228833'"})
    if rec["cap"]:
        left_hlines.append((rec["cap"], f"max_rows_per_second {rec['cap']:,}"))
    if summary["baseline_p99_ms"] and rec["role"] != "baseline":
        right_hlines.append((summary["baseline_p99_ms"],
                             f"baseline p99 {summary['baseline_p99_ms']:.2f} ms"))
    if summary["p99_budget_ms"]:
        right_hlines.append((summary["p99_budget_ms"],
                             f"budget {summary['p99_budget_ms']:.2f} ms"))
    what = {"baseline": "pgbench alone",
            "sweep": f"backfill held to {fmt(rec['cap'], ',d')} rows/s, 1 worker",
            "throttle-default": f"backfill, {rec['workers']} workers, no throttle keys",
            "throttle-budget": f"backfill, {rec['workers']} workers, "
                               f"throttle: {{ {rec['plan_throttle']} }}",
            # the command itself is long (absolute paths): the PNG says what it measures
            "throttle-p99": f"backfill, {rec['workers']} workers, throttle.command: app p99 "
                            "/ budget"}[rec["role"]]
    app = rec.get("app") or {}
    bf = rec.get("backfill") or {}
    xs = ([p[0] for p in line["backfill"]] + [p[0] for p in line["app"]]
          + [m[0] for m in line["marks"]])
    panel = {
        "title": f"{rec['name']}: {what}; window p99 {fmt(app.get('p99_ms'), '.2f')} ms, "
                 f"{fmt(bf.get('rows_per_second'), ',.0f')} rows/s",
        "xmax": (max(xs) if xs else 1) + 1,
        "left": {"title": "backfill rows/s", "points": line["backfill"]},
        "left_label": "backfill rows/s",
        "left_extra": left_extra,
        "left_hlines": left_hlines,
        "right": {"title": "app p99 ms per second", "points": [p[:2] for p in line["app"]]},
        "right_label": "app p99 ms (log)",
        "right_hlines": right_hlines,
        "spans": line["holds"],
        "marks": line["marks"],
    }
    title = (f"app-impact {summary['group']} (pgbench -b {rec['shape']} -c {args.clients} "
             f"-j {args.threads} -R {fmt(rec['rate'], ',d')}), scale {args.scale}\n"
             f"{os.cpu_count()} cores, PostgreSQL {(args.pg_version or '?').split()[0]}"
             + (f"; pgbackfill {args.build}" if args.build else ""))
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in rec["name"])
    return bench_plots.time_panels(os.path.join(args.plots, f"app-impact.{safe}.png"), title,
                                   [panel])


def summary_roles(p99_run):
    """The throttled runs that get columns in the summary table."""
    return ALWAYS_SUMMARIZED + (("throttle-p99",) if p99_run else ())


def throttled_cells(run):
    """A throttled run's summary cells: p99 (OUT of the budget marked), failed, rows/s, ratio."""
    p99 = fmt(run.get("p99_ms"), ".2f")
    if run.get("in_budget") is False:
        p99 += " OUT"
    return [p99, fmt(run.get("failed"), "d"), fmt(run.get("rows_per_second"), ",.0f"),
            ratio(run.get("vs_oracle"))]


def summary_table(out, summaries, p99_run):
    """One row per group: rate, baseline p99, budget, oracle, then each throttled run's cells."""
    roles = summary_roles(p99_run)
    header = ("group", "rate tps", "baseline p99", "budget ms", "oracle rows/s",
              *(f"{THROTTLED[role]} {column}" for role in roles
                for column in ("p99", "failed", "rows/s", "vs oracle")))
    rows = []
    for summary in summaries:
        by_role = {t["role"]: t for t in summary["throttled"]}
        cells = [cell for role in roles for cell in throttled_cells(by_role.get(role, {}))]
        rows.append((summary["group"], fmt(summary["rate"], ",d"),
                     fmt(summary["baseline_p99_ms"], ".2f"), fmt(summary["p99_budget_ms"], ".2f"),
                     fmt((summary["oracle"] or {}).get("rows_per_second"), ",.0f"), *cells))
    out.table(header, rows, left=(0,), title="summary")


def cpu_pressure_cell(rec, alone):
    """The run's CPU pressure in percent, and in points over the application alone's."""
    share = rec.get("cpu_pressure")
    if share is None:
        return "-"
    if alone is None or rec["role"] == "baseline":
        return f"{share * 100:.1f}"
    return f"{share * 100:.1f} ({(share - alone) * 100:+.1f})"


def matrix_report(args, records):
    """The report of the shape/rate matrix (records with a `group`)."""
    max_tps = {r.get("shape", ""): r for r in records if r["kind"] == "max-tps"}
    runs = [summarize(r, args, args.clk_tck) for r in records if r["kind"] == "app"]
    for rec in runs:
        if rec["with_backfill"] and rec["backfill"]["outcome"] is None:
            # The engine refused the plan or failed before its job started (e.g. a throttle key
            # it does not have yet): its last words say why.
            said = last_line(os.path.join(rec["dir"], "pgbackfill.stderr"))
            if said:
                said = re.sub(r"^pgbackfill: \S*plan\.yaml:[0-9]+: ", "", said)
                rec["problems"] = [f"pgbackfill exit {rec['pgbackfill_status']}: {said}"]
        rec["pgbench_cpu_s"] = rec.get("pgbench_ticks", 0) / args.clk_tck
        rec["pgbackfill_cpu_s"] = rec.get("pgbackfill_ticks", 0) / args.clk_tck
        rec["pgbench_cpu_percent"] = pgbench_cpu_share(rec)
    groups = {}
    for rec in runs:
        groups.setdefault(rec["group"], []).append(rec)
    summaries = [group_summary(name, recs, max_tps.get(recs[0]["shape"]))
                 for name, recs in groups.items()]
    pins = {tuple(r["pin"]) for r in runs if r.get("pin")}
    budgets = sorted({r["plan_throttle"] for r in runs if r["role"] == "throttle-budget"})
    workers = sorted({r["workers"] for r in runs if r["role"].startswith("throttle-")})
    p99_run = any(r["role"] == "throttle-p99" for r in runs)

    out = report_head(args, "app-impact shape/rate matrix")
    out.line(f"application: pgbench -c {args.clients} -j {args.threads} -R (a percentage of each "
             f"shape's max TPS, {args.max_tps_seconds} s unthrottled); {args.duration} s per run, "
             f"backfill from {args.lead_in:g} s; clients pinned: "
             + (", ".join(f"pgbench CPU {a}, pgbackfill + lag sampler CPU {b}" for a, b in pins)
                or "no"))
    out.line(f"backfill: batch.target {args.batch_target}; sweep: 1 worker, throttle: "
             "{ max_rows_per_second: R, max_replica_lag: 0, max_lock_waiters: 100, "
             "application: off }; "
             f"throttled runs: {'/'.join(str(w) for w in workers) or '-'} workers, "
             "throttle-default without throttle keys, throttle-budget with throttle: { "
             + " | ".join(budgets) + " }"
             + (", throttle-p99 with throttle: { command: app_p99_ratio.py }: the app's own "
                f"p99 over the last {p99_window_s(runs):g} s / the budget" if p99_run else ""))
    out.line(f"budget: app p99 <= {TARGET_P99_FACTOR:g} x baseline p99 + {TARGET_P99_SLACK_MS:g} ms "
             "over the backfill's window; oracle: the highest measured sweep rows/s within it "
             "(run checks passed); target: throttled rows/s >= "
             f"{TARGET_ORACLE_SHARE:g} x the oracle's, 0 failed")

    out.line("cpu %: the share of the window in which a runnable task waited for a CPU "
             "(/proc/pressure/cpu, the whole machine; what max_cpu_pressure reads), in points "
             "over the group's baseline run")

    header = ("run", "cap rows/s", "app tps", "p50 ms", "p99 ms", "budget ms", "p99", "failed",
              "cpu %", "backfill", "rows/s", "vs oracle", "held s", "window s", "check")
    for summary in summaries:
        out.line()
        recs = groups[summary["group"]]
        alone = next((r.get("cpu_pressure") for r in recs if r["role"] == "baseline"), None)
        out.line(f"{summary['group']}: max {fmt(summary['max_tps'], ',.0f')} tps, fixed rate "
                 f"{fmt(summary['rate'], ',d')} tps; baseline p99 "
                 f"{fmt(summary['baseline_p99_ms'], '.2f')} ms, budget "
                 f"{fmt(summary['p99_budget_ms'], '.2f')} ms")
        rows = []
        for rec in recs:
            app = rec.get("app") or {}
            bf = rec.get("backfill") or {}
            rows.append((rec["role"], fmt(rec["cap"], ",d"), fmt(app.get("tps"), ",.0f"),
                         fmt(app.get("p50_ms"), ".2f"), fmt(app.get("p99_ms"), ".2f"),
                         fmt(rec["p99_budget_ms"], ".2f"),
                         {True: "in", False: "OUT", None: "-"}[rec["in_budget"]],
                         fmt(failed_of(rec), "d"), cpu_pressure_cell(rec, alone),
                         backfill_state(rec),
                         fmt(bf.get("rows_per_second"), ",.0f"),
                         ratio(rec["vs_oracle"]), fmt(bf.get("held_seconds"), ".1f"),
                         fmt(app.get("window_seconds"), ".1f"), check_text(rec)))
        out.table(header, rows, left=(0, 6, 9, len(header) - 1), title=summary["group"])
        oracle = summary["oracle"]
        if oracle:
            out.line(f"oracle: {fmt(oracle['rows_per_second'], ',.0f')} rows/s (sweep step "
                     f"{oracle['cap']:,}, p99 {oracle['p99_ms']:.2f} ms <= "
                     f"{summary['p99_budget_ms']:.2f} ms)"
                     + ("; the highest step kept the budget, so the oracle is a lower bound "
                        "(add higher --sweep steps)" if oracle["lower_bound"] else ""))
        else:
            out.line("oracle: none: no sweep step kept the p99 within the budget (add lower "
                     "--sweep steps); no ratios")

    out.line()
    summary_table(out, summaries, p99_run)

    out.line()
    header3 = ("run", "app txns", "holds", "held %", "progress held/all", "min workers",
               "retries", "WAL MiB", "server CPU s", "standby CPU s", "pgbench CPU s",
               "pgbench CPU %", "pgbackfill CPU s", "other CPU s", "first throttle reason")
    rows3 = []
    for rec in runs:
        app = rec.get("app") or {}
        bf = rec.get("backfill") or {}
        held_pct = (100.0 * bf["held_seconds"] / bf["seconds"]
                    if bf and bf.get("seconds") else None)
        reason = bf.get("throttle_reasons", [None])[0] if bf.get("throttle_reasons") else None
        if reason and len(reason) > 60:
            reason = reason[:57] + "..."
        rows3.append((rec["name"], fmt(app.get("transactions"), ",d"), fmt(bf.get("holds"), "d"),
                      fmt(held_pct, ".0f"),
                      f"{bf['progress_events_held']}/{bf['progress_events']}" if bf else "-",
                      fmt(bf.get("min_active_workers"), "d"), fmt(bf.get("retries"), "d"),
                      fmt(rec["wal_mib"], ",.0f"), fmt(rec["server_cpu_s"], ".1f"),
                      fmt(rec["standby_cpu_s"], ".1f"), fmt(rec["pgbench_cpu_s"], ".2f"),
                      fmt(rec["pgbench_cpu_percent"], ".0f"), fmt(rec["pgbackfill_cpu_s"], ".2f"),
                      fmt(rec["other_cpu_s"], ".1f"), reason or "-"))
    out.table(header3, rows3, left=(0, len(header3) - 1), title="details")

    cpus = os.cpu_count() or 1
    for rec in runs:
        capacity = rec["wall_ns"] / 1e9 * cpus
        if capacity > 0 and rec["other_cpu_s"] > SHARED_MACHINE_SHARE * capacity:
            out.line(f"note: {rec['name']}: other processes used {rec['other_cpu_s']:.1f} CPU s, "
                     f"{100.0 * rec['other_cpu_s'] / capacity:.0f}% of the machine's {cpus} cores "
                     "during the run: the machine was shared, latencies and rates are inflated")
        window = (rec.get("app") or {}).get("window_seconds")
        if window is not None and window < MIN_WINDOW_S:
            out.line(f"note: {rec['name']}: its window is {window:.1f} s, under "
                     f"{MIN_WINDOW_S:g} s (a longer --duration, or a larger --scale when the "
                     "backfill finished early)")

    targets = [line for summary in summaries for line in group_targets(summary)]
    if targets:
        out.line()
        for line in targets:
            out.line(line)

    timelines = {rec["name"]: timeline(rec) for rec in runs}
    plots = {}
    if args.plots:
        by_group = {s["group"]: s for s in summaries}
        out.line()
        for rec in runs:
            message = plot_matrix_run(args, rec, timelines[rec["name"]], by_group[rec["group"]])
            plots[rec["name"]] = message
            out.line(message)

    if args.json:
        write_report_json(args.json, "app-impact", args, out, {
            "mode": "shape-rate matrix",
            "scale": args.scale,
            "rows": args.rows,
            "settings": {
                "clients": args.clients, "threads": args.threads,
                "max_tps_seconds": args.max_tps_seconds, "duration_s": args.duration,
                "lead_in_s": args.lead_in, "batch_target": args.batch_target,
                "throttled_workers": workers, "budget_throttle": budgets,
                "p99_command": (f"app_p99_ratio.py: the app's client-side p99 over the last "
                                f"{p99_window_s(runs):g} s / the group's budget" if p99_run
                                else None),
                "sweep": sorted({r["cap"] for r in runs if r["role"] == "sweep"}),
                "pin": [list(p) for p in pins],
                "p99_budget": f"{TARGET_P99_FACTOR:g} x baseline p99 + {TARGET_P99_SLACK_MS:g} ms",
                "oracle_share_target": TARGET_ORACLE_SHARE,
                "latency_source": "pgbench per-transaction --log (time from the scheduled start); "
                                  "per-second p99 by nearest rank",
            },
            "max_tps": {shape: r["tps"] for shape, r in max_tps.items()},
            "groups": summaries,
            "runs": runs,
            "targets": targets,
            "timelines": timelines,
            "plots": plots,
        })
    return 0 if all(rec["ok"] for rec in runs) else 1


def canary_limit_ms(baseline, lead_in):
    """The canary limit in whole ms: max(2 ms, 1.2 x the baseline run's p99), rounded up; None
    when the baseline has no transactions."""
    stats = latency_stats(baseline, lead_in)
    if stats["p99_ms"] is None:
        return None
    return math.ceil(max(CANARY_FLOOR_MS, CANARY_FACTOR * stats["p99_ms"]))


def main(argv=None):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report")
    rep.add_argument("results")
    rep.add_argument("--rows", type=int, required=True)
    rep.add_argument("--scale", type=int, required=True)
    rep.add_argument("--clk-tck", type=int, required=True)
    rep.add_argument("--build", default="")
    rep.add_argument("--pg-version", default="")
    rep.add_argument("--raw", default="", help="where the raw measurements are (printed)")
    rep.add_argument("--plots", help="directory for app-impact.png")
    rep.add_argument("--script", required=True)
    rep.add_argument("--clients", type=int, required=True)
    rep.add_argument("--threads", type=int, required=True)
    rep.add_argument("--max-tps-seconds", type=int, required=True)
    rep.add_argument("--rate", type=int)
    rep.add_argument("--rate-percent", type=float, required=True)
    rep.add_argument("--duration", type=int, required=True)
    rep.add_argument("--lead-in", type=float, required=True)
    rep.add_argument("--workers", type=int, required=True)
    rep.add_argument("--batch-target", required=True)
    rep.add_argument("--interval", required=True)
    rep.add_argument("--canary-ms", type=int)
    rep.add_argument("--canary-source", default="")
    rep.add_argument("--replica-lag", required=True)
    rep.add_argument("--throttle-extra", default="")
    rep.add_argument("--json")
    return report(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
