#!/usr/bin/env bash
# The test PackageInstallsAndRuns (CMakeLists.txt): `cmake --install` into a temporary prefix puts
# exactly the binary, the man page, the docs and the example plans in their places; `cpack -G DEB`
# builds a .deb whose Depends (from dpkg-shlibdeps) names libpq5; the installed and the packaged
# binary print `pgbackfill VERSION (commit HASH, BUILD_TYPE)` for --version.
#
#   check-package.sh BUILD_DIR VERSION BINDIR MANDIR DOCDIR [CONFIG]
# (CONFIG last: it is empty in a single-configuration build without CMAKE_BUILD_TYPE.)
# CMAKE and CPACK in the environment name the tools of the build (default: from PATH).
set -euo pipefail

build="$1" version="$2" bindir="$3" mandir="$4" docdir="$5" config="${6:-}"
source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/pgbackfill-package.XXXXXX")"
trap 'rm -rf "${tmp}"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# The version line of the binary $1: version and build type from CMake, a short hash (with -dirty
# for uncommitted changes) or `unknown` outside a git checkout.
check_version() {
  local line pattern
  line="$("$1" --version)"
  pattern="^pgbackfill ${version//./\\.} \(commit ([0-9a-f]{7,40}(-dirty)?|unknown), ${config:-unknown}\)$"
  [[ "${line}" =~ ${pattern} ]] || fail "$1 --version printed '${line}', expected /${pattern}/"
  echo "ok: ${line}"
}

echo "== cmake --install ${build} --prefix ${tmp}/prefix"
install_args=(--prefix "${tmp}/prefix")
[[ -n "${config}" ]] && install_args+=(--config "${config}")
"${CMAKE:-cmake}" --install "${build}" "${install_args[@]}" >/dev/null

# Exactly these files: the binary alone from the build, no test, benchmark or proxy.
expected=("${bindir}/pgbackfill" "${mandir}/man1/pgbackfill.1" "${docdir}/README.md"
          "${docdir}/plan-reference.md")
for plan in "${source_dir}"/plans/*.yaml; do
  expected+=("${docdir}/examples/$(basename "${plan}")")
done
diff -u <(printf '%s\n' "${expected[@]}" | sort) \
        <(cd "${tmp}/prefix" && find . -type f -printf '%P\n' | sort) ||
  fail "cmake --install installed other files than expected (- expected, + installed)"
[[ -x "${tmp}/prefix/${bindir}/pgbackfill" ]] || fail "${bindir}/pgbackfill is not executable"
echo "ok: ${#expected[@]} files installed, each in its place"
check_version "${tmp}/prefix/${bindir}/pgbackfill"

# The man page renders without warnings where groff is installed (not on a bare CI image).
if command -v groff >/dev/null; then
  warnings="$(groff -man -Tutf8 -ww -z "${tmp}/prefix/${mandir}/man1/pgbackfill.1" 2>&1)"
  [[ -z "${warnings}" ]] || fail "groff warns on the man page: ${warnings}"
  echo "ok: the man page renders without warnings"
fi

echo "== cpack -G DEB"
cpack_args=(-G DEB --config "${build}/CPackConfig.cmake" -B "${tmp}/deb")
[[ -n "${config}" ]] && cpack_args+=(-C "${config}")
if ! "${CPACK:-cpack}" "${cpack_args[@]}" >"${tmp}/cpack.log" 2>&1; then
  cat "${tmp}/cpack.log" >&2
  fail "cpack -G DEB failed"
fi
shopt -s nullglob
debs=("${tmp}"/deb/pgbackfill_*.deb)
((${#debs[@]} == 1)) || fail "expected one pgbackfill_*.deb in ${tmp}/deb, found: ${debs[*]:-none}"
deb="${debs[0]}"
# The Debian file name: package_version-release_architecture.deb.
arch="$(dpkg --print-architecture)"
[[ "$(basename "${deb}")" == "pgbackfill_${version}-1_${arch}.deb" ]] ||
  fail "package file name $(basename "${deb}"), expected pgbackfill_${version}-1_${arch}.deb"
echo "ok: $(basename "${deb}")"

dpkg-deb -I "${deb}"
depends="$(dpkg-deb -f "${deb}" Depends)"
# One package name per comma-separated entry, before any version constraint.
tr ',' '\n' <<<"${depends}" | awk '{print $1}' | grep -qx libpq5 ||
  fail "Depends does not name libpq5: ${depends}"
[[ "$(dpkg-deb -f "${deb}" Section)" == database ]] || fail "Section is not database"
[[ -n "$(dpkg-deb -f "${deb}" Maintainer)" ]] || fail "no Maintainer"
echo "ok: Depends: ${depends}"

contents="$(dpkg-deb -c "${deb}" | awk '{print $6}')"
for path in ./usr/bin/pgbackfill ./usr/share/man/man1/pgbackfill.1 \
            ./usr/share/doc/pgbackfill/README.md ./usr/share/doc/pgbackfill/plan-reference.md \
            ./usr/share/doc/pgbackfill/examples/users-split-name.yaml; do
  grep -qxF "${path}" <<<"${contents}" || fail "the package has no ${path}"
done
echo "ok: the package holds the binary, the man page, the docs and the examples under /usr"

# The packaged binary itself, extracted (it runs from any directory: no rpath into the build).
dpkg-deb -x "${deb}" "${tmp}/root"
check_version "${tmp}/root/usr/bin/pgbackfill"
echo "PASS"
