"""The records that let a stale rejoin skip unchanged files unread (sst/records.py): what a
record vouches for, when one is not used, and how the joiner announces the one it holds."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from sst import records
from sst.snapshot import Entry
from sst.tools import rsync as rs

UUID = "3f2a9c1e-7b4d-11ee-9c2a-0242ac120002"
TOKEN = "0123456789abcdef0123456789abcdef"
RID = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's boot id, in a file that stands for the kernel's."""
    f = tmp_path / "boot_id"
    f.write_text("boot-one\n")
    monkeypatch.setattr(records, "_BOOT_ID", str(f))
    return f


def _entry(path: Path) -> Entry:
    return Entry.of(os.lstat(path))


def _record(files: dict[str, Entry], rid: str = RID) -> records.Record:
    return records.Record(rid, records.boot_id(), UUID, files)


def test_a_record_vouches_only_for_the_version_it_saw(tmp_path: Path, boot: Path) -> None:
    """A write, a chmod, a rewrite with the old mtime put back (what defeats rsync's own
    size-and-mtime check), a file replaced by another: each is no longer the recorded
    version; an untouched file is."""
    names = ["same", "written", "chmod", "rewound", "replaced"]
    for n in names:
        (tmp_path / n).write_bytes(b"x" * 100)
    rec = _record({str(tmp_path / n): _entry(tmp_path / n) for n in names})
    time.sleep(0.01)  # past the kernel's coarse clock tick
    with open(tmp_path / "written", "r+b") as f:
        f.write(b"y")
    os.chmod(tmp_path / "chmod", 0o600)
    st = os.stat(tmp_path / "rewound")
    (tmp_path / "rewound").write_bytes(b"z" * 100)
    os.utime(tmp_path / "rewound", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _entry(tmp_path / "rewound").mtime_ns == st.st_mtime_ns  # rsync would skip it
    (tmp_path / "new").write_bytes(b"x" * 100)
    os.replace(tmp_path / "new", tmp_path / "replaced")
    held = [n for n in names if rec.holds(str(tmp_path / n), _entry(tmp_path / n))]
    assert held == ["same"]


def test_records_round_trip_and_hold_only_in_this_boot_and_cluster(
    tmp_path: Path, boot: Path
) -> None:
    dd = tmp_path / "data"
    dd.mkdir()
    (dd / "f").write_bytes(b"data")
    rec = _record({str(dd / "f"): _entry(dd / "f")})
    records.save_joiner(str(dd), rec)
    path = dd / records.JOINER
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert records.load(str(path), UUID) == rec
    assert records.load(str(path), "d0a1b2c3-0000-11ee-8000-0242ac120009") is None
    boot.write_text("boot-two\n")  # the host restarted: a crash may have lost times
    assert records.load(str(path), UUID) is None
    boot.write_text("boot-one\n")
    records.drop_joiner(str(dd))
    assert not path.exists() and records.load(str(path), UUID) is None
    records.drop_joiner(str(dd))  # none to drop: no error


def _doc(**change: object) -> str:
    """A record's JSON with some fields changed (None: the field left out)."""
    d: dict[str, object] = {"version": 1, "id": RID, "boot": "b", "uuid": "u", "files": {}}
    d.update(change)
    return json.dumps({k: v for k, v in d.items() if v is not None})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        _doc(version=2),
        _doc(id=records.NONE),
        _doc(id="xyz"),
        _doc(files={"/f": [1]}),
        _doc(files=None),
    ],
)
def test_what_is_not_a_record_is_none(text: str) -> None:
    assert records.Record.from_json(text) is None


def test_a_record_that_is_a_symlink_or_anothers_is_not_read(tmp_path: Path, boot: Path) -> None:
    dd = tmp_path / "data"
    dd.mkdir()
    real = tmp_path / "elsewhere.json"
    real.write_text(_record({}).to_json())
    assert records.load(str(real), UUID) is not None
    link = dd / records.JOINER
    link.symlink_to(real)
    assert records.load(str(link), UUID) is None
    if os.geteuid() == 0:
        os.chown(real, 12345, 12345)
        assert records.load(str(real), UUID) is None


