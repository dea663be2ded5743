"""Property-based tests over the parsers that take mariadbd's argv, environment, addresses,
option values and Galera positions: whatever the input, either the right value or a precise
SSTError, never a traceback (hostile and odd input, issue 6)."""

from __future__ import annotations

import ipaddress
import re
import string
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sst import config
from sst.errors import SSTError
from sst.protocol import State
from sst.request import Address, Credentials, parse_request

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Everything a hostile or careless operator could type, including what shells and option
# files treat specially, control characters and non-ASCII.
NASTY = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80
) | st.sampled_from(
    ["'", '"', " ", ";", "$(id)", "`id`", "\\", "\n", "--role", "=", ":", "@", "[", "]", "é€"]
)
HOSTNAME = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}\Z")


@SETTINGS
@given(NASTY)
def test_address_parse_never_crashes(text: str) -> None:
    try:
        a = Address.parse(text)
    except SSTError as exc:
        assert exc.message and "\n" not in exc.message.replace(repr(text), "")
        return
    assert a.host and 0 < a.port < 65536
    assert not set(a.host) & set("'\" ;$`\\\n@")  # never a shell or option metacharacter


@SETTINGS
@given(
    st.one_of(
        HOSTNAME,
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    ),
    st.integers(1, 65535),
    st.sampled_from(
        ["", "/xtrabackup_sst//1", "/rsync_sst", "/xtrabackup_sst/x/1/galera-sst-ack/1"]
    ),
)
def test_address_round_trip(host: str, port: int, path: str) -> None:
    a = Address.parse(f"{host}:{port}{path}")
    assert a.hostport == f"{host}:{port}" or (
        a.is_ipv6 and ipaddress.ip_address(a.host) == ipaddress.ip_address(host.strip("[]"))
    )
    assert a.port == port
    assert a.path == path[1:]


@SETTINGS
@given(st.text(max_size=40).filter(lambda u: ":" not in u and u not in ("", "(null)")), NASTY)
def test_credentials_split_at_the_first_colon(user: str, password: str) -> None:
    c = Credentials.parse(f"{user}:{password}")
    assert (c.user, c.password) == (user, password)
    # repr (what a traceback or a debug line would show) never holds the password
    assert repr(c) == f"Credentials(user={user!r}, password={'***' if password else None})"


@SETTINGS
@given(
    st.lists(NASTY, max_size=12),
    st.dictionaries(
        st.sampled_from(
            [
                "WSREP_SST_OPT_AUTH",
                "WSREP_SST_OPT_REMOTE_AUTH",
                "WSREP_SST_OPT_USER",
                "WSREP_SST_OPT_PSWD",
                "INNODB_DATA_HOME_DIR",
            ]
        ),
        NASTY,
        max_size=5,
    ),
)
def test_parse_request_never_crashes(args: list[str], env: dict[str, str]) -> None:
    try:
        req = parse_request("/usr/bin/wsrep_sst_py_rsync", args, env)
    except SSTError as exc:
        assert exc.code in (2, 22)
        return
    assert req.role in ("joiner", "donor") and req.datadir


@SETTINGS
@given(
    st.sampled_from(["joiner", "donor"]),
    st.text(
        alphabet=string.ascii_letters + string.digits + " '\"$;()\\é_-./", min_size=1, max_size=60
    ).filter(lambda d: d.strip("/")),
    NASTY,
    st.lists(st.text(alphabet=string.printable, max_size=4000), max_size=40),
)
def test_parse_request_keeps_odd_values_intact(
    role: str, datadir: str, password: str, mysqld_args: list[str]
) -> None:
    """Datadirs with spaces and quotes, hostile passwords and very long --mysqld-args
    arrive unchanged (the password only in the Credentials, never in the mysqld args)."""
    args = [
        "--role",
        role,
        "--address",
        "127.0.0.1:4444/rsync_sst",
        "--datadir",
        datadir,
        "--mysqld-args",
        *mysqld_args,
    ]
    req = parse_request("wsrep_sst_py_rsync", args, {"WSREP_SST_OPT_AUTH": f"sst:{password}"})
    assert req.datadir == (datadir.rstrip("/") or "/")
    assert req.credentials.password == password
    assert req.address is not None and req.address.port == 4444


@SETTINGS
@given(NASTY)
def test_rate_never_crashes(value: str) -> None:
    errors: list[str] = []
    n = config.rate_bytes("rlimit", value, errors)
    assert (n > 0 and errors == []) or (n == 0 and (errors or not value))


@SETTINGS
@given(NASTY)
def test_state_parse_never_crashes(text: str) -> None:
    try:
        s = State.parse(text)
    except SSTError as exc:
        assert exc.code == 32
        return
    assert State.parse(str(s)) == s


@SETTINGS
@given(st.uuids().map(str), st.integers(-1, 2**63 - 1), st.none() | st.integers(0, 2**32 - 1))
def test_state_round_trip(uuid: str, seqno: int, domain: int | None) -> None:
    text = f"{uuid}:{seqno}" + (f" {domain}" if domain is not None else "")
    s = State.parse(text)
    assert (s.uuid, s.seqno, s.domain_id) == (uuid, seqno, domain)


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"\A[a-z][a-z_-]{0,20}\Z"),
            # my_print_defaults prints one option per line: a value never holds a line break.
            st.none()
            | NASTY.filter(
                lambda v: not any(c in v for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
            ),
        ),
        max_size=10,
    )
)
def test_my_print_defaults_output_parses(pairs: list[tuple[str, str | None]]) -> None:
    """Every option printed comes back under its normalized name with its last value."""
    lines = [f"--{k}" if v is None else f"--{k}={v}" for k, v in pairs]
    expected: dict[str, str | None] = {}
    for k, v in pairs:
        expected[k.replace("_", "-")] = None if v is None else v.strip()
    assert config.parse_output("\n".join(lines)) == expected


def _find_matches(root: str, pattern: str) -> set[str] | None:
    """The depth-1 entries under root that find(1) -regex (emacs syntax) selects; None when
    find rejects the pattern."""
    res = subprocess.run(
        ["find", root, "-mindepth", "1", "-maxdepth", "1", "-regex", pattern],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if res.returncode != 0:
        return None
    return set(res.stdout.splitlines())


CPAT_NAMES = (
    "ibdata1",
    "ib_logfile0",
    "a(b)",
    "x|y",
    "aa",
    "mysql",
    "grastate.dat",
    "b{2}",
    "a{2}",
    "[",
)


@pytest.mark.parametrize(
    "pattern",
    [
        ".*",
        ".*/ib.*",
        ".*/\\(ibdata1\\|grastate\\.dat\\)$",
        ".*/a(b)",
        ".*/x|y",
        ".*/a\\{2\\}",
        ".*/b{2}",
        "^.*/my.*$",
        "[",
        "\\(",
    ],
)
def test_cpat_translation_selects_what_find_selects(pattern: str, tmp_path: Path) -> None:
    """The stock script hands cpat to find -regex: our translation keeps exactly the entries
    find would keep, and a pattern find rejects is a configuration error, not a crash."""
    for name in CPAT_NAMES:
        (tmp_path / name).touch()
    expected = _find_matches(str(tmp_path), pattern)
    translated = config.emacs_regex_to_python(pattern)
    try:
        rx = re.compile(translated)
    except re.error:
        assert expected is None, f"find accepts {pattern!r} but the translation does not compile"
        return
    assert expected is not None, f"find rejects {pattern!r} but the translation compiles"
    got = {str(tmp_path / n) for n in CPAT_NAMES if rx.fullmatch(str(tmp_path / n))}
    assert got == expected
