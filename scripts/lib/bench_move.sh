# shellcheck shell=bash
# The move scenario of scripts/bench: pgbackfill's data mover (copy mode between two databases,
# `source_dsn` / `target_dsn`) against `pgcopydb copy table-data` and a single `psql | psql` COPY
# pipe, moving pgbench_accounts from the template database (the source, `pgbench -i -s N`) into a
# second database of the same cluster. Source it after the cluster's env and
# scripts/lib/bench_measure.sh; it needs WORK, PGBACKFILL, RESULTS, REPEAT, WORKERS, CONTENDERS,
# SCALE_LIST, q() and make_template from scripts/bench, and defines functions only
# (BENCH_MOVE_PACKAGES is its one variable).
#
# Per scale: the template is built once and is the source; its row count, row hash
# (sum(hashtext(a::text))), pg_table_size and schema (`pg_dump --schema-only -t pgbench_accounts`)
# are taken once. Per run: the target database is dropped and created again from that schema
# (empty table, same columns and primary key; pgbackfill's job store, schema pgbackfill, goes with
# the database), CHECKPOINT, the source is read once (a sequential scan, so every run starts with
# the same cache), then the contender runs under GNU time, then the target's count and row hash
# must equal the source's (a mismatch is printed at once and fails the run in the report).
#
# Contenders (--contenders names; pgcopydb and pgbackfill once per --workers count J):
#
#   pgcopydb-J   pgcopydb copy table-data --table-jobs J --filters (include-only-table
#                public.pgbench_accounts) --split-tables-larger-than ceil(1.01 x table / J) bytes
#                (so the one table is copied in J parts by J processes), a fresh --dir per run;
#                default consistency (one exported snapshot on the source)
#   psql-pipe    psql -c "\copy (select * from pgbench_accounts) to stdout" | psql -c
#                "\copy pgbench_accounts from stdin": one text COPY stream
#   pgbackfill-J pgbackfill run PLAN --json, the plan in copy mode with source_dsn/target_dsn,
#                workers: J, verify: false
#
# The rounds alternate the order: round 1 runs the contenders as listed, round 2 in reverse, ...

# The bench-only Debian packages of this scenario: pgcopydb. Not in PGBACKFILL_DEBIAN_PACKAGES
# (the build and the tests do not need it).
BENCH_MOVE_PACKAGES=(pgcopydb)

# Installs pgcopydb when missing, with common.sh's installer in a subshell so that the project's
# package list stays as it is. Returns 1 when it is still missing.
bench_install_move_tools() {
  command -v pgcopydb >/dev/null 2>&1 && return 0
  # shellcheck disable=SC2034  # read by pgbf_install_packages, in the subshell only
  if ! (PGBACKFILL_DEBIAN_PACKAGES=("${BENCH_MOVE_PACKAGES[@]}") && pgbf_install_packages); then
    echo "bench: could not install ${BENCH_MOVE_PACKAGES[*]}" >&2
    return 1
  fi
  command -v pgcopydb >/dev/null 2>&1
}

MOVE_SOURCE_DB=tpl
MOVE_TARGET_DB=move_tgt

move_dsn() {
  echo "host=${PGHOST} port=${PGPORT} user=${PGUSER} dbname=$1"
}

# count, row hash of pgbench_accounts in database $1, space-separated.
move_count_hash() {
  q -d "$1" -F ' ' -c 'SELECT count(*), coalesce(sum(hashtext(a::text)), 0) FROM pgbench_accounts a'
}

# After make_template: the source's rows, hash, size and the target's schema (MOVE_SOURCE_*).
move_prepare_source() {
  read -r MOVE_SOURCE_ROWS MOVE_SOURCE_HASH < <(move_count_hash "${MOVE_SOURCE_DB}")
  MOVE_SOURCE_TABLE_BYTES="$(q -d "${MOVE_SOURCE_DB}" -c "SELECT pg_table_size('public.pgbench_accounts')")"
  MOVE_SOURCE_INDEXES_BYTES="$(q -d "${MOVE_SOURCE_DB}" -c "SELECT pg_indexes_size('public.pgbench_accounts')")"
  pg_dump --schema-only --no-owner -t public.pgbench_accounts "${MOVE_SOURCE_DB}" >"${WORK}/move-target.sql"
  printf '[include-only-table]\npublic.pgbench_accounts\n' >"${WORK}/move-filters.ini"
  echo "source: ${MOVE_SOURCE_ROWS} rows, pg_table_size $((MOVE_SOURCE_TABLE_BYTES / 1048576)) MiB, row hash ${MOVE_SOURCE_HASH}"
}

# Drops the target database (and with it pgbackfill's job store) and creates it again with the
# source's definition of pgbench_accounts, empty.
move_recreate_target() {
  q -d postgres -c 'SET client_min_messages = warning' \
    -c "DROP DATABASE IF EXISTS ${MOVE_TARGET_DB} WITH (FORCE)"
  q -d postgres -c "CREATE DATABASE ${MOVE_TARGET_DB}"
  psql -X -q -v ON_ERROR_STOP=1 -d "${MOVE_TARGET_DB}" -f "${WORK}/move-target.sql" >/dev/null
  [[ "$(q -d "${MOVE_TARGET_DB}" -c 'SELECT count(*) FROM pgbench_accounts')" == 0 ]]
}

