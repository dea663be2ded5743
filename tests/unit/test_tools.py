"""argv builders and config texts: every flag combination is a tuple to compare."""

from __future__ import annotations

import errno

import pytest

from sst.config import TLSFiles
from sst.errors import ConfigError
from sst.methods import rsync as mrs
from sst.tools import mariabackup as mb
from sst.tools import rsync as rs
from sst.tools import stunnel as st


def test_push_flags_never_inplace() -> None:
    lan = rs.Push("rsync://h:4444/rsync_sst")
    wan = rs.Push("rsync://h:4444/rsync_sst", whole_file=False, rsh="stunnel '/r/c.conf'")
    assert "--inplace" not in lan.common() and "--whole-file" in lan.common()
    assert "--whole-file" not in wan.common()
    assert "--rsh=stunnel '/r/c.conf'" in wan.common()


def test_top_level_pass_filters() -> None:
    argv = rs.top_level_pass("/usr/bin/rsync", rs.Push("rsync://h:1/m"), "/data dir")
    assert argv[0] == "/usr/bin/rsync" and argv[-2:] == ("/data dir/", "rsync://h:1/m")
    filters = [argv[i + 1] for i, a in enumerate(argv) if a == "-f"]
    assert filters[-3:] == ["+ /wsrep_sst_binlog.tar", "+ /*/", "- /*"]
    assert "- /lost+found" in filters and "- /.snapshot/" in filters
    assert "--dirs" in argv and "--recursive" not in argv


def test_submodule_and_database_passes() -> None:
    p = rs.Push("rsync://[::1]:4444/rsync_sst")
    argv = rs.submodule_pass("rsync", p, "/ib", "data_dir")
    assert argv[-1] == "rsync://[::1]:4444/rsync_sst-data_dir"
    assert argv[-8:-2] == ("-f", "+ /ibdata*", "-f", "+ /ib_lru_dump", "-f", "- **")
    argv = rs.database_pass("rsync", p, "/d", "my db")
    assert argv[-2:] == ("/d/my db/", "rsync://[::1]:4444/rsync_sst/my db")


def test_magic_pass_and_errno() -> None:
    argv = rs.magic_pass("rsync", rs.Push("rsync://h:1/m"), "/run/rsync_sst_complete")
    assert argv == (
        "rsync",
        "--sockopts=TCP_NODELAY",
        "--archive",
        "--quiet",
        "--checksum",
        "/run/rsync_sst_complete",
        "rsync://h:1/m",
    )
    assert rs.errno_for(12) == errno.EPROTO
    assert rs.errno_for(22) == errno.ENOMEM
    assert rs.errno_for(23) == 255


def _conf_lines(text: str) -> dict[str, list[str]]:
    """rsyncd.conf text -> section name ('' = global) -> its `key = value` lines."""
    out: dict[str, list[str]] = {"": []}
    section = ""
    for ln in text.splitlines():
        if ln.startswith("["):
            section = ln.strip("[]")
            out[section] = []
        else:
            out[section].append(ln.strip())
    return out


def test_daemon_conf_modules_are_write_only_unlisted_and_guarded() -> None:
    text = rs.daemon_conf(
        rs.Daemon(
            pid_file="/d/rsync_sst.pid",
            modules=[("rsync_sst_ab12", "/d/.s"), ("rsync_sst_ab12-log_dir", "/l/.s")],
            timeout=300,
            owner=(102, 105),
            secrets_file="/run/x/rsyncd.secrets",
            refuse_inplace=True,
        )
    )
    conf = _conf_lines(text)
    g = conf[""]
    for line in (
        "write only = yes",
        "list = no",
        "read only = no",
        "use chroot = no",
        "refuse options = devices inplace",
        "incoming chmod = Dgo-rwx,ug-s",
        "uid = 102",
        "gid = 105",
        "auth users = sst",
        "secrets file = /run/x/rsyncd.secrets",
        "strict modes = yes",
        "timeout = 300",
    ):
        assert line in g
    assert conf["rsync_sst_ab12"] == ["path = /d/.s", "exclude = .zfs"]
    assert conf["rsync_sst_ab12-log_dir"][0] == "path = /l/.s"


