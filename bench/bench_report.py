#!/usr/bin/env python3
"""Turns the raw measurements of scripts/bench (one JSON object per contender) into the results
table, the detail table, the target check and (with --json) a JSON document."""

import argparse
import json
import os
import platform
import sys
import time

# Targets from the benchmark issue; reported against, never asserted.
TARGET_VS_UPDATE = 1.8       # pgbackfill with 2 workers vs one plain UPDATE
TARGET_VS_LOOP = 1.0         # pgbackfill with 2 workers vs two psql sessions of 10k-row batches
TARGET_CPU_SHARE = 15.0      # pgbackfill CPU as % of the server's CPU, below
TARGET_RSS_MIB = 64.0        # pgbackfill peak RSS, below


def pgbackfill_details(log_path):
    """Batches, sizes and the engine's own numbers from a `pgbackfill run --json` log."""
    out = {"batch_rows_seen": []}
    try:
        with open(log_path, encoding="utf-8") as log:
            for line in log:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                kind = event.get("event")
                if kind == "progress" and event.get("batch_rows"):
                    out["batch_rows_seen"].append(event["batch_rows"])
                elif kind == "job_finished":
                    out["finished"] = event
    except OSError:
        pass
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--clk-tck", type=int, required=True)
    parser.add_argument("--build", default="")
    parser.add_argument("--json")
    args = parser.parse_args()

    with open(args.results, encoding="utf-8") as results:
        records = [json.loads(line) for line in results if line.strip()]

    all_runs = records
    update_rate = None
    for rec in all_runs:
        rec["seconds"] = rec["wall_ns"] / 1e9
        rec["rows_per_second"] = args.rows / rec["seconds"] if rec["seconds"] > 0 else 0.0
        rec["client_cpu_s"] = rec["client_user_s"] + rec["client_sys_s"]
        rec["server_cpu_s"] = rec["server_ticks"] / args.clk_tck
        rec["client_server_pct"] = (100.0 * rec["client_cpu_s"] / rec["server_cpu_s"]
                                    if rec["server_cpu_s"] > 0 else None)
        rec["peak_rss_mib"] = rec["client_max_rss_kib"] / 1024.0
        rec["other_cpu_s"] = max(0.0, rec["machine_ticks"] / args.clk_tck
                                 - rec["server_cpu_s"] - rec["client_cpu_s"])
        rec["wal_mib"] = rec["wal_bytes"] / 1048576.0
        problems = []
        if rec["exit_status"] != 0:
            problems.append(f"exit {rec['exit_status']}")
        if rec["wrong_rows"] is None or rec["wrong_rows"] != 0:
            problems.append(f"{rec['wrong_rows']} wrong rows")
        if rec["kind"] == "pgbackfill":
            details = pgbackfill_details(rec["log"])
            finished = details.get("finished", {})
            seen = details["batch_rows_seen"]
            rec["engine"] = {
                "outcome": finished.get("outcome"),
                "rows": finished.get("rows"),
                "batches": finished.get("batches"),
                "retries": finished.get("retries"),
                "seconds": finished.get("seconds"),
                "rows_per_second": finished.get("rows_per_second"),
                "avg_batch_rows": (finished["rows"] / finished["batches"]
                                   if finished.get("batches") else None),
                "batch_rows_max_seen": max(seen) if seen else None,
                "batch_rows_last_seen": seen[-1] if seen else None,
            }
            if finished.get("outcome") != "done":
                problems.append(f"outcome {finished.get('outcome')}")
            if finished.get("rows") is not None and finished["rows"] != args.rows:
                problems.append(f"rows {finished['rows']} != {args.rows}")
        rec["ok"] = not problems
        rec["problems"] = problems
    records = medians(all_runs)
    for rec in records:
        if rec["kind"] == "update" and rec["ok"]:
            update_rate = rec["rows_per_second"]
    for rec in records:
        rec["ratio_vs_update"] = (rec["rows_per_second"] / update_rate) if update_rate else None

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    header = ("contender", "seconds", "rows/s", "vs UPDATE", "client CPU s", "server CPU s",
              "client/server %", "peak RSS MiB", "check")
    rows = []
    for rec in records:
        rows.append((rec["name"], fmt(rec["seconds"], ".1f"), fmt(rec["rows_per_second"], ",.0f"),
                     fmt(rec["ratio_vs_update"], ".2f") + ("x" if rec["ratio_vs_update"] else ""),
                     fmt(rec["client_cpu_s"], ".2f"), fmt(rec["server_cpu_s"], ".1f"),
                     fmt(rec["client_server_pct"], ".1f"), fmt(rec["peak_rss_mib"], ".1f"),
                     "ok" if rec["ok"] else "FAIL: " + ", ".join(rec["problems"])))
    print_table(header, rows, left=(0, len(header) - 1))

    print()
    header2 = ("contender", "runs", "seconds min-max", "WAL MiB", "checkpoints", "autovacuum", "other CPU s", "batches",
               "avg batch rows", "max batch rows", "engine rows/s")
    rows2 = []
    for rec in records:
        engine = rec.get("engine", {})
        rows2.append((rec["name"], str(rec["runs"]),
                      f"{rec['seconds_min']:.1f}-{rec['seconds_max']:.1f}",
                      fmt(rec["wal_mib"], ",.0f"), str(rec["checkpoints"]),
                      str(rec["autovacuum_count"]), fmt(rec["other_cpu_s"], ".1f"),
                      fmt(engine.get("batches"), "d"), fmt(engine.get("avg_batch_rows"), ",.0f"),
                      fmt(engine.get("batch_rows_max_seen"), ",d"),
                      fmt(engine.get("rows_per_second"), ",d")))
    print_table(header2, rows2)

    targets = check_targets(records)
    if targets:
        print()
        for line in targets:
            print(line)

    if args.json:
        doc = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "scale": args.scale,
            "rows": args.rows,
            "pgbackfill_build": args.build,
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                        "mem_kib": mem_total_kib()},
            "contenders": records,
            "runs": all_runs,
            "targets": targets,
        }
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(doc, out, indent=2)
            out.write("\n")
        print(f"\nwrote {args.json}")
    return 0 if all(rec["ok"] for rec in all_runs) else 1


