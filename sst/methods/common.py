"""What every method does around its steps: the pid guard, the run directory, activity,
and the joiner's steps every transport shares (start, announce, verify the secret)."""

from __future__ import annotations

import errno
import hmac
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sst import log, net, resume, stock, swap
from sst.datadir import (
    BASIS,
    JOURNAL,
    RSYNC_PID,
    SST_PID,
    STAGING,
    STAGING_MB,
    STUNNEL_PID,
    ensure_dir,
    remove,
)
from sst.errors import (
    ConfigError,
    FlushFailed,
    LocalFileError,
    PortBusy,
    SecretMismatch,
    SSTError,
    TransferError,
    from_oserror,
)
from sst.process import pidfile
from sst.process.runner import QUICK, ParentWatch, Supervisor, cleanup_shield, tree_io
from sst.protocol import State, Stdout
from sst.request import NO_NAME, Address, Request
from sst.staging import Decision
from sst.status import Status

if TYPE_CHECKING:  # sst.tls pulls in cryptography, which the backup method never needs
    from sst.tls import CheckedTLS


@dataclass
class Run:
    """One SST run: the request, its supervisor, stdout, a private run dir, the status file."""

    req: Request
    sup: Supervisor
    out: Stdout
    rundir: str
    status: Status | None = None

    def staging(self, decision: Decision) -> None:
        """Record the joiner's staging decision in the status file."""
        if self.status is not None:
            self.status.staging(f"{decision.mode}: {decision.reason}")

    def phase(
        self, name: str, *, expected: int = 0, tls: str = "", watch: tuple[int, ...] = ()
    ) -> None:
        """Announce a phase in the status file."""
        if self.status is not None:
            self.status.phase(name, expected=expected, tls=tls, watch=watch)


@contextmanager
def sst_run(req: Request, out: Stdout, tmpdir: str = "") -> Iterator[Run]:
    """Given the request, stdout and [sst] tmpdir: guard the datadir (wsrep_sst.pid), make a
    0700 run dir, keep the status file, and on every exit (signals cannot cut it short) kill
    all children and remove the run dir and the pid file. Raises SSTError (a missing or
    unwritable datadir or tmpdir, a full disk, AlreadyRunning)."""
    try:
        ensure_dir(req.datadir)
        pid_path = os.path.join(req.datadir, SST_PID)
        pidfile.wait_stale(pid_path, "a previous SST script")
        pidfile.write_pid(pid_path)
    except OSError as exc:
        raise from_oserror(exc, f"datadir {req.datadir}") from None
    rundir = status = sup = None
    code, error = 0, ""
    try:
        if req.role == "joiner":
            _remove_stale_staging(req.datadir, resumable=req.name.family == "rsync")
        rundir = _make_rundir(tmpdir)
        status = Status(
            req.datadir, req.method, req.role, req.address.hostport if req.address else ""
        )
        # Joiners get --parent; a donor watches the process that started it (mariadbd), so a
        # dead server's donor stops sending instead of streaming a snapshot nobody holds.
        parent = req.parent if req.role == "joiner" else os.getppid()
        sup = Supervisor(ParentWatch(parent), status.tick)
        yield Run(req, sup, out, rundir, status)
    except SSTError as exc:
        code, error = exc.code, exc.message
        exc.phase = exc.phase or (status.snap.phase if status else "")
        raise
    except OSError as exc:
        err = from_oserror(exc)
        code, error = err.code, err.message
        err.phase = status.snap.phase if status else ""
        raise err from None
    except BaseException as exc:
        code, error = 1, f"{type(exc).__name__}: {exc}"
        raise
    finally:
        with cleanup_shield():
            if sup is not None:
                sup.close()
            if rundir is not None:
                shutil.rmtree(rundir, ignore_errors=True)
            if status is not None:
                status.finish(code, error)
            if req.role == "donor":  # kept until now: see flush_tables
                with suppress(OSError):
                    remove(os.path.join(req.datadir, TABLES_FLUSHED))
            pidfile.remove(pid_path)


def _remove_stale_staging(datadir: str, *, resumable: bool = False) -> None:
    """A crashed run of either method may have left its staging copy (received data only,
    never the server's own files): it would fill the disk and ride along. For an rsync
    joiner, an rsync staging that our donor's origin file reached is kept for a resume
    instead (a joiner killed outright could not keep it itself; never while a swap's
    journal is pending)."""
    journal = os.path.lexists(os.path.join(datadir, JOURNAL))
    for stale in (STAGING, BASIS, STAGING_MB):
        path = os.path.join(datadir, stale)
        resumed = resumable and stale != STAGING_MB and not journal and os.path.isdir(path)
        if resumed and resume.keep(datadir, path, resume.DEFAULT_MAX_AGE):
            continue
        if os.path.lexists(path):
            log.info(f"Removing {path} left by an earlier SST")
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                remove(path)


