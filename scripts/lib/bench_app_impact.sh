# shellcheck shell=bash
# The app-impact scenario of scripts/bench: what a backfill costs an application that keeps
# serving, and whether the throttle keeps that cost inside the targets. Source it after the
# cluster's env, the template database and scripts/lib/bench_measure.sh; it needs WORK, ROWS,
# PGBACKFILL, RESULTS, CLK_TCK, STANDBY_POSTMASTER_PID, q() and the APP_* settings of
# scripts/bench, and defines functions only.
#
# Runs, in this order (each on a fresh copy of tpl, CHECKPOINTed, cache warmed, standby caught up):
#
#   unthrottled  the backfill alone, no application, no hold signal: the reference rows/s
#   max-tps      pgbench unthrottled for APP_MAX_TPS_SECONDS: the application's max TPS (skipped
#                when APP_RATE is given)
#   baseline     pgbench at the fixed rate for APP_DURATION seconds, no backfill
#   no-throttle  the same pgbench run; the backfill starts APP_LEAD_IN seconds in, no hold signal
#   canary       the same, with throttle.max_canary_latency (APP_CANARY_MS, by default derived
#                from the baseline p99)
#   replica-lag  the same, with throttle.max_replica_lag (APP_REPLICA_LAG)
#
# A backfill that is still running when pgbench ends is stopped with SIGTERM (it finishes the
# batches in flight and exits 3, resumable): the measurement window is the backfill's, clipped to
# pgbench's run. The standby's lag is sampled every 200 ms from the backfill's start until the
# standby has replayed everything written up to the backfill's end.

APP_RUNS_ALL="unthrottled baseline no-throttle canary replica-lag"

app_dsn() {
  echo "host=${PGHOST} port=${PGPORT} user=${PGUSER} dbname=$1"
}

# Waits (up to $1 seconds) until the standby has replayed all WAL the primary had written when
# called. Returns 1, with a warning, when it has not.
app_wait_standby() {
  local limit="${1:-60}" target deadline
  deadline=$((SECONDS + limit))
  target="$(q -d postgres -c 'SELECT pg_current_wal_lsn()')"
  until [[ "$(q -d postgres -c "SELECT coalesce(bool_and(replay_lsn >= '${target}'), false)
      FROM pg_stat_replication WHERE application_name = 'standby'")" == t ]]; do
    if ((SECONDS >= deadline)); then
      echo "bench: the standby has not replayed up to ${target} after ${limit}s" >&2
      return 1
    fi
    sleep 0.2
  done
}

# A fresh copy of tpl, checkpointed, its cache warmed alike for every run: a sequential scan of
# the tables (operating system cache; a large table's seq scan reads through a small ring buffer)
# and an index-only scan of pgbench_accounts_pkey (shared_buffers, where every pgbench transaction
# and every batch walks it). Then the standby catches up, so every run starts with no lag.
app_fresh_db() {
  local db="$1"
  q -d postgres -c "CREATE DATABASE ${db} TEMPLATE tpl STRATEGY FILE_COPY"
  q -d postgres -c 'CHECKPOINT'
  q -d "${db}" -c 'SELECT count(*) FROM pgbench_accounts' \
    -c 'SELECT count(*) FROM pgbench_tellers' -c 'SELECT count(*) FROM pgbench_branches' \
    -c 'SET enable_seqscan = off' -c 'SET enable_bitmapscan = off' \
    -c 'SELECT count(*) FROM pgbench_accounts WHERE aid > 0' >/dev/null
  app_wait_standby 120
}

# Samples the standby's lag every 200 ms into $1, one line per sample: epoch seconds, replay_lag
# in seconds (NULL, i.e. nothing to replay, as 0), WAL bytes not yet replayed. One psql session
# (\watch), so the sampling itself costs no connection per sample. No line while the standby is
# disconnected.
app_lag_start() {
  psql -X -q -A -t -F ' ' -d postgres >"$1" 2>"$1.stderr" <<'EOF' &
SELECT extract(epoch FROM clock_timestamp()), coalesce(extract(epoch FROM replay_lag), 0),
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)
  FROM pg_stat_replication WHERE application_name = 'standby' \watch 0.2
EOF
  APP_LAG_PID=$!
}

