"""The kill matrix: the joiner's swap SIGKILLed after every one of its file-system steps,
then recovery (`galera-sst recover`), then a real `mariadbd` started alone on what is left:
it must find exactly the old rows or exactly the new ones, and log no error.

Two datadirs made by mariadb-install-db: the old one with rows A in every table, the new
one with rows B (and one database each that the other lacks). rsync's swap renames the
staged copy in; mariabackup's path sets the old entries aside and runs the real
`mariadb-backup --move-back` of a prepared backup of the new datadir.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sst import datadir, swap

ROOT = Path(__file__).resolve().parent.parent
DATABASES = 14  # enough top-level entries for 50+ steps per swap

HARNESS = """
import os, sys
from sst import config, datadir, swap
from sst.datadir import Area
from sst.process.runner import run_capture
from sst.tools import mariabackup as mb
from sst.tools import rsync as rs
kind, live = sys.argv[1], sys.argv[2]
if kind == "rsync":  # as sst.methods.rsync._swap
    area = Area(live, datadir.staging_for(live, live))
    plan, refused = swap.rsync_plan(area, [], (rs.MAGIC_FILE, rs.BINLOG_TAR))
    assert not refused, refused
    swap.execute(live, plan)
else:  # as sst.methods.mariabackup._swap
    staging = os.path.join(live, datadir.STAGING_MB)
    plan = swap.fill_plan(
        [live], config.DEFAULT_CPAT, [os.path.join(live, n) for n in mb.LEGACY_FILES]
    )
    def fill():
        argv = mb.move_back_argv(
            mb.Common("mariadb-backup"), ("--no-defaults",), target_dir=staging,
            datadir=live, parallel=2, extra=(),
        )
        res = run_capture(argv, timeout=120)
        if res.returncode:
            raise SystemExit("move-back failed: " + res.stderr[-2000:])
    swap.execute(live, plan, fill)
"""


@dataclass
class Server:
    """A standalone mariadbd on a datadir (as root, no network, no grant checks)."""

    datadir: Path
    proc: subprocess.Popen[bytes]

    @property
    def socket(self) -> str:
        return str(self.datadir.parent / "s.sock")

    @property
    def error_log(self) -> Path:
        return self.datadir.parent / "error.log"

    def sql(self, statement: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["mariadb", "--no-defaults", "-S", self.socket, "-N", "-B", "-e", statement],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def stop(self, *, clean: bool) -> None:
        if clean:
            self.sql("SHUTDOWN")
        else:
            self.proc.kill()
        self.proc.wait(timeout=120)


def start(datadir: Path, *, grants: bool = False) -> Server:
    """Start mariadbd; returns once it answers (fails the test if it exits or takes 60 s).
    Without grants, no privilege checks (a quicker start; mariadb-backup needs them)."""
    server = try_start(datadir, grants=grants)
    if server is None:
        log = (datadir.parent / "error.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"mariadbd on {datadir} did not start:\n{log}")
    return server


def try_start(datadir: Path, *, grants: bool = False) -> Server | None:
    """Start mariadbd; the server once it answers, or None if it exited (60 s at most)."""
    base = datadir.parent
    proc = subprocess.Popen(
        [
            "mariadbd",
            "--no-defaults",
            "--user=root",
            f"--datadir={datadir}",
            f"--socket={base}/s.sock",
            f"--pid-file={base}/m.pid",
            f"--log-error={base}/error.log",
            f"--tmpdir={base}",
            "--skip-networking",
            *(() if grants else ("--skip-grant-tables",)),
            "--skip-log-bin",
            "--performance-schema=OFF",
            "--innodb-buffer-pool-size=8M",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Server(datadir, proc)
    deadline = time.monotonic() + 60
    while server.sql("SELECT 1").returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                server.stop(clean=False)
            return None
        time.sleep(0.05)
    return server


def rows(server: Server) -> dict[str, str]:
    """Every user table's rows (`gen` column in id order), by `db.table`."""
    res = server.sql(
        "SELECT CONCAT(table_schema, '.', table_name) FROM information_schema.tables "
        "WHERE table_schema LIKE 'db%' ORDER BY 1"
    )
    assert res.returncode == 0, res.stderr
    out = {}
    for table in res.stdout.split():
        got = server.sql(f"SELECT GROUP_CONCAT(gen ORDER BY id) FROM {table}")
        out[table] = got.stdout.strip() if got.returncode == 0 else f"ERROR {got.stderr.strip()}"
    return out


def make_datadir(path: Path, gen: str, count: int, only: str) -> None:
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={path}",
            "--user=root",
            "--skip-test-db",
            "--auth-root-authentication-method=normal",
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    server = start(path)
    values = ",".join(f"({i},'{gen}')" for i in range(1, count + 1))
    statements = []
    for db in [*(f"db{i:02d}" for i in range(1, DATABASES + 1)), only]:
        engine = "Aria" if db == "db01" else "InnoDB"
        statements += [
            f"CREATE DATABASE {db}",
            f"CREATE TABLE {db}.t (id INT PRIMARY KEY, gen CHAR(1)) ENGINE={engine}",
            f"INSERT INTO {db}.t VALUES {values}",
        ]
    res = server.sql(";".join(statements))
    assert res.returncode == 0, res.stderr
    server.stop(clean=True)


