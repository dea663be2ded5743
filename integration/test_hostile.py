"""Hostile credentials in real joins: a password with both quotes, a space, `;`, `$( )`,
backquotes, a backslash, a colon and non-ASCII letters. Every layer (mariadbd's environment,
our parser, the 0600 option files, the tools) must carry it unchanged, and the secrets
watcher of join() must not find it anywhere another user could read it.

mariadbd 10.11.19 itself refuses a wsrep_sst_auth whose user name holds anything but
letters, digits, `-` and `_` (ERROR 1231; docs/findings.md), so the user name here is the
oddest one it accepts; odd user names reach our parser only from option files, which the
property tests cover."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from integration.test_fault_matrix import ours_under_stock_names
from integration.test_rsync_cluster import join
from sst import lab as labmod
from sst.lab import Lab, Node, sql_string

pytestmark = pytest.mark.cluster

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
