"""The one joiner skeleton (docs/contract.md 2 and 3): the order every joiner follows, with
the transport that moves the data as its parameter. A method's joiner is one class that
fills in the steps (`JoinerTransport`) and a `joiner(run, s)` that hands it to `run_joiner`.

The order: repair an interrupted swap and clear stale listener pid files (`joiner_start`),
the transport's pre-flight (tools, TLS checks, the staging decision where it can be made
before any data arrives), the staging policy's `sst_in_progress`, listen, announce
`ready CN:secret@where` (the secret is made here, the CN by `announced_cn`), receive (the
transport's loop, under its deadlines), verify (the secret, the transport's own checks, the
state line), then either keep the datadir (IST) or, for a live server only, install the
received data; the coordinates last. Whatever happened, the transport cleans up and the
staging policy ends.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sst import log, resume, staging, stock
from sst.methods.common import Run, announce, announced_cn, check_secret, joiner_start
from sst.protocol import State

if TYPE_CHECKING:  # sst.tls pulls in cryptography
    from sst.tls import CheckedTLS


@dataclass(frozen=True)
class Received:
    """What a transport's receive step delivers to the skeleton's verification."""

    state: str  # the donor's state line: the coordinates printed to mariadbd
    tags: dict[str, str] = field(default_factory=dict)  # the completion file's (the secret)
    bypass: bool = False  # the donor sent an IST: the datadir stays as it is
    shown: str = ""  # the coordinates as the log line shows them ('' = the parsed position)


class JoinerTransport(Protocol):
    """The steps a method fills in; each runs inside the run's supervision and raises
    SSTError subclasses. The transport keeps what one step hands the next."""

    @property
    def tls_mode(self) -> str:
        """The ssl-mode the announced CN follows (announced_cn)."""

    def preflight(self, run: Run) -> CheckedTLS | None:
        """Before anything listens: find the tools, check the certificates (returned; None
        without TLS), make the staging decision if it can be made now."""

    def listen(self, run: Run, secret: str) -> str:
        """Listen on the joiner's address (gated by secret where the transport can); returns
        what follows `@` in the `ready` line."""

    def receive(self, run: Run, secret: str) -> Received:
        """Wait for the donor's data under the transport's deadlines."""

    def verify(self, run: Run, got: Received) -> None:
        """The transport's own checks of what arrived, after the secret's."""

    def keep(self, run: Run, got: Received) -> None:
        """An IST: leave the datadir as it is (undo what the transport did to it)."""

    def install(self, run: Run, got: Received) -> None:
        """Put the verified data in place (the parent is alive)."""

    def cleanup(self, run: Run, outcome: BaseException | None) -> None:
        """On every exit, outcome None on success: remove what the run left."""


def run_joiner(run: Run, t: JoinerTransport) -> None:
    """One joiner, in the skeleton's order (the module docstring), with the transport t."""
    dd = joiner_start(run)
    checked = t.preflight(run)
    staging.begin(dd)
    done = False
    outcome: BaseException | None = None
    try:
        secret = secrets.token_hex(16)
        cn = announced_cn(t.tls_mode, checked)
        announce(run, cn, secret, t.listen(run, secret))
        got = t.receive(run, secret)
        check_secret(got.tags, secret)
        t.verify(run, got)
        state = State.parse(got.state)
        if got.bypass:
            log.info("IST requested by the donor: the datadir is left as it is")
            t.keep(run, got)
            stock.mark_ist()
        else:
            run.sup.check_parent()  # installing is the one irreversible step: for a live server
            t.install(run, got)
        log.info(f"Galera co-ords from the donor: {got.shown or state}")
        run.out.coordinates(got.state)
        # A kept partial rsync transfer (sst/resume.py) is of an older state than this
        # datadir's now, whichever method succeeded; a server would list it as a database.
        resume.drop(dd, "the SST succeeded")
        done = True
    except BaseException as exc:
        outcome = exc
        raise
    finally:
        t.cleanup(run, outcome)
        staging.end(dd, done=done)  # a failed in-place SST keeps its `in-place` mark
