#!/usr/bin/env python3
"""Turns the raw measurements of scripts/bench (one JSON object per contender run, written by
bench_throughput.py and bench_slow_link.py) into the results tables, the target check, the
plots and (with --json) a JSON document holding everything printed.

Scenarios: `throughput` (every contender on the unix socket) and `slow-link` (every contender
twice: directly over TCP and through the delay proxy, named NAME@Dms). With runs at several
scales (--scales) it reports each scale, then the scaling table.
"""

import argparse
import json
import os
import sys

import bench_plots
from bench_table import Output, fmt, json_events, machine_line, ratio, write_report_json

# Targets from the benchmark issue; reported against, never asserted.
TARGET_VS_UPDATE = 1.8       # pgbackfill with 2 workers vs one plain UPDATE
TARGET_VS_LOOP = 1.0         # pgbackfill with 2 workers vs two psql sessions of 10k-row batches
TARGET_CPU_SHARE = 15.0      # pgbackfill CPU as % of the server's CPU, below
TARGET_RSS_MIB = 64.0        # pgbackfill peak RSS, below (at every scale)
TARGET_VACUUM_GROWTH = 1.3   # table+indexes after/before with vacuum_every, at most
TARGET_VACUUM_RATE = 0.8     # rows/s with vacuum_every vs the same workers without, at least
TARGET_SLOW_LINK = 0.9       # pgbackfill rows/s through the delay proxy vs directly, at least
TARGET_PROCESSES = 0.9       # P processes of W workers vs one process of P*W workers ("about")

MIB = 1048576.0


def pgbackfill_details(log_path):
    """Batches, sizes, VACUUMs and the engine's own numbers from a `pgbackfill run --json` log
    (of several processes one after the other when they shared the job: their job_finished
    events summed)."""
    out = {"batch_rows_seen": [], "vacuums": [], "warnings": []}
    finished = []
    for event in json_events(log_path):
        kind = event.get("event")
        if kind == "progress" and event.get("batch_rows"):
            out["batch_rows_seen"].append(event["batch_rows"])
        elif kind == "vacuum":
            out["vacuums"].append(event)
        elif kind == "warning":
            out["warnings"].append(event.get("message"))
        elif kind == "job_finished":
            finished.append(event)
    if len(finished) == 1:
        out["finished"] = finished[0]
    elif finished:
        out["finished"] = _merged_finish(finished)
    return out


def _merged_finish(events):
    """One job_finished of the processes that shared a job: rows and batches summed, the
    longest run's seconds, the first outcome other than done."""
    merged = {"outcome": next((e.get("outcome") for e in events if e.get("outcome") != "done"),
                              "done"),
              "message": next((e.get("message") for e in events if e.get("message")), None),
              "seconds": max(e.get("seconds") or 0.0 for e in events)}
    for field in ("rows", "batches", "retries"):
        values = [e.get(field) for e in events]
        merged[field] = None if any(v is None for v in values) else sum(values)
    merged["rows_per_second"] = (round(merged["rows"] / merged["seconds"])
                                 if merged["rows"] is not None and merged["seconds"] else None)
    return merged


