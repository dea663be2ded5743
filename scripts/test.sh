#!/usr/bin/env bash
# Set everything up, then run every check: ruff, mypy --strict, and all test tiers
# (unit, process, local cluster). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${GALERA_SST_VENV:-/opt/galera-sst}"
"$here/scripts/setup.sh"
cd "$here"
echo "== ruff"
"$venv/bin/ruff" check sst tests integration scripts
"$venv/bin/ruff" format --check sst tests integration scripts
echo "== mypy --strict"
"$venv/bin/mypy"
echo "== pytest"
# The pairing matrix writes each cell's outcome here; the table is printed after the run
# (scripts/compat_table.py renders docs/compatibility.md from the same file).
matrix="$(mktemp /tmp/galera-sst-matrix.XXXXXX.json)"
trap 'rm -f "$matrix"' EXIT
rc=0
GALERA_SST_MATRIX_JSON="$matrix" PATH="$venv/bin:$PATH" \
    "$venv/bin/python" -m pytest -p no:cacheprovider "$@" || rc=$?
if [ -s "$matrix" ]; then
    echo "== compatibility matrix"
    "$venv/bin/python" scripts/compat_table.py "$matrix"
fi
exit "$rc"
