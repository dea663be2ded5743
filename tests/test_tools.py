"""argv builders and config texts: every flag combination is a tuple to compare."""

from __future__ import annotations

import errno

import pytest

from sst.config import TLSFiles
from sst.errors import ConfigError
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
        "--archive",
        "--quiet",
        "--checksum",
        "/run/rsync_sst_complete",
        "rsync://h:1/m",
    )
    assert rs.errno_for(12) == errno.EPROTO
    assert rs.errno_for(22) == errno.ENOMEM
    assert rs.errno_for(23) == 255


def test_daemon_conf() -> None:
    text = rs.daemon_conf(
        pid_file="/d/rsync_sst.pid",
        modules=[("rsync_sst", "/d/.s")],
        as_root=True,
        timeout=300,
        refuse_inplace=True,
    )
    assert "uid = 0" in text and "refuse options = inplace" in text
    assert "[rsync_sst]\n    path = /d/.s\n" in text
    text = rs.daemon_conf(pid_file="/p", modules=[], as_root=False, timeout=5, refuse_inplace=False)
    assert "uid" not in text and "refuse" not in text and "timeout = 5" in text
    with pytest.raises(ConfigError):
        rs.daemon_conf(
            pid_file="/p", modules=[("m", "/a\nb")], as_root=False, timeout=1, refuse_inplace=False
        )


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
        pid_file="/d 100% #x;'\"/rsync_sst.pid",
        modules=[("rsync_sst", "/d %path% #x/.s")],
        as_root=False,
        timeout=1,
        refuse_inplace=False,
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
