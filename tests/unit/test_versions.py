"""The series check of a mariabackup SST: a joiner refuses a donor of a newer series."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sst import versions
from sst.errors import SSTError


def fake_backup(tmp_path: Path, says: str) -> str:
    """A mariadb-backup whose --version prints says (on stderr, as 10.11's does)."""
    path = tmp_path / f"mariadb-backup-{abs(hash(says))}"
    path.write_text(f"#!/bin/sh\necho '{says}' >&2\n")
    path.chmod(0o755)
    return str(path)


V10 = "mariadb-backup based on MariaDB server 10.11.14-MariaDB debian-linux-gnu (x86_64)"
V11 = "mariadb-backup Ver 11.8.3-MariaDB-0+deb13u1 from Debian for debian-linux-gnu on x86_64"


def test_versions_read_from_both_formats(tmp_path: Path) -> None:
    assert versions.backup_version(fake_backup(tmp_path, V10)) == "10.11.14"
    assert versions.backup_version(fake_backup(tmp_path, V11)) == "11.8.3"
    assert versions.backup_version(fake_backup(tmp_path, "something else")) == ""


def stage1(tmp_path: Path, donor: str) -> str:
    d = tmp_path / "stage1"
    d.mkdir()
    assert versions.write_donor_version(str(d), fake_backup(tmp_path, donor)) == [
        versions.DONOR_VERSION_FILE
    ]
    return str(d)


def test_an_older_joiner_refuses_a_newer_donor_naming_both(tmp_path: Path) -> None:
    with pytest.raises(SSTError) as exc:
        versions.check_donor_version(stage1(tmp_path, V11), fake_backup(tmp_path, V10))
    assert exc.value.code == errno.EPROTONOSUPPORT
    assert "MariaDB 11.8.3" in exc.value.message
    assert "mariadb-backup is 10.11.14" in exc.value.message
    assert "\n" not in exc.value.message


@pytest.mark.parametrize(("donor", "joiner"), [(V10, V11), (V10, V10), (V11, V11)])
def test_same_or_newer_joiner_passes(tmp_path: Path, donor: str, joiner: str) -> None:
    versions.check_donor_version(stage1(tmp_path, donor), fake_backup(tmp_path, joiner))


def test_a_donor_that_does_not_say_passes(tmp_path: Path) -> None:
    versions.check_donor_version(str(tmp_path), fake_backup(tmp_path, V10))
    assert versions.write_donor_version(str(tmp_path), fake_backup(tmp_path, "?")) == []
    assert not os.path.exists(tmp_path / versions.DONOR_VERSION_FILE)
    (tmp_path / versions.DONOR_VERSION_FILE).write_text("not a version\n")
    versions.check_donor_version(str(tmp_path), fake_backup(tmp_path, V10))


def test_a_stock_mariadb_11_donor_is_refused_by_a_10_11_joiner(tmp_path: Path) -> None:
    (tmp_path / versions.NEW_INFO_FILE).write_text("uuid:5 0\n")
    with pytest.raises(SSTError) as exc:
        versions.check_donor_version(str(tmp_path), fake_backup(tmp_path, V10))
    assert exc.value.code == errno.EPROTONOSUPPORT
    assert "MariaDB 11" in exc.value.message and "10.11.14" in exc.value.message
    versions.check_donor_version(str(tmp_path), fake_backup(tmp_path, V11))  # 11.8: fine


def test_mismatches_of_the_server_and_its_programs() -> None:
    """A mariadb-backup of another series than mariadbd fails, another release of the same
    series warns, a client of another series warns; what matches, or says nothing, or is not
    a MariaDB program, is not reported."""
    m = versions.mismatches
    assert m({"mariadbd": "10.11.19", "mariadb-backup": "10.11.19", "rsync": "3.2.7"}) == []
    [(level, text)] = m({"mariadbd": "10.11.19", "mariadb-backup": "11.8.9"})
    assert level == "fail" and "mariadb-backup 11.8.9 and mariadbd 10.11.19" in text
    assert "different series" in text
    [(level, text)] = m({"mariadbd": "11.8.9", "mariadb-backup": "10.11.19"})
    assert level == "fail" and "mariadb-backup 10.11.19 and mariadbd 11.8.9" in text
    [(level, text)] = m({"mariadbd": "10.11.19", "mariadb-backup": "10.11.6"})
    assert level == "warn" and "different releases" in text
    [(level, text)] = m({"mariadbd": "11.8.9", "mariadb-dump": "10.11.19", "mariadb": "11.8.9"})
    assert level == "warn" and text.startswith("mariadb-dump 10.11.19 and mariadbd 11.8.9")
    assert m({"mariadbd": "11.8.9", "mariadb-dump": "11.8.3"}) == []  # clients: series only
    assert m({"mariadbd": "", "mariadb-backup": "11.8.9"}) == []  # no server version: no pair
    assert m({"mariadbd": "10.11.19", "mariadb-backup": ""}) == []
    assert m({"mariadb-backup": "11.8.9"}) == []


@pytest.mark.parametrize(
    ("name", "says", "version"),
    [
        (
            "mariadbd",
            "mariadbd  Ver 11.8.9-MariaDB-0+deb13u1 for debian-linux-gnu on x86_64",
            "11.8.9",
        ),
        (
            "mariadb-dump",
            "mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu",
            "10.11.19",
        ),
        ("mariadb-backup", V10, "10.11.14"),
        ("rsync", "rsync  version 3.2.7  protocol version 31", "3.2.7"),
        ("socat", "socat by Gerhard Rieger\nsocat version 1.8.0.3 on 2025", "1.8.0.3"),
        (
            "stunnel4",
            "Initializing inetd mode configuration\nstunnel 5.74 on x86_64-pc-linux-gnu",
            "5.74",
        ),
        ("rsync", "something else", ""),
        ("mbstream", "mbstream Ver 1.0", ""),  # not asked: no known way
    ],
)
def test_tool_version(tmp_path: Path, name: str, says: str, version: str) -> None:
    assert versions.tool_version(name, fake_backup(tmp_path, says)) == version
    assert versions.asks(name) == (name != "mbstream")