def derive(rec, clk_tck, default_rows):
    """Rates, ratios, sizes and the check of one run (in place)."""
    rows = rec.get("rows") or default_rows
    rec["rows"] = rows
    rec.setdefault("scale", rows // 100000)
    rec.setdefault("base", rec["name"])
    rec.setdefault("link", "unix")
    rec["suffix"] = rec["name"][len(rec["base"]):]
    rec["seconds"] = rec["wall_ns"] / 1e9
    rec["rows_per_second"] = rows / rec["seconds"] if rec["seconds"] > 0 else 0.0
    rec["client_cpu_s"] = rec["client_user_s"] + rec["client_sys_s"]
    rec["server_cpu_s"] = rec["server_ticks"] / clk_tck
    rec["client_server_pct"] = (100.0 * rec["client_cpu_s"] / rec["server_cpu_s"]
                                if rec["server_cpu_s"] > 0 else None)
    rec["peak_rss_mib"] = rec["client_max_rss_kib"] / 1024.0
    rec["proxy_cpu_s"] = rec.get("proxy_ticks", 0) / clk_tck
    rec["other_cpu_s"] = max(0.0, rec["machine_ticks"] / clk_tck - rec["server_cpu_s"]
                             - rec["client_cpu_s"] - rec["proxy_cpu_s"])
    rec["wal_mib"] = rec["wal_bytes"] / MIB
    # Growth of pgbench_accounts: pg_table_size + pg_indexes_size after / before.
    before = _sum(rec.get("table_bytes_before"), rec.get("indexes_bytes_before"))
    after = _sum(rec.get("table_bytes_after"), rec.get("indexes_bytes_after"))
    rec["size_bytes_before"] = before
    rec["size_bytes_after"] = after
    rec["growth"] = after / before if before and after is not None else None
    rec["total_growth"] = (rec["total_bytes_after"] / rec["total_bytes_before"]
                           if rec.get("total_bytes_before") and rec.get("total_bytes_after")
                           is not None else None)
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
            "vacuums": len(details["vacuums"]),
            "vacuum_seconds": sum(v.get("seconds") or 0.0 for v in details["vacuums"]),
            "vacuum_events": details["vacuums"][:100],
            "warnings": details["warnings"][:20],
        }
        if finished.get("outcome") != "done":
            message = finished.get("message") or _stderr_tail(rec["log"])
            problems.append(f"outcome {finished.get('outcome')}"
                            + (f" ({message[:80]})" if message else ""))
        if finished.get("rows") is not None and finished["rows"] != rows:
            problems.append(f"rows {finished['rows']} != {rows}")
    rec["ok"] = not problems
    rec["problems"] = problems
    return rec


def _sum(*values):
    return None if any(v is None for v in values) else sum(values)


def _stderr_tail(log_path):
    """The last line pgbackfill wrote to stderr (e.g. a refused plan), if any."""
    try:
        with open(log_path + ".stderr", encoding="utf-8") as err:
            lines = [line.strip() for line in err if line.strip()]
        return lines[-1] if lines else ""
    except OSError:
        return ""


def medians(runs):
    """One record per contender, in first-seen order: its median run by wall time (the lower
    middle one for an even count), FAIL when any of its runs failed."""
    by_name = {}
    for rec in runs:
        by_name.setdefault(rec["name"], []).append(rec)
    out = []
    for group in by_name.values():
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


def check_mark(rec):
    return "ok" if rec["ok"] else "FAIL: " + ", ".join(
        p if len(p) <= 90 else p[:87] + "..." for p in rec["problems"])


def verdict(label, name, value, target, op):
    if value is None:
        return f"target {name}: {label}: not measured"
    met = value >= target if op == ">=" else (value <= target if op == "<=" else value < target)
    # Enough digits that a value just past the target does not print as the target itself.
    digits = 2
    while digits < 5 and format(value, f".{digits}f") == format(target, f".{digits}f"):
        digits += 1
    if met:
        result = "met"
    elif op == ">=":
        result = f"MISSED by {100.0 * (target - value) / target:.{max(0, digits - 2)}f}%"
    else:
        result = f"MISSED: {value / target:.{digits}f}x the limit"
    return f"target {name}: {label} {value:.{digits}f} (want {op} {target:g}): {result}"


