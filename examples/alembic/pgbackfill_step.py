"""Calling pgbackfill from an Alembic migration (or any Python deploy step).

    from pgbackfill_step import run_pgbackfill

    with op.get_context().autocommit_block():
        run_pgbackfill(["run", PLAN], url=op.get_bind().engine.url)

run_pgbackfill runs `pgbackfill <args> --json --dsn <dsn>` as a subprocess, logs its JSON Lines
events as they arrive (logger "pgbackfill"), and returns the last one, `job_finished`, when the
exit code is 0. Any other exit code raises PgbackfillError carrying that event's message (or,
when pgbackfill could not even start a job, what it wrote on stderr), so the migration fails and
Alembic does not record the revision as applied.

Which binary: $PGBACKFILL_BIN, else `pgbackfill` on PATH.
Which database: $PGBACKFILL_DSN when set (a libpq URI or key=value string), else the one `url`
(a SQLAlchemy URL: pass the migration's `op.get_bind().engine.url`) points at, else libpq's PG*
variables. A password in `url` goes to the child as PGPASSWORD, never on its command line (which
`ps` shows to every user of the host).

Signals: pgbackfill runs in its own process group, so Ctrl-C on the terminal reaches only Python;
the first SIGINT/SIGTERM Python receives while pgbackfill runs is forwarded once (pgbackfill lets
in-flight batches commit and exits 3), a second one is forwarded again (pgbackfill cancels the
in-flight statements). Either way committed work is kept and running the migration again
resumes the job.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
from collections import deque
from typing import Any, Iterable, Mapping, Optional, Sequence

__all__ = ["PgbackfillError", "run_pgbackfill", "job_state", "plan_job_name", "libpq_dsn_from_url",
           "EXIT_CODES"]

log = logging.getLogger("pgbackfill")

# pgbackfill's documented exit codes (README.md, "Exit codes").
EXIT_CODES = {
    0: "ok",
    1: "error",
    2: "bad plan, refused by preflight, or the job runs in another process",
    3: "interrupted; committed work is kept, run the migration again to resume",
    4: "verification found rows that differ from the plan's expressions",
    5: "aborted by an operator (pgbackfill abort)",
}


class PgbackfillError(RuntimeError):
    """pgbackfill exited with a code other than 0."""

    def __init__(self, args: Sequence[str], exit_code: int, event: Optional[dict],
                 stderr: str) -> None:
        self.args_used = list(args)
        self.exit_code = exit_code
        self.event = event  # the last JSON event (job_finished when pgbackfill got that far)
        self.stderr = stderr
        if event is not None and event.get("event") == "job_finished" and event.get("message"):
            detail = str(event["message"])
        elif stderr.strip():
            detail = stderr.strip()
        else:
            detail = "no message"
        meaning = EXIT_CODES.get(exit_code, "unknown exit code")
        phase = f" in phase {event['phase']}" if event and event.get("phase") else ""
        super().__init__(f"{' '.join(self.args_used)} failed{phase} with exit code "
                         f"{exit_code} ({meaning}): {detail}")


def _quote_libpq(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def libpq_dsn_from_url(url: Any) -> tuple[str, Optional[str]]:
    """(key=value DSN without the password, the password) for a SQLAlchemy URL.

    Uses the URL's parts as psycopg2 would: user, password, host, port, database, and every query
    parameter (with psycopg2 they are libpq keywords already, e.g. ?host=/run/postgresql for a
    unix socket, sslmode=require). An empty result means "libpq defaults" (PG* variables).
    """
    params: dict[str, str] = {}
    for key, value in url.translate_connect_args(username="user", database="dbname").items():
        if value is not None and value != "":
            params[key] = str(value)
    for key, value in url.query.items():
        if isinstance(value, (tuple, list)):
            # Several hosts (?host=a&host=b): libpq takes them comma-separated.
            value = ",".join(str(v) for v in value)
        params[key] = str(value)
    password = params.pop("password", None)
    dsn = " ".join(f"{key}={_quote_libpq(value)}" for key, value in params.items())
    return dsn, password


def _binary() -> str:
    binary = os.environ.get("PGBACKFILL_BIN") or "pgbackfill"
    if os.sep in binary:
        return os.path.abspath(binary)
    found = shutil.which(binary)
    if found is None:
        raise PgbackfillError([binary], 127, None,
                              f"{binary} not found on PATH; set PGBACKFILL_BIN to the binary")
    return found


def _describe(event: Mapping[str, Any]) -> str:
    """One log line for an event: a readable one for progress, key=value for the rest, so that
    events this helper does not know yet are still shown."""
    kind = event.get("event", "?")
    if kind == "progress":
        percent = event.get("percent")
        eta = event.get("eta_seconds")
        line = (f"progress: {event.get('rows_done')}/{event.get('estimated_rows')} rows"
                f"{f' ({percent:.1f}%)' if isinstance(percent, (int, float)) else ''}, "
                f"{event.get('rows_per_second')} rows/s"
                f"{f', eta {eta:.0f}s' if isinstance(eta, (int, float)) else ''}")
        if event.get("throttle"):
            line += f", held: {event['throttle']}"
        return line
    fields = ", ".join(f"{key}={json.dumps(value)}" for key, value in event.items()
                       if key not in ("event", "time", "job"))
    return f"{kind}: {fields}" if fields else kind


def _prepare(args: Sequence[str], url: Any, env: Optional[Mapping[str, str]]
             ) -> tuple[list[str], dict[str, str], list[str], str]:
    """argv (with --json and --dsn added), the child's environment, argv as shown in logs and
    errors (without the DSN: one may hold a password), and where the DSN came from."""
    args = list(args)
    child_env = dict(os.environ)
    if env:
        child_env.update(env)
    if "--json" not in args:
        args.append("--json")
    shown_args = ["pgbackfill"] + [
        "..." if i > 0 and args[i - 1] == "--dsn" else arg for i, arg in enumerate(args)]
    if "--dsn" in args:
        source = "--dsn given"
    else:
        dsn = os.environ.get("PGBACKFILL_DSN", "")
        source = "$PGBACKFILL_DSN"
        if not dsn and url is not None:
            dsn, password = libpq_dsn_from_url(url)
            source = f"the migration's database ({dsn})"
            if password is not None:
                child_env["PGPASSWORD"] = password
        if dsn:
            args += ["--dsn", dsn]
        else:
            source = "libpq defaults (PG* variables)"
    return [_binary(), *args], child_env, shown_args, source


def plan_job_name(plan_path: str) -> str:
    """The plan's `name:` (the job id), read from the top-level `name:` line. Plain or quoted
    scalars only; enough for plans written by hand, and needs no YAML module."""
    with open(plan_path, encoding="utf-8") as plan:
        for line in plan:
            match = re.match(r"""name:\s*(?:"([^"]*)"|'([^']*)'|([^\s#]+))""", line)
            if match:
                return next(group for group in match.groups() if group is not None)
    raise ValueError(f"{plan_path}: no top-level name:")


