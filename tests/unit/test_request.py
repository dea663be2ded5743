"""mariadbd's argv and environment, as docs/contract.md section 1 gives them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sst.errors import ConfigError, SSTError
from sst.methods.common import listening_on
from sst.request import Address, Credentials, method_from_argv0, parse_request


@pytest.mark.parametrize(
    ("text", "host", "port", "module", "lsn", "ver"),
    [
        ("127.0.0.2", "127.0.0.2", 4444, "", "", ""),
        ("127.0.0.2:5555", "127.0.0.2", 5555, "", "", ""),
        ("10.0.0.1:4444/xtrabackup_sst//1", "10.0.0.1", 4444, "xtrabackup_sst", "", "1"),
        ("node2.example.com:4444/rsync_sst", "node2.example.com", 4444, "rsync_sst", "", ""),
        ("[::1]", "::1", 4444, "", "", ""),
        ("[::1]:4445/rsync_sst", "::1", 4445, "rsync_sst", "", ""),
        ("[fd00::2]:4444/xtrabackup_sst/123/1", "fd00::2", 4444, "xtrabackup_sst", "123", "1"),
        ("host/mod", "host", 4444, "mod", "", ""),
    ],
)
def test_address_forms(text: str, host: str, port: int, module: str, lsn: str, ver: str) -> None:
    a = Address.parse(text)
    assert (a.host, a.port, a.module, a.lsn, a.sst_ver) == (host, port, module, lsn, ver)


def test_address_ipv6_is_bracketed_when_rebuilt() -> None:
    assert Address.parse("[::1]:4444").hostport == "[::1]:4444"
    assert Address.parse("127.0.0.1").hostport == "127.0.0.1:4444"


@pytest.mark.parametrize(
    ("bind", "label"), [("::1", "[::1]:4444"), ("10.0.0.5", "10.0.0.5:4444"), ("", "*:4444")]
)
def test_listen_label_brackets_ipv6(bind: str, label: str) -> None:
    assert listening_on(Address("sst.example", 4444), bind) == label


@pytest.mark.parametrize(
    "bad", ["", "[::1", "host:0", "host:70000", "host:ab", ":4444", "[nothex]:1", "host:12x/m"]
)
def test_address_rejects(bad: str) -> None:
    with pytest.raises(ConfigError):
        Address.parse(bad)


JOINER = [
    "--role",
    "joiner",
    "--address",
    "127.0.0.2:4444",
    "--datadir",
    "/var/lib/mysql/",
    "--defaults-file",
    "/etc/mysql/my.cnf",
    "--parent",
    "1234",
    "--progress",
    "0",
    "--binlog",
    "mysql-bin",
    "--mysqld-args",
    "--wsrep_start_position=u:1",
    "--innodb_data_home_dir=/ib",
    "--loose-log-basename=nodeA",
    "--user=mysql",
]


def test_joiner_line() -> None:
    r = parse_request("/usr/bin/wsrep_sst_py_rsync", JOINER, {"WSREP_SST_OPT_AUTH": ""})
    assert r.method == "py_rsync" and r.role == "joiner"
    assert r.datadir == "/var/lib/mysql"
    assert r.parent == 1234 and r.progress == 0
    assert r.defaults_args == ("--defaults-file=/etc/mysql/my.cnf",)
    assert r.paths.innodb_data_home_dir == "/ib"
    assert r.paths.log_basename == "nodeA"
    assert r.binlog == "mysql-bin"
    assert r.mysqld_args[0] == "--wsrep_start_position=u:1"
    assert r.credentials == Credentials()


def test_donor_line_with_auth_and_remote_auth() -> None:
    args = [
        "--role",
        "donor",
        "--address",
        "127.0.0.2:4444/rsync_sst",
        "--local-port",
        "3306",
        "--socket",
        "/run/mysqld/mysqld.sock",
        "--progress",
        "0",
        "--datadir",
        "/d/",
        "--gtid",
        "8d1b2c3e-0000-11ee-8000-000000000001:42",
        "--gtid-domain-id",
        "0",
        "--bypass",
    ]
    env = {"WSREP_SST_OPT_AUTH": "sst:pa:ss word", "WSREP_SST_OPT_REMOTE_AUTH": "node2:abc123"}
    r = parse_request("wsrep_sst_py_rsync_wan", args, env)
    assert r.method == "py_rsync_wan" and r.role == "donor" and r.bypass
    assert r.credentials == Credentials("sst", "pa:ss word")
    assert "pa:ss" not in repr(r.credentials)
    assert (r.remote_auth.cn, r.remote_auth.secret) == ("node2", "abc123")
    assert "abc123" not in repr(r.remote_auth)
    assert r.local_port == 3306 and r.address is not None and r.address.module == "rsync_sst"


def test_empty_cn_outside_verify_modes() -> None:
    """The joiner announces `:secret@` without a certificate: no name, just the secret,
    whether mariadbd split it into the environment or it came in --address."""
    token = "rsync_sst_" + "ab" * 16
    base = ["--role", "donor", "--datadir", "/d", "--address"]
    r = parse_request(
        "wsrep_sst_py_rsync",
        [*base, f"127.0.0.2:4444/{token}"],
        {"WSREP_SST_OPT_REMOTE_AUTH": ":" + "5e" * 16},
    )
    assert (r.remote_auth.cn, r.remote_auth.secret) == ("", "5e" * 16)
    assert r.address is not None and r.address.module == token
    r = parse_request("wsrep_sst_py_rsync", [*base, f":{'5e' * 16}@127.0.0.2:4444/{token}"], {})
    assert (r.remote_auth.cn, r.remote_auth.secret) == ("", "5e" * 16)
    assert r.address is not None and (r.address.host, r.address.module) == ("127.0.0.2", token)


def test_mysqldump_style_line_defaults_to_donor() -> None:
    r = parse_request(
        "wsrep_sst_mysqldump",
        ["--address", "10.0.0.2:3306", "--port", "3306", "--datadir", "/d"],
        {},
    )
    assert r.role == "donor" and r.port == 3306


def test_port_must_match_address() -> None:
    with pytest.raises(ConfigError) as e:
        parse_request("x", ["--address", "h:3306", "--port", "3307", "--datadir", "/d"], {})
    assert e.value.code == 2


def test_datadir_required_exit_2() -> None:
    with pytest.raises(ConfigError) as e:
        parse_request("x", ["--role", "joiner"], {})
    assert e.value.code == 2 and "--datadir" in e.value.message


def test_datadir_from_mysqld_args_unless_explicit() -> None:
    r = parse_request("x", ["--mysqld-args", "-h", "/from/h"], {})
    assert r.datadir == "/from/h"
    r = parse_request("x", ["--datadir", "/explicit", "--mysqld-args", "--datadir=/m"], {})
    assert r.datadir == "/explicit"


def test_bad_role() -> None:
    with pytest.raises(ConfigError) as e:
        parse_request("x", ["--role", "both", "--datadir", "/d"], {})
    assert e.value.code == 22


def test_log_bin_without_value_means_default_name() -> None:
    r = parse_request("x", ["--datadir", "/d", "--mysqld-args", "--log-bin"], {})
    assert r.paths.log_bin == ""
    r = parse_request("x", ["--datadir", "/d"], {})
    assert r.paths.log_bin is None


def test_null_auth_is_empty() -> None:
    assert Credentials.parse("(null)") == Credentials()
    assert Credentials.parse("u") == Credentials("u", None)


def test_method_from_argv0() -> None:
    assert method_from_argv0("/usr/local/bin/wsrep_sst_py_mariabackup") == "py_mariabackup"
    assert method_from_argv0("wsrep_sst_rsync_wan") == "rsync_wan"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(max_size=30), max_size=12),
    st.dictionaries(
        st.sampled_from(
            ["WSREP_SST_OPT_AUTH", "WSREP_SST_OPT_REMOTE_AUTH", "INNODB_DATA_HOME_DIR"]
        ),
        st.text(max_size=20),
    ),
)
def test_parser_never_crashes(args: list[str], env: dict[str, str]) -> None:
    try:
        r = parse_request("wsrep_sst_py_rsync", args, env)
    except SSTError as exc:
        assert exc.code in (2, 22) and exc.message
    else:
        assert r.role in ("joiner", "donor") and r.datadir


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_address_parser_never_crashes(text: str) -> None:
    try:
        a = Address.parse(text)
    except ConfigError as exc:
        assert exc.message
    else:
        assert a.host and 0 < a.port < 65536


@pytest.mark.parametrize("bad", [":\n0", "host name:4444", "h%eth0:1", "h;rm:1"])
def test_address_bad_characters(bad: str) -> None:
    with pytest.raises(ConfigError, match="bad character"):
        Address.parse(bad)
