"""The journaled swap (sst/swap.py): only sane received names go in, and an interruption at
any step, SIGKILL included, leaves the whole old or the whole new datadir after recovery."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from sst import datadir, swap
from sst.datadir import Area
from sst.errors import TransferError
from sst.methods import mariabackup
from sst.tools import tar as tar_tool
from testsupport.process import ROOT


def tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def state(root: Path) -> dict[str, str]:
    """Every entry under root: file contents, 'dir' or the symlink's target."""
    out: dict[str, str] = {}
    for base, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(base) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            elif not p.is_file():
                out[rel] = "special"
            else:
                out[rel] = p.read_text()
    return out


OLD_DATA = {
    "grastate.dat": "old state",
    "galera.cache": "cache",
    "ibdata1": "old ibdata",
    "ib_logfile0": "old redo",
    "db1/t.ibd": "old t",
    "db1/t.frm": "old frm",
    "dropped/x.ibd": "dropped",
    "server.pem": "pem",
    "node.err": "log",
}
NEW_DATA = {
    "ibdata1": "new ibdata",
    "ib_logfile0": "new redo",
    "aria_log_control": "new aria",
    "db1/t.ibd": "new t",
    "db2/u.ibd": "new u",
    "db3/v.ibd": "new v",
    "rsync_sst_complete": "uuid:1 0",
}


def rsync_case(root: Path) -> tuple[Path, Area]:
    live = root / "data"
    tree(live, OLD_DATA)
    area = Area(str(live), datadir.staging_for(str(live), str(live)))
    tree(Path(area.staged), NEW_DATA)
    return live, area


def expected_new(live: Path) -> dict[str, str]:
    """The old top-level files the donor did not send stay; everything else is the donor's."""
    kept = {k: v for k, v in OLD_DATA.items() if "/" not in k and k not in NEW_DATA}
    new = {k: v for k, v in NEW_DATA.items() if k != "rsync_sst_complete"}
    out = {**kept, **new}
    for rel in list(out):
        if "/" in rel:
            out[rel.split("/")[0]] = "dir"
    return out


def live_state(live: Path) -> dict[str, str]:
    return {k: v for k, v in state(live).items() if not k.startswith(datadir.STAGING)}


def test_rsync_swap_replaces_databases_keeps_galera_files(tmp_path: Path) -> None:
    live, area = rsync_case(tmp_path)
    plan, refused = swap.rsync_plan(area, [], ("rsync_sst_complete",))
    assert refused == ()
    swap.execute(str(live), plan)
    assert live_state(live) == expected_new(live)
    assert not (live / datadir.OLD).exists() and not (live / datadir.JOURNAL).exists()


def test_without_hard_links_files_are_set_aside_like_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live, area = rsync_case(tmp_path)

    def no_links(src: str, dst: str) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    plan, _ = swap.rsync_plan(area, [], ("rsync_sst_complete",))
    assert plan.replace == () and f"{live}/ibdata1" in [m.src for m in plan.aside]
    swap.execute(str(live), plan)
    assert live_state(live) == expected_new(live)
    assert not any(n.startswith(".sst-link") for n in os.listdir(live))


def test_received_names_of_ours_links_and_fifos_are_not_swapped_in(tmp_path: Path) -> None:
    live, area = rsync_case(tmp_path)
    staged = Path(area.staged)
    tree(
        staged,
        {
            ".sst-old/ibdata1": "planted aside",
            ".sst-swap.journal": '{"state": "committed"}',
            "sst_in_progress": "x",
            "wsrep_sst.pid": "1",
            "galera_sst_status.json": "{}",
            ".sst/x": "x",
        },
    )
    (staged / "etc").symlink_to("/etc")
    (staged / "rel").symlink_to("db1")
    os.mkfifo(staged / "fifo")
    before = state(live)
    plan, refused = swap.rsync_plan(area, [], ("rsync_sst_complete",))
    assert sorted(r.split("'")[1] for r in refused) == sorted(
        [
            ".sst-old",
            ".sst-swap.journal",
            ".sst",
            "sst_in_progress",
            "wsrep_sst.pid",
            "galera_sst_status.json",
            "etc",
            "rel",
            "fifo",
        ]
    )
    swap.execute(str(live), plan)
    after = live_state(live)
    assert after == expected_new(live)
    for name in ("etc", "rel", "fifo", "sst_in_progress", "wsrep_sst.pid", ".sst-swap.journal"):
        assert name not in after and name not in before
    # a separate area takes regular files of its own patterns only
    sub = Area(str(tmp_path / "ib"), str(tmp_path / "ib" / datadir.STAGING), ("ib_logfile*",))
    tree(Path(sub.staged), {"ib_logfile0": "r", "ibdata1": "not here", "d/x": "no dirs"})
    plan, refused = swap.rsync_plan(Area(str(live), area.staged), [sub], ())
    assert [m.dst for m in plan.into if m.dst.startswith(sub.live)] == [f"{sub.live}/ib_logfile0"]
    assert len([r for r in refused if r.startswith(("'ibdata1'", "'d'"))]) == 2