def test_daemon_conf_under_stock_names_and_not_root() -> None:
    """No secrets file (a stock donor cannot authenticate), not root: no auth, no uid."""
    text = rs.daemon_conf(rs.Daemon(pid_file="/p", modules=[("m_1", "/a")], timeout=5))
    g = _conf_lines(text)[""]
    assert "write only = yes" in g and "list = no" in g and "timeout = 5" in g
    assert "refuse options = devices" in g
    assert not [ln for ln in g if ln.startswith(("uid", "gid", "auth users", "secrets file"))]
    with pytest.raises(ConfigError):
        rs.daemon_conf(rs.Daemon(pid_file="/p", modules=[("m", "/a\nb")], timeout=1))


def test_daemon_owner_is_the_datadirs_when_root() -> None:
    assert rs.daemon_owner(0, 102, 105) == (102, 105)
    assert rs.daemon_owner(0, 0, 0) == (0, 0)  # root's datadir: root it stays
    assert rs.daemon_owner(102, 102, 105) is None


def test_module_name_secret_and_password_texts() -> None:
    assert rs.module_name("rsync_sst", "0f" * 16) == "rsync_sst_" + "0f" * 16
    assert rs.secrets_text("s3") == "sst:s3\n"
    assert rs.password_text("s3") == "s3\n"


def test_authenticated_push_uses_a_password_file_only() -> None:
    url = rs.push_url("[::1]:4444", "rsync_sst_ab", user=rs.AUTH_USER)
    assert url == "rsync://sst@[::1]:4444/rsync_sst_ab"
    assert rs.push_url("h:1", "m") == "rsync://h:1/m"
    p = rs.Push(url, password_file="/run/x/rsync.password")
    for argv in (
        rs.top_level_pass("rsync", p, "/d"),
        rs.submodule_pass("rsync", p, "/d", "log_dir"),
        rs.database_pass("rsync", p, "/d", "db"),
        rs.magic_pass("rsync", p, "/run/x/rsync_sst_complete"),
    ):
        assert "--password-file=/run/x/rsync.password" in argv
        assert argv[-1].startswith("rsync://sst@[::1]:4444/rsync_sst_ab")
    assert not [a for a in rs.Push("rsync://h:1/m").common() if "password" in a]


def test_daemon_argv_binds() -> None:
    assert rs.daemon_argv("rsync", "/c", 4444, "127.0.0.2") == (
        "rsync",
        "--daemon",
        "--no-detach",
        "--port",
        "4444",
        "--config",
        "/c",
        "--address",
        "127.0.0.2",
    )


def test_server_execargs_names_the_config_relative_to_stunnels_directory() -> None:
    """stunnel splits execargs at white space: only a bare name goes there."""
    assert rs.server_execargs("rsyncd.conf") == "rsync --server --daemon --config=rsyncd.conf ."
    for bad in ("/tmp/a b/rsyncd.conf", "/run/x/rsyncd.conf", "a b.conf", ""):
        with pytest.raises(ConfigError):
            rs.server_execargs(bad)


def test_rsh_quotes_every_character_rsync_would_split_at() -> None:
    """rsync reads a doubled single quote inside single quotes as one quote."""
    assert rs.rsh_stunnel("/usr/bin/stunnel4", "/t 'q' $x;`y`/c.conf") == (
        "'/usr/bin/stunnel4' '/t ''q'' $x;`y`/c.conf'"
    )


def test_daemon_conf_paths_are_read_back_verbatim() -> None:
    """rsyncd.conf keeps inner white space, `#` and a `%` verbatim, but would expand
    %NAME% (no escape exists): such a path is refused, never sent elsewhere."""
    text = rs.daemon_conf(
        rs.Daemon(
            pid_file="/d 100% #x;'\"/rsync_sst.pid",
            modules=[("rsync_sst", "/d %path% #x/.s")],
            timeout=1,
        )
    )
    assert "pid file = /d 100% #x;'\"/rsync_sst.pid\n" in text
    assert "    path = /d %path% #x/.s\n" in text
    for bad in ("relative/dir", "/ends in space ", "/ends\\", "/a %HOME% b", "/a %X y% b"):
        with pytest.raises(ConfigError):
            rs.conf_path(bad)


FILES = TLSFiles(ca="/ca.pem", cert="/c.pem", key="/k.pem")


def test_stunnel_client_verify_identity() -> None:
    text = st.client_conf(FILES, st.Verify(chain=True, ips=("127.0.0.2",)), "127.0.0.2:4444")
    lines = text.splitlines()
    assert "client = yes" in lines and "connect = 127.0.0.2:4444" in lines
    assert "verifyChain = yes" in lines and "checkIP = 127.0.0.2" in lines
    assert "CAfile = /ca.pem" in lines and "pid =" in lines
    assert not any(ln.startswith("verifyPeer") for ln in lines)


