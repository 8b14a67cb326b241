#!/usr/bin/env python3
"""The `throttle.command` of the app-impact matrix's throttle-p99 runs: the application's own
p99 as a share of its budget, fed to the engine the way an operator would feed an SLO from their
monitoring. Prints the nearest-rank p99 latency of the transactions in pgbench's per-transaction
logs (PREFIX.<pid>, PREFIX.<pid>.<n>) that ended in the last --window seconds / --budget-ms, with
3 decimals (1.000 = at the budget); nothing when there are none (exit 0); on any other problem
a message on stderr and exit 1, which holds the job.

    app_p99_ratio.py --log-prefix DIR/pgbench --budget-ms MS [--window SECONDS]
"""

# Stdlib only, and no argparse: the engine runs this every throttle interval, so start-up time is
# the cost that matters (argparse alone about doubles it).
import os
import sys
import time

USAGE = "usage: app_p99_ratio.py --log-prefix DIR/pgbench --budget-ms MS [--window SECONDS]"
DEFAULT_WINDOW_S = 3.0
# The first read from a log's end; it grows 4x until it reaches back past the window.
FIRST_CHUNK = 64 * 1024


class Problem(Exception):
    """Anything but "no transactions yet": a message on stderr, exit 1."""


def parse_args(argv):
    """{--log-prefix, --budget-ms, --window}: `--name value` or `--name=value`."""
    opts = {"--window": str(DEFAULT_WINDOW_S)}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(__doc__.strip())
            sys.exit(0)
        name, eq, value = arg.partition("=")
        if name not in ("--log-prefix", "--budget-ms", "--window"):
            raise Problem(f"unknown argument {arg}\n{USAGE}")
        if not eq:
            if not args:
                raise Problem(f"{name} needs a value\n{USAGE}")
            value = args.pop(0)
        opts[name] = value
    if "--log-prefix" not in opts or "--budget-ms" not in opts:
        raise Problem(USAGE)
    return (opts["--log-prefix"], positive("--budget-ms", opts["--budget-ms"]),
            positive("--window", opts["--window"]))


def positive(name, text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise Problem(f"{name} must be a positive number, got {text!r}")
    return value


def log_files(prefix):
    """pgbench's per-transaction logs of this prefix. A missing directory is a wrong prefix; a
    directory without logs is a pgbench that has not started (yet)."""
    directory, base = os.path.split(os.path.abspath(prefix))
    if not os.path.isdir(directory):
        raise Problem(f"no directory {directory} (--log-prefix {prefix})")
    return [os.path.join(directory, name) for name in os.listdir(directory)
            if is_log_name(name, base)]


def is_log_name(name, base):
    """BASE.<pid> or BASE.<pid>.<thread>, not BASE.out or BASE.time. Plain string tests:
    importing `re` would add about 5 ms to every run."""
    if not name.startswith(base + "."):
        return False
    parts = name[len(base) + 1:].split(".")
    return len(parts) <= 2 and all(p.isdigit() and p.isascii() for p in parts)


def parse_line(line, path):
    """(end epoch seconds, latency µs or None for failed/skipped) of one log line:
    `client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries]`."""
    parts = line.split()
    try:
        end = int(parts[4]) + int(parts[5]) / 1e6
        latency = None if parts[2] in (b"failed", b"skipped") else float(parts[2])
    except (IndexError, ValueError):
        raise Problem(f"{path}: not a pgbench per-transaction log line: {line[:80]!r}") from None
    return end, latency


def tail_lines(log, path, size, since):
    """The complete lines at the end of an open log, reaching back at least to the first line
    that ended before `since` (or to the file's start). The file is read from its end in growing
    chunks, never whole when it is big."""
    chunk = FIRST_CHUNK
    while True:
        start = max(0, size - chunk)
        log.seek(start)
        data = log.read(size - start)
        # pgbench's buffered writes can end mid-line; a chunk can start mid-line.
        lines = data[:data.rfind(b"\n") + 1].splitlines()
        if start > 0 and lines:
            lines.pop(0)
        if start == 0 or (lines and parse_line(lines[0], path)[0] < since):
            return lines
        chunk *= 4


def window_latencies(path, since):
    """The latencies in ms of the transactions in one log that ended at or after `since`."""
    try:
        with open(path, "rb") as log:
            size = os.fstat(log.fileno()).st_size
            lines = tail_lines(log, path, size, since)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise Problem(f"{path}: {error.strerror}") from None
    out = []
    for line in reversed(lines):
        end, latency = parse_line(line, path)
        if end < since:
            break       # each log is in completion order: the rest is older
        if latency is not None:
            out.append(latency / 1000.0)
    return out


def p99(values):
    """Nearest rank: the ceil(0.99 n)-th smallest."""
    ordered = sorted(values)
    return ordered[max(1, -(-99 * len(ordered) // 100)) - 1]


def main(argv):
    try:
        prefix, budget_ms, window_s = parse_args(argv)
        since = time.time() - window_s
        latencies = []
        for path in log_files(prefix):
            latencies += window_latencies(path, since)
    except Problem as problem:
        print(f"app_p99_ratio: {problem}", file=sys.stderr)
        return 1
    if latencies:
        print(f"{p99(latencies) / budget_ms:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