def _make_rundir(tmpdir: str) -> str:
    """Given [sst] tmpdir ('' for the system's), returns a new private (0700) run directory
    in it; any name the file system allows works (white space included). Raises SSTError
    if tmpdir is missing, not a directory or not writable, or its disk is full."""
    if tmpdir and not os.path.isdir(tmpdir):
        raise LocalFileError(
            f"[sst] tmpdir {tmpdir!r} is not a directory"
            + ("" if os.path.lexists(tmpdir) else " (it does not exist)"),
            errno.ENOENT,
        )
    try:
        # Absolute: tools get paths in it while running in other directories.
        return os.path.abspath(tempfile.mkdtemp(prefix="galera-sst.", dir=tmpdir or None))
    except OSError as exc:
        raise from_oserror(exc, f"cannot make the run directory in {tmpdir or 'TMPDIR'}") from None


MIN_PROGRESS = 4096  # bytes of I/O that count as progress (more than any keep-alive)


class TreeActivity:
    """Seconds since process trees last read, wrote or started a process (stall detection)."""

    def __init__(self, *pids: int, poll_every: float = 1.0) -> None:
        self.pids = pids
        self._poll_every = poll_every
        self._last_seen: tuple[int, int] = (-1, -1)
        self._last_change = time.monotonic()
        self._last_poll = 0.0
        self.started = False  # any activity at all yet

    def _sample(self) -> tuple[int, int]:
        io = tree_io(self.pids)
        if not io.processes:
            return self._last_seen
        return io.read_chars + io.write_chars, io.processes

    def idle(self) -> float:
        """Seconds without activity (sampled at most every poll_every seconds). Activity is
        a new or ended process, or at least MIN_PROGRESS bytes read or written: an idle
        rsync still sends 4-byte keep-alives, which must not hide a stalled peer."""
        now = time.monotonic()
        if now - self._last_poll >= self._poll_every:
            self._last_poll = now
            sample = self._sample()
            first = self._last_seen == (-1, -1)
            if first or (
                sample[1] != self._last_seen[1]
                or abs(sample[0] - self._last_seen[0]) >= MIN_PROGRESS
            ):
                if not first:
                    self.started = True
                self._last_seen = sample
                self._last_change = now
        return now - self._last_change


def listen_address(addr: Address) -> str:
    """The local IP a joiner binds for its address ('' = all interfaces, with a warning);
    PortBusy if another program already listens on the port."""
    bind = net.bind_address(addr.host)
    if not bind:
        log.warning(f"{addr.host} is not an address of this host; listening on all interfaces")
    if net.port_in_use(addr.port, bind):
        raise PortBusy(
            f"SST port {addr.port} on {bind or '*'} is already in use by another program"
        )
    return bind


def listening_on(addr: Address, bind: str) -> str:
    """Where a joiner listens, as `host:port` for its log line (`*`: every interface)."""
    return replace(addr, host=bind or "*").hostport


# mariadbd's answer to `flush tables`. 10.11 writes it twice in a row (sst_flush_tables in
# sql/wsrep_sst.cc: once with the locked seqno, once more with the pause seqno, each by a
# rename): a donor that removed it as soon as it read the first left the second behind
# whenever it looked between the two (seen in CI with a 10 ms poll). It stays until the
# donor's run ends (sst_run), long after mariadbd went on to read `continue`.
TABLES_FLUSHED = "tables_flushed"


def flush_tables(run: Run, timeout: float) -> str:
    """`flush tables`, then wait for mariadbd's tables_flushed (or sst_error); the state.
    The file stays until the run ends (TABLES_FLUSHED)."""
    dd = run.req.datadir
    flushed = os.path.join(dd, TABLES_FLUSHED)
    failed = os.path.join(dd, "sst_error")
    for path in (flushed, failed):
        remove(path)
    run.out.flush_tables()

    def ready() -> bool:
        if os.path.exists(failed):
            remove(failed)
            raise FlushFailed("mariadbd could not FLUSH TABLES WITH READ LOCK (sst_error)")
        try:
            with open(flushed, encoding="utf-8") as f:
                return ":" in f.read()
        except FileNotFoundError:
            return False

    run.sup.wait_until(
        ready, what="waiting for FLUSH TABLES WITH READ LOCK", timeout=timeout, every=QUICK
    )
    with open(flushed, encoding="utf-8") as f:
        state = f.read().strip()
    locked_behind(State.parse(state), run.req.gtid)
    return state


