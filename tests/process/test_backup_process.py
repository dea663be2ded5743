"""The backup method's option errors, reported before anything is asked of mariadbd."""

from __future__ import annotations

from pathlib import Path

import pytest

from testsupport.process import error_lines, start_script, write_cnf


@pytest.mark.parametrize("value", ["-1", "soon", "1e999x"])
def test_backup_refuses_a_bad_flush_timeout(node_dir: Path, value: str) -> None:
    cnf = write_cnf(node_dir, {"sst-flush-timeout": value})
    s = start_script(
        "py_backup",
        [
            "--role",
            "donor",
            "--address",
            "127.0.0.1:1",
            "--datadir",
            str(node_dir / "data"),
            "--defaults-file",
            cnf,
            "--gtid",
            "8d1b2c3e-0000-11ee-8000-000000000001:5",
            "--gtid-domain-id",
            "0",
        ],
    )
    assert s.readline() == ""  # not even `flush tables`: mariadbd is asked for nothing
    assert s.wait() == 22
    errors = error_lines(s.stderr())
    assert len(errors) == 1 and f"sst-flush-timeout={value!r}" in errors[0], errors
