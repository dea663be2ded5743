"""The lines mariadbd reads on the script's stdout (docs/contract.md section 2).

stdout carries nothing else: every tool's output goes to stderr or a log file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from sst import stock
from sst.errors import ParentGone, TransferError

DONOR_LINE_MAX = 127  # mariadbd's donor buffer is 128 bytes including the newline
JOINER_LINE_MAX = 511

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_STATE_RE = re.compile(rf"^({_UUID}):(-?\d+)(?:\s+(\d+))?(?:,.*)?$")


@dataclass(frozen=True)
class State:
    """A Galera position: `uuid:seqno` and the optional GTID domain id."""

    uuid: str
    seqno: int
    domain_id: int | None = None

    @classmethod
    def parse(cls, text: str) -> State:
        """Parse `uuid:seqno[ domain]`; raises TransferError on anything else."""
        m = _STATE_RE.match(text.strip())
        if not m:
            raise TransferError(f"malformed Galera position {text.strip()[:80]!r}")
        domain = int(m.group(3)) if m.group(3) is not None else None
        return cls(m.group(1).lower(), int(m.group(2)), domain)

    def __str__(self) -> str:
        base = f"{self.uuid}:{self.seqno}"
        return base if self.domain_id is None else f"{base} {self.domain_id}"


class Stdout:
    """Writes protocol lines to the file descriptor mariadbd reads (fd 1 by default)."""

    def __init__(
        self,
        fd: int = 1,
        limit: int = JOINER_LINE_MAX,
        on_result: Callable[[], None] | None = None,
    ) -> None:
        self._fd = fd
        self._limit = limit
        # Called once the run's result line is out (the joiner's coordinates, the donor's
        # `done`): mariadbd has what it asked for, and a signal from then on (a server
        # shutting down) cuts nothing short that matters (sst/cli.py).
        self._on_result = on_result

    def _line(self, text: str) -> None:
        data = (text + "\n").encode()
        if len(data) - 1 > self._limit:
            raise TransferError(f"protocol line longer than {self._limit} bytes: {text[:40]}...")
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except BrokenPipeError as exc:
            raise ParentGone("mariadbd closed the SST pipe (stdout)") from exc

    # joiner
    def ready(self, address: str) -> None:
        """`ready <address>`: must be the first line the joiner prints."""
        self._line(f"ready {address}")

    def coordinates(self, state: str) -> None:
        """The joiner's last line: `uuid:seqno[ domain]`."""
        stock.joiner_delay()  # MTR_SST_JOINER_DELAY, test-only
        self._line(state)
        self._result()

    # donor
    def flush_tables(self) -> None:
        """Ask mariadbd for FLUSH TABLES WITH READ LOCK."""
        self._line("flush tables")

    def resume(self) -> None:
        """`continue`: let mariadbd release the lock."""
        self._line("continue")

    def done(self, state: str) -> None:
        """`done <state>`: commits the SST to Galera; only after the joiner has the data."""
        self._line(f"done {state}")
        self._result()

    def _result(self) -> None:
        if self._on_result is not None:
            self._on_result()

    # both
    def total(self, nbytes: int) -> None:
        """Progress: start of a stage of estimated size nbytes."""
        self._line(f"total {nbytes}")

    def complete(self, nbytes: int) -> None:
        """Progress: bytes done so far in the current stage."""
        self._line(f"complete {nbytes}")


def donor_stdout(fd: int = 1, on_result: Callable[[], None] | None = None) -> Stdout:
    """The donor's writer, with mariadbd's 128-byte donor line limit."""
    return Stdout(fd, DONOR_LINE_MAX, on_result)