def test_stunnel_server_required_has_no_verify() -> None:
    text = st.server_conf(
        FILES,
        st.Verify(),
        pid_file="/d/stunnel.pid",
        accept="127.0.0.2:4444",
        rsync="/usr/bin/rsync",
        execargs=rs.server_execargs("rsyncd.conf"),
    )
    assert "verify" not in text
    assert text.endswith("execargs = rsync --server --daemon --config=rsyncd.conf .\n")
    with pytest.raises(ConfigError):
        st.client_conf(TLSFiles(cert="/a\nverify = 0", key="/k"), st.Verify(), "h:1")


# The lines mariadb-backup 10.11 writes around its blocking stages (abridged from a real log).
BACKUP_LINES = (
    "[00] 2026-11-30 05:46:24 Started BACKUP STAGE BLOCK_DDL",
    "[00] 2026-11-30 05:46:24 Acquired locks for BACKUP STAGE BLOCK_DDL",
    "[00] 2026-11-30 05:46:24 Finished BACKUP STAGE BLOCK_DDL",
    "[00] 2026-11-30 05:46:24 Starting BACKUP STAGE BLOCK_COMMIT",
    "[00] 2026-11-30 05:46:24 Acquired locks for BACKUP STAGE BLOCK_COMMIT",
    "[00] 2026-11-30 05:46:24 Executing BACKUP STAGE END",
    "[00] 2026-11-30 05:46:24 All tables unlocked",
)


def test_lock_clock_times_block_ddl_and_block_commit_to_the_unlock() -> None:
    now = [100.0]
    clock = mb.LockClock(clock=lambda: now[0])
    for line, at in zip(BACKUP_LINES, (1.0, 1.01, 1.3, 1.3, 1.31, 1.4, 1.45), strict=True):
        now[0] = 100.0 + at
        clock.feed(line)
    clock.feed(BACKUP_LINES[0])  # a repeated line does not move the mark
    blocked = clock.blocked()
    assert blocked == pytest.approx((0.45, 0.15))
    # the longest silence while the locks were held, and the line before it, unstamped
    assert clock.longest[0] == pytest.approx(0.29)
    assert clock.longest[1] == "Acquired locks for BACKUP STAGE BLOCK_DDL"


@pytest.mark.parametrize("missing", [0, 3, 6])
def test_lock_clock_without_every_stage_line_says_nothing(missing: int) -> None:
    clock = mb.LockClock(clock=lambda: 5.0)
    for i, line in enumerate(BACKUP_LINES):
        if i != missing:
            clock.feed(line)
    assert clock.blocked() is None


def test_lock_clock_out_of_order_says_nothing() -> None:
    times = iter((3.0, 2.0, 4.0))
    clock = mb.LockClock(clock=lambda: next(times))
    for line in (BACKUP_LINES[0], BACKUP_LINES[3], BACKUP_LINES[6]):
        clock.feed(line)
    assert clock.blocked() is None


def test_backup_argv_polls_the_redo_log_often_and_lets_the_operator_override() -> None:
    c = mb.Common("mariadb-backup")
    argv = mb.backup_argv(
        c,
        (),
        socket="/s",
        tmpdir="/t",
        target_dir="/x",
        datadir="/d",
        parallel=0,
        extra=("--log-copy-interval=500",),
    )
    ours = argv.index(f"--log-copy-interval={mb.LOG_COPY_INTERVAL_MS}")
    assert mb.LOG_COPY_INTERVAL_MS <= 20
    assert argv.index("--log-copy-interval=500") > ours  # the last one wins in mariadb-backup


def test_list_pass_sends_named_files_whole_and_deletes_nothing() -> None:
    p = rs.Push("rsync://h:1/m", password_file="/run/x/pw")
    argv = rs.list_pass("rsync", p, "/d d", "rsync://h:1/m-log_dir", "/run/x/changed-log_dir.lst")
    assert argv[-5:] == (
        "--files-from=/run/x/changed-log_dir.lst",
        "--from0",
        "--no-implied-dirs",
        "/d d/",
        "rsync://h:1/m-log_dir",
    )
    assert "--delete" not in argv and "--recursive" not in argv and "--inplace" not in argv
    # Whole and unconditionally (no quick check: our passes keep no times, and a coarse
    # mtime can hide a same-size change), authenticated like every pass.
    assert {"--ignore-times", "--whole-file", "--password-file=/run/x/pw"} <= set(argv)
    wan = rs.list_pass("rsync", rs.Push("rsync://h:1/m", whole_file=False), "/d", "u", "/l")
    assert "--whole-file" not in wan and "--ignore-times" in wan


