#!/usr/bin/env python3
"""Report of `scripts/bench --scenario move`: turns the raw run records (one JSON object per line,
written by bench_move.py) into the results table, the detail table, the pgbackfill / pgcopydb
ratio lines, a plot and (with --json) a JSON document holding everything printed.

A run is ok when its client exited 0, the target then holds exactly the source's row count and row
hash (sum(hashtext(a::text)) over pgbench_accounts), and, for pgbackfill, the job finished `done`
with every row. GB moved = pg_table_size of the source's pgbench_accounts / 1e9, the same for every
contender (pgbackfill's own `bytes` from job_finished is shown beside it).
"""

import argparse
import json
import os
import sys

import bench_plots
from bench_report import check_mark, medians
from bench_table import Output, fmt, json_events, machine_line, ratio, write_report_json

MIB = 1048576.0
# A run during which the rest of the machine used more than this share of all CPUs gets a note.
SHARED_MACHINE_SHARE = 0.2
KINDS = ("pgcopydb", "psql-pipe", "pgbackfill")


def engine_events(log_path):
    """job_finished, the number of progress events and warnings of a `pgbackfill run --json` log."""
    out = {"finished": {}, "progress": 0, "warnings": []}
    for event in json_events(log_path):
        kind = event.get("event")
        if kind == "job_finished":
            out["finished"] = event
        elif kind == "progress":
            out["progress"] += 1
        elif kind == "warning":
            out["warnings"].append(event.get("message"))
    return out


