"""socat and mariadb-backup argv, and the credentials option file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sst.errors import ConfigError
from sst.process.runner import run_capture
from sst.tools import mariabackup as mb
from sst.tools import mysql as my
from sst.tools import socat as sc
from sst.tools.my_print_defaults import argv as mpd_argv


def test_socat_listen_plain_and_tls() -> None:
    argv = sc.listen_argv("socat", port=4444, bind="127.0.0.2", ipv6=False, tls=None)
    assert argv == (
        "socat",
        "-b",
        "131072",
        "-t",
        "300",
        "TCP-LISTEN:4444,reuseaddr,bind=127.0.0.2",
        "STDIN!!STDOUT,shut-close",
    )
    t = sc.SocatTLS(cert="/c.pem", key="/k.pem", cafile="/ca.pem", verify=True, commonname="")
    argv = sc.listen_argv("socat", port=4444, bind="::1", ipv6=True, tls=t, sockopt=",nodelay,")
    assert argv[5] == (
        "OPENSSL-LISTEN:4444,reuseaddr,bind=[::1],pf=ip6,cert=/c.pem,"
        "key=/k.pem,cafile=/ca.pem,verify=1,commonname=,nodelay"
    )


def test_socat_connect_checks_name_and_retries() -> None:
    t = sc.SocatTLS(cert="/c", key="/k", cafile="/ca", commonname="node2")
    argv = sc.connect_argv("socat", host="10.0.0.2", port=4444, ipv6=False, tls=t, retries=50)
    assert argv[-2:] == (
        "STDIO",
        "OPENSSL:10.0.0.2:4444,retry=50,interval=0.1,cert=/c,key=/k,"
        "cafile=/ca,verify=1,commonname=node2,no-sni=1",
    )
    assert sc.connect_argv("socat", host="::1", port=1, ipv6=True, tls=None)[-1] == (
        "TCP:[::1]:1,pf=ip6"
    )
    with pytest.raises(ConfigError, match="socat cannot take"):
        sc.connect_argv(
            "socat", host="h", port=1, ipv6=False, tls=sc.SocatTLS(cert="/a,verify=0", key="/k")
        )


def test_backup_prepare_move_argv() -> None:
    c = mb.Common("mariadb-backup", ("--innodb-undo-directory=/u",), "1G", ("--foo=1",))
    argv = mb.backup_argv(
        c,
        ("--defaults-file=/run/cred.cnf",),
        socket="/s.sock",
        tmpdir="/t",
        target_dir="/x",
        datadir="/d",
        parallel=4,
        extra=("--ftwrl-wait-timeout=5",),
    )
    assert argv[:3] == ("mariadb-backup", "--defaults-file=/run/cred.cnf", "--backup")
    assert "--galera-info" in argv and "--stream=mbstream" in argv
    assert argv[-2:] == ("--mysqld-args", "--foo=1")
    assert not any(a.startswith(("--user", "--password")) for a in argv)
    p = mb.prepare_argv(c, target_dir="/d/.sst", force_recovery="", extra=())
    assert p[:2] == ("mariadb-backup", "--prepare") and "--datadir=/d/.sst" in p
    m = mb.move_back_argv(c, (), target_dir="/d/.sst", datadir="/d", parallel=0, extra=())
    assert "--force-non-empty-directories" in m and "--mysqld-args" not in m


def test_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "cred.cnf"
    my.option_file(
        str(path),
        include="/etc/mysql/my.cnf",
        group="mariadb-backup",
        user="sst",
        password='p"a\\ss w;$(x)\nz',
    )
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("!include /etc/mysql/my.cnf\n[mariadb-backup]\n")
    # MariaDB's own option parser must read the password back exactly.
    res = run_capture(
        mpd_argv("my_print_defaults", (f"--defaults-file={path}",), ("mariadb-backup",))
    )
    assert '--password=p"a\\ss w;$(x)\nz' in res.stdout