def test_deletion_pass_is_the_pass_reading_no_file_the_receiver_has() -> None:
    p = rs.Push("rsync://h:1/m")
    for argv in (
        rs.top_level_pass("rsync", p, "/d"),
        rs.submodule_pass("rsync", p, "/d", "aria_log"),
        rs.database_pass("rsync", p, "/d", "db"),
    ):
        deletion = rs.deletion_pass(argv)
        assert deletion == (argv[0], "--ignore-existing", *argv[1:])
        assert "--delete" in deletion
    # The top level's filter leaves a symlinked database directory out, and --delete would
    # then remove the receiver's directory: under the lock it is sent as a directory.
    top = rs.top_level_pass("rsync", p, "/d")
    assert rs.deletion_pass(top, top=True) == (
        "rsync",
        "--ignore-existing",
        "--copy-dirlinks",
        *top[1:],
    )


def test_files_from_list_survives_comment_characters_and_newlines() -> None:
    # rsync skips --files-from entries starting with '#' or ';' as comments: InnoDB's
    # `#sql-*.ibd` would be left out without the `./` rsync strips again.
    assert rs.files_from(["#sql-ib12.ibd", ";x", "db/t\n1.ibd", "caf\udce9"]) == (
        b"./#sql-ib12.ibd\0./;x\0./db/t\n1.ibd\0./caf\xe9\0"
    )
    assert rs.files_from([]) == b""
    assert rs.VANISHED == 24


def test_split_names_balances_bytes_over_the_parts() -> None:
    sizes = {"t0.ibd": 80, "t1.ibd": 70, "t2.ibd": 40, "t3.ibd": 30, "db.opt": 1}
    groups = rs.split_names(sizes, 2)
    assert sorted(n for g in groups for n in g) == sorted(sizes)  # each name once
    totals = sorted(sum(sizes[n] for n in g) for g in groups)
    assert totals == [110, 111]
    assert rs.split_names({"a": 1}, 4) == [["a"]]  # never more parts than names
    assert rs.split_names({}, 3) == []


def test_a_big_database_directory_goes_in_up_to_two_parts_per_rsync() -> None:
    """A part per 32 MiB, at least one and at most two per rsync (backup-threads), never
    more than names; each name in one part; a small directory, one rsync or one file: no
    split."""
    mib = 1 << 20
    tables = {f"t{i}.ibd": 150 * mib for i in range(16)}  # the benchmark's 2.4 GiB
    groups = mrs.split_groups(tables, 2)
    assert len(groups) == 4
    assert sorted(n for g in groups for n in g) == sorted(tables)
    assert len(mrs.split_groups(tables, 3)) == 6
    assert len(mrs.split_groups({f"t{i}": 20 * mib for i in range(4)}, 2)) == 2  # 80 MiB
    assert len(mrs.split_groups({f"t{i}": 20 * mib for i in range(10)}, 3)) == 6  # 200 MiB
    assert len(mrs.split_groups({f"t{i}": 20 * mib for i in range(4)}, 8)) == 4
    assert len(mrs.split_groups({"a": 70 * mib, "b": 70 * mib, "c": mib}, 4)) == 3  # names
    assert mrs.split_groups(tables, 1) == []
    assert mrs.split_groups({"t.ibd": 63 * mib}, 2) == []
    assert mrs.split_groups({"big.ibd": 10 * 1024 * mib}, 2) == []  # one file: one pass


def test_a_directory_of_very_many_tables_goes_as_one_pass() -> None:
    """Split, every name would be a filter rule in some part's argv: past SPLIT_NAMES_MAX
    names the directory goes whole, and up to it the longest argv stays far below the
    kernel's 2 MiB (names of 64 characters, the longest MariaDB writes for a table)."""
    n = mrs.SPLIT_NAMES_MAX
    many = {f"{'t' * 56}{i:08d}": 1 << 20 for i in range(n + 1)}
    assert mrs.split_groups(many, 2) == []
    many.popitem()
    groups = mrs.split_groups(many, 2)
    assert len(groups) == 4
    p = rs.Push("rsync://127.0.0.1:4444/m")
    parts = rs.database_part_passes("rsync", p, "/d", "db", groups)
    assert max(sum(len(a) + 1 + 8 for a in argv) for argv in parts) < 1 << 20