# psql ends \watch on SIGINT, then reads the end of its input and exits.
app_lag_stop() {
  kill -INT "${APP_LAG_PID}" 2>/dev/null || true
  wait "${APP_LAG_PID}" || true
}

# The throttle keys of one run (a YAML flow mapping's entries): the run's own signal, every other
# hold signal off, so that each run measures one signal. max_replica_lag defaults to 5s, which
# would hold every run on the standby; lock waiters are always checked (0 = any waiter holds), so
# the largest limit turns their hold off (any waiter still counts as pressure: fewer workers,
# smaller batches; the engine has no switch for that). APP_THROTTLE_EXTRA (--throttle-extra) adds
# keys to the canary and replica-lag runs and replaces a default of the same name.
app_throttle_keys() {
  local name="$1" own="" extra="" key out=""
  local -a defaults=("max_replica_lag: 0" "max_lock_waiters: 2147483647")
  case "${name}" in
    canary) own="max_canary_latency: ${APP_CANARY_MS}ms" ;;
    replica-lag) own="max_replica_lag: ${APP_REPLICA_LAG}" ;;
  esac
  [[ -n "${own}" ]] && extra="${APP_THROTTLE_EXTRA}"
  out="${own}"
  for key in "${defaults[@]}"; do
    [[ "${own}, ${extra}" == *"${key%%:*}:"* ]] && continue
    out+="${out:+, }${key}"
  done
  [[ -n "${extra}" ]] && out+=", ${extra}"
  echo "${out}"
}

# The plan of one run: the throughput scenario's batch settings (batch.target from
# APP_BATCH_TARGET), the first --workers count, and the run's throttle keys.
app_write_plan() {
  local name="$1" file="$2" throttle="$3"
  cat >"${file}" <<EOF
version: 1
name: app-${name}
table: public.pgbench_accounts
set:
  c: abalance * 100
batch: { rows: 10000, target: ${APP_BATCH_TARGET}, min_rows: 1000, max_rows: 100000 }
workers: ${APP_WORKERS}
throttle: { ${throttle}, interval: ${APP_INTERVAL} }
# The harness checks the rows itself; verify would also fail on rows pgbench changed after the
# backfill passed them, and its time is not backfill time.
verify: false
EOF
}

# pgbench against $1 for $3 seconds, output in $2; with a rate ($4), at that fixed rate (-R)
# with a per-transaction log ($2/pgbench.*: latency measured from the scheduled start, so it
# includes the wait behind a slow server, as an application sees it). -n: no VACUUM or TRUNCATE
# of pgbench's tables before the run (each run has a fresh copy of tpl anyway).
app_pgbench() {
  local db="$1" dir="$2" seconds="$3" rate="${4:-}"
  local -a args=(-n -b "${APP_SCRIPT}" -c "${APP_CLIENTS}" -j "${APP_THREADS}" -T "${seconds}"
    -P 1 --random-seed="${APP_SEED}")
  if [[ -n "${rate}" ]]; then
    args+=(-R "${rate}" --log --log-prefix="${dir}/pgbench")
  fi
  /usr/bin/time -f '%e %U %S %M' -o "${dir}/pgbench.time" \
    pgbench "${args[@]}" "${db}" >"${dir}/pgbench.out" 2>&1
}

# The application's maximum throughput: pgbench unthrottled on a fresh copy. Sets APP_MAX_TPS.
app_max_tps() {
  local dir="${WORK}/max-tps" db=app_max_tps status=0
  pgbf_section "max-tps: pgbench -b ${APP_SCRIPT} -c ${APP_CLIENTS} -j ${APP_THREADS}, ${APP_MAX_TPS_SECONDS} s unthrottled"
  mkdir -p "${dir}"
  app_fresh_db "${db}"
  app_pgbench "${db}" "${dir}" "${APP_MAX_TPS_SECONDS}" || status=$?
  APP_MAX_TPS="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "${dir}/pgbench.out" | tail -n 1)"
  if ((status != 0)) || [[ -z "${APP_MAX_TPS}" ]]; then
    tail -n 20 "${dir}/pgbench.out" >&2
    echo "bench: the max-tps pgbench run failed (exit ${status})" >&2
    exit 1
  fi
  printf '{"name":"max-tps","kind":"max-tps","exit_status":%s,"tps":%s,"dir":"%s"}\n' \
    "${status}" "${APP_MAX_TPS}" "${dir}" >>"${RESULTS}"
  tail -n 1 "${RESULTS}"
  q -d postgres -c "DROP DATABASE ${db} WITH (FORCE)"
}

