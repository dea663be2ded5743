"""The demo's SST account: a password of its own, only the privileges an SST needs; how the
demo (and the test lab and benchmark built on it) sees a node reach Synced."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from sst import demo


def test_demo_sst_account_has_only_sst_privileges() -> None:
    grants = demo.sst_grants("pw'x")
    assert grants[1] == f"GRANT {demo.SST_PRIVILEGES} ON *.* TO 'sst'@'localhost'"
    assert "ALL" not in demo.SST_PRIVILEGES and "GRANT OPTION" not in " ".join(grants)
    assert "'pw''x'" in grants[0]


def test_log_watch_sees_only_lines_ended_after_it_began(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_bytes(b"old: Synchronized with group\n")
    watch = demo._LogWatch(str(log))
    assert not watch.says("Synchronized")  # what was there before does not count
    with log.open("ab") as f:
        f.write(b"2 [Note] WSREP: Synchronized with gr")
    assert not watch.says("Synchronized with group")  # not a whole line yet
    with log.open("ab") as f:
        f.write(b"oup, ready for connections\n")
    assert watch.says("Synchronized with group")
    assert not watch.says("Synchronized with group")  # said once
    log.write_bytes(b"Synchronized with group\n")  # a shorter, new log: read from its start
    assert watch.says("Synchronized with group")


def test_wait_synced_asks_when_the_log_says_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is asked as soon as its log says it synced, not at the next ASK_EVERY."""
    node = demo.Node("n1", 1, "127.0.0.1", str(tmp_path), {})
    Path(node.socket).touch()
    Path(node.error_log).write_bytes(b"")
    asked: list[float] = []
    synced_at: list[float] = []

    def status(name: str) -> str:
        asked.append(time.monotonic())
        return "Synced" if synced_at else "Joined"

    monkeypatch.setattr(demo, "ASK_EVERY", 60.0)
    monkeypatch.setattr(node, "status", status)
    node.proc = subprocess.Popen(["sleep", "30"])
    try:

        def sync() -> None:
            time.sleep(0.5)
            synced_at.append(time.monotonic())
            with open(node.error_log, "ab") as f:
                f.write(b"2 [Note] WSREP: Synchronized with group, ready for connections\n")

        t = threading.Thread(target=sync)
        t.start()
        took = node.wait_synced(timeout=10)
        t.join()
    finally:
        node.proc.kill()
        node.proc.wait()
    assert len(asked) == 2  # once at the start, once on the log line (not every 60 s)
    assert asked[1] >= synced_at[0]
    assert took < 5