def medians(runs):
    """One record per contender, in first-seen order: its median run by wall time (the lower
    middle one for an even count), FAIL when any of its runs failed."""
    by_name = {}
    for rec in runs:
        by_name.setdefault(rec["name"], []).append(rec)
    out = []
    for name, group in by_name.items():
        ordered = sorted(group, key=lambda r: r["seconds"])
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["runs"] = len(group)
        median["seconds_min"] = ordered[0]["seconds"]
        median["seconds_max"] = ordered[-1]["seconds"]
        failed = [r for r in group if not r["ok"]]
        if failed:
            median["ok"] = False
            median["problems"] = sorted({p for r in failed for p in r["problems"]})
        out.append(median)
    return out


def check_targets(records):
    by_name = {rec["name"]: rec for rec in records if rec["ok"]}
    lines = []
    for rec in records:
        if rec["kind"] != "pgbackfill" or not rec["ok"]:
            continue
        name = rec["name"]
        checks = []
        if rec["arg"] == 2:
            if "update" in by_name:
                checks.append(("rows/s vs UPDATE", rec["rows_per_second"]
                               / by_name["update"]["rows_per_second"], TARGET_VS_UPDATE, ">="))
            if "psql-2" in by_name:
                checks.append(("rows/s vs psql-2", rec["rows_per_second"]
                               / by_name["psql-2"]["rows_per_second"], TARGET_VS_LOOP, ">="))
        if rec["client_server_pct"] is not None:
            checks.append(("CPU % of server", rec["client_server_pct"], TARGET_CPU_SHARE, "<"))
        checks.append(("peak RSS MiB", rec["peak_rss_mib"], TARGET_RSS_MIB, "<"))
        for label, value, target, op in checks:
            met = value >= target if op == ">=" else value < target
            if met:
                verdict = "met"
            elif op == ">=":
                verdict = f"MISSED by {100.0 * (target - value) / target:.0f}%"
            else:
                verdict = f"MISSED: {value / target:.2f}x the limit"
            lines.append(f"target {name}: {label} {value:.2f} (want {op} {target:g}): {verdict}")
    return lines


def mem_total_kib():
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def print_table(header, rows, left=(0,)):
    """A Markdown table: text columns (indices in `left`) left-aligned, numbers right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    print(line(header))
    print("|" + "|".join("-" * (w + 2) if i in left else "-" * (w + 1) + ":"
                         for i, w in enumerate(widths)) + "|")
    for row in rows:
        print(line(row))


if __name__ == "__main__":
    sys.exit(main())
