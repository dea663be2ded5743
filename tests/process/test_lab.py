"""The lab's helpers that tests rely on to stay within their bounds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testsupport import lab


@pytest.mark.parametrize(("start", "stop", "count"), [(61000, 64000, 1), (20000, 60000, 2550)])
def test_free_port_block_stays_in_range(start: int, stop: int, count: int) -> None:
    base = lab.free_port_block("127.0.0.1", count, start=start, stop=stop)
    assert start <= base and base + count <= stop


@pytest.mark.parametrize(
    "value",
    [
        "/a b/c",
        "/x y/a#b;c",
        "/a'b\"c\\d $e`f;g&h,i:j %k",
        " leading and trailing\t",
        "sst:sst-Secret'pw",
    ],
)
def test_cnf_value_reads_back_unchanged(tmp_path: Path, value: str) -> None:
    """What the lab writes into a node's option file is what my_print_defaults (the server's
    own reader) hands to the scripts."""
    cnf = tmp_path / "my.cnf"
    cnf.write_text(f"[sst]\nk={lab.cnf_value(value)}\n", encoding="utf-8")
    res = subprocess.run(
        ["my_print_defaults", f"--defaults-file={cnf}", "sst"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout == f"--k={value}\n"
