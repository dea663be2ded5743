#!/usr/bin/env bash
# Set everything up, then run every check: ruff, mypy --strict, and all test tiers
# (unit, process, local cluster, containers). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${GALERA_SST_VENV:-/opt/galera-sst}"
"$here/scripts/setup.sh"
cd "$here"
echo "== ruff"
"$venv/bin/ruff" check sst testsupport tests integration scripts conftest.py
"$venv/bin/ruff" format --check sst testsupport tests integration scripts conftest.py
echo "== mypy --strict"
"$venv/bin/mypy"
echo "== pytest"
# The pairing matrix writes each cell's outcome here; the table is printed after the run
# (scripts/compat_table.py renders docs/compatibility.md from the same file).
matrix="$(mktemp /tmp/galera-sst-matrix.XXXXXX.json)"
# The container tier's dockerd keeps its socket, pid file and exec root here; the tests stop
# it and remove their containers and networks themselves, and this trap backs them up if
# pytest itself dies.
docker_run="$(mktemp -d /tmp/gsst-dk.XXXXXX)"
cleanup() {
    rm -f "$matrix"
    if [ -s "$docker_run/dockerd.pid" ]; then
        pid="$(cat "$docker_run/dockerd.pid")"
        if kill -0 "$pid" 2>/dev/null; then
            echo "test.sh: stopping the tests' dockerd ($pid)" >&2
            kill -TERM "$pid"
            for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    grep -o " $docker_run[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l || true
    rm -rf "$docker_run"
}
trap cleanup EXIT
rc=0
GALERA_SST_MATRIX_JSON="$matrix" GALERA_SST_DOCKER_RUN="$docker_run" PATH="$venv/bin:$PATH" \
    "$venv/bin/python" -m pytest -p no:cacheprovider "$@" || rc=$?
if [ -s "$matrix" ]; then
    echo "== compatibility matrix"
    "$venv/bin/python" scripts/compat_table.py "$matrix"
fi
exit "$rc"
