#!/usr/bin/env bash
# Set everything up, then run every check: ruff, mypy --strict, and all test tiers
# (unit, process, local cluster). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${GALERA_SST_VENV:-/opt/galera-sst}"
"$here/scripts/setup.sh"
cd "$here"
echo "== ruff"
"$venv/bin/ruff" check sst tests integration
"$venv/bin/ruff" format --check sst tests integration
echo "== mypy --strict"
"$venv/bin/mypy"
echo "== pytest"
PATH="$venv/bin:$PATH" exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