def check_targets(records):
    """The target lines of one scale's contenders (medians)."""
    by_name = {rec["name"]: rec for rec in records if rec["ok"]}
    lines = []
    for rec in records:
        if rec["kind"] != "pgbackfill" or not rec["ok"]:
            continue
        name, suffix = rec["name"], rec["suffix"]
        vacuum = rec.get("vacuum_every") is not None
        verify = name.endswith("+verify" + suffix)
        checks = []
        if verify:
            # The run a user waits for: reported beside the backfill alone, not held to its targets.
            alone = by_name.get(name.replace("+verify", ""))
            if alone:
                lines.append(f"{name}: {rec['seconds']:.1f} s with verify against "
                             f"{alone['seconds']:.1f} s for {alone['name']}: verify adds "
                             f"{rec['seconds'] - alone['seconds']:.1f} s "
                             f"({rec['seconds'] / alone['seconds']:.2f}x)")
        elif rec.get("processes", 1) > 1:
            one = by_name.get(f"pgbackfill-{rec['arg']}{suffix}")
            if one:
                checks.append((f"rows/s vs {one['name']} (one process)",
                               rec["rows_per_second"] / one["rows_per_second"],
                               TARGET_PROCESSES, ">="))
        elif rec["arg"] == 2 and not vacuum:
            if "update" + suffix in by_name:
                checks.append(("rows/s vs UPDATE", rec["rows_per_second"]
                               / by_name["update" + suffix]["rows_per_second"],
                               TARGET_VS_UPDATE, ">="))
            if "psql-2" + suffix in by_name:
                checks.append(("rows/s vs psql-2", rec["rows_per_second"]
                               / by_name["psql-2" + suffix]["rows_per_second"],
                               TARGET_VS_LOOP, ">="))
        if vacuum:
            without = by_name.get(name.replace("+vacuum", ""))
            checks.append((f"growth with vacuum_every {rec['vacuum_every']}", rec["growth"],
                           TARGET_VACUUM_GROWTH, "<="))
            checks.append((f"rows/s vs {without['name'] if without else 'no vacuum_every'}",
                           rec["rows_per_second"] / without["rows_per_second"] if without
                           else None, TARGET_VACUUM_RATE, ">="))
        if rec["client_server_pct"] is not None:
            checks.append(("CPU % of server", rec["client_server_pct"], TARGET_CPU_SHARE, "<"))
        checks.append(("peak RSS MiB", rec["peak_rss_mib"], TARGET_RSS_MIB, "<"))
        lines.extend(verdict(label, name, value, target, op)
                     for label, value, target, op in checks)
    return lines


def slow_link_pairs(records):
    """(base, direct, proxied) for each contender that ran both ways."""
    direct = {r["base"]: r for r in records if r["link"] == "direct"}
    proxied = {r["base"]: r for r in records if r["link"] == "proxy"}
    return [(base, direct[base], proxied.get(base)) for base in direct]


