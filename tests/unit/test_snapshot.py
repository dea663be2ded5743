"""Which files the rsync donor sends again under the read lock (sst/snapshot.py)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from sst import snapshot
from sst.snapshot import Entry, Snapshot

T0 = 1_700_000_000 * 10**9
SINCE = T0 - snapshot.MARGIN_NS
OLD = T0 - 3600 * 10**9


def entry(ino: int, size: int = 100, mtime: int = OLD, ctime: int = OLD) -> Entry:
    return Entry(dev=1, ino=ino, mode=0o100640, size=size, mtime_ns=mtime, ctime_ns=ctime)


def test_only_a_file_untouched_since_before_t0_is_not_sent_again() -> None:
    before = Snapshot(
        {
            "keep.ibd": entry(1),
            "written.ibd": entry(2),
            "touched.ibd": entry(3),
            "renamed_over.ibd": entry(4),
            "gone.ibd": entry(5),
            "recent.ibd": entry(6, mtime=T0 - 10**9, ctime=T0 - 10**9),
        }
    )
    now = Snapshot(
        {
            "keep.ibd": entry(1),
            # Same size, mtime set back by a user: ctime tells.
            "written.ibd": entry(2, ctime=T0 + 5 * 10**9),
            "touched.ibd": entry(3, mtime=T0 + 1),
            # Another inode under the name, with old times (no ctime update on rename).
            "renamed_over.ibd": entry(9),
            "new.ibd": entry(7, mtime=OLD, ctime=OLD),
            # Changed within the margin before t0: a coarse timestamp may hide a later write.
            "recent.ibd": entry(6, mtime=T0 - 10**9, ctime=T0 - 10**9),
        }
    )
    assert snapshot.changed_files(before, now, SINCE) == [
        "new.ibd",
        "recent.ibd",
        "renamed_over.ibd",
        "touched.ibd",
        "written.ibd",
    ]
    assert snapshot.changed_files(None, now, SINCE) == sorted(now.files)
    assert snapshot.changed_files(before, Snapshot(), SINCE) == []
    assert now.size(["keep.ibd", "new.ibd"]) == 200


def test_a_size_or_mode_change_alone_is_a_change() -> None:
    before = Snapshot({"a": entry(1), "b": entry(2)})
    now = Snapshot({"a": entry(1, size=101), "b": replace(entry(2), mode=0o100600)})
    assert snapshot.changed_files(before, now, SINCE) == ["a", "b"]


def test_a_tree_changed_when_a_directory_gained_or_lost_an_entry() -> None:
    dirs = {"": entry(10), "sub": entry(11)}
    same = Snapshot({}, dict(dirs))
    assert not snapshot.tree_changed(Snapshot({}, dirs), same, SINCE)
    assert snapshot.tree_changed(None, same, SINCE)  # a new database directory
    grew = Snapshot({}, {**dirs, "": entry(10, mtime=T0 + 1, ctime=T0 + 1)})
    assert snapshot.tree_changed(Snapshot({}, dirs), grew, SINCE)
    lost_dir = Snapshot({}, {"": entry(10)})
    assert snapshot.tree_changed(Snapshot({}, dirs), lost_dir, SINCE)
    recreated = Snapshot({}, {**dirs, "sub": entry(12)})
    assert snapshot.tree_changed(Snapshot({}, dirs), recreated, SINCE)


def test_scan_selects_what_each_pass_carries(tmp_path: Path) -> None:
    (tmp_path / "db" / "sub").mkdir(parents=True)
    for name in ("ibdata1", "ibdata2", "ib_logfile0", "aria_log.00000001", "grastate.dat"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "db" / "t.ibd").write_bytes(b"yy")
    (tmp_path / "db" / "sub" / "u.MAD").write_bytes(b"z")
    os.symlink("t.ibd", tmp_path / "db" / "link")
    top = snapshot.scan(str(tmp_path), patterns=("ibdata*", "ib_lru_dump"))
    assert sorted(top.files) == ["ibdata1", "ibdata2"] and list(top.dirs) == [""]
    assert sorted(snapshot.scan(str(tmp_path), only=("grastate.dat",)).files) == ["grastate.dat"]
    db = snapshot.scan(str(tmp_path / "db"), recursive=True)
    assert sorted(db.files) == ["link", "sub/u.MAD", "t.ibd"]
    assert sorted(db.dirs) == ["", "sub"]
    assert db.files["t.ibd"].size == 2
    st = os.stat(tmp_path / "db" / "t.ibd")
    skipped = snapshot.scan(str(tmp_path / "db"), recursive=True, skip={(st.st_dev, st.st_ino)})
    assert "t.ibd" not in skipped.files and "link" in skipped.files
    assert snapshot.scan(str(tmp_path / "missing"), recursive=True) == Snapshot()
