"""`galera-sst check` reports the versions of the server and of the method's programs found on
this host, read from the programs themselves, and fails a mariadb-backup of another series
than mariadbd (issue 17)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testsupport.process import fake_tool


def packaged(package: str) -> str:
    """The upstream version of an installed Debian package, as dpkg has it (not as the
    program says it): '1:10.11.19-0+deb12u1' -> '10.11.19', '3.5.0+ds1-0+deb12u1' -> '3.5.0'."""
    res = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if res.returncode != 0 or not res.stdout:
        pytest.fail(f"{package} is not installed (scripts/setup.sh installs it)")
    m = re.fullmatch(r"(?:\d+:)?([\d.]+)[-+~].*", res.stdout)
    assert m, res.stdout
    return m.group(1)


def check(
    tmp_path: Path, method: str, path_first: str = ""
) -> tuple[int, dict[str, dict[str, str]]]:
    cnf = tmp_path / "my.cnf"
    cnf.write_text(f"[mysqld]\ndatadir={tmp_path}/data\n")
    env = dict(os.environ)
    if path_first:
        env["PATH"] = path_first + os.pathsep + env["PATH"]
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "sst",
            "check",
            "--method",
            method,
            "--defaults-file",
            str(cnf),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )
    rows = json.loads(res.stdout)
    return res.returncode, {r["check"]: r for r in rows}


def test_versions_are_those_of_the_installed_packages(tmp_path: Path) -> None:
    for tool in ("mariadb-backup", "socat", "rsync"):
        assert shutil.which(tool), f"{tool} missing (scripts/setup.sh installs it)"
    server = packaged("mariadb-server-core")
    _, rows = check(tmp_path, "py_mariabackup")
    said = rows["versions"]["detail"]
    assert f"mariadbd {server}" in said
    assert f"mariadb-backup {packaged('mariadb-backup')}" in said
    assert f"socat {packaged('socat')}" in said
    assert "version mismatch" not in rows
    _, rows = check(tmp_path, "py_rsync")
    assert rows["versions"]["detail"] == f"mariadbd {server}, rsync {packaged('rsync')}"
    _, rows = check(tmp_path, "mysqldump")
    client = packaged("mariadb-client")
    assert rows["versions"]["detail"] == (
        f"mariadbd {server}, mariadb {client}, mariadb-dump {client}"
    )


def test_a_mariadb_backup_of_another_series_fails(tmp_path: Path) -> None:
    """The server's series with one more minor: never the installed one."""
    server = packaged("mariadb-server-core")
    major, minor = server.split(".")[:2]
    other = f"{major}.{int(minor) + 1}.3"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_tool(bindir, "mariadb-backup", f"echo 'mariadb-backup Ver {other}-MariaDB-1 for x' >&2")
    code, rows = check(tmp_path, "py_mariabackup", str(bindir))
    assert code == 1
    row = rows["version mismatch"]
    assert row["level"] == "fail"
    assert row["detail"].startswith(
        f"mariadb-backup {other} and mariadbd {server} are of different series"
    )
    assert "mariadb-backup of the server's version" in row["fix"]
