"""The secrets watcher's file scan (testsupport/leaks.py) finds what it must, and only that:
a test that cannot see a leak would hold no guarantee."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from testsupport.leaks import LeakWatch

SECRET = "s3cret-for-the-scan"


@pytest.fixture
def tree() -> Iterator[str]:
    """A directory other users can enter (pytest's own tmp_path is 0700)."""
    d = tempfile.mkdtemp(prefix="galera-sst-leaks.")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def write(path: str, text: str, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)


def test_world_readable_secret_is_a_hit(tree: str) -> None:
    write(os.path.join(tree, "sub", "leak.log"), f"password={SECRET}\n", 0o644)
    os.chmod(os.path.join(tree, "sub"), 0o755)
    w = LeakWatch(SECRET)
    assert w.scan_files(tree) == 1
    assert w.hits == [f"{os.path.join(tree, 'sub', 'leak.log')} (world-readable) holds a secret"]


def test_private_files_and_closed_directories_are_not_hits(tree: str) -> None:
    write(os.path.join(tree, "private.cnf"), f"password={SECRET}\n", 0o600)
    write(os.path.join(tree, "closed", "open.log"), f"{SECRET}\n", 0o644)
    os.chmod(os.path.join(tree, "closed"), 0o700)  # nobody else gets in
    write(os.path.join(tree, "skipped.cnf"), f"{SECRET}\n", 0o644)
    write(os.path.join(tree, "clean.log"), "nothing to see\n", 0o644)
    w = LeakWatch(SECRET)
    w.scan_files(tree, skip=(os.path.join(tree, "skipped.cnf"),))
    assert w.hits == []
