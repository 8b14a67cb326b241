# shellcheck shell=bash
# Shared by scripts/test and scripts/demo: the Debian packages the project needs and an idempotent
# installer. Source it; it defines functions and variables only.

# The one list of Debian packages needed to build, test and demo pgbackfill on Debian 12.
PGBACKFILL_DEBIAN_PACKAGES=(
  cmake ninja-build g++ pkg-config
  libpq-dev libboost-dev libconcurrentqueue-dev libabsl-dev libyaml-cpp-dev libcli11-dev
  nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  dpkg-dev file
  postgresql-15 postgresql-client-15
  python3 python3-alembic python3-psycopg2 alembic
  prometheus  # promtool: tests check /metrics and examples/prometheus-alerts.yml with it
  pgbouncer   # scripts/test puts one in transaction pooling before the primary (leases_test)
)

PGBACKFILL_PG_BIN="${PGBACKFILL_PG_BIN:-/usr/lib/postgresql/15/bin}"

pgbf_section() {
  echo "== $*"
}

# Prints the packages from the list above that dpkg does not report as installed.
pgbf_missing_packages() {
  local package status
  for package in "${PGBACKFILL_DEBIAN_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "${package}" 2>/dev/null || true)"
    [[ "${status}" == installed ]] || echo "${package}"
  done
}

# Installs whatever is missing; silent and offline when everything is present. Needs root only
# when something is missing.
pgbf_install_packages() {
  local -a missing
  mapfile -t missing < <(pgbf_missing_packages)
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if [[ ${EUID} -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "installing: ${missing[*]}"
  # Installing postgresql-15 would otherwise create and start a "15/main" cluster on port 5432
  # that nothing uses; the tests start their own throwaway clusters.
  if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
    mkdir -p /etc/postgresql-common
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
  fi
  export DEBIAN_FRONTEND=noninteractive
  local log
  log="$(mktemp)"
  # apt and debconf are chatty even with -qq; show their output only when they fail.
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"${log}" 2>&1; then
    cat "${log}" >&2
    rm -f "${log}"
    echo "apt-get failed to install: ${missing[*]}" >&2
    return 1
  fi
  rm -f "${log}"
}
