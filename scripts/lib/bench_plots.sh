# shellcheck shell=bash
# Plots of scripts/bench (gnuplot; the reports bench/bench_report.py and bench/app_impact_report.py
# draw them through bench/bench_plots.py). Source it after scripts/lib/common.sh; it defines
# functions only.

# The bench-only Debian packages: gnuplot for the PNGs. Not in PGBACKFILL_DEBIAN_PACKAGES (the
# build and the tests do not need it). Installed with common.sh's installer in a subshell, so the
# project's list stays as it is; a failure only costs the plots.
BENCH_PLOT_PACKAGES=(gnuplot-nox)

bench_install_plot_tools() {
  command -v gnuplot >/dev/null 2>&1 && return 0
  # shellcheck disable=SC2034  # read by pgbf_install_packages, in the subshell only
  if ! (PGBACKFILL_DEBIAN_PACKAGES=("${BENCH_PLOT_PACKAGES[@]}") && pgbf_install_packages); then
    echo "bench: could not install ${BENCH_PLOT_PACKAGES[*]}: the plots will be skipped" >&2
  fi
}

# Where the PNGs go: --plots DIR; by default beside the --json file, else bench/results/ in the
# repository; `none` turns them off (prints nothing to stdout then).
bench_plots_dir() {
  local given="$1" json="$2"
  if [[ "${given}" == none ]]; then
    return 0
  elif [[ -n "${given}" ]]; then
    mkdir -p "${given}"
    (cd "${given}" && pwd)
  elif [[ -n "${json}" ]]; then
    dirname "${json}"
  else
    echo "${ROOT}/bench/results"
  fi
}
