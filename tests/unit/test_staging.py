"""The staging policy (sst/staging.py): the decision, the estimate, the in-place markers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sst import config, staging, status
from sst.config import MYSQLD, Options, mariabackup_settings, rsync_settings
from sst.datadir import IN_PROGRESS
from sst.errors import ConfigError
from sst.request import Request, parse_request

MiB = 1 << 20


def test_always_and_in_place_do_as_told_whatever_the_space() -> None:
    assert staging.decide("always", 1 * MiB, 100 * MiB, empty=False).stage
    assert not staging.decide("in-place", 10_000 * MiB, 1 * MiB, empty=False).stage
    d = staging.decide("in-place", 10_000 * MiB, 1 * MiB, empty=True)
    assert d.mode == "in-place" and "staging=in-place" in d.reason


def test_auto_stages_with_room_for_the_copy_and_the_margin() -> None:
    est = 1000 * MiB
    need = est + staging.margin(est)
    assert staging.margin(est) == 100 * MiB
    assert staging.decide("auto", need, est, empty=False).stage
    d = staging.decide("auto", need - 1, est, empty=False)
    assert not d.stage and d.mode == "in-place"
    # the figures are in the reason: free bytes, estimated incoming bytes, what is needed
    assert f"({need - 1} bytes) free" in d.reason
    assert f"estimated at 1000.0 MiB ({est} bytes)" in d.reason
    assert f"({need} bytes) needed" in d.reason


def test_auto_margin_has_a_floor_for_small_datadirs() -> None:
    assert staging.margin(1 * MiB) == 16 * MiB
    assert not staging.decide("auto", 16 * MiB, 1 * MiB, empty=False).stage
    assert staging.decide("auto", 17 * MiB, 1 * MiB, empty=False).stage


def test_auto_stages_an_empty_joiner_even_without_room() -> None:
    d = staging.decide("auto", 0, 500 * MiB, empty=True)
    assert d.stage and "no data yet" in d.reason


def test_unknown_policy_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown staging policy"):
        staging.decide("sometimes", 1, 1, empty=False)


def _req(name: str) -> Request:
    return parse_request(name, ["--role", "joiner", "--datadir", "/d", "--address", "h"], {})


@pytest.mark.parametrize("value", ["auto", "always", "in-place", "IN-PLACE"])
def test_option_accepted_by_both_methods(value: str) -> None:
    o = Options({MYSQLD: {}, "sst": {"staging": value}})
    assert rsync_settings(_req("wsrep_sst_py_rsync"), o).staging == value.lower()
    mb = mariabackup_settings(_req("wsrep_sst_py_mariabackup"), o)
    assert mb.staging == value.lower()


def test_option_default_and_bad_value() -> None:
    o = Options({MYSQLD: {}, "sst": {}})
    assert rsync_settings(_req("wsrep_sst_rsync"), o).staging == "auto"
    bad = Options({MYSQLD: {}, "sst": {"staging": "inplace"}})
    with pytest.raises(ConfigError, match="staging='inplace' is not one of auto, always, in-place"):
        rsync_settings(_req("wsrep_sst_py_rsync"), bad)
    with pytest.raises(ConfigError, match="staging='inplace'"):
        mariabackup_settings(_req("wsrep_sst_mariabackup"), bad)
    assert set(config.STAGING_POLICIES) == set(staging.POLICIES)


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_old_copy_counts_what_a_transfer_replaces(tmp_path: Path) -> None:
    dd = tmp_path / "data"
    _write(dd / "ibdata1", 1000)
    _write(dd / "ib_logfile0", 300)
    _write(dd / "undo001", 20)
    _write(dd / "aria_log.00000001", 4)
    _write(dd / "db" / "t.ibd", 50)
    _write(dd / "mysql" / "user.MAI", 7)
    # not carried: the gcache, logs, binlogs, galera-sst's own
    _write(dd / "galera.cache", 10_000)
    _write(dd / "mysqld.err", 10_000)
    _write(dd / "bin.000001", 10_000)
    _write(dd / ".sst-staging" / "db" / "t.ibd", 10_000)
    _write(dd / ".sst" / "ibdata1", 10_000)
    sep = tmp_path / "redo"
    _write(sep / "ib_logfile0", 600)
    _write(sep / "junk", 10_000)
    assert staging.old_copy_bytes([str(dd), str(sep)]) == 1000 + 300 + 20 + 4 + 50 + 7 + 600
    decision, estimate = staging.for_datadir("auto", [str(dd), str(sep)])
    assert estimate == 1981 and decision.stage
    # what the donor announced wins over the old copy
    _, estimate = staging.for_datadir("auto", [str(dd)], announced=12345)
    assert estimate == 12345
    empty = tmp_path / "empty"
    empty.mkdir()
    d, estimate = staging.for_datadir("auto", [str(empty)], announced=1 << 60)
    assert estimate == 1 << 60 and d.stage and "no data yet" in d.reason


GRASTATE = """# GALERA saved state
version: 2.1
uuid:    4f0e8b6e-9a3b-11ef-8b3c-5e1e3b1a2c3d
seqno:   1234
safe_to_bootstrap: 1
"""


def test_grastate_invalidated_and_restored(tmp_path: Path) -> None:
    path = tmp_path / "grastate.dat"
    path.write_text(GRASTATE)
    old = staging.invalidate_grastate(str(tmp_path))
    assert old == GRASTATE.encode()
    text = path.read_text()
    assert "uuid:    00000000-0000-0000-0000-000000000000" in text
    assert "seqno:   -1" in text and "safe_to_bootstrap: 0" in text and "version: 2.1" in text
    assert [n for n in os.listdir(tmp_path) if n != "grastate.dat"] == []  # no temporary left
    staging.restore_grastate(str(tmp_path), old)
    assert path.read_text() == GRASTATE


def test_grastate_rewritten_in_the_inode_galera_holds_open(tmp_path: Path) -> None:
    """Galera keeps grastate.dat open and writes its joined state through that descriptor:
    the invalidation must land in the same inode, and Galera's later write must win."""
    path = tmp_path / "grastate.dat"
    path.write_text(GRASTATE)
    with open(path, "r+b") as held:
        inode = os.fstat(held.fileno()).st_ino
        staging.invalidate_grastate(str(tmp_path))
        assert os.stat(path).st_ino == inode
        held.seek(0)
        assert b"seqno:   -1" in held.read()
        held.seek(0)
        held.truncate()
        held.write(GRASTATE.encode())  # what Galera does once joined
    assert path.read_text() == GRASTATE