def locked_behind(locked: State, gtid: str) -> None:
    """Raises FlushFailed if mariadbd locked the tables at no position (seqno -1) or at
    another cluster's, where the donation started from a known one (`--gtid`): the server
    left the donor state before the lock (a Galera race seen on 11.8: `uuid:-1` after
    `--gtid uuid:4`), so nobody knows which position the snapshot holds, and a joiner given
    it would diverge (docs/findings.md)."""
    try:
        start = State.parse(gtid)
    except TransferError:
        return  # no usable --gtid (a manual run): nothing to compare with
    if locked.uuid != start.uuid or (locked.seqno < 0 <= start.seqno):
        raise FlushFailed(
            f"mariadbd locked the tables at {locked.uuid}:{locked.seqno}, not at a position "
            f"of the donation's {start.uuid}:{start.seqno}: the server is no longer a donor "
            "(a Galera state race); refusing to send a snapshot of unknown position"
        )


def joiner_start(run: Run) -> str:
    """The first step of every joiner: repair an interrupted swap (sst/swap.py) before
    anything else, then clear stale listener pid files; returns the datadir. Raises
    AlreadyRunning while a previous listener still lives."""
    assert run.req.address is not None  # run_roles checked it
    dd = run.req.datadir
    swap.recover(dd)
    # A crashed rsync joiner's listeners (whichever method runs now): wait while they live,
    # remove their pid files when they are dead (docs/contract.md 3.8).
    pidfile.wait_stale(os.path.join(dd, STUNNEL_PID), "a lingering stunnel")
    pidfile.wait_stale(os.path.join(dd, RSYNC_PID), "a lingering rsync daemon")
    return dd


def announced_cn(mode: str, checked: CheckedTLS | None) -> str:
    """The CN in the joiner's `CN:secret@`: the certificate's in VERIFY modes (a donor in
    VERIFY_IDENTITY checks it); otherwise the certificate's CN if it has one it matches, else
    NO_NAME, which our donors read as no name at all
    (docs/contract.md 1.7, 5.4): MariaDB 11 hands the donor the secret only after a
    non-empty name (an empty one made our 11.8 joiners refuse every non-VERIFY SST).
    Raises ConfigError for a VERIFY certificate without a CN, TLSError for one that does not
    match its own CN."""
    if not mode.startswith("VERIFY"):
        # A stock donor that checks a name (mariabackup encrypt=3/4: socat's commonname)
        # checks the announced one: with a certificate, its own CN, when the certificate
        # matches it; NO_NAME only where there is none (a stock donor then checks nothing).
        if checked is not None and checked.cn:
            from sst.tls import identity_matches  # noqa: PLC0415 (only with TLS: cryptography)

            if identity_matches(checked.files.cert, checked.cn):
                return checked.cn
        return NO_NAME
    assert checked is not None
    if not checked.cn:
        raise ConfigError(
            f"certificate '{checked.files.cert}' has no CN, which ssl-mode="
            f"{mode} announces to the donor"
        )
    if mode == "VERIFY_IDENTITY":
        # The donor (ours or stock) runs stunnel's checkHost on the CN announced here.
        checked.require_identity(checked.cn, "the donor checks the CN this joiner announces")
    return checked.cn


def announce(run: Run, cn: str, secret: str, where: str) -> None:
    """The joiner's one announcement, `ready CN:secret@<where>` (docs/contract.md 2.1): the
    secret goes to mariadbd, which hands it to the donor, and never to the log."""
    run.out.ready(f"{cn}:{secret}@{where}")


def check_secret(tags: dict[str, str], secret: str) -> None:
    """Raises SecretMismatch unless the donor's magic file carried this joiner's secret
    (compared in constant time)."""
    if not hmac.compare_digest(tags.get("secret", "").encode(), secret.encode()):
        raise SecretMismatch(
            "the donor does not know this joiner's secret; refusing the data "
            "(nothing in the datadir was changed)"
        )


def run_roles(
    req: Request,
    out: Stdout,
    tmpdir: str,
    joiner: Callable[[Run], None],
    donor: Callable[[Run], None],
) -> None:
    """The frame of a two-role method: the stock first and last log lines around one run."""
    kind = "IST" if req.bypass else "SST"
    started(req, kind)
    with sst_run(req, out, tmpdir) as run:
        if req.role == "joiner":
            if req.address is None:
                raise ConfigError("the joiner needs --address")
            joiner(run)
        else:
            donor(run)
    completed(req, stock.transfer_type(kind))


def started(req: Request, kind: str) -> None:
    """The stock first log line."""
    log.info(f"{req.method} {kind} started on {req.role}")


def completed(req: Request, kind: str) -> None:
    """The stock last log line of a successful run."""
    log.info(f"{req.method} {kind} completed on {req.role}")
