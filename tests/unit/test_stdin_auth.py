"""MariaDB 11.x's donor credentials on stdin, as the environment names 10.11 used."""

from __future__ import annotations

import os

from sst import stdin_auth
from sst.methods.common import announced_cn
from sst.request import NO_NAME, parse_request

TEXT = (
    "sst_user=wsrep_sst_tmp\nsst_password=p=w:d\n"
    "sst_remote_user=node2\nsst_remote_password=0123abc\nother=x\n"
)


def test_lines_become_the_10_11_environment() -> None:
    env = stdin_auth.as_env(stdin_auth.parse(TEXT))
    assert env == {
        "WSREP_SST_OPT_USER": "wsrep_sst_tmp",
        "WSREP_SST_OPT_PSWD": "p=w:d",
        "WSREP_SST_OPT_REMOTE_AUTH": "node2:0123abc",
    }
    args = ["--role", "donor", "--address", "node2:4444/xtrabackup_sst//1", "--datadir", "/d"]
    req = parse_request("wsrep_sst_py_mariabackup", args, env)
    assert (req.remote_auth.cn, req.remote_auth.secret) == ("node2", "0123abc")
    assert (req.credentials.user, req.credentials.password) == ("wsrep_sst_tmp", "p=w:d")


def test_read_from_a_pipe_and_nothing_from_an_empty_or_silent_one() -> None:
    r, w = os.pipe()
    os.write(w, TEXT.encode())
    os.close(w)
    assert stdin_auth.read(r)["WSREP_SST_OPT_REMOTE_AUTH"] == "node2:0123abc"
    os.close(r)
    r, w = os.pipe()
    os.close(w)
    assert stdin_auth.read(r) == {}  # end of file at once (/dev/null, 10.11)
    os.close(r)
    r, w = os.pipe()
    assert stdin_auth.read(r, first_wait=0.1) == {}  # an open pipe that says nothing
    os.close(r)
    os.close(w)


def test_the_joiners_placeholder_name_carries_the_secret_and_reads_as_no_name() -> None:
    """Outside VERIFY modes the joiner announces NO_NAME before its secret: MariaDB 11 writes
    `sst_remote_password` only after a non-empty `sst_remote_user` (measured on 11.8.9 with
    MariaDB's galera suite: with an empty name the donor got no secret and every plain
    rsync SST was refused by our joiner). The donor reads the placeholder as no name."""
    assert announced_cn("DISABLED", None) == NO_NAME
    assert announced_cn("REQUIRED", None) == NO_NAME
    stdin = f"sst_user=rsync\nsst_password=none\nsst_remote_user={NO_NAME}\n"
    env = stdin_auth.as_env(stdin_auth.parse(stdin + "sst_remote_password=5e5e\n"))
    args = ["--role", "donor", "--address", "127.0.0.1:4444/rsync_sst", "--datadir", "/d"]
    req = parse_request("wsrep_sst_rsync", args, env)
    assert (req.remote_auth.cn, req.remote_auth.secret) == ("", "5e5e")
    req = parse_request("wsrep_sst_rsync", args, {"WSREP_SST_OPT_REMOTE_AUTH": "-:5e5e"})  # 10.11
    assert (req.remote_auth.cn, req.remote_auth.secret) == ("", "5e5e")