def last_line(path):
    """The last non-empty line of a file ("" when none or unreadable)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle if line.strip()]
        return lines[-1] if lines else ""
    except OSError:
        return ""


def derive(rec, clk_tck):
    """Rates, CPU per GB and the check of one run (in place)."""
    rows = rec["rows"]
    rec["base"] = rec["name"]
    rec["seconds"] = rec["wall_ns"] / 1e9
    rec["rows_per_second"] = rows / rec["seconds"] if rec["seconds"] > 0 else 0.0
    rec["client_cpu_s"] = rec["client_user_s"] + rec["client_sys_s"]
    rec["server_cpu_s"] = rec["server_ticks"] / clk_tck
    rec["gb_moved"] = rec["source_table_bytes"] / 1e9
    rec["client_cpu_s_per_gb"] = (rec["client_cpu_s"] / rec["gb_moved"]
                                  if rec["gb_moved"] > 0 else None)
    rec["server_cpu_s_per_gb"] = (rec["server_cpu_s"] / rec["gb_moved"]
                                  if rec["gb_moved"] > 0 else None)
    rec["mb_per_second"] = (rec["source_table_bytes"] / 1e6 / rec["seconds"]
                            if rec["seconds"] > 0 else None)
    rec["peak_rss_mib"] = rec["client_max_rss_kib"] / 1024.0
    rec["other_cpu_s"] = max(0.0, rec["machine_ticks"] / clk_tck - rec["server_cpu_s"]
                             - rec["client_cpu_s"])
    rec["wal_mib"] = rec["wal_bytes"] / MIB
    problems = []
    if rec["exit_status"] != 0:
        problems.append(f"exit {rec['exit_status']}")
    if rec.get("target_rows") != rows:
        problems.append(f"target rows {rec.get('target_rows')} != source {rows}")
    elif rec.get("target_hash") != rec.get("source_hash"):
        problems.append("row hash differs from the source")
    if rec["kind"] == "pgbackfill":
        events = engine_events(rec["log"])
        finished = events["finished"]
        rec["engine"] = {key: finished.get(key) for key in
                         ("outcome", "message", "rows", "bytes", "batches", "retries",
                          "reconnects", "seconds", "rows_per_second")}
        rec["engine"]["progress_events"] = events["progress"]
        rec["engine"]["warnings"] = events["warnings"][:20]
        if finished.get("outcome") != "done":
            message = finished.get("message") or last_line(rec["log"] + ".stderr")
            problems.append(f"outcome {finished.get('outcome')}"
                            + (f" ({message[:160]})" if message else ""))
        elif finished.get("rows") is not None and finished["rows"] != rows:
            problems.append(f"job rows {finished['rows']} != {rows}")
    elif rec["exit_status"] != 0:
        message = last_line(rec["log"])
        if message:
            problems.append(message[:160])
    rec["ok"] = not problems
    rec["problems"] = problems
    return rec


def scale_report(out, scale, runs):
    """Tables and ratio lines of one scale; returns (contenders, ratio lines, ratios)."""
    records = medians(runs)
    pgcopydb = {r["arg"]: r for r in records if r["kind"] == "pgcopydb" and r["ok"]}
    for rec in records:
        ref = pgcopydb.get(rec["arg"]) if rec["kind"] != "psql-pipe" else None
        if ref is None and pgcopydb:
            ref = pgcopydb[min(pgcopydb)]
        rec["vs_pgcopydb"] = (rec["rows_per_second"] / ref["rows_per_second"]
                              if ref and rec["ok"] else None)
        rec["vs_pgcopydb_name"] = ref["name"] if ref else None

    header = ("contender", "seconds", "rows/s", "MB/s", "vs pgcopydb", "client CPU s",
              "client CPU s/GB", "peak RSS MiB", "server CPU s", "server CPU s/GB", "check")
    out.table(header, [
        (rec["name"], fmt(rec["seconds"], ".1f"),
         # A failed run moved not all rows: no rate.
         fmt(rec["rows_per_second"] if rec["ok"] else None, ",.0f"),
         fmt(rec["mb_per_second"] if rec["ok"] else None, ".0f"), ratio(rec["vs_pgcopydb"]),
         fmt(rec["client_cpu_s"], ".2f"), fmt(rec["client_cpu_s_per_gb"], ".2f"),
         fmt(rec["peak_rss_mib"], ".1f"), fmt(rec["server_cpu_s"], ".1f"),
         fmt(rec["server_cpu_s_per_gb"], ".1f"), check_mark(rec))
        for rec in records], left=(0, len(header) - 1), title=f"results, scale {scale}")

    out.line()
    header = ("contender", "runs", "seconds min-max", "client procs", "WAL MiB", "target MiB",
              "VACUUM/ANALYZE", "autovacuum", "other CPU s", "COPY streams", "batches", "engine rows/s",
              "engine MB")
    rows = []
    for rec in records:
        engine = rec.get("engine", {})
        target = ((rec.get("table_bytes_after") or 0) + (rec.get("indexes_bytes_after") or 0))
        # pgcopydb: the parts it split the table into; pgbackfill: its workers, each streaming
        # one batch at a time.
        streams = {"pgcopydb": rec.get("copy_parts"), "psql-pipe": 1,
                   "pgbackfill": rec["arg"]}.get(rec["kind"])
        rows.append((rec["name"], str(rec["runs"]),
                     f"{rec['seconds_min']:.1f}-{rec['seconds_max']:.1f}",
                     str(rec["client_processes"]), fmt(rec["wal_mib"], ",.0f"),
                     fmt(target / MIB, ",.0f"),
                     f"{rec.get('vacuum_count', '-')}/{rec.get('analyze_count', '-')}",
                     f"{rec.get('autovacuum_count', '-')}/{rec.get('autoanalyze_count', '-')}",
                     fmt(rec["other_cpu_s"], ".1f"), fmt(streams, "d"),
                     fmt(engine.get("batches"), "d"),
                     fmt(engine.get("rows_per_second"), ",d"),
                     fmt(engine["bytes"] / 1e6 if engine.get("bytes") is not None else None,
                         ",.0f")))
    out.table(header, rows, title=f"details, scale {scale}")
    for rec in records:
        if rec["kind"] == "pgcopydb" and rec.get("copy_parts") not in (None, rec["arg"]):
            out.line(f"note: {rec['name']} split the table {rec['copy_parts']} ways "
                     f"(--split-tables-larger-than {rec.get('split_bytes')}), not {rec['arg']}")

    cpus = os.cpu_count() or 1
    shared = [r for r in runs
              if r["other_cpu_s"] > SHARED_MACHINE_SHARE * cpus * r["seconds"] > 0]
    if shared:
        out.line("note: the machine was shared (other CPU > "
                 f"{100 * SHARED_MACHINE_SHARE:.0f}% of {cpus} cores) during: "
                 + ", ".join(f"{r['name']} round {r['round']} ({r['other_cpu_s']:.1f} s in "
                             f"{r['seconds']:.1f} s)" for r in shared)
                 + "; their times are inflated")
    for rec in runs:
        if not rec["ok"]:
            out.line(f"FAIL {rec['name']} round {rec['round']}: " + "; ".join(rec["problems"])
                     + f" (log {rec['log']})")

    lines, ratios = [], []
    backfill = [r for r in records if r["kind"] == "pgbackfill"]
    single = len(backfill) == 1 and len(pgcopydb) <= 1
    for rec in backfill:
        ref = pgcopydb.get(rec["arg"]) or (pgcopydb[min(pgcopydb)] if pgcopydb else None)
        if ref is None:
            continue
        value = rec["rows_per_second"] / ref["rows_per_second"] if rec["ok"] else None
        ratios.append({"pgbackfill": rec["name"], "pgcopydb": ref["name"], "ratio": value})
        label = ("pgbackfill vs pgcopydb rows/s" if single
                 else f"{rec['name']} vs {ref['name']} rows/s")
        lines.append(f"{label}: {ratio(value) if value is not None else 'n/a (pgbackfill FAIL)'}"
                     + (f" ({rec['name']} / {ref['name']}, median runs)" if single else ""))
    return records, lines, ratios


def make_plot(args, scales, per_scale):
    if not args.plots:
        return {}
    labels = []
    for _, contenders in per_scale:
        labels += [r["name"] for r in contenders if r["name"] not in labels]
    values = [[next((r["rows_per_second"] for r in contenders if r["name"] == label and r["ok"]),
                    None) for _, contenders in per_scale] for label in labels]
    series = [f"scale {s} ({s * 100000:,} rows)" for s in scales]
    where = (f"{os.cpu_count()} cores, PostgreSQL {(args.pg_version or '?').split()[0]}"
             + (f"; pgbackfill {args.build}" if args.build else ""))
    title = ("rows/s moved into another database, "
             + (series[0] if len(scales) == 1 else "by scale") + f"\n{where}")
    return {"move.png": bench_plots.bar_chart(os.path.join(args.plots, "move.png"), title,
                                              "rows/s", labels, series, values)}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--clk-tck", type=int, required=True)
    parser.add_argument("--build", default="")
    parser.add_argument("--pg-version", default="")
    parser.add_argument("--raw", default="", help="where the raw measurements are (printed)")
    parser.add_argument("--plots", help="directory for the PNG")
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    with open(args.results, encoding="utf-8") as results:
        records = [json.loads(line) for line in results if line.strip()]
    setup = next((r for r in records if r.get("kind") == "move_setup"), {})
    changed = [r["scale"] for r in records if r.get("kind") == "move_source_changed"]
    runs = [derive(r, args.clk_tck) for r in records if r.get("kind") in KINDS]
    scales = []
    for rec in runs:
        if rec["scale"] not in scales:
            scales.append(rec["scale"])

    out = Output()
    what = ", ".join(f"scale {s} ({s * 100000:,} rows)" for s in scales) or "no runs"
    out.line(f"== results: move pgbench_accounts into another database, {what}, "
             f"{machine_line(args.pg_version)}")
    out.line(f"pgbackfill: {args.build}")
    if setup.get("pgcopydb"):
        out.line(f"pgcopydb: {setup['pgcopydb']}; psql: {setup.get('psql')}")
    if args.raw:
        out.line(f"raw measurements: {args.raw}")
    out.line("GB moved = pg_table_size(source pgbench_accounts) / 1e9; client CPU = user+sys of "
             "the client process tree (GNU time; both psql of psql-pipe); peak RSS = the largest "
             "single process of that tree (pgcopydb: its largest worker or supervisor, not a sum; "
             "psql-pipe: the larger psql)")
    out.line("pgcopydb runs VACUUM ANALYZE on the target inside its timed run "
             "(the VACUUM/ANALYZE column); the others do not")

    per_scale, ratio_lines, per_scale_doc = [], [], []
    for scale in scales:
        scale_runs = [r for r in runs if r["scale"] == scale]
        out.line()
        if len(scales) > 1:
            out.line(f"== scale {scale} ({scale * 100000:,} rows)")
            out.line()
        size = scale_runs[0]["source_table_bytes"]
        out.line(f"source pgbench_accounts: {scale_runs[0]['rows']:,} rows, pg_table_size "
                 f"{size / MIB:,.1f} MiB ({size / 1e9:.3f} GB), indexes "
                 f"{scale_runs[0]['source_indexes_bytes'] / MIB:,.1f} MiB")
        contenders, lines, ratios = scale_report(out, scale, scale_runs)
        if len(scales) > 1:
            lines = [f"scale {scale}: {line}" for line in lines]
        if lines:
            out.line()
            for line in lines:
                out.line(line)
        ratio_lines += lines
        per_scale.append((scale, contenders))
        per_scale_doc.append({"scale": scale, "rows": scale_runs[0]["rows"],
                              "source_table_bytes": size, "contenders": contenders,
                              "ratios": ratios, "ratio_lines": lines})
    for scale in changed:
        out.line(f"FAIL: the source's pgbench_accounts changed during scale {scale}")

    plots = make_plot(args, scales, per_scale)
    if plots:
        out.line()
        for message in plots.values():
            out.line(message)

    if args.json:
        write_report_json(args.json, "move", args, out, {
            "scale": scales[0] if scales else None,
            "scales": scales,
            "tools": setup,
            "contenders": [rec for _, contenders in per_scale for rec in contenders],
            "per_scale": per_scale_doc,
            "runs": runs,
            "ratio_lines": ratio_lines,
            "source_changed_scales": changed,
            "plots": plots,
        })
    return 0 if runs and all(rec["ok"] for rec in runs) and not changed else 1


if __name__ == "__main__":
    sys.exit(main())
