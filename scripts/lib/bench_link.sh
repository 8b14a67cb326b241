# shellcheck shell=bash
# The slow-link scenario of scripts/bench: a delay proxy between the clients and the server, so
# that every round trip costs what it costs on a network. Source it after the cluster's env; it
# needs WORK, PROXY (the proxy binary), LINK_DELAY_MS and q() from scripts/bench, and defines
# functions only.
#
# The proxy (bench/proxy, built as pgbackfill_delay_proxy) holds every chunk of bytes for
# --delay-ms in each direction:
#   pgbackfill_delay_proxy --to HOST:PORT --delay-ms MS [--listen-port 0]
# prints one line `listening 127.0.0.1:PORT` on stdout when it accepts connections and exits on
# SIGTERM. Upstream is the cluster's TCP listener (scripts/pg-cluster sets listen_addresses to
# 127.0.0.1 on the same port as the unix socket).

# Starts the proxy in front of 127.0.0.1:PGPORT; sets PROXY_PID and PROXY_PORT.
bench_proxy_start() {
  local out="${WORK}/proxy.out" line="" deadline
  : >"${out}"
  "${PROXY}" --to "127.0.0.1:${PGPORT}" --delay-ms "${LINK_DELAY_MS}" --listen-port 0 \
    >"${out}" 2>"${WORK}/proxy.stderr" &
  PROXY_PID=$!
  deadline=$((SECONDS + 10))
  until line="$(head -n 1 "${out}")" && [[ "${line}" =~ ^listening\ 127\.0\.0\.1:([0-9]+)$ ]]; do
    if ! kill -0 "${PROXY_PID}" 2>/dev/null; then
      cat "${WORK}/proxy.stderr" >&2
      echo "bench: the delay proxy exited before it listened (${PROXY})" >&2
      PROXY_PID=""
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "bench: the delay proxy printed no 'listening 127.0.0.1:PORT' line in 10 s" >&2
      exit 1
    fi
    sleep 0.1
  done
  PROXY_PORT="${BASH_REMATCH[1]}"
}

# SIGTERM, then wait for it (it is our child). Safe to call twice.
bench_proxy_stop() {
  [[ -n "${PROXY_PID:-}" ]] || return 0
  kill -TERM "${PROXY_PID}" 2>/dev/null || true
  wait "${PROXY_PID}" 2>/dev/null || true
  PROXY_PID=""
}

# utime+stime ticks the proxy has used so far (0 when it is not running).
bench_proxy_ticks() {
  local stat rest
  local -a fields
  [[ -n "${PROXY_PID:-}" ]] || { echo 0; return; }
  { stat="$(<"/proc/${PROXY_PID}/stat")"; } 2>/dev/null || { echo 0; return; }
  rest="${stat##*) }"
  read -r -a fields <<<"${rest}"
  echo $((fields[11] + fields[12]))
}

# The median round trip of `SELECT 1` in ms over 20 statements of one psql session to host $1
# port $2, from psql's \timing (client-side: send, server, receive).
bench_rtt_ms() {
  local host="$1" port="$2" i
  {
    printf '%s\n' '\timing on'
    for ((i = 0; i < 21; i++)); do echo 'SELECT 1;'; done
  } | psql -X -q -A -t -h "${host}" -p "${port}" -d postgres 2>&1 |
    sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n +2 | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "null" }'
}

# Checks both paths and records the measured round trips as one JSON line (kind "link").
bench_link_record() {
  local direct proxied
  direct="$(bench_rtt_ms 127.0.0.1 "${PGPORT}")"
  proxied="$(bench_rtt_ms 127.0.0.1 "${PROXY_PORT}")"
  if [[ "${proxied}" == null ]]; then
    echo "bench: no query got through the delay proxy on port ${PROXY_PORT}" >&2
    cat "${WORK}/proxy.stderr" >&2 || true
    exit 1
  fi
  echo "round trip of SELECT 1 (median of 20): direct TCP ${direct} ms, through the proxy ${proxied} ms"
  printf '{"kind":"link","delay_ms":%s,"proxy_port":%s,"rtt_direct_ms":%s,"rtt_proxy_ms":%s,"proxy":"%s"}\n' \
    "${LINK_DELAY_MS}" "${PROXY_PORT}" "${direct}" "${proxied}" "${PROXY}" >>"${RESULTS}"
}

# After bench_proxy_stop: the proxy's last stderr line (its counters on exit) as one JSON line.
bench_proxy_summary() {
  local text
  text="$(tail -n 1 "${WORK}/proxy.stderr" 2>/dev/null | tr -d '"[:cntrl:]')"
  text="${text//[\\]/\/}"
  printf '{"kind":"proxy_exit","stderr":"%s"}\n' "${text}" >>"${RESULTS}"
}
