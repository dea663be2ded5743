"""The stale joiner's basis and the kept partial transfer: names, the donor's rule, expiry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sst import datadir, options, resume
from sst.tools import rsync as rs

UUID = "3f2a9c1e-7b4d-11ee-9c2a-0242ac120002"
OTHER = "d0a1b2c3-0000-11ee-8000-0242ac120009"
TOKEN = "0123456789abcdef0123456789abcdef"


def test_announced_module_carries_the_cluster_uuid_and_parses_back() -> None:
    module = rs.basis_module_name(rs.module_name("rsync_sst", TOKEN), UUID)
    assert module == f"rsync_sst_{TOKEN}_b{UUID.replace('-', '')}"
    assert rs.announced_basis(module) == UUID
    assert rs.announced_by_galera_sst(module)
    # The stock donor appends its sub-module names; ours strips nothing but the suffix.
    assert rs.announced_basis(module + "-data_dir") == ""


@pytest.mark.parametrize(
    "module",
    [
        "rsync_sst",  # a stock joiner
        f"rsync_sst_{TOKEN}",  # ours without cluster data
        f"rsync_sst_{TOKEN}_b{'0' * 32}",  # all zeros: no cluster
        f"rsync_sst_{TOKEN}_b{UUID.replace('-', '')[:31]}",  # too short
        f"rsync_sst_{TOKEN}_b{UUID.replace('-', '').upper()}",  # not our spelling
    ],
)
def test_modules_without_a_basis(module: str) -> None:
    assert rs.announced_basis(module) == ""


def test_no_basis_module_without_a_uuid() -> None:
    assert rs.basis_module_name("m", "") == "m"
    assert not rs.announced_by_galera_sst("rsync_sst")


def test_cluster_uuid_from_gtid() -> None:
    assert rs.cluster_uuid(f"{UUID.upper()}:42") == UUID
    assert rs.cluster_uuid(f"{rs.ZERO_UUID}:-1") == ""
    assert rs.cluster_uuid("junk:1") == ""
    assert rs.cluster_uuid("") == ""


def test_donor_uses_the_basis_only_for_its_own_cluster() -> None:
    same = rs.basis_module_name(f"rsync_sst_{TOKEN}", UUID)
    use, why = rs.basis_decision(same, f"{UUID}:1200")
    assert use and f"same cluster UUID {UUID}" in why
    use, why = rs.basis_decision(same, f"{OTHER}:7")
    assert not use and f"belongs to cluster {UUID}, not this cluster {OTHER}" in why
    use, why = rs.basis_decision(f"rsync_sst_{TOKEN}", f"{UUID}:1")
    assert not use and "offers no basis" in why
    use, why = rs.basis_decision(same, "")
    assert not use and "state UUID is unknown" in why


def test_basis_push_checks_content_and_sends_changed_files_whole_on_a_lan() -> None:
    full = rs.Push("rsync://h:4444/m")
    assert "--ignore-times" in full.common() and "--whole-file" in full.common()
    lan = rs.Push("rsync://h:4444/m.basis", basis=True).common()
    wan = rs.Push("rsync://h:4444/m.basis", whole_file=False, basis=True).common()
    for flags in (lan, wan):
        assert "--checksum" in flags and "--delete" in flags
        assert not {"--ignore-times", "--inplace"} & set(flags)
    assert "--whole-file" in lan and "--whole-file" not in wan  # deltas on a WAN only


def test_basis_lists_of_changed_files_are_sent_without_comparing_them() -> None:
    # Under the lock the listed files changed since t0: --ignore-times sends each (never
    # skipped on a checksum), so nothing the basis holds can stand in for the donor's read.
    for push in (
        rs.Push("rsync://h:1/m.basis", basis=True),
        rs.Push("rsync://h:1/m.basis", whole_file=False, basis=True),
    ):
        argv = rs.list_pass("rsync", push, "/d", "rsync://h:1/m.basis", "/l")
        assert "--ignore-times" in argv and "--checksum" not in argv
        # whole on a LAN; on a WAN a delta against the pre-copied file
        assert ("--whole-file" in argv) == push.whole_file
    # A deletion pass transfers no file the joiner has: --checksum would only make the
    # donor read every file of the tree under the lock.
    db = rs.database_pass("rsync", rs.Push("rsync://h:1/m.basis", basis=True), "/d", "db")
    deletion = rs.deletion_pass(db)
    assert "--checksum" in db and "--checksum" not in deletion
    assert {"--ignore-existing", "--delete", "--recursive"} <= set(deletion)


def test_daemon_refuses_inplace_on_basis_modules_only() -> None:
    conf = rs.daemon_conf(
        rs.Daemon(
            pid_file="/d/p",
            modules=[("m", "/d/.sst-staging")],
            timeout=10,
            basis_modules=[("m.basis", "/d/.sst-basis"), ("m.basis-data_dir", "/d/.sst-basis")],
        )
    )
    sections = conf.split("[")
    assert "refuse options = devices\n" in sections[0]
    plain = next(x for x in sections if x.startswith("m]"))
    assert "inplace" not in plain
    for name in ("m.basis]", "m.basis-data_dir]"):
        sec = next(x for x in sections if x.startswith(name))
        assert "refuse options = devices inplace" in sec


def test_grastate_uuid(tmp_path: Path) -> None:
    assert datadir.grastate_uuid(str(tmp_path)) == ""
    g = tmp_path / "grastate.dat"
    g.write_text(f"# GALERA saved state\nversion: 2.1\nuuid:    {UUID.upper()}\nseqno:   -1\n")
    assert datadir.grastate_uuid(str(tmp_path)) == UUID
    g.write_text(f"version: 2.1\nuuid:    {rs.ZERO_UUID}\nseqno:   -1\n")
    assert datadir.grastate_uuid(str(tmp_path)) == ""
    g.write_text("uuid: not-a-uuid\n")
    assert datadir.grastate_uuid(str(tmp_path)) == ""


def _kept(at: float) -> resume.Kept:
    return resume.Kept(UUID, f"{UUID}:10", at, 1 << 20)


@pytest.mark.parametrize(
    ("kept", "max_age", "tight", "why"),
    [
        (_kept(1000.0), 3600.0, False, ""),
        (_kept(1000.0), 500.0, False, "older than sst-resume-max-age (500 s)"),
        (_kept(1000.0), 0.0, False, "sst-resume-max-age is 0"),
        (_kept(1000.0), 3600.0, True, "less than 10% free"),
        (None, 3600.0, False, "marker is missing or unreadable"),
    ],
)
def test_expiry(kept: resume.Kept | None, max_age: float, tight: bool, why: str) -> None:
    got = resume.expiry(kept, max_age=max_age, now=1600.0, tight=tight)
    assert (why in got) if why else got == ""
    assert bool(got) == bool(why)


def test_keep_then_read_then_expire(tmp_path: Path) -> None:
    dd = tmp_path / "data"
    staged = dd / datadir.STAGING
    (staged / "db").mkdir(parents=True)
    (staged / "db" / "t.ibd").write_bytes(b"x" * 5000)
    assert not resume.keep(str(dd), str(staged), 3600.0)  # no origin file: nothing kept
    (staged / rs.ORIGIN_FILE).write_text(f"{UUID}:77\n")
    assert resume.keep(str(dd), str(staged), 3600.0)
    kept = resume.read(str(dd))
    assert kept is not None and kept.uuid == UUID and kept.position == f"{UUID}:77"
    assert kept.size >= 5000 and not staged.exists()
    assert (Path(resume.path(str(dd))).stat().st_mode & 0o777) == 0o700
    assert "kept partial transfer" in resume.describe(str(dd))
    assert resume.usable(str(dd), 3600.0) == kept
    # An expired one is removed when the next SST looks for it.
    assert resume.usable(str(dd), 1e-9) is None
    assert not Path(resume.path(str(dd))).exists()
    assert resume.describe(str(dd)) == ""


def test_never_kept_when_disabled(tmp_path: Path) -> None:
    staged = tmp_path / datadir.STAGING
    staged.mkdir()
    (staged / rs.ORIGIN_FILE).write_text(f"{UUID}:77\n")
    assert not resume.keep(str(tmp_path), str(staged), 0.0)
    assert staged.exists() and not Path(resume.path(str(tmp_path))).exists()


def test_basis_links_kept_files_first_then_live(tmp_path: Path) -> None:
    dd = tmp_path / "data"
    (dd / "db").mkdir(parents=True)
    (dd / "db" / "a.ibd").write_bytes(b"live a")
    (dd / "db" / "b.ibd").write_bytes(b"live b")
    kept = dd / datadir.KEPT
    (kept / "db").mkdir(parents=True)
    (kept / "db" / "a.ibd").write_bytes(b"kept a")
    (kept / rs.ORIGIN_FILE).write_text(f"{UUID}:1\n")
    area = datadir.Area(str(dd), str(dd / datadir.BASIS))
    datadir.prepare_staging([area], hardlink_from_live=False)
    datadir.link_basis([area], str(kept), live=True)
    b = dd / datadir.BASIS
    assert (b / "db" / "a.ibd").read_bytes() == b"kept a"
    assert (b / "db" / "b.ibd").stat().st_ino == (dd / "db" / "b.ibd").stat().st_ino
    assert not (b / rs.ORIGIN_FILE).exists() and not (b / datadir.KEPT).exists()


def test_default_max_age_is_the_options_default() -> None:
    row = next(o for o in options.TABLE if o.name == "sst-resume-max-age")
    assert float(row.default) == resume.DEFAULT_MAX_AGE


@pytest.mark.parametrize(
    "origin", [f"{UUID}:12\x1b[2J", "junk", f"{UUID}", f"{rs.ZERO_UUID}:1", f"{UUID}:1:2"]
)
def test_an_origin_file_that_is_not_a_position_is_not_kept(tmp_path: Path, origin: str) -> None:
    staged = tmp_path / datadir.STAGING
    staged.mkdir()
    (staged / rs.ORIGIN_FILE).write_text(origin + "\n")
    assert not resume.keep(str(tmp_path), str(staged), 3600.0)
    assert resume.describe(str(tmp_path)) == ""


def test_a_marker_that_is_not_a_file_is_unreadable(tmp_path: Path) -> None:
    kept = Path(resume.path(str(tmp_path)))
    kept.mkdir()
    os.mkfifo(kept / resume.MARKER)
    assert resume.read(str(tmp_path)) is None  # returns at once: a FIFO is never opened
    assert "marker unreadable" in resume.describe(str(tmp_path))
