#!/bin/bash
# MariaDB's own Galera SST/IST regression tests (Debian's mariadb-test package,
# suite/galera/t/*sst* and *_ist_*) with galera-sst in place under the stock names.
#
#   [GALERA_SST_BIN=DIR] [MTR_DIR=DIR] scripts/mtr.sh [--subset] [--stock] [--parallel=N] [--timeout=MIN] [--vardir=DIR]
#                  [--keep] [test ...]
#
# Nothing in /usr/bin is touched: every server mtr starts gets a private basedir
# (--mysqld=--basedir=DIR) whose bin/ holds links named wsrep_sst_rsync, ..._mariabackup,
# ..._mysqldump, ... to our programs, and --plugin-dir, --lc-messages-dir and
# --character-sets-dir pointing back at the system's (docs/testing.md: mariadbd puts
# <basedir>/bin first on the scripts' PATH). --stock runs the same tests with the stock
# scripts (the baseline). Runs as the mysql user, as the tests pass with stock.
#
# --subset: a handful that covers rsync (plain, TLS, IST), mariabackup (plain, TLS, IST)
# and mysqldump, for CI (a few minutes). --timeout bounds the whole run (mtr's
# --suite-timeout, minutes; default 120) and each test (--testcase-timeout, 10).
# Prints one line: passed, failed, skipped, seconds; exit status 0 only if none failed.
set -euo pipefail

GALERA_SST_BIN=${GALERA_SST_BIN:-/opt/galera-sst/bin}
# Debian 12 (10.11) installs the suite and the server's shared files under /usr/share/mysql,
# Debian 13 (11.8) under /usr/share/mariadb: the first that exists, unless set.
first() { for d in "$@"; do [ -e "$d" ] && { echo "$d"; return; }; done; echo "$1"; }
MTR_DIR=${MTR_DIR:-$(first /usr/share/mysql/mysql-test /usr/share/mariadb/mariadb-test)}
SHARE_DIR=${SHARE_DIR:-$(first /usr/share/mysql/charsets /usr/share/mariadb/charsets)}
SHARE_DIR=${SHARE_DIR%/charsets}
PLUGIN_DIR=${PLUGIN_DIR:-/usr/lib/mysql/plugin}
# (galera_sst_rsync_encrypt_* need a debug build: Debian's is not.)
SUBSET=(galera_sst_rsync galera_ist_rsync_verify_ca galera_sst_rsync_missing_stunnel
        galera_sst_mariabackup galera_sst_mariabackup_encrypt_with_key
        galera_ist_mariabackup_verify_ca galera_sst_mysqldump)
subset=0 stock=0 parallel=1 timeout=120 keep=0 vardir="" tests=()
for a in "$@"; do
    case "$a" in
    --subset) subset=1 ;;
    --stock) stock=1 ;;
    --parallel=*) parallel=${a#*=} ;;
    --timeout=*) timeout=${a#*=} ;;
    --vardir=*) vardir=${a#*=} ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "mtr.sh: unknown option $a" >&2; exit 2 ;;
    *) tests+=("$a") ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "mtr.sh: run as root (it runs mtr as the mysql user)" >&2; exit 2; }
[ -x "$MTR_DIR/mariadb-test-run" ] || {
    echo "mtr.sh: $MTR_DIR/mariadb-test-run missing: apt-get install mariadb-test" >&2; exit 2; }
if [ $stock = 0 ] && [ ! -x "$GALERA_SST_BIN/wsrep_sst_py_rsync" ]; then
    echo "mtr.sh: no galera-sst in $GALERA_SST_BIN (set GALERA_SST_BIN)" >&2; exit 2
fi

if [ ${#tests[@]} = 0 ]; then
    if [ $subset = 1 ]; then
        tests=("${SUBSET[@]}")
    else
        mapfile -t tests < <(cd "$MTR_DIR/suite/galera/t" &&
            ls | grep -E '(sst|_ist_).*\.test$' | sed 's/\.test$//')
    fi
fi

work=$(mktemp -d /var/tmp/galera-sst-mtr.XXXXXX)
chmod 755 "$work"
vardir=${vardir:-$work/var}
mkdir -p "$work/base/bin" "$vardir"
if [ $stock = 0 ]; then
    for pair in mariabackup:py_mariabackup rsync:py_rsync rsync_wan:py_rsync_wan \
                mysqldump:py_rsync backup:py_rsync xtrabackup-v2:py_mariabackup; do
        ln -s "$GALERA_SST_BIN/wsrep_sst_${pair#*:}" "$work/base/bin/wsrep_sst_${pair%%:*}"
    done
    base=(--mysqld=--basedir="$work/base" --mysqld=--plugin-dir="$PLUGIN_DIR"
          --mysqld=--lc-messages-dir="$SHARE_DIR"
          --mysqld=--character-sets-dir="$SHARE_DIR/charsets")
else
    base=()
fi
chown -R mysql:mysql "$work"
log="$work/mtr.log"

cleanup() {
    # mtr stops its own servers; anything of this run still alive is stopped by PID
    # (the servers' pid files under the vardir).
    local f pid
    for f in "$vardir"/run/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null) || continue
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || :
    done
    if [ $keep = 0 ]; then rm -rf "$work"; else echo "mtr.sh: kept $work" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

args=()
for t in "${tests[@]}"; do args+=("galera.$t"); done
start=$(date +%s)
set +e
(cd "$MTR_DIR" && runuser -u mysql -- ./mariadb-test-run --vardir="$vardir" --force \
    --big-test --parallel="$parallel" --max-test-fail=0 --retry=0 \
    --suite-timeout="$timeout" --testcase-timeout=10 "${base[@]}" "${args[@]}") \
    > "$log" 2>&1
rc=$?
set -e
secs=$(( $(date +%s) - start ))
grep -E '\[ (pass|fail|skipped|disabled) \]' "$log" || :
passed=$(grep -cE '\[ pass \]' "$log" || :)
failed=$(grep -cE '\[ fail \]' "$log" || :)
skipped=$(grep -cE '\[ skipped \]' "$log" || :)
# mtr also fails a run whose tests all passed when a server's log holds an error at its
# final shutdown: say which line, and keep the log whenever mtr did not succeed.
grep -B1 -E '^\^ Found warnings in' "$log" | grep -vE '^(--|\^ Found warnings)' |
    sed 's/^/[mtr] warning: /' || :
grep -A2 -E '^Errors/warnings were found' "$log" | sed 's/^/[mtr] /' || :
[ $keep = 1 ] || { [ "$failed" = 0 ] && [ $rc = 0 ] || cp "$log" "/var/tmp/galera-sst-mtr-last.log"; }
echo "[mtr] scripts=$([ $stock = 1 ] && echo stock || echo galera-sst) tests=${#tests[@]}" \
     "passed=$passed failed=$failed skipped=$skipped seconds=$secs mtr_status=$rc"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
