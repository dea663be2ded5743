#!/usr/bin/env bash
# Set everything up, then run a real TLS-verified rsync SST between two local nodes.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
"$here/scripts/setup.sh"
exec "${GALERA_SST_VENV:-/opt/galera-sst}/bin/galera-sst" demo "$@"