def test_binlog_index_cannot_delete_outside_the_binlog_directory(tmp_path: Path) -> None:
    d = tmp_path / "data"
    outside = tmp_path / "precious"
    tree(outside, {"file": "keep me", "mysql-bin.000001": "not ours either"})
    tree(
        d,
        {
            "mysql-bin.000001": "a",
            "mysql-bin.000002": "b",
            "mysql-bin.state": "keep",
            "mysql-bin.0001x": "keep",
            "db1/t.ibd": "keep",
        },
    )
    (d / "mysql-bin.index").write_text(
        f"./mysql-bin.000001\n{outside}/file\n../precious/mysql-bin.000001\n"
        "/etc/hostname\ndb1/t.ibd\nmysql-bin.state\n"
    )
    b = datadir.Binlogs.from_settings(str(d), "mysql-bin", "", "")
    assert b is not None
    etc = Path("/etc/hostname").read_bytes()
    b.remove_all(str(d))
    assert sorted(os.listdir(d)) == ["db1", "mysql-bin.0001x", "mysql-bin.state"]
    assert state(outside) == {"file": "keep me", "mysql-bin.000001": "not ours either"}
    assert (d / "db1/t.ibd").read_text() == "keep"
    assert Path("/etc/hostname").read_bytes() == etc


def test_fill_swap_rolls_back_when_the_tool_fails(tmp_path: Path) -> None:
    live = tmp_path / "data"
    tree(live, {**OLD_DATA, ".sst/ibdata1": "prepared"})
    before = state(live)

    def fill() -> None:
        (live / "ibdata1").write_text("half new")
        (live / "mysql").mkdir()
        (live / "mariabackup.move.log").write_text("move-back output")
        raise OSError(5, "move-back failed")

    plan = swap.fill_plan([str(live)], r".*\.log$|.*grastate\.dat$|.*galera\.cache$|.*\.err$")
    with pytest.raises(OSError, match="move-back failed"):
        swap.execute(str(live), plan, fill)
    after = state(live)
    assert after.pop("mariabackup.move.log") == "move-back output"  # kept, like every log
    assert after == before


def test_aside_directory_without_journal_is_never_deleted(tmp_path: Path) -> None:
    live, _ = rsync_case(tmp_path)
    tree(live / datadir.OLD, {"ibdata1": "live entry of an older version's swap"})
    before = state(live)
    with pytest.raises(swap.SwapError, match="without a journal"):
        swap.recover(str(live))
    assert state(live) == before
    datadir.remove_staging([Area(str(live), str(live / datadir.STAGING))])
    assert (live / datadir.OLD / "ibdata1").exists()


def test_interrupted_move_back_is_rolled_back(tmp_path: Path) -> None:
    """mariadb-backup killed halfway: some new files in, the journal still 'swapping'."""
    live = tmp_path / "data"
    tree(live, OLD_DATA)
    before = state(live)
    plan = swap.fill_plan([str(live)], r".*grastate\.dat$")
    (live / datadir.JOURNAL).write_text(
        json.dumps({"version": 1, "state": "swapping", "plan": plan.to_json()})
    )
    os.mkdir(live / datadir.OLD)
    for m in plan.aside:
        os.rename(m.src, m.dst)
    tree(live, {"ibdata1": "new", "db1/t.ibd": "new", "mysql/user.MAI": "new"})
    assert swap.recover(str(live)) == "rolled back"
    assert state(live) == before
    assert swap.recover(str(live)) == ""