def copy(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-a", "--sparse=always", str(src), str(dst)], check=True)


@dataclass(frozen=True)
class Templates:
    base: Path
    old: Path
    new: Path
    backup: Path  # a prepared mariadb-backup of new
    old_rows: dict[str, str]
    new_rows: dict[str, str]


def observed(datadir: Path) -> dict[str, str]:
    server = start(datadir)
    try:
        return rows(server)
    finally:
        server.stop(clean=False)


def backup_of(datadir: Path, target: Path) -> None:
    server = start(datadir, grants=True)
    try:
        for argv in (
            ["--backup", f"--socket={server.socket}", "--user=root", f"--datadir={datadir}"],
            ["--prepare"],
        ):
            res = subprocess.run(
                ["mariadb-backup", "--no-defaults", *argv, f"--target-dir={target}"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert res.returncode == 0, res.stderr[-3000:]
    finally:
        server.stop(clean=True)


@pytest.fixture(scope="module")
def templates() -> Iterator[Templates]:
    if shutil.which("mariadbd") is None or shutil.which("mariadb-backup") is None:
        pytest.fail("the kill matrix needs mariadbd and mariadb-backup", pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="galera-sst-swapkill.", dir="/var/tmp"))
    keep = bool(os.environ.get("GALERA_SST_KEEP"))
    try:
        for name in ("old", "new"):
            (base / name).mkdir()
        old, new = base / "old" / "data", base / "new" / "data"
        make_datadir(old, "A", 3, "dbold")
        make_datadir(new, "B", 5, "dbnew")
        (base / "bk").mkdir()
        copy(new, base / "bk" / "data")
        backup_of(base / "bk" / "data", base / "backup")
        t = Templates(base, old, new, base / "backup", {}, {})
        run = base / "probe"
        run.mkdir()
        copy(old, run / "data")
        old_rows = observed(run / "data")
        shutil.rmtree(run / "data")
        copy(new, run / "data")
        new_rows = observed(run / "data")
        shutil.rmtree(run)
        assert old_rows != new_rows and "dbold.t" in old_rows and "dbnew.t" in new_rows
        assert set(old_rows.values()) == {"A,A,A"} and set(new_rows.values()) == {"B,B,B,B,B"}
        yield Templates(t.base, t.old, t.new, t.backup, old_rows, new_rows)
    except BaseException:
        keep = True
        raise
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def swap_killed_at(kind: str, datadir: Path, step: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT), swap.FAULT_ENV: str(step)}
    return subprocess.run(
        [sys.executable, "-c", HARNESS, kind, str(datadir)],
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    ).returncode


def recover(datadir: Path) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "sst", "recover", "--datadir", str(datadir)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().split(": ", 1)[1]


def errors_in(log: Path) -> list[str]:
    return [ln for ln in log.read_text(errors="replace").splitlines() if "[ERROR]" in ln]


def assert_plain_start_is_safe(templates: Templates, live: Path, step: int) -> None:
    """mariadbd started on (a copy of) the half-swapped datadir, before any recovery: it
    refuses to start for want of its redo log, or finds exactly the old or the new rows."""
    pre = live.parent / "pre"
    pre.mkdir()
    copy(live, pre / "data")
    server = try_start(pre / "data")
    errors = errors_in(pre / "error.log")
    if server is None:
        assert any("File ./ib_logfile0 was not found" in e for e in errors), errors
    else:
        try:
            found = rows(server)
        finally:
            server.stop(clean=False)
        assert found in (templates.old_rows, templates.new_rows), f"step {step}: {found}"
        assert [e for e in errors if "name '.sst" not in e] == [], errors  # staging dirs
    shutil.rmtree(pre)


@pytest.mark.parametrize("kind", ["rsync", "mariabackup"])
def test_swap_killed_at_every_step(templates: Templates, kind: str) -> None:
    outcomes: dict[str, set[int]] = {}
    step = 0
    while True:
        step += 1
        run = templates.base / f"{kind}-{step}"
        run.mkdir()
        live = run / "data"
        copy(templates.old, live)
        if kind == "rsync":
            copy(templates.new, live / ".sst-staging")
        else:
            copy(templates.backup, live / ".sst")
        rc = swap_killed_at(kind, live, step)
        if rc == 0:
            shutil.rmtree(run)
            break  # past the last step: the swap ran to its end
        assert rc == -signal.SIGKILL, f"step {step}: the swap failed (exit {rc})"
        if kind == "rsync":
            assert_plain_start_is_safe(templates, live, step)
        done = recover(live)
        assert not (live / datadir.JOURNAL).exists() and not (live / ".sst-old").exists()
        found = observed(live)
        errors = errors_in(run / "error.log")
        assert errors == [], f"step {step} ({done}): {errors}"
        which = "old" if found == templates.old_rows else "new"
        assert found == (templates.old_rows if which == "old" else templates.new_rows), (
            f"step {step} ({done}): a mix of old and new: {found}"
        )
        outcomes.setdefault(f"{done} -> {which}", set()).add(step)
        shutil.rmtree(run)
    assert step > 50, f"only {step - 1} steps"
    assert set(outcomes) == {
        "interrupted swap rolled back -> old",
        "interrupted swap finished -> new",
        "no interrupted swap -> new",
    }, outcomes
