"""The lab's helpers that tests rely on to stay within their bounds."""

from __future__ import annotations

import pytest

from sst import lab


@pytest.mark.parametrize(("start", "stop", "count"), [(61000, 64000, 1), (20000, 60000, 2550)])
def test_free_port_block_stays_in_range(start: int, stop: int, count: int) -> None:
    base = lab.free_port_block("127.0.0.1", count, start=start, stop=stop)
    assert start <= base and base + count <= stop