def scale_report(out, scale, rows, records, args, link):
    """Tables and targets of one scale; returns (contenders, targets, slow_link)."""
    records = medians(records)
    for rec in records:
        update = next((r for r in records if r["name"] == "update" + rec["suffix"] and r["ok"]),
                      None)
        rec["ratio_vs_update"] = (rec["rows_per_second"] / update["rows_per_second"]
                                  if update else None)

    header = ("contender", "seconds", "rows/s", "vs UPDATE", "client CPU s", "server CPU s",
              "client/server %", "peak RSS MiB", "growth", "check")
    out.table(header, [
        (rec["name"], fmt(rec["seconds"], ".1f"), fmt(rec["rows_per_second"], ",.0f"),
         ratio(rec["ratio_vs_update"]), fmt(rec["client_cpu_s"], ".2f"),
         fmt(rec["server_cpu_s"], ".1f"), fmt(rec["client_server_pct"], ".1f"),
         fmt(rec["peak_rss_mib"], ".1f"), ratio(rec["growth"]), check_mark(rec))
        for rec in records], left=(0, len(header) - 1), title=f"results, scale {scale}")

    out.line()
    out.line("pgbench_accounts before and after (MiB; growth = (table + indexes) after / before):")
    header = ("contender", "table before", "table after", "indexes before", "indexes after",
              "total before", "total after", "growth", "vacuums", "VACUUM s")

    def mib(value):
        return fmt(value / MIB if value is not None else None, ",.1f")

    out.table(header, [
        (rec["name"], mib(rec.get("table_bytes_before")), mib(rec.get("table_bytes_after")),
         mib(rec.get("indexes_bytes_before")), mib(rec.get("indexes_bytes_after")),
         mib(rec.get("total_bytes_before")), mib(rec.get("total_bytes_after")),
         ratio(rec["growth"]), fmt(rec.get("engine", {}).get("vacuums"), "d"),
         fmt(rec.get("engine", {}).get("vacuum_seconds"), ".1f"))
        for rec in records], title=f"table size, scale {scale}")

    out.line()
    header = ("contender", "runs", "seconds min-max", "WAL MiB", "checkpoints", "autovacuum",
              "other CPU s", "batches", "avg batch rows", "max batch rows", "engine rows/s")
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
    out.table(header, rows2, title=f"details, scale {scale}")

    slow = []
    if args.scenario == "slow-link":
        delay = link["delay_ms"] if link else None
        out.line()
        out.line(f"slow link: +{delay:g} ms each way through the delay proxy"
                 + (f" (round trip of SELECT 1: direct {fmt(link.get('rtt_direct_ms'), '.3f')} ms,"
                    f" through the proxy {fmt(link.get('rtt_proxy_ms'), '.3f')} ms)"
                    if link else ""))
        header = ("contender", "direct rows/s", f"+{delay:g} ms rows/s", "slow / direct",
                  "direct s", f"+{delay:g} ms s", "proxy CPU s", "check")
        rows3 = []
        for base, near, far in slow_link_pairs(records):
            rate = (far["rows_per_second"] / near["rows_per_second"]
                    if far and near["rows_per_second"] else None)
            ok = near["ok"] and far is not None and far["ok"]
            problems = near["problems"] + (far["problems"] if far else ["no run through the proxy"])
            slow.append({"contender": base, "delay_ms": delay,
                         "direct_rows_per_second": near["rows_per_second"],
                         "slow_rows_per_second": far["rows_per_second"] if far else None,
                         "ratio": rate, "ok": ok})
            rows3.append((base, fmt(near["rows_per_second"], ",.0f"),
                          fmt(far["rows_per_second"] if far else None, ",.0f"), ratio(rate),
                          fmt(near["seconds"], ".1f"), fmt(far["seconds"] if far else None, ".1f"),
                          fmt(far["proxy_cpu_s"] if far else None, ".2f"),
                          "ok" if ok else "FAIL: " + ", ".join(problems)))
        out.table(header, rows3, left=(0, len(header) - 1), title=f"slow link, scale {scale}")
        if link and link.get("proxy_exit"):
            out.line(f"proxy on exit: {link['proxy_exit']}")

    targets = check_targets(records)
    for entry in slow:
        if entry["contender"].startswith("pgbackfill") and entry["ok"]:
            targets.append(verdict(f"rows/s at +{entry['delay_ms']:g} ms vs direct",
                                   entry["contender"], entry["ratio"], TARGET_SLOW_LINK, ">="))
        elif entry["ok"] and entry["ratio"] is not None:
            targets.append(f"reference {entry['contender']}: rows/s at +{entry['delay_ms']:g} ms "
                           f"vs direct {entry['ratio']:.2f} (no target)")
    return records, targets, slow


