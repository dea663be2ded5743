"""Hostile credentials in real joins: a password with both quotes, a space, `;`, `$( )`,
backquotes, a backslash, a colon and non-ASCII letters. Every layer (mariadbd's environment,
our parser, the 0600 option files, the tools) must carry it unchanged, and the secrets
watcher of join() must not find it anywhere another user could read it.

mariadbd 10.11.19 itself refuses a wsrep_sst_auth whose user name holds anything but
letters, digits, `-` and `_` (ERROR 1231; docs/findings.md), so the user name here is the
oddest one it accepts; odd user names reach our parser only from option files, which the
property tests cover."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from testsupport import lab as labmod
from testsupport.cluster import join, ours_under_stock_names
from testsupport.lab import CertPaths, Lab, Node, sql_string

USER = "sst-u_1"
PASSWORD = "p'a\"s s;w$(id)`id`\\d é€:ñ"


@contextmanager
def hostile_auth(node: Node) -> Iterator[None]:
    """The hostile account (replicated to every member) as node's wsrep_sst_auth."""
    quoted = sql_string(USER)
    node.sql(
        f"CREATE USER IF NOT EXISTS {quoted}@'localhost' IDENTIFIED BY {sql_string(PASSWORD)};"
        f"GRANT ALL PRIVILEGES ON *.* TO {quoted}@'localhost' WITH GRANT OPTION;"
        f"SET GLOBAL wsrep_sst_auth = {sql_string(USER + ':' + PASSWORD)}"
    )
    try:
        yield
    finally:
        node.sql(
            f"SET GLOBAL wsrep_sst_auth = {sql_string('sst:' + labmod.SST_PASSWORD)};"
            f"DROP USER IF EXISTS {quoted}@'localhost'"
        )


def test_hostile_credentials_mariabackup(lab: Lab, donor: Node) -> None:
    """mariadb-backup on the donor logs in with them (a mangled password cannot)."""
    joiner = lab.add_node(sst_method="py_mariabackup")
    donor.sst_options = joiner.sst_options = {}
    with hostile_auth(donor):
        join(lab, donor, joiner)


def test_hostile_credentials_mysqldump(lab: Lab, donor: Node) -> None:
    """The donor's dump logs in to its own server and to the joiner's with them."""
    with ours_under_stock_names(lab) as src:
        joiner = lab.add_node(sst_method="mysqldump")
        joiner.mysqld_options["wsrep_sst_donor"] = src.galera_name
        lab.create_sst_user_offline(joiner, USER, PASSWORD)
        src.sst_options = {}
        with hostile_auth(src):
            join(lab, src, joiner)


def free_ipv6_port() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("method", ["py_rsync", "py_mariabackup"])
def test_sst_over_ipv6(lab: Lab, donor: Node, certs: CertPaths, method: str) -> None:
    """The joiner receives on [::1]: the bracketed address travels through mariadbd, our
    parser and stunnel or socat, under VERIFY_CA (Galera itself stays on IPv4)."""
    joiner = lab.add_node(sst_method=method)
    port = free_ipv6_port()
    joiner.mysqld_options["wsrep_sst_receive_address"] = f"[::1]:{port}"
    joiner.sst_options = labmod.tls_options(certs, joiner.name, "VERIFY_CA")
    donor.sst_options = labmod.tls_options(certs, donor.name, "VERIFY_CA")
    try:
        join(lab, donor, joiner)
        assert f"--address '[::1]:{port}" in joiner.log_text()
        assert f"Listening on [::1]:{port}" in joiner.log_text()
    finally:
        donor.sst_options = {}