@pytest.mark.parametrize(
    ("name", "plain"),
    [
        ("t1.ibd", True),
        ("#sql-ib12.ibd", True),
        ("t@0020x.frm", True),
        ("a*b.ibd", False),  # a wildcard would match other names
        ("a?b", False),
        ("a[1]", False),
        ("a\\b", False),
        ("a b", False),
        ("a\nb", False),
        ("..", False),
    ],
)
def test_plain_names_are_those_a_filter_rule_spells_verbatim(name: str, plain: bool) -> None:
    assert rs.plain_name(name) is plain


def test_split_database_passes_carry_each_file_once_and_delete_in_one() -> None:
    p = rs.Push("rsync://h:1/m.basis", basis=True)
    whole = rs.database_pass("rsync", p, "/d", "db")
    groups = [["t0.ibd", "t3.ibd"], ["t1.ibd"], ["t2.ibd"]]
    parts = rs.database_part_passes("rsync", p, "/d", "db", groups)
    assert len(parts) == 3
    for argv in parts:
        assert argv[-2:] == ("/d/db/", "rsync://h:1/m.basis/db")
        # The same flags (--checksum, ...) but --delete: running beside the other parts,
        # it would remove their temporary files; the deletion pass runs after them.
        assert set(whole[:-2]) - set(argv) == {"--delete"}
    # The first parts carry their names only ...
    assert parts[0][len(whole) - 3 : -2] == ("-f", "+ /t0.ibd", "-f", "+ /t3.ibd", "-f", "- /*")
    assert parts[1][len(whole) - 3 : -2] == ("-f", "+ /t1.ibd", "-f", "- /*")
    # ... the last one everything but theirs: new files, directories, odd names.
    assert parts[2][len(whole) - 3 : -2] == (
        "-f",
        "- /t0.ibd",
        "-f",
        "- /t3.ibd",
        "-f",
        "- /t1.ibd",
    )
    one = rs.database_part_passes("rsync", p, "/d", "db", [["t0.ibd"]])
    assert one == [tuple(a for a in whole if a != "--delete")]


def test_every_pass_sets_tcp_nodelay_on_a_daemon_connection_only() -> None:
    # Straight to the daemon both ends set TCP_NODELAY (Nagle held each pass's small
    # protocol messages for delayed ACKs: ~140 ms a pass on loopback, ~10 ms without);
    # through the TLS tunnel rsync has no socket of its own.
    plain = rs.Push("rsync://h:1/m")
    tunnel = rs.Push("rsync://h:1/m", rsh="'stunnel' 'c.conf'")
    for push, want in ((plain, True), (tunnel, False)):
        for argv in (
            rs.top_level_pass("rsync", push, "/d"),
            rs.list_pass("rsync", push, "/d", push.url, "/l"),
            rs.magic_pass("rsync", push, "/m"),
            rs.origin_pass("rsync", push, "/o"),
        ):
            assert ("--sockopts=TCP_NODELAY" in argv) == want, argv
    conf = rs.daemon_conf(rs.Daemon("/p", [("m", "/d")], timeout=60, owner=None))
    assert "socket options = TCP_NODELAY" in conf.splitlines()


def test_received_counts_files_and_tells_of_the_completion_file() -> None:
    # The joiner wakes when the daemon logs the completion file (rsync renames it into
    # place right after), not at its next tick; no other file's line may wake it.
    seen: list[str] = []
    got = rs.Received(on_magic=lambda: seen.append("magic"))
    tag = rs.RECEIVED_TAG
    for name in ("ibdata1", "db/rsync_sst_complete", "rsync_sst_complete.x"):
        got.watch(f"2026/11/30 17:40:00 [123] {tag} 10 20 {name}")
    assert (got.files, got.wire, got.length, seen) == (3, 30, 60, [])
    got.watch(f"2026/11/30 17:40:01 [123] {tag} 5 5 {rs.MAGIC_FILE}")
    assert (got.files, seen) == (4, ["magic"])
    assert "4 file(s)" in got.summary()
