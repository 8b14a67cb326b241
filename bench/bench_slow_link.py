"""`scripts/bench --scenario slow-link`: the throughput contenders twice each, directly over TCP and
through a delay proxy, so that every round trip costs what it costs on a network.

The proxy (bench/proxy, built as pgbackfill_delay_proxy) holds every chunk of bytes for
--delay-ms in each direction:
    pgbackfill_delay_proxy --to HOST:PORT --delay-ms MS [--listen-port 0]
prints one line `listening 127.0.0.1:PORT` on stdout when it accepts connections and exits on
SIGTERM. Upstream is the cluster's TCP listener (scripts/pg-cluster sets listen_addresses to
127.0.0.1 on the same port as the unix socket).
"""

import contextlib
import re
import subprocess
import sys
import time

from bench_harness import BenchError, json_number, section
from bench_throughput import Link, report, run_scales

READY = re.compile(r"listening 127\.0\.0\.1:([0-9]+)")
READY_SECONDS = 10
RTT_STATEMENTS = 20


def _first_line(path):
    with open(path, encoding="utf-8", errors="replace") as out:
        return out.readline().strip()


@contextlib.contextmanager
def delay_proxy(ctx):
    """The proxy in front of 127.0.0.1:PGPORT while the block runs; yields (process, port).
    Stopped with SIGTERM and waited for however the block ends."""
    out, err = ctx.path("proxy.out"), ctx.path("proxy.stderr")
    with open(out, "w", encoding="utf-8") as stdout, open(err, "w", encoding="utf-8") as stderr:
        proc = subprocess.Popen([ctx.proxy, "--to", f"127.0.0.1:{ctx.cluster.port}",
                                 "--delay-ms", ctx.cfg.link_delay_ms, "--listen-port", "0"],
                                stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not (ready := READY.fullmatch(_first_line(out))):
            if proc.poll() is not None:
                with open(err, encoding="utf-8", errors="replace") as text:
                    sys.stderr.write(text.read())
                raise BenchError(f"the delay proxy exited before it listened ({ctx.proxy})")
            if time.monotonic() >= deadline:
                raise BenchError("the delay proxy printed no 'listening 127.0.0.1:PORT' line "
                                 f"in {READY_SECONDS} s")
            time.sleep(0.1)
        yield proc, ready.group(1)
    finally:
        proc.terminate()
        proc.wait()


def rtt_ms(ctx, port):
    """The median round trip of `SELECT 1` in ms over 20 statements of one psql session to
    127.0.0.1:port, from psql's \\timing (client-side: send, server, receive); None when no
    statement got through. The first statement (the connection's warm-up) is not counted."""
    script = "\\timing on\n" + "SELECT 1;\n" * (RTT_STATEMENTS + 1)
    out = ctx.cluster.run(["psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", port,
                           "-d", "postgres"], input=script, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
    times = [float(m.group(1)) for m in re.finditer(r"^Time: ([0-9.]+) ms", out, re.M)]
    times = sorted(times[1:])
    return times[(len(times) + 1) // 2 - 1] if times else None


def record_link(ctx, port):
    """Checks both paths and records the measured round trips (kind "link")."""
    direct, proxied = rtt_ms(ctx, ctx.cluster.port), rtt_ms(ctx, port)
    if proxied is None:
        with open(ctx.path("proxy.stderr"), encoding="utf-8", errors="replace") as text:
            sys.stderr.write(text.read())
        raise BenchError(f"no query got through the delay proxy on port {port}")
    print(f"round trip of SELECT 1 (median of {RTT_STATEMENTS}): direct TCP {direct} ms, "
          f"through the proxy {proxied} ms", flush=True)
    ctx.results.append({"kind": "link", "delay_ms": json_number(ctx.cfg.link_delay_ms),
                        "proxy_port": int(port), "rtt_direct_ms": direct,
                        "rtt_proxy_ms": proxied, "proxy": ctx.proxy}, echo=False)


def record_proxy_exit(ctx):
    """After the proxy exited: its last stderr line (its counters on exit)."""
    with open(ctx.path("proxy.stderr"), encoding="utf-8", errors="replace") as text:
        lines = [line.strip() for line in text if line.strip()]
    ctx.results.append({"kind": "proxy_exit", "stderr": lines[-1] if lines else ""}, echo=False)


def run(ctx):
    delay = ctx.cfg.link_delay_ms
    section(f"delay proxy: {delay} ms each way")
    with delay_proxy(ctx) as (proc, port):
        print(f"proxy: 127.0.0.1:{port} -> 127.0.0.1:{ctx.cluster.port}", flush=True)
        record_link(ctx, port)
        run_scales(ctx, [Link("direct"), Link("proxy", port, proc.pid, delay)])
    record_proxy_exit(ctx)
    return report(ctx)