# The plan of pgbackfill-J ($1 = J); prints its path.
move_write_plan() {
  local workers="$1" file="${WORK}/move-plan-$1.yaml"
  cat >"${file}" <<EOF
version: 1
name: move-accounts
source_dsn: $(move_dsn "${MOVE_SOURCE_DB}")
target_dsn: $(move_dsn "${MOVE_TARGET_DB}")
# Unqualified (public.pgbench_accounts on the source through the search_path): parsers of
# plans up to commit c666947 refuse an into naming the same table as table even between two
# databases, and this spelling runs on those builds too.
table: pgbench_accounts
into: public.pgbench_accounts
workers: ${workers}
# The harness compares count and row hash of source and target itself after each run.
verify: false
batch: { rows: 50000, target: 1s, max_rows: 500000 }
throttle: { max_replica_lag: 0 }
EOF
  echo "${file}"
}

# pgcopydb splits a table larger than the threshold into ceil(size / threshold) parts: a threshold
# just above size / J gives J parts (1% margin for the size pgcopydb measures).
move_split_bytes() {
  echo $(((MOVE_SOURCE_TABLE_BYTES * 101 / 100 + $1 - 1) / $1))
}

# One run: $1 name, $2 kind (pgcopydb, psql-pipe, pgbackfill), $3 J (0 for psql-pipe), $4 the
# run's position in its round. Appends one JSON line to ${RESULTS}.
move_run() {
  local name="$1" kind="$2" jobs="$3" position="$4" status=0 plan="" dir="" split=null
  local src tgt log="${WORK}/${name}.log"
  src="$(move_dsn "${MOVE_SOURCE_DB}")"
  tgt="$(move_dsn "${MOVE_TARGET_DB}")"
  pgbf_section "${name} (scale ${SCALE}, round ${ROUND}/${REPEAT})"
  move_recreate_target
  q -d postgres -c 'CHECKPOINT'
  # Every run starts with the source read once (operating system cache alike for all).
  q -d "${MOVE_SOURCE_DB}" -c 'SELECT count(*) FROM pgbench_accounts' >/dev/null
  rm -f "${WORK}/${name}".time.*
  case "${kind}" in
    pgbackfill) plan="$(move_write_plan "${jobs}")" ;;
    pgcopydb) dir="$(mktemp -d "${WORK}/pgcopydb.XXXXXX")" ;;
  esac
  bench_sample_before
  case "${kind}" in
    pgcopydb)
      local -a split_args=()
      if ((jobs > 1)); then
        split="$(move_split_bytes "${jobs}")"
        split_args=(--split-tables-larger-than "${split}")
      fi
      /usr/bin/time -f '%e %U %S %M' -o "${WORK}/${name}.time.0" \
        pgcopydb copy table-data --source "${src}" --target "${tgt}" --table-jobs "${jobs}" \
        --filters "${WORK}/move-filters.ini" --dir "${dir}" "${split_args[@]}" \
        >"${log}" 2>&1 || status=$?
      ;;
    psql-pipe)
      local -a pipe
      set +e
      /usr/bin/time -f '%e %U %S %M' -o "${WORK}/${name}.time.0" \
        psql -X -q -v ON_ERROR_STOP=1 -d "${MOVE_SOURCE_DB}" \
        -c '\copy (select * from pgbench_accounts) to stdout' 2>"${log}.out" |
        /usr/bin/time -f '%e %U %S %M' -o "${WORK}/${name}.time.1" \
          psql -X -q -v ON_ERROR_STOP=1 -d "${MOVE_TARGET_DB}" \
          -c '\copy pgbench_accounts from stdin' >"${log}" 2>&1
      pipe=("${PIPESTATUS[@]}")
      set -e
      ((pipe[0] == 0)) || status="${pipe[0]}"
      ((pipe[1] == 0)) || status="${pipe[1]}"
      cat "${log}.out" >>"${log}"
      rm -f "${log}.out"
      ;;
    pgbackfill)
      /usr/bin/time -f '%e %U %S %M' -o "${WORK}/${name}.time.0" \
        "${PGBACKFILL}" run "${plan}" --json >"${log}" 2>"${log}.stderr" || status=$?
      ;;
  esac
  bench_sample_after
  [[ -z "${dir}" ]] || rm -rf "${dir}"

  local rows hash sizes autovac parts=null
  read -r rows hash < <(move_count_hash "${MOVE_TARGET_DB}")
  sizes="$(bench_table_sizes "${MOVE_TARGET_DB}" after)"
  autovac="$(q -d "${MOVE_TARGET_DB}" -c "SELECT coalesce(autovacuum_count, 0) || ' ' || coalesce(autoanalyze_count, 0)
    FROM pg_stat_user_tables WHERE relname = 'pgbench_accounts'")"
  # VACUUM / ANALYZE the client ran on the target (pgcopydb runs VACUUM ANALYZE after its COPY).
  local vacuums
  vacuums="$(q -d "${MOVE_TARGET_DB}" -c "SELECT coalesce(vacuum_count, 0) || ' ' || coalesce(analyze_count, 0)
    FROM pg_stat_user_tables WHERE relname = 'pgbench_accounts'")"
  if [[ "${kind}" == pgcopydb ]]; then
    # "Table ... is 128 MB large, 2 COPY processes will be used"; no such line: not split.
    parts="$(sed -n 's/.* \([0-9][0-9]*\) COPY processes will be used.*/\1/p' "${log}" | tail -n 1)"
    parts="${parts:-1}"
    ((parts == jobs)) || echo "bench: note: pgcopydb split the table ${parts} ways, not ${jobs}" >&2
  fi
  if ((status != 0)); then
    echo "${name}: exit status ${status}; log: ${log}" >&2
    tail -n 5 "${log}" "${log}.stderr" 2>/dev/null >&2 || true
  fi
  if [[ "${rows}" != "${MOVE_SOURCE_ROWS}" || "${hash}" != "${MOVE_SOURCE_HASH}" ]]; then
    echo "bench: MISMATCH after ${name}: target has ${rows} rows, row hash ${hash};" \
      "source ${MOVE_SOURCE_ROWS} rows, row hash ${MOVE_SOURCE_HASH}" >&2
  fi
  local kept="${WORK}/${name}.s${SCALE}.round${ROUND}.log"
  mv "${log}" "${kept}"
  [[ ! -f "${log}.stderr" ]] || mv "${log}.stderr" "${kept}.stderr"
  local extra="\"scale\":${SCALE},\"rows\":${MOVE_SOURCE_ROWS},\"target_rows\":${rows:-null},"
  extra+="\"source_hash\":${MOVE_SOURCE_HASH},\"target_hash\":${hash:-null},"
  extra+="\"source_table_bytes\":${MOVE_SOURCE_TABLE_BYTES},"
  extra+="\"source_indexes_bytes\":${MOVE_SOURCE_INDEXES_BYTES},\"position\":${position},"
  extra+="\"split_bytes\":${split},\"copy_parts\":${parts},"
  extra+="\"vacuum_count\":${vacuums%% *},\"analyze_count\":${vacuums##* },${sizes}"
  bench_record "${name}" "${kind}" "${jobs}" "${status}" "$((${rows:-0} - MOVE_SOURCE_ROWS))" \
    "${autovac}" "${kept}" "${ROUND}" "${extra}" >>"${RESULTS}"
  tail -n 1 "${RESULTS}"
}

