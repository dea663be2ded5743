"""The one joiner skeleton (sst/methods/joiner.py) with a scripted transport: the order of
the steps, what reaches mariadbd's stdout, what is left in the datadir on each exit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sst import resume, stock
from sst.datadir import IN_PROGRESS, KEPT
from sst.errors import SecretMismatch, SSTError, TransferError
from sst.methods.common import Run
from sst.methods.joiner import Received, run_joiner
from sst.process.runner import Supervisor
from sst.protocol import Stdout
from sst.request import NO_NAME, parse_request
from sst.tls import CheckedTLS
from sst.tools import rsync as rs

UUID = "8d1b2c3e-0000-11ee-8000-000000000001"


class Scripted:
    """A transport that records its steps and delivers what the test says."""

    def __init__(
        self,
        dd: str,
        *,
        bypass: bool = False,
        secret: str | None = None,
        fail_in: str = "",
    ) -> None:
        self.dd = dd
        self.bypass = bypass
        self.secret = secret  # None: the one the skeleton handed to listen
        self.fail_in = fail_in
        self.steps: list[str] = []
        self.listened_with = ""
        self.outcome: BaseException | None = None

    @property
    def tls_mode(self) -> str:
        return "DISABLED"

    def _step(self, name: str) -> None:
        self.steps.append(name)
        if name == self.fail_in:
            raise TransferError(f"scripted failure in {name}")

    def preflight(self, run: Run) -> CheckedTLS | None:
        self._step("preflight")
        return None

    def listen(self, run: Run, secret: str) -> str:
        self._step("listen")
        # sst_in_progress exists from here on
        assert os.path.exists(os.path.join(self.dd, IN_PROGRESS))
        self.listened_with = secret
        return "127.0.0.1:4444/mod"

    def receive(self, run: Run, secret: str) -> Received:
        self._step("receive")
        assert secret == self.listened_with
        said = self.listened_with if self.secret is None else self.secret
        return Received(f"{UUID}:7 0", {"secret": said}, bypass=self.bypass)

    def verify(self, run: Run, got: Received) -> None:
        self._step("verify")

    def keep(self, run: Run, got: Received) -> None:
        self._step("keep")

    def install(self, run: Run, got: Received) -> None:
        self._step("install")

    def cleanup(self, run: Run, outcome: BaseException | None) -> None:
        self.steps.append("cleanup")
        self.outcome = outcome


@pytest.fixture
def joiner_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Run, str, int]]:
    """A joiner's Run on tmp_path/data with a kept partial transfer in it; its stdout is
    the read end returned."""
    dd = tmp_path / "data"
    staged = dd / ".sst-staging"
    staged.mkdir(parents=True)
    (staged / rs.ORIGIN_FILE).write_text(f"{UUID}:3\n")
    (staged / "t.ibd").write_bytes(b"x" * 100)
    req = parse_request(
        "wsrep_sst_py_rsync",
        ["--role", "joiner", "--address", "127.0.0.1:4444", "--datadir", str(dd)],
        {},
    )
    monkeypatch.setitem(stock._ist, "joiner", False)  # the process-wide IST mark
    r, w = os.pipe()
    sup = Supervisor()
    rundir = tmp_path / "run"
    rundir.mkdir()
    try:
        yield Run(req, sup, Stdout(w), str(rundir)), str(dd), r
    finally:
        sup.close()
        os.close(w)
        os.close(r)


def lines(fd: int) -> list[str]:
    return os.read(fd, 65536).decode().splitlines()


def keep_a_transfer(dd: str) -> str:
    """A kept partial transfer of an earlier failed SST; its path."""
    assert resume.keep(dd, os.path.join(dd, ".sst-staging"), 3600.0)
    return os.path.join(dd, KEPT)


def test_an_sst_installs_prints_the_coordinates_and_drops_the_kept_transfer(
    joiner_run: tuple[Run, str, int], capfd: pytest.CaptureFixture[str]
) -> None:
    run, dd, out = joiner_run
    kept = keep_a_transfer(dd)
    t = Scripted(dd)
    run_joiner(run, t)
    assert t.steps == ["preflight", "listen", "receive", "verify", "install", "cleanup"]
    assert t.outcome is None
    assert lines(out) == [f"ready {NO_NAME}:{t.listened_with}@127.0.0.1:4444/mod", f"{UUID}:7 0"]
    assert len(t.listened_with) == 32
    assert not os.path.lexists(kept)
    assert not os.path.exists(os.path.join(dd, IN_PROGRESS))
    err = capfd.readouterr().err
    assert f"Removing the kept partial transfer {kept}: the SST succeeded" in err
    assert f"Galera co-ords from the donor: {UUID}:7 0" in err
    assert not stock._ist["joiner"]


def test_an_ist_keeps_the_datadir_and_drops_the_kept_transfer(
    joiner_run: tuple[Run, str, int], capfd: pytest.CaptureFixture[str]
) -> None:
    run, dd, out = joiner_run
    kept = keep_a_transfer(dd)
    t = Scripted(dd, bypass=True)
    run_joiner(run, t)
    assert t.steps == ["preflight", "listen", "receive", "verify", "keep", "cleanup"]
    assert lines(out)[-1] == f"{UUID}:7 0"
    assert not os.path.lexists(kept)
    assert "IST requested by the donor: the datadir is left as it is" in capfd.readouterr().err
    assert stock.transfer_type("SST") == "IST"  # the last line says IST


@pytest.mark.parametrize(
    ("secret", "fail_in", "error", "steps"),
    [
        ("0" * 32, "", SecretMismatch, ["preflight", "listen", "receive"]),
        (None, "receive", TransferError, ["preflight", "listen", "receive"]),
        (None, "install", TransferError, ["preflight", "listen", "receive", "verify"]),
    ],
)
def test_a_failure_cleans_up_prints_no_coordinates_and_keeps_the_kept_transfer(
    joiner_run: tuple[Run, str, int],
    secret: str | None,
    fail_in: str,
    error: type[SSTError],
    steps: list[str],
) -> None:
    run, dd, out = joiner_run
    kept = keep_a_transfer(dd)
    t = Scripted(dd, secret=secret, fail_in=fail_in)
    with pytest.raises(error):
        run_joiner(run, t)
    # installing is never reached without the right secret; cleanup always runs, once
    assert t.steps[: len(steps)] == steps and t.steps[-1] == "cleanup"
    assert t.steps.count("cleanup") == 1
    assert ("install" in t.steps) == (fail_in == "install")
    assert isinstance(t.outcome, error)
    assert len(lines(out)) == 1  # `ready` only: no coordinates
    assert os.path.isdir(kept)  # a failed SST is no reason to drop it
    assert not os.path.exists(os.path.join(dd, IN_PROGRESS))


def test_a_link_planted_as_the_kept_transfer_is_removed_not_followed(
    joiner_run: tuple[Run, str, int], tmp_path: Path
) -> None:
    """Someone who can write in the datadir plants `.sst-kept` as a link to a directory
    of theirs (or anyone's): the successful SST's drop removes the link and leaves the
    directory it names, and everything in it, as it was."""
    run, dd, _ = joiner_run
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    os.symlink(victim, os.path.join(dd, KEPT))
    run_joiner(run, Scripted(dd))
    assert not os.path.lexists(os.path.join(dd, KEPT))
    assert (victim / "precious").read_text() == "keep me"