def scaling_report(out, scales, per_scale):
    """The scaling table: rows/s and peak RSS per contender per scale, the rows/s ratio between
    the last and the first scale (flat = cost linear in rows). Returns (rows, targets)."""
    names = []
    for _, contenders, _ in per_scale:
        for rec in contenders:
            if rec["name"] not in names:
                names.append(rec["name"])
    first, last = scales[0], scales[-1]
    header = (["contender"] + [f"rows/s @{s}" for s in scales]
              + [f"peak RSS MiB @{s}" for s in scales] + [f"rows/s {last}/{first}", "check"])
    table, doc, targets = [], [], []
    for name in names:
        recs = {scale: next((r for r in contenders if r["name"] == name), None)
                for scale, contenders, _ in per_scale}
        rates = {s: r["rows_per_second"] if r and r["ok"] else None for s, r in recs.items()}
        rss = {s: r["peak_rss_mib"] if r else None for s, r in recs.items()}
        change = (rates[last] / rates[first] if rates[last] is not None and rates[first]
                  else None)
        ok = all(r is not None and r["ok"] for r in recs.values())
        table.append([name] + [fmt(rates[s], ",.0f") for s in scales]
                     + [fmt(rss[s], ".1f") for s in scales]
                     + [ratio(change), "ok" if ok else "FAIL or missing"])
        doc.append({"contender": name, "rows_per_second": {str(s): rates[s] for s in scales},
                    "peak_rss_mib": {str(s): rss[s] for s in scales},
                    "rows_per_second_ratio_last_first": change, "ok": ok})
        kind = next(r["kind"] for r in recs.values() if r)
        if kind == "pgbackfill":
            measured = [v for v in rss.values() if v is not None]
            targets.append(verdict(f"peak RSS MiB, largest over scales {', '.join(map(str, scales))}",
                                   name, max(measured) if measured else None, TARGET_RSS_MIB, "<"))
        if change is not None:
            targets.append(f"scaling {name}: rows/s at scale {last} / scale {first} = "
                           f"{change:.2f} (1.00 = cost linear in rows)")
    out.table(header, table, left=(0, len(header) - 1), title="scaling")
    return doc, targets


