"""The records that let a stale rejoin skip unchanged files unread (sst/records.py): what a
record vouches for, when one is not used, and how the joiner announces the one it holds."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from sst import records, snapshot
from sst.snapshot import Entry
from sst.tools import rsync as rs

UUID = "3f2a9c1e-7b4d-11ee-9c2a-0242ac120002"
TOKEN = "0123456789abcdef0123456789abcdef"
RID = "fedcba9876543210fedcba9876543210"
LAYOUT = {"": "/var/lib/mysql", "log_dir": "/var/lib/mysql-redo"}


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
    return records.Record(rid, records.boot_id(), UUID, LAYOUT, files)


def _load(path: Path, uuid: str = UUID, layout: dict[str, str] = LAYOUT) -> records.Record | None:
    return records.load(str(path), uuid, layout)[0]


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


def test_records_round_trip_and_hold_only_in_this_boot_cluster_layout_and_clock(
    tmp_path: Path, boot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dd = tmp_path / "data"
    dd.mkdir()
    (dd / "f").write_bytes(b"data")
    rec = _record({str(dd / "f"): _entry(dd / "f")})
    records.save_joiner(str(dd), rec)
    path = dd / records.JOINER
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert _load(path) == rec
    other = "d0a1b2c3-0000-11ee-8000-0242ac120009"
    assert records.load(str(path), other, LAYOUT) == (None, f"of cluster {UUID}, not {other}")
    moved = {**LAYOUT, "data_dir": "/srv/ibdata"}  # innodb_data_home_dir changed since
    assert records.load(str(path), UUID, moved)[1] == "its directories were configured differently"
    now = records.clock_offset()
    monkeypatch.setattr(records, "clock_offset", lambda: now - snapshot.MARGIN_NS - 10**9)
    assert records.load(str(path), UUID, LAYOUT)[1] == "the clock was set back since it was written"
    monkeypatch.setattr(records, "clock_offset", lambda: now + 3600 * 10**9)  # set forward
    assert _load(path) == rec
    boot.write_text("boot-two\n")  # the host restarted: a crash may have lost times
    assert records.load(str(path), UUID, LAYOUT)[1] == "written before the host restarted"
    boot.write_text("boot-one\n")
    os.unlink(path)
    assert not path.exists() and records.load(str(path), UUID, LAYOUT)[1] == "none readable"


def _doc(**change: object) -> str:
    """A record's JSON with some fields changed (None: the field left out)."""
    d: dict[str, object] = {
        "version": records.VERSION,
        "id": RID,
        "boot": "b",
        "uuid": "u",
        "clock": 1,
        "layout": {},
        "files": {},
    }
    d.update(change)
    return json.dumps({k: v for k, v in d.items() if v is not None})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        _doc(version=1),
        _doc(layout=None),
        _doc(clock="x"),
        "[" * 100_000,  # deeper than the parser goes
        _doc(id=records.NONE),
        _doc(id="xyz"),
        _doc(files={"/f": [1]}),
        _doc(files=None),
    ],
)
def test_what_is_not_a_record_is_none(text: str) -> None:
    assert records.Record.from_json(text) is None
    assert records.Record.from_json(_doc()) is not None


def test_a_record_that_is_a_symlink_anothers_or_loose_is_not_read(
    tmp_path: Path, boot: Path
) -> None:
    dd = tmp_path / "data"
    dd.mkdir()
    real = tmp_path / "elsewhere.json"
    real.write_text(_record({}).to_json())
    real.chmod(0o600)
    assert _load(real) is not None
    link = dd / records.JOINER
    link.symlink_to(real)
    assert _load(link) is None
    os.link(real, tmp_path / "second-name.json")  # a hard link someone else may hold
    assert _load(real) is None
    os.unlink(tmp_path / "second-name.json")
    real.chmod(0o644)  # written by something else than us (INTO OUTFILE makes 0644 files)
    assert _load(real) is None
    real.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(real, 12345, 12345)
        assert _load(real) is None


def test_a_donor_keeps_its_newest_records_of_this_boot(tmp_path: Path, boot: Path) -> None:
    """The DONOR_KEPT newest; a record older than this boot, or a half-written one left
    by a killed run, goes at the next save."""
    (tmp_path / f"{records.PREFIX}donor-{'e' * 32}.json").write_text("of another boot")
    os.utime(tmp_path / f"{records.PREFIX}donor-{'e' * 32}.json", (1, 1))
    (tmp_path / f"{records.JOINER}.1234abcd.tmp").write_text("half")
    ids = [f"{i:032x}" for i in range(1, records.DONOR_KEPT + 3)]
    now = time.time()
    for i, rid in enumerate(ids):
        records.save_donor(str(tmp_path), _record({}, rid))
        os.utime(records.donor_path(str(tmp_path), rid), (now - 100 + i, now - 100 + i))
    records.save_donor(str(tmp_path), _record({}, "f" * 32))
    kept = sorted(n for n in os.listdir(tmp_path) if n.startswith(records.PREFIX))
    want = [*ids[-records.DONOR_KEPT + 1 :], "f" * 32]
    assert kept == sorted(os.path.basename(records.donor_path("", r)) for r in want)
    assert _load(Path(records.donor_path(str(tmp_path), "f" * 32))) is not None


def test_the_joiner_waits_until_its_files_times_are_past(tmp_path: Path) -> None:
    """The record is written once the file system stamps later times than its files'
    (records.wait_past): a write after it cannot leave a file with its recorded times. A
    time in the future is never passed: it gives up."""
    (tmp_path / "f").write_bytes(b"x")
    files = {str(tmp_path / "f"): _entry(tmp_path / "f")}
    t = time.monotonic()
    assert records.wait_past(files, [str(tmp_path)])
    assert time.monotonic() - t < 1.5
    assert os.listdir(tmp_path) == ["f"]  # the probe is gone
    future = time.time_ns() + 3600 * 10**9
    os.utime(tmp_path / "f", ns=(future, future))
    assert not records.wait_past(
        {str(tmp_path / "f"): _entry(tmp_path / "f")}, [str(tmp_path)], timeout=0.1
    )
    assert os.listdir(tmp_path) == ["f"]


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


def test_list_passes_of_a_recorded_precopy() -> None:
    push = rs.Push("rsync://h:1/m", basis=True)
    whole = rs.list_pass("rsync", push, "/d", "rsync://h:1/m", "/l", how="whole")
    compare = rs.list_pass("rsync", push, "/d", "rsync://h:1/m", "/l", how="compare")
    missing = rs.list_pass("rsync", push, "/d", "rsync://h:1/m", "/l", how="missing")
    locked = rs.list_pass("rsync", push, "/d", "rsync://h:1/m", "/l")
    assert "--ignore-times" in whole and "--checksum" not in whole
    assert "--checksum" in compare and "--ignore-times" not in compare
    assert missing[1] == "--ignore-existing"
    for argv in (whole, compare, missing):
        assert "--ignore-missing-args" in argv  # a file dropped meanwhile is no failure
    assert "--ignore-missing-args" not in locked and "--ignore-times" in locked