HARNESS = """
import sys
from sst import datadir, swap
from sst.datadir import Area
from sst.errors import TransferError
from sst.tools import tar as tar_tool
kind, live = sys.argv[1], sys.argv[2]
if kind == "rsync":
    area = Area(live, datadir.staging_for(live, live))
    plan, _ = swap.rsync_plan(area, [], ("rsync_sst_complete",))
    swap.execute(live, plan)
else:
    import os, shutil
    plan = swap.fill_plan([live], r".*grastate\\.dat$|.*galera\\.cache$")
    def fill():
        src = os.path.join(live, ".sst")
        for n in sorted(os.listdir(src)):
            os.rename(os.path.join(src, n), os.path.join(live, n))
    swap.execute(live, plan, fill)
"""


def run_harness(kind: str, live: Path, step: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT), swap.FAULT_ENV: str(step)}
    return subprocess.run(
        [sys.executable, "-c", HARNESS, kind, str(live)], env=env, check=False
    ).returncode


def fill_case(root: Path) -> tuple[Path, dict[str, str]]:
    live = root / "data"
    tree(live, OLD_DATA)
    new = {k: v for k, v in NEW_DATA.items() if k != "rsync_sst_complete"}
    tree(live / ".sst", new)
    expected = {"grastate.dat": OLD_DATA["grastate.dat"], "galera.cache": "cache", **new}
    for rel in list(expected):
        if "/" in rel:
            expected[rel.split("/")[0]] = "dir"
    return live, expected


@pytest.mark.parametrize("kind", ["rsync", "fill"])
def test_sigkill_at_every_step_leaves_old_or_new_after_recovery(tmp_path: Path, kind: str) -> None:
    outcomes = set()
    step = 0
    while True:
        step += 1
        root = tmp_path / str(step)
        if kind == "rsync":
            live, _ = rsync_case(root)
            old, new = live_state(live), expected_new(live)
        else:
            live, new = fill_case(root)
            old = {k: v for k, v in state(live).items() if not k.startswith(".sst")}
        rc = run_harness(kind, live, step)
        if rc == 0:
            break  # the step count is past the end: the swap ran to completion
        assert rc == -signal.SIGKILL
        if kind == "rsync":  # a plain server start before recovery: a whole copy, or no redo
            before = {k: v for k, v in state(live).items() if not k.startswith(".sst")}
            guarded = (live / "ibdata1").is_file() and not (live / "ib_logfile0").exists()
            assert before in (old, new) or guarded, f"step {step}: {before}"
        done = swap.recover(str(live))
        after = {k: v for k, v in state(live).items() if not k.startswith(".sst")}
        assert after in (old, new), f"step {step}: a mix after recovery ({done})"
        outcomes.add((done, "new" if after == new else "old"))
        assert not (live / datadir.JOURNAL).exists() and not (live / datadir.OLD).exists()
        assert swap.recover(str(live)) == ""
    assert step > 15
    # killed after the last step (the journal's removal), there is nothing left to recover
    assert outcomes == {("rolled back", "old"), ("finished", "new"), ("", "new")}


def test_recover_command(tmp_path: Path) -> None:
    live, _ = rsync_case(tmp_path)
    old = live_state(live)
    assert run_harness("rsync", live, 5) == -signal.SIGKILL
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "sst", "recover", "--datadir", str(live)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{live}: interrupted swap rolled back"
    assert live_state(live) == old
    (live / datadir.OLD).mkdir()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 117 and "without a journal" in out.stderr


def make_tar(root: Path, build: dict[str, tuple[str, int]]) -> Path:
    """A hostile donor's tar (built with tarfile, which writes any member): name -> (kind,
    mode); kind 'file', 'symlink:<target>', 'hardlink:<target>' or 'dir'."""
    path = root / "binlogs.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for name, (kind, mode) in build.items():
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind.startswith("symlink:"):
                info.type, info.linkname = tarfile.SYMTYPE, kind.split(":", 1)[1]
                tf.addfile(info)
            elif kind.startswith("hardlink:"):
                info.type, info.linkname = tarfile.LNKTYPE, kind.split(":", 1)[1]
                tf.addfile(info)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = 4
                tf.addfile(info, io.BytesIO(b"data"))
    return path


