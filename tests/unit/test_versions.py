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
