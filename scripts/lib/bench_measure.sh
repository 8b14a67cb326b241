# shellcheck shell=bash
# Measurement helpers for scripts/bench. Source it after the cluster's env; needs POSTMASTER_PID,
# WORK and the q() psql wrapper from scripts/bench.

# CPU clock ticks (utime+stime) the server has used: the postmaster's own and those of the children
# it reaped (cutime+cstime, which covers backends that exited), plus the live children's own.
# Fields of /proc/PID/stat are counted after the ")" closing the command name: state is the 1st,
# ppid the 2nd, utime the 12th, stime 13th, cutime 14th, cstime 15th.
bench_server_ticks() {
  local stat rest total=0 f
  local -a fields
  stat="$(<"/proc/${POSTMASTER_PID}/stat")"
  rest="${stat##*) }"
  read -r -a fields <<<"${rest}"
  total=$((fields[11] + fields[12] + fields[13] + fields[14]))
  for f in /proc/[0-9]*/stat; do
    # A process may exit between the glob and the read.
    { stat="$(<"${f}")"; } 2>/dev/null || continue
    rest="${stat##*) }"
    read -r -a fields <<<"${rest}"
    if [[ "${fields[1]}" == "${POSTMASTER_PID}" ]]; then
      total=$((total + fields[11] + fields[12]))
    fi
  done
  echo "${total}"
}

# Busy ticks of the whole machine (all CPUs): user+nice+system+irq+softirq+steal.
bench_machine_ticks() {
  local -a cpu
  read -r -a cpu </proc/stat
  echo $((cpu[1] + cpu[2] + cpu[3] + cpu[6] + cpu[7] + cpu[8]))
}

bench_checkpoints() {
  q -d postgres -c 'SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter'
}

# The SQL probes run before the CPU sample (and after it in bench_sample_after), and their backends
# are given time to be reaped, so they do not count as work of the contender.
bench_sample_before() {
  BENCH_LSN0="$(q -d postgres -c 'SELECT pg_current_wal_lsn()')"
  BENCH_CKPT0="$(bench_checkpoints)"
  sleep 0.3
  BENCH_SERVER0="$(bench_server_ticks)"
  BENCH_MACHINE0="$(bench_machine_ticks)"
  BENCH_T0="$(date +%s%N)"
}

bench_sample_after() {
  BENCH_T1="$(date +%s%N)"
  # Backends exit when their client disconnects; let the postmaster reap them into cutime.
  sleep 0.3
  BENCH_SERVER1="$(bench_server_ticks)"
  BENCH_MACHINE1="$(bench_machine_ticks)"
  BENCH_WAL="$(q -d postgres -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${BENCH_LSN0}')::bigint")"
  BENCH_CKPT="$(($(bench_checkpoints) - BENCH_CKPT0))"
}

# The size of pgbench_accounts in database $1 as JSON fields with the suffix $2 (before/after):
# pg_table_size (heap, TOAST, free space and visibility maps), pg_indexes_size and
# pg_total_relation_size (the two together), in bytes.
bench_table_sizes() {
  local table indexes total
  read -r table indexes total < <(q -d "$1" -F ' ' -c "SELECT pg_table_size(t), pg_indexes_size(t),
      pg_total_relation_size(t) FROM CAST('public.pgbench_accounts' AS regclass) AS t")
  printf '"table_bytes_%s":%s,"indexes_bytes_%s":%s,"total_bytes_%s":%s' \
    "$2" "${table:-null}" "$2" "${indexes:-null}" "$2" "${total:-null}"
}

# One JSON object: the contender's raw measurements. GNU time files hold "%e %U %S %M" (one per
# client process); bench/bench_report.py derives rates, ratios and percentages from this. $9, when
# given, is more fields ("key":value,...) for the object.
bench_record() {
  local name="$1" kind="$2" arg="$3" status="$4" bad="$5" autovac="$6" log="$7" round="$8"
  local extra="${9:-}"
  local user=0 sys=0 rss=0 procs=0 f u s m
  for f in "${WORK}/${name}".time.*; do
    [[ -f "${f}" ]] || continue
    # GNU time prints "Command exited with non-zero status N" first when the command fails.
    read -r _ u s m < <(tail -n 1 "${f}")
    user="$(awk -v a="${user}" -v b="${u}" 'BEGIN { print a + b }')"
    sys="$(awk -v a="${sys}" -v b="${s}" 'BEGIN { print a + b }')"
    ((m > rss)) && rss="${m}"
    procs=$((procs + 1))
  done
  printf '{"name":"%s","kind":"%s","arg":%s,"round":%s,"exit_status":%s,"wrong_rows":%s,' \
    "${name}" "${kind}" "${arg}" "${round}" "${status}" "${bad:-null}"
  printf '"wall_ns":%s,"client_processes":%s,"client_user_s":%s,"client_sys_s":%s,"client_max_rss_kib":%s,' \
    "$((BENCH_T1 - BENCH_T0))" "${procs}" "${user}" "${sys}" "${rss}"
  printf '"server_ticks":%s,"machine_ticks":%s,"wal_bytes":%s,"checkpoints":%s,' \
    "$((BENCH_SERVER1 - BENCH_SERVER0))" "$((BENCH_MACHINE1 - BENCH_MACHINE0))" "${BENCH_WAL}" \
    "${BENCH_CKPT}"
  printf '"autovacuum_count":%s,"autoanalyze_count":%s,"log":"%s"%s}\n' \
    "${autovac%% *}" "${autovac##* }" "${log}" "${extra:+,${extra}}"
}
