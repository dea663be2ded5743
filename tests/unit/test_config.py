"""Option files: normalisation, precedence, TLS resolution, all errors at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sst import config
from sst.config import MYSQLD, Options, credentials, parse_output, resolve_tls, rsync_settings
from sst.errors import ConfigError
from sst.request import Credentials, Request, parse_request


def test_parse_output_normalises_names_and_last_wins() -> None:
    out = parse_output(
        "--loose-ssl_mode=verify_ca\n--ssl-mode=REQUIRED\n--log-bin\n"
        "--tmpdir = /x y \nnot an option\n--a=b=c\n"
    )
    assert out == {"ssl-mode": "REQUIRED", "log-bin": None, "tmpdir": "/x y", "a": "b=c"}


def opts(mysqld: dict[str, str | None], sst: dict[str, str | None]) -> Options:
    return Options({MYSQLD: mysqld, "sst": sst})


def test_first_group_with_value_wins() -> None:
    o = opts({"ssl-cert": "/m.pem"}, {"ssl-cert": "/s.pem", "ssl-key": "/s.key"})
    assert o.get((MYSQLD, "sst"), "ssl-cert") == "/m.pem"
    assert o.get((MYSQLD, "sst"), "ssl-key") == "/s.key"
    assert o.get((MYSQLD, "sst"), "missing", "d") == "d"


def test_legacy_tls_options_win_and_role_overrides() -> None:
    o = opts(
        {"ssl-cert": "/m.pem", "ssl-key": "/m.key"},
        {"tcert": "/t.pem", "tkey": "/t.key", "ssl-client-cert": "/client.pem"},
    )
    joiner = resolve_tls(o, (MYSQLD, "sst"), "joiner")
    donor = resolve_tls(o, (MYSQLD, "sst"), "donor")
    assert (joiner.cert, joiner.key) == ("/t.pem", "/t.key")
    assert (donor.cert, donor.key) == ("/client.pem", "/t.key")


def test_ca_directory_becomes_capath(tmp_path: Path) -> None:
    d = str(tmp_path)
    o = opts({}, {"ssl-ca": d})
    t = resolve_tls(o, (MYSQLD, "sst"), "joiner")
    assert (t.ca, t.capath) == ("", d)
    assert os.path.isdir(t.capath)


def req(role: str = "joiner") -> Request:
    return parse_request(
        "wsrep_sst_py_rsync", ["--role", role, "--datadir", "/d", "--address", "h"], {}
    )


def test_ssl_mode_derived_from_files() -> None:
    r = req()
    assert rsync_settings(r, opts({}, {})).ssl_mode == "DISABLED"
    s = rsync_settings(r, opts({}, {"ssl-cert": "c", "ssl-key": "k"}))
    assert s.ssl_mode == "REQUIRED"
    s = rsync_settings(
        r, opts({}, {"ssl-cert": "c", "ssl-key": "k", "ssl-ca": "/nonexistent-ca.pem"})
    )
    assert s.ssl_mode == "VERIFY_CA"


def test_every_error_reported_at_once() -> None:
    o = opts(
        {}, {"ssl-mode": "VERIFY_IDENTITY", "sst-max-binlogs": "many", "sst-idle-timeout": "-1"}
    )
    with pytest.raises(ConfigError) as e:
        rsync_settings(req(), o)
    msg = e.value.message
    assert e.value.code == 22
    for part in ("needs a CA", "needs ssl-cert and ssl-key", "sst-max-binlogs", "sst-idle-timeout"):
        assert part in msg


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("1", True), ("ON", True), ("yes", True), ("0", False), ("off", False)],
)
def test_rsync_precopy_switch(value: str | None, expected: bool) -> None:
    sst: dict[str, str | None] = {} if value is None else {"rsync-precopy": value}
    assert rsync_settings(req("donor"), opts({}, sst)).precopy is expected


def test_rsync_precopy_refuses_anything_but_a_switch() -> None:
    with pytest.raises(ConfigError, match=r"rsync-precopy='2' is not one of 1/0, on/off"):
        rsync_settings(req("donor"), opts({}, {"rsync-precopy": "2"}))


def test_unknown_ssl_mode() -> None:
    with pytest.raises(ConfigError, match="not one of"):
        rsync_settings(req(), opts({}, {"ssl-mode": "preferred"}))


def test_credentials_fall_back_to_sst_group() -> None:
    r = req()
    assert credentials(r, opts({}, {"wsrep-sst-auth": "u:p:w"})) == Credentials("u", "p:w")
    r2 = parse_request("x", ["--datadir", "/d"], {"WSREP_SST_OPT_AUTH": "env:pw"})
    assert credentials(r2, opts({}, {"wsrep-sst-auth": "u:p"})) == Credentials("env", "pw")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", 0), ("100", 100), ("15m", 15 * 2**20), ("1.5k", 1536), ("2G", 2 * 2**30)],
)
def test_rate_bytes(value: str, expected: int) -> None:
    errors: list[str] = []
    assert config.rate_bytes("rlimit", value, errors) == expected
    assert errors == []


@pytest.mark.parametrize("value", ["fast", "-5m", "0", "10 m", "5x", "1e9"])
def test_rate_bytes_refuses(value: str) -> None:
    errors: list[str] = []
    config.rate_bytes("rlimit", value, errors)
    assert errors == [f"rlimit={value!r} is not a rate like 500k, 20m or 1g (bytes per second)"]