# One run of the scenario (see the top of this file); appends one JSON line to RESULTS.
app_run() {
  local name="$1" with_app=1 with_backfill=1 throttle=""
  case "${name}" in
    unthrottled) with_app=0 ;;
    baseline) with_backfill=0 ;;
    no-throttle | canary | replica-lag) ;;
    *) echo "bench: unknown app-impact run ${name}" >&2; exit 2 ;;
  esac
  ((with_backfill)) && throttle="$(app_throttle_keys "${name}")"
  local db="app_${name//-/_}" dir="${WORK}/${name}"
  local what="backfill alone"
  ((with_app)) && what="pgbench -R ${APP_RATE} for ${APP_DURATION} s"
  ((with_app && with_backfill)) && what+=", backfill from ${APP_LEAD_IN} s (throttle: { ${throttle} })"
  pgbf_section "${name}: ${what}"
  rm -rf "${dir}"
  mkdir -p "${dir}"
  ((with_backfill)) && app_write_plan "${name}" "${dir}/plan.yaml" "${throttle}"
  app_fresh_db "${db}"

  local pg_pid="" bf_pid="" finished="" st
  local pg_status=null bf_status=null stopped=0 t0 pg_t1=0 bf_t0=0 bf_t1=0 caught_up_t=0
  local standby0 standby1
  bench_sample_before "${db}"
  standby0="$(POSTMASTER_PID="${STANDBY_POSTMASTER_PID}" bench_server_ticks)"
  t0="$(date +%s%N)"
  if ((with_app)); then
    app_pgbench "${db}" "${dir}" "${APP_DURATION}" "${APP_RATE}" &
    pg_pid=$!
    ((with_backfill)) && sleep "${APP_LEAD_IN}"
  fi
  if ((with_backfill)); then
    app_lag_start "${dir}/lag.txt"
    bf_t0="$(date +%s%N)"
    /usr/bin/time -f '%e %U %S %M' -o "${dir}/pgbackfill.time" \
      "${PGBACKFILL}" run "${dir}/plan.yaml" --dsn "$(app_dsn "${db}")" --json \
      >"${dir}/pgbackfill.jsonl" 2>"${dir}/pgbackfill.stderr" &
    bf_pid=$!
    if ((with_app)); then
      st=0
      wait -n -p finished "${pg_pid}" "${bf_pid}" || st=$?
      if [[ "${finished}" == "${pg_pid}" ]]; then
        pg_status="${st}"
        pg_t1="$(date +%s%N)"
        # The application's run is over: stop the backfill the way an operator would (SIGTERM to
        # pgbackfill, the child of GNU time): it commits the batches in flight and exits 3.
        stopped=1
        pkill -TERM -P "${bf_pid}" || true
      else
        bf_status="${st}"
      fi
    fi
    if [[ "${bf_status}" == null ]]; then
      st=0
      wait "${bf_pid}" || st=$?
      bf_status="${st}"
    fi
    bf_t1="$(date +%s%N)"
    app_wait_standby 120 || true
    caught_up_t="$(date +%s%N)"
    app_lag_stop
  fi
  if ((with_app)) && [[ "${pg_status}" == null ]]; then
    st=0
    wait "${pg_pid}" || st=$?
    pg_status="${st}"
    pg_t1="$(date +%s%N)"
  fi
  bench_sample_after "${db}"
  standby1="$(POSTMASTER_PID="${STANDBY_POSTMASTER_PID}" bench_server_ticks)"

  # pgbench never writes c, so every non-NULL c is the backfill's, written once: their count must
  # be the job's rows. Rows pgbench updated after the backfill passed them keep the c of their old
  # abalance, which is right for a backfill without dual_write; every row pgbench never touched
  # (no pgbench_history line) must hold exactly abalance * 100.
  local filled wrong touched
  filled="$(q -d "${db}" -c 'SELECT count(c) FROM pgbench_accounts')"
  wrong="$(q -d "${db}" -c 'SELECT count(*) FROM pgbench_accounts a
    WHERE c IS NOT NULL AND c IS DISTINCT FROM abalance * 100
      AND NOT EXISTS (SELECT FROM pgbench_history h WHERE h.aid = a.aid)')"
  touched="$(q -d "${db}" -c 'SELECT count(DISTINCT aid) FROM pgbench_history')"
  if ((with_backfill)) && [[ "${bf_status}" != 0 ]] && ! ((stopped && bf_status == 3)); then
    echo "${name}: pgbackfill exit status ${bf_status}; log: ${dir}/pgbackfill.jsonl" >&2
    tail -n 5 "${dir}/pgbackfill.jsonl" "${dir}/pgbackfill.stderr" >&2 || true
  fi
  if ((with_app)) && [[ "${pg_status}" != 0 ]]; then
    echo "${name}: pgbench exit status ${pg_status}; output: ${dir}/pgbench.out" >&2
    tail -n 5 "${dir}/pgbench.out" >&2 || true
  fi

  local client_ticks=0 f u s
  for f in "${dir}"/*.time; do
    [[ -f "${f}" ]] || continue
    read -r _ u s _ < <(tail -n 1 "${f}")
    client_ticks="$(awk -v a="${client_ticks}" -v u="${u}" -v s="${s}" -v t="${CLK_TCK}" \
      'BEGIN { printf "%d", a + (u + s) * t }')"
  done
  {
    printf '{"name":"%s","kind":"app","with_app":%s,"with_backfill":%s,"dir":"%s",' \
      "${name}" "${with_app}" "${with_backfill}" "${dir}"
    printf '"throttle":"%s","pgbench_status":%s,"pgbackfill_status":%s,"stopped":%s,' \
      "${throttle}" "${pg_status}" "${bf_status}" "${stopped}"
    printf '"t0_ns":%s,"pgbench_end_ns":%s,"backfill_start_ns":%s,"backfill_end_ns":%s,' \
      "${t0}" "${pg_t1}" "${bf_t0}" "${bf_t1}"
    printf '"standby_caught_up_ns":%s,"filled_rows":%s,"wrong_rows":%s,"touched_rows":%s,' \
      "${caught_up_t}" "${filled}" "${wrong}" "${touched}"
    printf '"wall_ns":%s,"server_ticks":%s,"standby_ticks":%s,"client_ticks":%s,' \
      "$((BENCH_T1 - BENCH_T0))" "$((BENCH_SERVER1 - BENCH_SERVER0))" \
      "$((standby1 - standby0))" "${client_ticks}"
    printf '"machine_ticks":%s,' "$((BENCH_MACHINE1 - BENCH_MACHINE0))"
    printf '"wal_bytes":%s,"checkpoints":%s}\n' "${BENCH_WAL}" "${BENCH_CKPT}"
  } >>"${RESULTS}"
  tail -n 1 "${RESULTS}"
  q -d postgres -c "DROP DATABASE ${db} WITH (FORCE)"
}

# The whole scenario: runs the selected runs (APP_RUNS, in the canonical order), deriving the
# fixed rate and the canary limit on the way, then the report.
app_impact_main() {
  local run
  local -a selected=()
  for run in ${APP_RUNS_ALL}; do
    [[ " ${APP_RUNS} " == *" ${run} "* ]] && selected+=("${run}")
  done
  for run in "${selected[@]}"; do
    case "${run}" in
      unthrottled) ;;
      *)
        if [[ -z "${APP_RATE}" ]]; then
          app_max_tps
          APP_RATE="$(awk -v t="${APP_MAX_TPS}" -v p="${APP_RATE_PERCENT}" \
            'BEGIN { r = int(t * p / 100 + 0.5); print (r < 1 ? 1 : r) }')"
          echo "fixed rate: ${APP_RATE_PERCENT}% of ${APP_MAX_TPS} tps = ${APP_RATE} tps"
        fi
        ;;
    esac
    if [[ "${run}" == canary && -z "${APP_CANARY_MS}" ]]; then
      APP_CANARY_MS="$(python3 "${ROOT}/bench/app_impact_report.py" canary-limit "${RESULTS}" \
        --lead-in "${APP_LEAD_IN}")"
      echo "canary limit: ${APP_CANARY_MS} ms (max(2 ms, 1.2 x baseline p99), whole ms, rounded up)"
    fi
    app_run "${run}"
  done
}
