"""MariaDB's own Galera SST/IST regression tests (Debian's `mariadb-test`), a subset that fits
CI's time, with galera-sst in place under the stock names (scripts/mtr.sh --subset;
docs/testing.md, MariaDB's own regression tests). The full set runs by hand."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MTR = os.path.join(ROOT, "scripts", "mtr.sh")
SUBSET = 7  # scripts/mtr.sh's SUBSET
SUMMARY = re.compile(
    r"^\[mtr\] scripts=(\S+) tests=(\d+) passed=(\d+) failed=(\d+) skipped=(\d+) "
    r"seconds=(\d+) mtr_status=(\d+)$",
    re.M,
)


def processes_naming(path: str) -> list[str]:
    """Live processes whose argv names path (mtr's servers name their vardir)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if path in argv:
            out.append(f"{pid}: {argv[:200]}")
    return out


def test_galera_sst_and_ist_subset_passes_with_ours_under_the_stock_names() -> None:
    """Seven of the suite's SST/IST tests (rsync plain, VERIFY_CA IST and the missing-stunnel
    hook; mariabackup plain, encrypt with key and VERIFY_CA IST; mysqldump) all pass with
    our programs in place of the stock scripts, and nothing of the run is left behind."""
    ours = shutil.which("wsrep_sst_py_rsync")
    if os.geteuid() != 0 or ours is None:
        pytest.fail("mtr tier needs root and galera-sst on PATH (scripts/setup.sh)", pytrace=False)
    vardir = tempfile.mkdtemp(prefix="galera-sst-mtr-test.", dir="/var/tmp")
    shutil.chown(vardir, "mysql", "mysql")
    env = {**os.environ, "GALERA_SST_BIN": os.path.dirname(ours)}
    try:
        res = subprocess.run(
            ["bash", MTR, "--subset", "--timeout=20", f"--vardir={vardir}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=25 * 60,
            env=env,
        )
        left = processes_naming(vardir)
    finally:
        shutil.rmtree(vardir, ignore_errors=True)
    m = SUMMARY.search(res.stdout)
    assert m, res.stdout + res.stderr
    scripts, tests, passed, failed, skipped = m.group(1), *map(int, m.groups()[1:5])
    assert (scripts, tests, passed, failed, skipped) == ("galera-sst", SUBSET, SUBSET, 0, 0), (
        res.stdout + "\n(mtr's log: /var/tmp/galera-sst-mtr-last.log)"
    )
    # All passed yet mtr failed: a server logged an error at its final shutdown (mtr.sh
    # prints the line as "[mtr] warning: ...").
    assert res.returncode == 0 and m.group(7) == "0", (
        res.stdout + "\n(mtr's log: /var/tmp/galera-sst-mtr-last.log)"
    )
    assert left == []
