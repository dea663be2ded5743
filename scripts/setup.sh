#!/usr/bin/env bash
# Install everything galera-sst needs on Debian 12 (as root): MariaDB 10.11 with Galera 4,
# the SST tools, and a virtualenv at /opt/galera-sst holding galera-sst and its test tools.
# Idempotent: packages already present are not fetched again.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${GALERA_SST_VENV:-/opt/galera-sst}"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages and starts mariadbd)" >&2
    exit 1
fi

# docker.io and debootstrap: the container test tier (its own dockerd, images built here).
packages=(mariadb-server galera-4 mariadb-backup mariadb-client socat stunnel4 rsync pv
          iproute2 procps python3-venv python3-pip tar zstd docker.io debootstrap
          mariadb-test)  # MariaDB's own Galera SST/IST tests (scripts/mtr.sh, integration/test_mtr.py)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The system Python, so the mysql user can run the SST entry points (not a root-only pyenv).
if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
# A real (not editable) install: mariadbd runs the entry points as the mysql user, who may not
# be able to read this checkout.
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$here" 2>&1 \
    | grep -vE '^WARNING: Location|BuildBackendWarning' || true
"$venv/bin/pip" install -q --disable-pip-version-check "$here[test]" 2>&1 \
    | grep -vE '^WARNING: Location|BuildBackendWarning' || true
chmod -R a+rX "$venv"
echo "setup.sh: galera-sst $("$venv/bin/galera-sst" --version | cut -d' ' -f2) in $venv"
