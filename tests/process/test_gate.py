"""sst/gate.py on its own: the stream after a right preamble reaches the next program
byte for byte; a wrong, short or missing preamble never starts it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sst import gate

SECRET = "0123456789abcdef0123456789abcdef"


def run_gate(tmp: Path, stream: bytes, stage: int = 1) -> tuple[int, bytes, str]:
    """Run the gate in front of `cp /dev/stdin <out>`; returns (status, out, stderr)."""
    out = tmp / "out"
    r, w = os.pipe()
    os.write(w, gate.preamble(stage, SECRET))
    os.close(w)
    try:
        res = subprocess.run(
            gate.argv(r, 2, ("sh", "-c", f"cat > {out}")),
            input=stream,
            capture_output=True,
            pass_fds=(r,),
            timeout=30,
            check=False,
        )
    finally:
        os.close(r)
    data = out.read_bytes() if out.exists() else b""
    return res.returncode, data, res.stderr.decode()


def test_right_preamble_passes_the_rest_untouched(tmp_path: Path) -> None:
    body = os.urandom(300000)
    rc, data, _ = run_gate(tmp_path, gate.preamble(1, SECRET) + body)
    assert rc == 0
    assert data == body


@pytest.mark.parametrize(
    ("stream", "why"),
    [
        (gate.preamble(1, "f" * 32) + b"XBSTCK01 mallory", "did not start with this joiner's"),
        (gate.preamble(2, SECRET) + b"XBSTCK01", "did not start with this joiner's"),
        (b"XBSTCK01" + os.urandom(1000), "did not start with this joiner's"),
        (gate.preamble(1, SECRET)[:20], "before the secret was complete"),
        (b"", "ended before it sent anything"),
    ],
)
def test_anything_else_never_starts_the_program(tmp_path: Path, stream: bytes, why: str) -> None:
    rc, data, err = run_gate(tmp_path, stream)
    assert rc == gate.REFUSED
    assert not (tmp_path / "out").exists() and data == b""
    assert err.startswith("refused: ") and why in err
