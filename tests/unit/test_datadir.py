"""Staging and binlog names (the swap itself: tests/process/test_swap.py)."""

from __future__ import annotations

import os
from pathlib import Path

from sst import datadir
from sst.datadir import Area, Binlogs


def tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_hardlink_staging_shares_inodes(tmp_path: Path) -> None:
    live = tmp_path / "data"
    tree(live, {"db/t.ibd": "v1", "top.txt": "t", "sst_in_progress": "", "wsrep_sst.pid": "1"})
    area = Area(str(live), datadir.staging_for(str(live), str(live)))
    datadir.prepare_staging([area], hardlink_from_live=True)
    a, b = os.stat(live / "db/t.ibd"), os.stat(Path(area.staged) / "db/t.ibd")
    assert a.st_ino == b.st_ino
    assert sorted(os.listdir(area.staged)) == ["db", "top.txt"]  # nothing of ours


def test_staging_for_nested_and_separate(tmp_path: Path) -> None:
    d = str(tmp_path / "data")
    assert datadir.staging_for(d, d) == f"{d}/{datadir.STAGING}"
    assert datadir.staging_for(d, f"{d}/undo") == f"{d}/{datadir.STAGING}/undo"
    assert datadir.staging_for(d, "/ib") == f"/ib/{datadir.STAGING}"


def test_binlog_names(tmp_path: Path) -> None:
    d = str(tmp_path)
    assert Binlogs.from_settings(d, None, "", "") is None
    b = Binlogs.from_settings(d, "", "", "")
    assert b is not None and b.base == f"{d}/mysql-bin" and b.index == f"{d}/mysql-bin.index"
    b = Binlogs.from_settings(d, "", "", "node7")
    assert b is not None and b.base == f"{d}/node7-bin"
    b = Binlogs.from_settings(d, "/logs/bin", "/logs/idx", "")
    assert b is not None and b.index == "/logs/idx.index" and b.directory == "/logs"


def test_binlog_remove_and_index(tmp_path: Path) -> None:
    d = str(tmp_path)
    tree(
        tmp_path,
        {
            "mysql-bin.000001": "a",
            "mysql-bin.000002": "b",
            "mysql-bin.000009": "x",
            "mysql-bin.index": "./mysql-bin.000001\nmysql-bin.000002\n",
            "mysql-bin.state": "keep",
        },
    )
    b = Binlogs.from_settings(d, "mysql-bin", "", "")
    assert b is not None
    assert b.listed(d) == [f"{d}/mysql-bin.000001", f"{d}/mysql-bin.000002"]
    b.remove_all(d)
    assert sorted(os.listdir(d)) == ["mysql-bin.state"]
    b.write_index(["mysql-bin.000005"])
    assert (tmp_path / "mysql-bin.index").read_text() == f"{d}/mysql-bin.000005\n"


def test_read_magic(tmp_path: Path) -> None:
    p = tmp_path / "rsync_sst_complete"
    p.write_text("uuid:1 0\nsecret abc\nbypass\n")
    assert datadir.read_magic(str(p)) == ("uuid:1 0", {"secret": "abc", "bypass": ""})


def test_first_foreign_entry_finds_specials_and_setid_files(tmp_path: Path) -> None:
    root = tmp_path / "staged"
    tree(root, {"db/t.ibd": "x", "ibdata1": "y"})
    os.symlink("/dev/null", root / "db" / "link")  # symlinks are the donor's business
    (root / "db").chmod(0o2750)  # a set-group-id directory is fine
    assert datadir.first_foreign_entry(str(root)) == ""
    os.mkfifo(root / "db" / "fifo")
    assert datadir.first_foreign_entry(str(root)) == str(root / "db" / "fifo")
    os.unlink(root / "db" / "fifo")
    (root / "ibdata1").chmod(0o4644)
    assert datadir.first_foreign_entry(str(root)) == str(root / "ibdata1")