def job_state(job: str, *, url: Any = None, env: Optional[Mapping[str, str]] = None
              ) -> Optional[str]:
    """The job's state in the job store of the database (`pgbackfill status --json`): e.g.
    "done", "running", "interrupted", "rolled_back"; None when the database has no such job."""
    argv, child_env, shown_args, _ = _prepare(["status"], url, env)
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            env=child_env, check=False)
    if result.returncode != 0:
        raise PgbackfillError(shown_args, result.returncode, None, result.stderr)
    for entry in json.loads(result.stdout).get("jobs", []):
        if entry.get("name") == job:
            return entry.get("state")
    return None


def run_pgbackfill(args: Sequence[str], *, url: Any = None,
                   env: Optional[Mapping[str, str]] = None) -> dict:
    """Runs `pgbackfill <args> --json [--dsn DSN]` and returns its job_finished event.

    `args` is the subcommand and its plan, e.g. ["run", "/path/plan.yaml"] or
    ["contract", plan]; --json is added when missing, and --dsn when `args` has none and a DSN is
    known ($PGBACKFILL_DSN, else `url`). `env` adds variables for the child. Raises
    PgbackfillError when the exit code is not 0.
    """
    argv, child_env, shown_args, source = _prepare(args, url, env)
    log.info("running %s %s on %s", argv[0], " ".join(shown_args[1:]), source)

    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env, text=True, bufsize=1,
                            start_new_session=True)

    # stderr: pgbackfill's plain messages (a plan it cannot read, usage errors) come there, not as
    # JSON. Forward them as they arrive and keep the tail for the exception.
    stderr_tail: deque[str] = deque(maxlen=50)

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip("\n")
            stderr_tail.append(line)
            log.warning("pgbackfill: %s", line)

    stderr_thread = threading.Thread(target=pump_stderr, daemon=True)
    stderr_thread.start()

    # Forward SIGINT/SIGTERM to the child instead of dying and leaving it behind. Only the main
    # thread may install handlers; elsewhere the defaults stay.
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        def forward(signum: int, _frame: Any) -> None:
            log.warning("signal %d: asking pgbackfill to stop (committed work is kept)", signum)
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, forward)

    last_event: Optional[dict] = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                log.info("pgbackfill: %s", line)
                continue
            if not isinstance(event, dict):
                log.info("pgbackfill: %s", line)
                continue
            last_event = event
            level = logging.WARNING if event.get("event") in ("warning", "retry",
                                                                "reconnect") else logging.INFO
            log.log(level, "%s", _describe(event))
        exit_code = proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if proc.poll() is None:  # an exception in the loop above: do not leave it running
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        stderr_thread.join(timeout=10)

    if exit_code < 0:  # killed by a signal
        raise PgbackfillError(shown_args, 128 - exit_code, last_event,
                              f"killed by signal {-exit_code}\n" + "\n".join(stderr_tail))
    if exit_code != 0:
        raise PgbackfillError(shown_args, exit_code, last_event, "\n".join(stderr_tail))
    if last_event is None or last_event.get("event") != "job_finished":
        raise PgbackfillError(shown_args, exit_code, last_event,
                              "exited 0 without a job_finished event\n" + "\n".join(stderr_tail))
    return last_event


def _main(argv: Iterable[str]) -> int:
    """`python3 pgbackfill_step.py run plan.yaml`: the same wrapper from a shell, for trying it."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)-5.5s [%(name)s] %(message)s")
    try:
        event = run_pgbackfill(list(argv))
    except PgbackfillError as error:
        log.error("%s", error)
        return error.exit_code
    log.info("finished: %s", _describe(event))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