def listed(tar: Path) -> list[tar_tool.Member]:
    argv = tar_tool.list_argv("tar", str(tar))
    return tar_tool.parse_listing(
        subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    )


def binlog_rule(n: str) -> bool:
    return bool(datadir.BINLOG_NAME.fullmatch(n) or datadir.BINLOG_INDEX.fullmatch(n))


@pytest.mark.parametrize(
    ("member", "kind", "mode"),
    [
        ("mysql-bin.000009", "symlink:/etc/shadow", 0o777),
        ("mysql-bin.000009", "hardlink:/etc/shadow", 0o644),
        ("/etc/cron.d/x.000001", "file", 0o644),
        ("../mysql-bin.000001", "file", 0o644),
        ("sub/mysql-bin.000001", "file", 0o644),
        ("mysql-bin.000002", "file", 0o4755),
        ("mysql-bin.000003", "file", 0o2660),
        ("mysql-bin.000004", "dir", 0o755),
        ("ibdata1", "file", 0o660),
        (".sst-old", "file", 0o660),
    ],
)
def test_binlog_tar_refused_before_extraction(
    tmp_path: Path, member: str, kind: str, mode: int
) -> None:
    tar = make_tar(tmp_path, {"mysql-bin.000001": ("file", 0o660), member: (kind, mode)})
    with pytest.raises(TransferError, match="binlog archive holds") as exc:
        tar_tool.checked_names(listed(tar), binlog_rule)
    assert member.lstrip("/") in exc.value.message or member in exc.value.message


def test_binlog_tar_plain_members_extracted_without_owner_or_mode(tmp_path: Path) -> None:
    tar = make_tar(
        tmp_path,
        {
            "mysql-bin.000001": ("file", 0o666),
            "node-bin.000123": ("file", 0o660),
            "mysql-bin.index": ("file", 0o600),
        },
    )
    names = tar_tool.checked_names(listed(tar), binlog_rule)
    assert names == ["mysql-bin.000001", "node-bin.000123", "mysql-bin.index"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "mysql-bin.000001").symlink_to(tmp_path / "victim")  # never written through
    old = os.umask(0o027)
    try:
        subprocess.run(tar_tool.extract_argv("tar", str(tar), str(out), names), check=True)
    finally:
        os.umask(old)
    assert not (tmp_path / "victim").exists()
    st = os.lstat(out / "mysql-bin.000001")
    assert st.st_mode & 0o7777 == 0o640 and st.st_uid == os.geteuid()


def test_received_binlog_info_removes_only_plain_binlog_files(tmp_path: Path) -> None:
    """mariabackup: xtrabackup_binlog_info names the binlogs the joiner drops from the
    received backup; any other name there ('..', a data file, a path) removes nothing."""
    staging = tmp_path / "data" / ".sst"
    tree(staging, {"ibdata1": "i", "mysql-bin.000003": "b", "db/t.ibd": "t"})
    tree(tmp_path, {"outside.000001": "o"})
    (staging / "xtrabackup_binlog_info").write_text(
        "..\t4\n.\t4\nibdata1\t4\ndb\t4\n../../outside.000001\t4\nmysql-bin.000003\t4\n"
    )
    mariabackup._drop_received_binlogs(str(staging))
    assert sorted(os.listdir(staging)) == ["db", "ibdata1", "xtrabackup_binlog_info"]
    assert (tmp_path / "outside.000001").exists()


def test_link_probe_never_follows_a_planted_link(tmp_path: Path) -> None:
    """The hard-link probe in a live directory replaces links planted at its names instead
    of writing through them, and still finds that links work."""
    live = tmp_path / "live"
    live.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (live / ".sst-link-probe").symlink_to(victim)
    (live / ".sst-link-probe2").symlink_to(victim)
    assert swap._links_work(str(live))
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in live.iterdir()) == []


def test_recovery_removes_a_journal_write_cut_short(tmp_path: Path) -> None:
    """A SIGKILL inside a journal write leaves its private temporary file: recovery removes
    it and finds no interrupted swap."""
    dd = tmp_path / "data"
    dd.mkdir()
    (dd / f".{datadir.JOURNAL}.0123456789abcdef.tmp").write_text("{")
    assert swap.recover(str(dd)) == ""
    assert list(dd.iterdir()) == []
