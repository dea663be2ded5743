"""The stdout protocol lines."""

from __future__ import annotations

import os

import pytest

from sst.errors import ParentGone, TransferError
from sst.protocol import State, Stdout, donor_stdout

UUID = "8d1b2c3e-0000-11ee-8000-000000000001"


def test_state_parse() -> None:
    assert str(State.parse(f"{UUID}:42 0")) == f"{UUID}:42 0"
    assert State.parse(f"{UUID}:-1").domain_id is None
    assert State.parse(f"{UUID.upper()}:7 3").uuid == UUID
    for bad in ("", "nonsense", f"{UUID}:x", f"{UUID}"):
        with pytest.raises(TransferError):
            State.parse(bad)


def read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


def test_lines_written_exactly() -> None:
    r, w = os.pipe()
    out = Stdout(w)
    out.ready("127.0.0.2:4444/rsync_sst")
    out.total(10)
    out.complete(5)
    out.coordinates(f"{UUID}:1 0")
    assert read_all(r) == (
        b"ready 127.0.0.2:4444/rsync_sst\ntotal 10\ncomplete 5\n" + f"{UUID}:1 0\n".encode()
    )
    d = donor_stdout(w)
    d.flush_tables()
    d.resume()
    d.done(f"{UUID}:1 0")
    assert read_all(r) == f"flush tables\ncontinue\ndone {UUID}:1 0\n".encode()
    with pytest.raises(TransferError, match="longer than 127"):
        d.done("x" * 130)
    os.close(r)
    with pytest.raises(ParentGone):
        d.resume()
    os.close(w)