def make_plots(args, scales, per_scale, link):
    """The PNGs; returns {name: message}."""
    if not args.plots:
        return {}
    results = {}
    where = (f"{os.cpu_count()} cores, PostgreSQL {(args.pg_version or '?').split()[0]}"
             + (f"; pgbackfill {args.build}" if args.build else ""))
    if args.scenario == "throughput":
        labels = []
        for _, contenders, _ in per_scale:
            labels += [r["name"] for r in contenders if r["name"] not in labels]
        values = [[next((r["rows_per_second"] for r in contenders
                         if r["name"] == label and r["ok"]), None)
                   for _, contenders, _ in per_scale] for label in labels]
        series = [f"scale {s} ({s * 100000:,} rows)" for s in scales]
        title = ("rows/s per contender, " + (series[0] if len(scales) == 1 else "by scale")
                 + f"\n{where}")
        results["throughput.png"] = bench_plots.bar_chart(
            os.path.join(args.plots, "throughput.png"), title, "rows/s", labels, series, values)
    else:
        delay = link["delay_ms"] if link else 0
        labels, values, series = [], [], []
        for scale, _, slow in per_scale:
            for entry in slow:
                if entry["contender"] not in labels:
                    labels.append(entry["contender"])
        for scale, _, slow in per_scale:
            prefix = f"scale {scale}: " if len(scales) > 1 else ""
            series += [f"{prefix}direct", f"{prefix}+{delay:g} ms each way"]
        for label in labels:
            row = []
            for scale, _, slow in per_scale:
                entry = next((e for e in slow if e["contender"] == label), None)
                row += [entry["direct_rows_per_second"] if entry else None,
                        entry["slow_rows_per_second"] if entry else None]
            values.append(row)
        title = (f"rows/s directly and through a {delay:g} ms delay proxy, scale "
                 f"{', '.join(map(str, scales))}\n{where}")
        results["slow-link.png"] = bench_plots.bar_chart(
            os.path.join(args.plots, "slow-link.png"), title, "rows/s", labels, series, values)
    if len(scales) > 1:
        names = []
        for _, contenders, _ in per_scale:
            names += [r["name"] for r in contenders if r["name"] not in names]

        def series(field):
            return [{"title": name,
                     "points": [(scale, r[field]) for scale, contenders, _ in per_scale
                                for r in contenders if r["name"] == name and r["ok"]]}
                    for name in names]

        panels = [
            {"title": "rows/s (flat = cost linear in rows)", "xlabel": "pgbench scale",
             "ylabel": "rows/s", "series": series("rows_per_second"), "xtics": scales,
             "si": True},
            {"title": "client peak RSS", "xlabel": "pgbench scale", "ylabel": "MiB",
             "series": series("peak_rss_mib"), "xtics": scales,
             "hline": (TARGET_RSS_MIB, f"target < {TARGET_RSS_MIB:g} MiB")},
        ]
        results["scaling.png"] = bench_plots.line_panels(
            os.path.join(args.plots, "scaling.png"), f"scaling\n{where}", panels)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--scenario", choices=("throughput", "slow-link"), default="throughput")
    parser.add_argument("--rows", type=int, help="rows, for records without their own")
    parser.add_argument("--scale", type=int, help="unused; records carry their scale")
    parser.add_argument("--clk-tck", type=int, required=True)
    parser.add_argument("--build", default="")
    parser.add_argument("--pg-version", default="")
    parser.add_argument("--raw", default="", help="where the raw measurements are (printed)")
    parser.add_argument("--vacuum-every", default=None)
    parser.add_argument("--plots", help="directory for the PNGs")
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    with open(args.results, encoding="utf-8") as results:
        records = [json.loads(line) for line in results if line.strip()]
    link = next((r for r in records if r.get("kind") == "link"), None)
    proxy_exit = next((r for r in records if r.get("kind") == "proxy_exit"), None)
    if link and proxy_exit:
        link["proxy_exit"] = proxy_exit.get("stderr")
    all_runs = [derive(r, args.clk_tck, args.rows) for r in records
                if r.get("kind") in ("update", "loop", "pgbackfill")]
    scales = []
    for rec in all_runs:
        if rec["scale"] not in scales:
            scales.append(rec["scale"])

    out = Output()
    what = (f"scale {scales[0]} ({scales[0] * 100000:,} rows)" if len(scales) == 1
            else "scales " + ", ".join(f"{s} ({s * 100000:,} rows)" for s in scales))
    out.line(f"== results{': slow link' if args.scenario == 'slow-link' else ''}: {what}, "
             f"{machine_line(args.pg_version)}")
    out.line(f"pgbackfill: {args.build}")
    if args.raw:
        out.line(f"raw measurements: {args.raw}")
    if args.vacuum_every:
        out.line(f"bloat control contender: plan key vacuum_every: {args.vacuum_every}")

    per_scale, targets, per_scale_doc = [], [], []
    for scale in scales:
        runs = [r for r in all_runs if r["scale"] == scale]
        if len(scales) > 1:
            out.line()
            out.line(f"== scale {scale} ({scale * 100000:,} rows)")
        out.line()
        contenders, scale_targets, slow = scale_report(out, scale, scale * 100000, runs, args,
                                                       link)
        per_scale.append((scale, contenders, slow))
        if len(scales) > 1:
            scale_targets = [f"scale {scale}: {line}" for line in scale_targets]
        if scale_targets:
            out.line()
            for line in scale_targets:
                out.line(line)
        targets += scale_targets
        per_scale_doc.append({"scale": scale, "rows": scale * 100000, "contenders": contenders,
                              "slow_link": slow or None, "targets": scale_targets})

    scaling = None
    if len(scales) > 1:
        out.line()
        out.line(f"== scaling: scales {', '.join(map(str, scales))}")
        out.line()
        scaling, scaling_targets = scaling_report(out, scales, per_scale)
        out.line()
        for line in scaling_targets:
            out.line(line)
        targets += scaling_targets

    plots = make_plots(args, scales, per_scale, link)
    if plots:
        out.line()
        for message in plots.values():
            out.line(message)

    if args.json:
        write_report_json(args.json, args.scenario, args, out, {
            "scale": scales[0] if scales else None,
            "rows": scales[0] * 100000 if scales else None,
            "scales": scales,
            "vacuum_every": args.vacuum_every,
            "link": link,
            "contenders": [rec for _, contenders, _ in per_scale for rec in contenders],
            "per_scale": per_scale_doc,
            "scaling": scaling,
            "runs": all_runs,
            "targets": targets,
            "plots": plots,
        })
    return 0 if all_runs and all(rec["ok"] for rec in all_runs) else 1


if __name__ == "__main__":
    sys.exit(main())