# Every scale: the template (the source), then REPEAT rounds of all contenders in alternating
# order; the source's count and hash are checked again at the end of each scale.
# shellcheck disable=SC2153  # WORKERS is scripts/bench's
move_main() {
  local -a runs=()
  local c w i n entry
  for c in ${CONTENDERS}; do
    case "${c}" in
      pgcopydb | pgbackfill) for w in ${WORKERS}; do runs+=("${c}-${w} ${c} ${w}"); done ;;
      psql-pipe) runs+=("psql-pipe psql-pipe 0") ;;
    esac
  done
  n=${#runs[@]}
  printf '{"kind":"move_setup","pgcopydb":"%s","psql":"%s"}\n' \
    "$(pgcopydb --version 2>/dev/null | head -n 1 | tr -dc '[:alnum:] ._-')" \
    "$(psql --version | tr -dc '[:alnum:] ._()+-')" >>"${RESULTS}"
  for SCALE in "${SCALE_LIST[@]}"; do
    # shellcheck disable=SC2034  # read by make_template
    ROWS=$((SCALE * 100000))
    make_template
    move_prepare_source
    for ((ROUND = 1; ROUND <= REPEAT; ROUND++)); do
      for ((i = 0; i < n; i++)); do
        if ((ROUND % 2)); then entry="${runs[i]}"; else entry="${runs[n - 1 - i]}"; fi
        # shellcheck disable=SC2086  # "name kind jobs"
        move_run ${entry} "$((i + 1))"
      done
    done
    q -d postgres -c 'SET client_min_messages = warning' \
      -c "DROP DATABASE IF EXISTS ${MOVE_TARGET_DB} WITH (FORCE)"
    local rows hash
    read -r rows hash < <(move_count_hash "${MOVE_SOURCE_DB}")
    if [[ "${rows}" != "${MOVE_SOURCE_ROWS}" || "${hash}" != "${MOVE_SOURCE_HASH}" ]]; then
      echo "bench: MISMATCH: the source changed during scale ${SCALE}: ${rows} rows, row hash ${hash}" >&2
      printf '{"kind":"move_source_changed","scale":%s}\n' "${SCALE}" >>"${RESULTS}"
    fi
  done
}