def test_grastate_symlink_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    dd = tmp_path / "dd"
    dd.mkdir()
    (dd / "grastate.dat").symlink_to(victim)
    assert staging.invalidate_grastate(str(dd)) == b""
    assert victim.read_text() == "keep"
    assert not (dd / "grastate.dat").is_symlink()
    assert "seqno:   -1" in (dd / "grastate.dat").read_text()


def test_missing_grastate_is_written_invalid(tmp_path: Path) -> None:
    assert staging.invalidate_grastate(str(tmp_path)) == b""
    assert "seqno:   -1" in (tmp_path / "grastate.dat").read_text()


def test_in_place_mark(tmp_path: Path) -> None:
    assert not staging.failed_in_place(str(tmp_path))
    (tmp_path / IN_PROGRESS).write_text("")  # a staged SST's marker
    assert not staging.failed_in_place(str(tmp_path))
    staging.mark_in_place(str(tmp_path))
    assert staging.failed_in_place(str(tmp_path))
    assert (tmp_path / IN_PROGRESS).read_text() == "in-place\n"


def test_status_file_records_the_decision_and_reads_older_files(tmp_path: Path) -> None:
    st = status.Status(str(tmp_path), "py_rsync", "joiner")
    d = staging.decide("auto", 1 * MiB, 100 * MiB, empty=False)
    st.staging(f"{d.mode}: {d.reason}")
    data = status.read(str(tmp_path))
    assert data is not None and data["staging"].startswith("in-place: staging=auto: no room")
    assert "staging: in-place: staging=auto: no room" in status.describe(data)
    # a file written before the field existed is still a status file
    raw = json.loads((tmp_path / status.FILE).read_text())
    del raw["staging"]
    (tmp_path / status.FILE).write_text(json.dumps(raw))
    older = status.read(str(tmp_path))
    assert older is not None and older["staging"] == "" and "staging:" not in status.describe(older)


def test_marker_of_a_run_keeps_in_place_debris_until_an_sst_succeeds(tmp_path: Path) -> None:
    dd = str(tmp_path)
    staging.begin(dd)  # a staged run: an empty marker, removed whatever the outcome
    assert (tmp_path / IN_PROGRESS).read_text() == ""
    staging.end(dd, done=False)
    assert not (tmp_path / IN_PROGRESS).exists()
    staging.mark_in_place(dd)  # an in-place run that failed
    staging.end(dd, done=False)
    assert staging.failed_in_place(dd)
    staging.begin(dd)  # the next run, staged, fails too: the debris stays marked
    staging.end(dd, done=False)
    assert staging.failed_in_place(dd)
    staging.begin(dd)  # ... and once one succeeds the mark is gone
    staging.end(dd, done=True)
    assert not (tmp_path / IN_PROGRESS).exists()