def test_a_donor_keeps_its_newest_records(tmp_path: Path, boot: Path) -> None:
    ids = [f"{i:032x}" for i in range(1, records.KEEP + 3)]
    for i, rid in enumerate(ids):
        records.save_donor(str(tmp_path), _record({}, rid))
        os.utime(records.donor_path(str(tmp_path), rid), (i, i))  # in order of saving
    kept = sorted(n for n in os.listdir(tmp_path) if n.startswith(records.PREFIX))
    assert kept == sorted(os.path.basename(records.donor_path("", r)) for r in ids[-records.KEEP :])
    assert records.load(records.donor_path(str(tmp_path), ids[-1]), UUID) is not None
    assert records.load(records.donor_path(str(tmp_path), ids[0]), UUID) is None


def test_scan_files_lists_regular_files_but_ours(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "t.ibd").write_bytes(b"t")
    (tmp_path / "ibdata1").write_bytes(b"i")
    (tmp_path / ".sst-basis").mkdir()
    (tmp_path / ".sst-basis" / "x").write_bytes(b"x")
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "lost+found" / "y").write_bytes(b"y")
    (tmp_path / "link").symlink_to(tmp_path / "ibdata1")
    os.mkfifo(tmp_path / "fifo")
    got = records.scan_files([str(tmp_path), str(tmp_path)], frozenset({"lost+found"}))
    assert sorted(got) == [str(tmp_path / "db" / "t.ibd"), str(tmp_path / "ibdata1")]


def test_the_joiner_announces_its_record_where_earlier_donors_still_find_the_rest() -> None:
    """The record id goes between the configured name and the per-SST token: a donor of an
    earlier release still sees our token (origin file, resume) and the basis tail."""
    for held in (RID, records.NONE):
        module = rs.basis_module_name(
            rs.module_name(rs.record_module("rsync_sst", held), TOKEN), UUID
        )
        assert module == f"rsync_sst_r{held}_{TOKEN}_b{UUID.replace('-', '')}"
        assert rs.announced_record(module) == held
        assert rs.announced_basis(module) == UUID
        assert rs.announced_by_galera_sst(module)
        no_basis = rs.module_name(rs.record_module("rsync_sst", held), TOKEN)
        assert rs.announced_record(no_basis) == held
        assert rs.announced_record(no_basis + "-data_dir") is None  # a sub-module's name
    for module in (
        "rsync_sst",
        f"rsync_sst_{TOKEN}",
        f"rsync_sst_{TOKEN}_b{UUID.replace('-', '')}",
    ):
        assert rs.announced_record(module) is None  # stock, or ours in place or delta mode
    assert not records.valid_id(records.NONE) and records.valid_id(RID)


def test_skipped_files_are_excluded_by_exact_anchored_rules() -> None:
    names, rules = rs.excluded(["t1.ibd", "#sql-1.ibd", "odd [name].ibd", "sub/t2.ibd", "a*"])
    assert names == ["t1.ibd", "#sql-1.ibd", "sub/t2.ibd"]  # wildcards and spaces: sent
    assert rules == b"/t1.ibd\n/#sql-1.ibd\n/sub/t2.ibd\n"
    argv = rs.with_excludes(("rsync", "--checksum", "src/", "dst"), "/run/r.rules")
    assert argv == ("rsync", "--exclude-from=/run/r.rules", "--checksum", "src/", "dst")
    push = rs.Push("rsync://h:1/m")
    missing = rs.list_pass("rsync", push, "/d", "rsync://h:1/m", "/l", missing_only=True)
    assert missing[1] == "--ignore-existing"
    assert "--ignore-existing" not in rs.list_pass("rsync", push, "/d", "rsync://h:1/m", "/l")
