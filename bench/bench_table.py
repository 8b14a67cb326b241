"""Shared by the reports of scripts/bench (bench_report.py, app_impact_report.py): Markdown tables
and a record of everything printed, so that the --json document holds what the terminal showed."""

import json
import os
import platform
import time


def json_events(log_path):
    """The JSON events of a `pgbackfill run --json` log, in order; none when the log is missing."""
    try:
        with open(log_path, encoding="utf-8") as log:
            for line in log:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue
    except OSError:
        return


def fmt(value, spec):
    """`value` formatted with `spec`, or "-" when it is None."""
    return "-" if value is None else format(value, spec)


def ratio(value, spec=".2f"):
    """A ratio as "1.23x", or "-"."""
    return "-" if value is None else format(value, spec) + "x"


def mem_total_kib():
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def machine():
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "mem_kib": mem_total_kib()}


def machine_line(pg_version):
    mem = mem_total_kib()
    return (f"{os.cpu_count()} cores, "
            + (f"{mem / 1048576:.0f} GiB, " if mem else "")
            + f"PostgreSQL {pg_version or '?'}")


def table_lines(header, rows, left=(0,)):
    """A Markdown table: text columns (indices in `left`) left-aligned, numbers right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    out = [line(header),
           "|" + "|".join("-" * (w + 2) if i in left else "-" * (w + 1) + ":"
                          for i, w in enumerate(widths)) + "|"]
    out.extend(line(row) for row in rows)
    return out


def print_table(header, rows, left=(0,)):
    for text in table_lines(header, rows, left):
        print(text)


class Output:
    """Prints lines and tables and keeps them: `printed` is the text as shown, `tables` the tables
    as {"title", "header", "rows"} for the JSON document."""

    def __init__(self):
        self.printed = []
        self.tables = []

    def line(self, text=""):
        print(text)
        self.printed.extend(str(text).split("\n"))

    def table(self, header, rows, left=(0,), title=None):
        self.tables.append({"title": title, "header": list(header),
                            "rows": [list(row) for row in rows]})
        for text in table_lines(header, rows, left):
            self.line(text)


def write_report_json(path, scenario, args, out, fields):
    """Writes the --json document: what every scenario records (date, build, server, machine, the
    tables and lines printed) around the scenario's own `fields`."""
    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scenario": scenario,
        "pgbackfill_build": args.build,
        "postgresql": args.pg_version,
        "machine": machine(),
    }
    doc.update(fields)
    doc["tables"] = out.tables
    doc["printed"] = out.printed
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2)
        handle.write("\n")
    print(f"\nwrote {path}")
