"""The rsync method (and rsync_wan, delta mode): docs/contract.md 3.4, 3.5, 5.4 and 6.2."""

from __future__ import annotations

import fnmatch
import os
import secrets
import signal
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import psutil

from sst import config, datadir, log, net, records, resume, snapshot, staging, stock, swap, tools
from sst.config import RsyncSettings, TLSFiles
from sst.datadir import Area
from sst.errors import (
    ConfigError,
    NoSpace,
    PortBusy,
    SSTError,
    Timeout,
    ToolMissing,
    TransferError,
)
from sst.methods.common import (
    Run,
    TreeActivity,
    flush_tables,
    listen_address,
    listening_on,
)
from sst.methods.joiner import Received, run_joiner
from sst.process.runner import QUICK, Child, Stage
from sst.request import Request
from sst.tools import rsync as rs
from sst.tools import stunnel as st
from sst.tools import tar as tar_tool

if TYPE_CHECKING:
    from sst import tls

STUNNEL_PID = datadir.STUNNEL_PID
RSYNC_PID = datadir.RSYNC_PID
LISTEN_TIMEOUT = 30.0


def load_settings(req: Request) -> RsyncSettings:
    """Read the option files for this request."""
    opts = config.read_options(req, (config.MYSQLD, "sst"))
    return config.rsync_settings(req, opts)


def is_wan(req: Request) -> bool:
    """Delta mode when started as wsrep_sst_*rsync_wan."""
    return req.name.wan


def preflight_tls(s: RsyncSettings, role: str) -> tls.CheckedTLS | None:
    """Check the certificates before any port opens; None when TLS is off."""
    if s.ssl_mode == "DISABLED":
        return None
    from sst import tls  # noqa: PLC0415 (cryptography: some 30 ms of every start, for TLS only)

    stock.rsync_tls(s.ssl_mode, s.tls.ca, s.tls.capath)
    checked = tls.check(s.tls, role=role, need_ca=s.ssl_mode.startswith("VERIFY"))
    if s.peer_certs:
        pinned = tls.load_certs(s.peer_certs, "accepted peer certificates (ssl-peer-certs)")
        log.info(f"Accepting only the {len(pinned)} peer certificate(s) in '{s.peer_certs}'")
    log.info(
        f"TLS {s.ssl_mode} through stunnel: cert '{s.tls.cert}', key '{s.tls.key}', "
        f"CA '{s.tls.ca or s.tls.capath or '-'}'"
    )
    return checked


def tunnel_files(run: Run, s: RsyncSettings) -> tuple[TLSFiles, st.Verify]:
    """Given the run and the settings; returns the files stunnel is given and what it
    verifies of the peer (chain in VERIFY modes; with ssl-peer-certs also `verifyPeer`,
    which looks the peer's own certificate up in CAfile: a private copy of the CA file
    followed by the accepted certificates, in the run directory)."""
    verify = st.Verify(chain=s.ssl_mode.startswith("VERIFY"), peer=bool(s.peer_certs))
    if not s.peer_certs:
        return s.tls, verify
    combined = os.path.join(run.rundir, "ca-and-peers.pem")
    with open(combined, "wb") as out:
        for path in (s.tls.ca, s.peer_certs):
            if path:
                with open(path, "rb") as f:
                    out.write(f.read().rstrip(b"\n") + b"\n")
    return replace(s.tls, ca=combined), verify


def find_stunnel() -> str:
    """stunnel or stunnel4; its absence with TLS configured is an error, never cleartext."""
    for name in (os.environ.get("STUNNEL_BIN", ""), "stunnel", "stunnel4"):
        if not name:
            continue
        try:
            return tools.find(name)
        except ToolMissing:
            continue
    raise ToolMissing(
        "TLS is configured for the rsync SST but stunnel is not installed "
        "(Debian: apt-get install stunnel4); refusing to send in cleartext"
    )


# ---------------------------------------------------------------------------------------
# joiner
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinerLayout:
    """The joiner's live directories, their staging, and the rsync modules onto them."""

    main: Area
    subs: dict[str, Area]  # module suffix -> area
    in_place: bool = False  # modules on the live directories, but the redo log's

    @property
    def areas(self) -> list[Area]:
        """Distinct areas, main first."""
        out = [self.main]
        for a in self.subs.values():
            if a.staged not in {x.staged for x in out}:
                out.append(a)
        return out

    @property
    def holds(self) -> list[Area]:
        """The areas received apart from their live directory (removed on every exit)."""
        return [a for a in self.areas if a.staged != a.live]


def joiner_layout(req: Request, s: RsyncSettings, name: str = datadir.STAGING) -> JoinerLayout:
    """Map the datadir and the separate InnoDB/Aria directories to staging areas (in the
    stagings called name: datadir.STAGING, or datadir.BASIS for the basis)."""
    dd = req.datadir
    main = Area(dd, datadir.staging_for(dd, dd, name))
    live = s.server.by_module(dd)
    subs = {
        k: Area(v, datadir.staging_for(dd, v, name), rs.SUBMODULE_FILES[k]) for k, v in live.items()
    }
    return JoinerLayout(main, subs)


def in_place_layout(layout: JoinerLayout) -> JoinerLayout:
    """The modules of an in-place SST: every live directory as it is, but the redo log's
    module, which is received beside it and renamed in last (sst/staging.py)."""
    main = Area(layout.main.live, layout.main.live)
    subs = {
        k: a if k == REDO_MODULE else Area(a.live, a.live, a.patterns)
        for k, a in layout.subs.items()
    }
    return JoinerLayout(main, subs, in_place=True)


REDO_MODULE = "log_dir"
# The live datadir's names a donor may neither write nor delete during an in-place SST.
IN_PLACE_PROTECT = tuple(
    f"/{n}"
    for n in (
        *datadir.TRANSIENT,
        "galera_sst_status.json",
        staging.GRASTATE,
        datadir.JOURNAL,
    )
    if n not in (rs.MAGIC_FILE, rs.BINLOG_TAR)
)


def _decide(run: Run, s: RsyncSettings, layout: JoinerLayout) -> staging.Decision:
    """The staging decision for this joiner, logged (one WARNING line when in place) and
    recorded in the status file."""
    dd = run.req.datadir
    if staging.failed_in_place(dd):
        log.warning(f"{dd} holds the debris of an in-place SST that did not finish")
    decision, _ = staging.for_datadir(s.staging, [a.live for a in layout.areas])
    staging.warn(decision, "rsync")
    run.staging(decision)
    return decision


def _module(req: Request) -> str:
    assert req.address is not None
    return req.address.module or rs.DEFAULT_MODULE


def joiner(run: Run, s: RsyncSettings) -> None:
    """Receive the state into staging, verify it, swap it in, print the coordinates."""
    run_joiner(run, RsyncJoiner(s))


class RsyncJoiner:
    """The rsync joiner's steps in the skeleton (sst/methods/joiner.py): our rsync daemon
    (behind stunnel with TLS) receives into staging, or in place, with the old files or a
    kept partial transfer offered as a basis; the staging is swapped in (journaled)."""

    layout: JoinerLayout  # the announced modules (in place: onto the live directories)
    basis_areas: JoinerLayout  # every basis area, removed on every exit
    basis: JoinerLayout | None  # the basis offered to the donor
    got: JoinerLayout  # the staging the donor completed
    rsync_bin: str
    stunnel_bin: str
    since: float
    daemon: Child
    watches: tuple[datadir.DiskWatch, Refusals]

    def __init__(self, s: RsyncSettings) -> None:
        self.s = s
        self.received = rs.Received()
        self.old_grastate = b""  # in place: grastate.dat as it was (an IST puts it back)
        self.record = ""  # the donor's record id, from its completion file (sst/records.py)
        self.cluster = ""  # the cluster the received state belongs to

    @property
    def tls_mode(self) -> str:
        """rsync's ssl-mode."""
        return self.s.ssl_mode

    def preflight(self, run: Run) -> tls.CheckedTLS | None:
        """rsync and stunnel, the certificates, the layouts and the staging decision."""
        s, req = self.s, run.req
        self.rsync_bin = tools.find("rsync")
        self.stunnel_bin = find_stunnel() if s.ssl_mode != "DISABLED" else ""
        checked = preflight_tls(s, "joiner")
        for stale in (rs.MAGIC_FILE, rs.BINLOG_TAR):
            datadir.remove(os.path.join(req.datadir, stale))
        self.layout = joiner_layout(req, s)
        self.basis_areas = joiner_layout(req, s, datadir.BASIS)
        for a in self.layout.areas:
            datadir.ensure_dir(a.live)
        if not _decide(run, s, self.layout).stage:
            self.layout = in_place_layout(self.layout)
        return checked

    def listen(self, run: Run, secret: str) -> str:
        """Prepare the stagings and the basis, start the daemon with per-SST module names;
        returns `host:port/module`."""
        s, req, layout = self.s, run.req, self.layout
        addr = req.address
        assert addr is not None
        # The announced modules stage into an empty directory (a stock donor's --inplace is
        # harmless there); the old files are offered as a basis only on separate modules,
        # and not in place, where the live files are what the donor writes into.
        datadir.prepare_staging(layout.holds, hardlink_from_live=False)
        self.basis, uuid, held = (None, "", "") if layout.in_place else _prepare_basis(run, s)
        # The joiner's record stays until a successful SST replaces it (cleanup): a failed
        # SST leaves the old datadir exactly as it was, and a record left behind stays true
        # (it vouches only for files untouched since its SST: linking them changes ctime).
        st_dd = os.stat(req.datadir)
        owner = rs.daemon_owner(os.geteuid(), st_dd.st_uid, st_dd.st_gid)
        for lay in self.stagings:
            _private_staging(lay, owner)
        self.since = time.time() - 1.0  # what changed from here on arrived (in place)
        # Per-SST names and secret, announced only through Galera (docs/tls.md 2).
        # A joiner keeps records but in place (nothing to vouch for) and in delta mode, where a
        # file it changed itself is worth more as a delta's basis than the read a skip saves.
        keeps = s.records and not layout.in_place and not is_wan(req)
        base = rs.record_module(_module(req), held) if keeps else _module(req)
        module = rs.basis_module_name(rs.module_name(base, secrets.token_hex(16)), uuid)
        bind = listen_address(addr)
        d = rs.Daemon(
            pid_file=os.path.join(req.datadir, RSYNC_PID),
            modules=_modules(module, layout),
            timeout=int(s.idle_timeout) or 300,
            owner=owner,
            secrets_file=_secrets_file(run, secret) if req.name.ours else "",
            protect=IN_PLACE_PROTECT if layout.in_place else (),
            basis_modules=_modules(module + rs.BASIS_SUFFIX, self.basis) if self.basis else (),
        )
        self.daemon, disk, refusals = _start_daemon(
            run,
            s,
            d,
            bind=bind,
            rsync_bin=self.rsync_bin,
            stunnel_bin=self.stunnel_bin,
            received=self.received,
        )
        self.watches = (disk, refusals)
        _wait_listening(run, self.daemon, addr.port)
        # In place, the old datadir is given up here: after this, before the donor knows us.
        self.old_grastate = _enter_in_place(layout) if layout.in_place else b""
        log.info(
            f"Listening on {listening_on(addr, bind)} "
            f"({'TLS ' + s.ssl_mode if self.stunnel_bin else 'plain'}"
            f"{', delta mode' if is_wan(req) else ''})"
        )
        return f"{addr.hostport}/{module}"

    @property
    def stagings(self) -> tuple[JoinerLayout, ...]:
        """Where a donor may write: the announced modules' staging, and the basis."""
        return (self.layout, self.basis) if self.basis else (self.layout,)

    def receive(self, run: Run, secret: str) -> Received:
        """Wait for the completion file, stop the daemon; its state line and tags."""
        run.phase("receiving", tls=self.s.ssl_mode, watch=(self.daemon.pid,))
        magics = [os.path.join(lay.main.staged, rs.MAGIC_FILE) for lay in self.stagings]

        logged = threading.Event()  # the daemon logged the completion file

        def on_magic() -> None:
            logged.set()
            run.sup.wake()

        self.received.on_magic = on_magic
        _await_magic(run, self.s, self.daemon, self.watches, (magics, logged))
        _drain(run, self.daemon)
        run.sup.stop(self.daemon)  # nothing may write into staging from here on
        self.got = _completed(self.stagings)
        log.info(f"Received: {self.received.summary()}")
        state_line, tags = datadir.read_magic(os.path.join(self.got.main.staged, rs.MAGIC_FILE))
        if records.valid_id(tags.get("record", "")):
            self.record = tags["record"]
            self.cluster = rs.cluster_uuid(state_line)
        return Received(state_line, tags, bypass="bypass" in tags)

    def verify(self, run: Run, got: Received) -> None:
        """No devices, FIFOs, sockets or set-id files arrived; an IST's binlog tar is
        ignored."""
        _refuse_foreign_files(self.got, self.since)
        if got.bypass and os.path.exists(self._tar):
            log.warning("a binlog tar was transferred in IST mode; ignored")

    @property
    def _tar(self) -> str:
        return os.path.join(self.got.main.staged, rs.BINLOG_TAR)

    def keep(self, run: Run, got: Received) -> None:
        """In place: the redo log and grastate.dat back."""
        if self.got.in_place:
            _finish_in_place(self.got, self.old_grastate)

    def install(self, run: Run, got: Received) -> None:
        """Swap the staging in, or complete the in-place datadir."""
        if self.got.in_place:
            run.phase("completing the datadir received in place")
            _restore_binlogs(run, self.s, self._tar)
            _finish_in_place(self.got, b"")
        else:
            run.phase("swapping in the new datadir")
            _swap(run, self.s, self.got, self._tar)

    def cleanup(self, run: Run, outcome: BaseException | None) -> None:
        """Keep a partial transfer for a resume (staged only: in place nothing was staged),
        remove the stagings, the listeners' pid files and our donor's files."""
        dd = run.req.datadir
        if not self.layout.in_place:
            _keep_partial(run, self.s, (self.layout, self.basis_areas), outcome)
        datadir.remove_staging([*self.layout.holds, *self.basis_areas.areas])
        # In place, our donor's origin file lands in the live datadir (staged, in staging).
        for f in (STUNNEL_PID, RSYNC_PID, rs.MAGIC_FILE, rs.BINLOG_TAR, rs.ORIGIN_FILE):
            datadir.remove(os.path.join(dd, f))
        if outcome is None and self.record and self.cluster and not self.layout.in_place:
            _record_joiner(dd, self.layout, self.record, self.cluster)


def write_private(path: str, text: str) -> str:
    """Create a new 0600 file at path (never an existing one or a symlink) holding text;
    returns the path. Raises OSError (FileExistsError) if path exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _secrets_file(run: Run, secret: str) -> str:
    """The daemon's 0600 secrets file for secret, in the private run directory; its path."""
    return write_private(os.path.join(run.rundir, "rsyncd.secrets"), rs.secrets_text(secret))


def _enter_in_place(layout: JoinerLayout) -> bytes:
    """Before the first byte of an in-place SST: mark the datadir, invalidate grastate.dat
    and move the redo log into its hold directory (renamed back last); returns the old
    grastate.dat (an IST puts it back)."""
    dd = layout.main.live
    staging.mark_in_place(dd)
    old = staging.invalidate_grastate(dd)
    _move_redo(layout, into_hold=True)
    return old


def _move_redo(layout: JoinerLayout, *, into_hold: bool) -> bool:
    """Rename the redo log files (regular files only) between the live redo directory and
    its hold directory, into the hold or back out of it; False when the layout has no
    separate hold for them."""
    redo = layout.subs.get(REDO_MODULE)
    if redo is None or redo.staged == redo.live:
        return False
    src, dst = (redo.live, redo.staged) if into_hold else (redo.staged, redo.live)
    for name in rs.SUBMODULE_FILES[REDO_MODULE]:
        path = os.path.join(src, name)
        if os.path.isfile(path) and not os.path.islink(path):
            os.rename(path, os.path.join(dst, name))
    return True


def _finish_in_place(layout: JoinerLayout, old_grastate: bytes) -> None:
    """The last step of an in-place SST: the redo log renamed in (fsynced); after an IST
    the old grastate.dat is put back (the data is the old one)."""
    if _move_redo(layout, into_hold=False):
        staging.fsync_dir(layout.subs[REDO_MODULE].live)
    staging.restore_grastate(layout.main.live, old_grastate)
    log.info(f"Received the datadir in place into {layout.main.live}")


def _private_staging(layout: JoinerLayout, owner: tuple[int, int] | None) -> None:
    """Staging roots 0700; as root, every staged directory belongs to the datadir's owner,
    whom the daemon's transfers run as. In place, only the hold directories."""
    for a in layout.holds:
        os.chmod(a.staged, 0o700)
        if owner is None or owner == (os.geteuid(), os.getegid()):
            continue
        for root, dirs, _ in os.walk(a.staged):
            os.chown(root, *owner)
            for d in dirs:
                os.chown(os.path.join(root, d), *owner, follow_symlinks=False)


def _refuse_foreign_files(layout: JoinerLayout, since: float) -> None:
    """No datadir holds devices, FIFOs, sockets or set-id files: raises TransferError,
    before anything is swapped in, when the staging does. In place, those that arrived
    (changed since `since`) are removed first."""
    if layout.in_place:
        bad = [
            p
            for a in layout.areas
            for p in datadir.foreign_entries(a.staged, since, first_only=False)
        ]
        for p in bad:
            datadir.remove(p)
        if bad:
            raise TransferError(
                f"refusing the data: {len(bad)} device(s), FIFO(s), socket(s) or set-id "
                f"file(s) arrived, e.g. '{bad[0]}'; removed (received in place: the "
                "datadir is not usable, grastate.dat is invalidated)"
            )
        return
    for a in layout.areas:
        bad1 = datadir.first_foreign_entry(a.staged)
        if bad1:
            raise TransferError(
                f"refusing the data: '{os.path.relpath(bad1, a.staged)}' arrived as a device, "
                "FIFO, socket or set-id file (nothing in the datadir was changed)"
            )


def _start_daemon(
    run: Run,
    s: RsyncSettings,
    d: rs.Daemon,
    *,
    bind: str,
    rsync_bin: str,
    stunnel_bin: str,
    received: rs.Received | None = None,
) -> tuple[Child, datadir.DiskWatch, Refusals]:
    """Given the daemon's settings, write rsyncd.conf (0600) and stunnel's config into the
    run directory and start the listener (stunnel with TLS, else rsync --daemon); returns
    it, the disk watch fed by its stderr and the watch of refused TLS handshakes. Raises
    ConfigError for unusable paths."""
    addr = run.req.address
    assert addr is not None
    conf = write_private(os.path.join(run.rundir, "rsyncd.conf"), rs.daemon_conf(d))
    daemon_log = os.path.join(run.rundir, "rsyncd.log")
    disk = datadir.DiskWatch()
    refusals = Refusals()
    counted = Refusals.both(disk.watch, received.watch) if received else disk.watch
    if not stunnel_bin:
        argv = rs.daemon_argv(rsync_bin, conf, addr.port, bind)
        # rsync waits 400 ms on SIGTERM before it exits (a pause meant for ssh's password
        # prompt), and ends at once on SIGUSR1 ("received SIGUSR1", 19), the signal its
        # own processes stop each other with: each SST stopped its daemon 0.4 s later.
        stage = Stage(
            argv,
            name="rsyncd",
            log_file=daemon_log,
            on_line=counted,
            stop_signal=signal.SIGUSR1,
        )
        return run.sup.start(stage), disk, refusals
    accept = (
        f"{bind}:{addr.port}" if bind else (f":::{addr.port}" if addr.is_ipv6 else str(addr.port))
    )
    sconf = os.path.join(run.rundir, "stunnel-server.conf")
    files, verify = tunnel_files(run, s)
    with open(sconf, "w", encoding="utf-8") as f:
        f.write(
            st.server_conf(
                files,
                verify,
                pid_file=os.path.join(run.req.datadir, STUNNEL_PID),
                accept=accept,
                rsync=rsync_bin,
                execargs=rs.server_execargs(os.path.basename(conf)),
            )
        )
    stage = Stage(
        st.argv(stunnel_bin, sconf),
        name="stunnel",
        log_file=daemon_log,
        on_line=refusals.then(counted),
        cwd=run.rundir,  # where execargs' relative --config is found
    )
    return run.sup.start(stage), disk, refusals


def _await_magic(
    run: Run,
    s: RsyncSettings,
    daemon: Child,
    watches: tuple[datadir.DiskWatch, Refusals],
    magic: tuple[Sequence[str], threading.Event],
) -> None:
    """Wait until a completion file (magic: its possible paths, and the event set when the
    daemon logs it) exists; raises Timeout when no donor connects within
    sst-initial-timeout or the transfer stalls for sst-idle-timeout, NoSpace on a full disk,
    TransferError when the listener dies (each with the last refused TLS handshake)."""
    disk, refusals = watches
    paths, logged = magic
    addr = run.req.address
    assert addr is not None
    activity = TreeActivity(daemon.pid)
    t0 = time.monotonic()

    def there() -> bool:
        return any(os.path.exists(m) for m in paths)

    def arrived() -> bool:
        if there():
            return True
        if logged.is_set():
            # rsync logs a file just before it renames it into place: a moment to wait,
            # not a tick (the logged line woke the nap).
            logged.clear()
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                time.sleep(QUICK / 5)
                if there():
                    return True
        disk.check(run.req.datadir)
        idle = activity.idle()
        if not activity.started:
            if s.connect_timeout and time.monotonic() - t0 > s.connect_timeout:
                raise Timeout(
                    f"no donor connected within {s.connect_timeout:g} s "
                    f"(sst-initial-timeout) on port {addr.port}"
                )
        elif s.idle_timeout and idle > s.idle_timeout:
            raise Timeout(f"the donor stalled: no data for {s.idle_timeout:g} s (sst-idle-timeout)")
        return False

    try:
        run.sup.wait_until(arrived, what="waiting for the donor's data", timeout=0, alive=[daemon])
    except SSTError as exc:
        raise refusals.annotate(exc) from exc


class Refusals:
    """The joiner's stunnel log watched for refused handshakes (docs/tls.md, "When TLS
    fails"): each is logged as a WARNING with stunnel's reason, the last one is kept."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=12)
        self.last = ""

    def then(self, other: Callable[[str], None]) -> Callable[[str], None]:
        """Given another line consumer; returns one feeding both (this one first)."""
        return Refusals.both(self.watch, other)

    @staticmethod
    def both(first: Callable[[str], None], other: Callable[[str], None]) -> Callable[[str], None]:
        """Given two line consumers; returns one feeding both (first first)."""

        def feed(line: str) -> None:
            first(line)
            other(line)

        return feed

    def watch(self, line: str) -> None:
        """Given one stunnel log line; a failed handshake ends with an SSL_accept error."""
        self.lines.append(line)
        if "SSL_accept" not in line:
            return
        reason = st.failure_reason(list(self.lines))
        self.lines.clear()
        if reason:
            self.last = reason
            log.warning(f"refused a TLS connection: {reason}")

    def annotate(self, exc: SSTError) -> SSTError:
        """Given the joiner's failure; returns it with the last refusal appended, if any."""
        if not self.last:
            return exc
        return type(exc)(f"{exc.message}; last refused TLS connection: {self.last}", exc.code)


def _drain(run: Run, daemon: Child, timeout: float = 60.0) -> None:
    """Let the connection that delivered the completion file finish its protocol exit."""

    def idle() -> bool:
        try:
            return not psutil.Process(daemon.pid).children()
        except psutil.NoSuchProcess:
            return True

    try:
        run.sup.wait_until(
            idle,
            what="waiting for the last rsync connection to close",
            timeout=timeout,
            every=QUICK,
        )
    except Timeout:
        log.warning("the last rsync connection did not close; stopping the listener anyway")


def _wait_listening(run: Run, daemon: Child, port: int) -> None:
    try:
        run.sup.wait_until(
            lambda: net.tree_listens(daemon.pid, port),
            what=f"starting the listener on port {port}",
            timeout=LISTEN_TIMEOUT,
            alive=[daemon],
            every=QUICK,
        )
    except Timeout as exc:
        raise PortBusy(exc.message) from exc
    except TransferError as exc:
        raise PortBusy(
            f"{daemon.stage.label} died before listening on port {port}: {exc.message}"
        ) from exc


def _swap(run: Run, s: RsyncSettings, layout: JoinerLayout, tar: str) -> None:
    """Check the binlog archive, swap the verified staging in (journaled: sst/swap.py),
    then restore the binlogs. Raises TransferError for an archive with anything but
    plain binlog files, before the datadir changes."""
    req = run.req
    dd = req.datadir
    binlogs = s.server.binlogs(dd)
    members = _binlog_members(run, tar) if binlogs is not None and os.path.exists(tar) else []
    main = layout.main
    nested = [
        os.path.relpath(a.staged, main.staged).split(os.sep)[0]
        for a in layout.areas[1:]
        if a.staged.startswith(main.staged + os.sep)
    ]
    plan, refused = swap.rsync_plan(
        Area(main.live, main.staged),
        _sub_areas(layout),
        (rs.MAGIC_FILE, rs.BINLOG_TAR, rs.ORIGIN_FILE, *nested),
    )
    if refused:
        log.warning(
            f"Not swapped in ({len(refused)}; only regular files and directories with names "
            f"not of galera-sst's own are): {', '.join(refused[:10])}"
        )
    swap.execute(dd, plan)
    log.info(f"Swapped {len(plan.into) + len(plan.replace)} received entries into {dd}")
    _restore_binlogs(run, s, tar, members)


def _restore_binlogs(
    run: Run, s: RsyncSettings, tar: str, members: list[str] | None = None
) -> None:
    """Replace the joiner's binlogs by those of the donor's tar (members: its checked
    listing, read here when None). Raises TransferError for an archive with anything but
    plain binlog files."""
    dd = run.req.datadir
    binlogs = s.server.binlogs(dd)
    if binlogs is None:
        return
    if members is None:
        members = _binlog_members(run, tar) if os.path.exists(tar) else []
    binlogs.remove_all(dd)
    names = [n for n in members if datadir.BINLOG_NAME.fullmatch(n)]  # the index: rebuilt
    if names:
        datadir.ensure_dir(binlogs.directory)
        child = run.sup.start(
            Stage(
                tar_tool.extract_argv(tools.find("tar"), tar, binlogs.directory, names),
                name="tar",
                log_stderr=True,
            )
        )
        run.sup.wait([child], what="extracting the binlog tar")
        binlogs.write_index(names)
        log.info(f"Restored {len(names)} binlog file(s) into {binlogs.directory}")


def _sub_areas(layout: JoinerLayout) -> list[Area]:
    """The separate areas, each with the file patterns of every module staged into it."""
    out = []
    for a in layout.areas[1:]:
        pats = [p for b in layout.subs.values() if b.staged == a.staged for p in b.patterns]
        out.append(Area(a.live, a.staged, tuple(dict.fromkeys(pats))))
    return out


def _binlog_members(run: Run, tar: str) -> list[str]:
    """The archive's members, listed with `tar -tv` and checked (plain binlog or index
    basenames, regular files, no special mode bits); raises TransferError otherwise."""
    listing = os.path.join(run.rundir, "binlogs.txt")
    with open(listing, "wb") as out:
        child = run.sup.start(
            Stage(tar_tool.list_argv(tools.find("tar"), tar), name="tar", log_stderr=True),
            stdout=out,
        )
        run.sup.wait([child], what="listing the binlog tar")
    with open(listing, encoding="utf-8", errors="surrogateescape") as f:
        members = tar_tool.parse_listing(f.read())
    return tar_tool.checked_names(
        members,
        lambda n: bool(datadir.BINLOG_NAME.fullmatch(n) or datadir.BINLOG_INDEX.fullmatch(n)),
    )


# ---------------------------------------------------------------------------------------
# the joiner's basis and resume (README, "Stale joiners and resume")
# ---------------------------------------------------------------------------------------


def _modules(module: str, layout: JoinerLayout) -> list[tuple[str, str]]:
    """The daemon's modules onto one staging: module itself and `<module>-<sub>`, the
    names a donor (stock or ours) builds from the announced one."""
    return [(module, layout.main.staged)] + [
        (f"{module}-{k}", a.staged) for k, a in layout.subs.items()
    ]


def _prepare_basis(run: Run, s: RsyncSettings) -> tuple[JoinerLayout | None, str, str]:
    """The basis staging, filled with hard links of a kept partial transfer and then of the
    old files, the cluster UUID it holds data of, and the id of the record the joiner holds
    of its old files (records.NONE for none: every old file is offered); (None, '', NONE)
    when there is nothing to offer. The old files go in only when grastate.dat names the
    kept transfer's cluster (or there is none kept); with a record, only those it still
    vouches for (_joiner_record)."""
    req = run.req
    dd = req.datadir
    kept = resume.usable(dd, s.resume_max_age)
    own = datadir.grastate_uuid(dd)
    uuid = kept.uuid if kept else own
    if not uuid:
        log.info("No basis offered: grastate.dat names no cluster and no partial transfer is kept")
        return None, "", records.NONE
    layout = joiner_layout(req, s, datadir.BASIS)
    vouched, held = _joiner_record(req, s, layout) if not kept else (None, records.NONE)
    datadir.prepare_staging(layout.areas, hardlink_from_live=False)
    datadir.link_basis(
        layout.areas, resume.path(dd) if kept else "", live=own == uuid, keep=vouched
    )
    parts = [f"the partial transfer from {kept.position}"] if kept else []
    if own == uuid:
        parts.append("the old datadir")
    log.info(f"Offering {' and '.join(parts)} as the basis (cluster {uuid}) to a donor of it")
    return layout, uuid, held


# The files a donor's pass carries at the top of an area (the sub-modules' patterns); any
# other file there (logs, binlogs) is linked into the basis as it is, and swapped back.
_CARRIED_AT_TOP = tuple(p for pats in rs.SUBMODULE_FILES.values() for p in pats)


def _carried(path: str, top: bool) -> bool:
    """Whether a donor's pass carries the file at path (top: at an area's top)."""
    name = os.path.basename(path)
    return not top or any(fnmatch.fnmatchcase(name, p) for p in _CARRIED_AT_TOP)


def _layout(main: str, subs: dict[str, str]) -> dict[str, str]:
    """Which directory each module maps to, as a record holds it ('' is the datadir's)."""
    return {"": main, **subs}


def _joiner_live_layout(layout: JoinerLayout) -> dict[str, str]:
    """The joiner's live directories as a record holds them (_layout)."""
    return _layout(layout.main.live, {k: a.live for k, a in layout.subs.items()})


def _joiner_record(
    req: Request, s: RsyncSettings, layout: JoinerLayout
) -> tuple[datadir.LinkFilter | None, str]:
    """The joiner's record of its last SST, when it holds (sst/records.py; py_rsync with
    rsync-records): the filter that links into the basis only the
    data files whose stat is still the recorded one (the donor may skip those unread), and
    the record's id to announce; (None, records.NONE) otherwise, when every old file is
    offered and compared by checksum. Logs what it decided."""
    dd = req.datadir
    path = os.path.join(dd, records.JOINER)
    if not s.records or is_wan(req) or not os.path.lexists(path):
        return None, records.NONE
    live = _joiner_live_layout(layout)
    rec, why = records.load(path, datadir.grastate_uuid(dd), live)
    if rec is None:
        log.info(f"The joiner's record of its last SST is not used: {why}")
        return None, records.NONE
    try:
        found = records.scan_files([a.live for a in layout.areas], frozenset(datadir.PROTECTED_TOP))
    except OSError as exc:
        log.info(f"The joiner's record of its last SST is not used: {exc}")
        return None, records.NONE
    data = {p: e for p, e in found.items() if _carried(p, os.path.dirname(p) in live.values())}
    held = {p for p, e in data.items() if rec.holds(p, e)}
    if not held:
        log.info("The joiner's record of its last SST vouches for no data file now: not used")
        return None, records.NONE
    log.info(
        f"The joiner's record of its last SST vouches for {len(held)} of its {len(data)} data "
        "file(s); only those are offered in the basis, the others are sent whole"
    )

    def vouched(path: str, top: bool) -> bool:
        # Not data a donor sends: linked, and swapped back, as before. The scan above is
        # the stat the record is checked against: nothing writes the datadir meanwhile (the
        # server waits for the SST).
        return not _carried(path, top) or path in held

    return vouched, rec.id


def _record_joiner(dd: str, layout: JoinerLayout, rid: str, uuid: str) -> None:
    """After a successful SST, the joiner's record (sst/records.py): every file of its
    datadir as the swap left it, under the donor's record id, written once the file systems
    stamp later times than any of it (records.wait_past: mariadbd writes next). A failure
    costs only the next rejoin's speed: logged, not raised."""
    boot = records.boot_id()
    if not boot:
        return
    live = _joiner_live_layout(layout)
    why = ""
    try:
        roots = [a.live for a in layout.areas]
        files = records.scan_files(roots, frozenset(datadir.PROTECTED_TOP))
        if records.wait_past(files, roots):
            records.save_joiner(dd, records.Record(rid, boot, uuid, live, files))
            log.info(f"Kept a record of this SST ({len(files)} file(s), record {rid[:8]})")
            return
        why = "the file system's clock did not pass its files' times"
    except OSError as exc:
        why = str(exc)
    log.warning(f"could not keep the record of this SST ({why}): the next rejoin reads every file")


def _completed(received: Sequence[JoinerLayout]) -> JoinerLayout:
    """The staging the donor completed (the one holding the completion file); raises
    TransferError when both do (a donor writes into one only)."""
    done = [lay for lay in received if os.path.exists(os.path.join(lay.main.staged, rs.MAGIC_FILE))]
    if len(done) != 1:
        raise TransferError("completion files arrived in both stagings; refusing the data")
    if done[0] is not received[0]:
        log.info("The donor sent into the basis staging: only changed files crossed")
    return done[0]


def _keep_partial(
    run: Run, s: RsyncSettings, layouts: Sequence[JoinerLayout], outcome: BaseException | None
) -> None:
    """After the joiner's transfer failed (outcome; None: it succeeded, and the skeleton
    dropped the kept transfer): before the data was complete, the staging holding our
    donor's origin file is kept (sst/resume.py), but not when the disk filled up."""
    dd = run.req.datadir
    if outcome is None:
        return
    if isinstance(outcome, NoSpace):
        resume.drop(dd, "the disk filled up")
        return
    roots = [
        lay.main.staged
        for lay in layouts
        if os.path.exists(os.path.join(lay.main.staged, rs.ORIGIN_FILE))
        and not os.path.exists(os.path.join(lay.main.staged, rs.MAGIC_FILE))
    ]
    if roots:
        run.sup.close()  # no receiver may still write into what is kept
        resume.keep(dd, roots[-1], s.resume_max_age)


def _basis_push(req: Request, push: rs.Push) -> rs.Push:
    """The donor's rule (rs.basis_decision), said in one INFO line: into the joiner's basis
    modules with --checksum when its data belongs to this cluster, else the full transfer.
    A changed file goes whole on a LAN (py_rsync: rsync's delta search is slower than the
    wire there, and the joiner writes the file anew either way) and as a delta on a WAN
    (py_rsync_wan: a big table with a few changed pages sends those pages)."""
    use, why = rs.basis_decision(_module(req), req.gtid)
    if use:
        why += ", each whole (LAN)" if push.whole_file else ", as deltas (WAN)"
    log.info(f"Basis rule: {'basis' if use else 'full transfer'}: {why}")
    return replace(push, url=push.url + rs.BASIS_SUFFIX, basis=True) if use else push


def _send_origin(run: Run, s: RsyncSettings, push: rs.Push, rsync_bin: str) -> None:
    """First of all, our donor's position into the joiner's staging (only a galera-sst
    joiner's: a stock one would keep the file in its datadir), so that a failure after
    it leaves a partial transfer the next SST resumes from."""
    req = run.req
    if not rs.cluster_uuid(req.gtid) or not rs.announced_by_galera_sst(_module(req)):
        return
    origin = write_private(os.path.join(run.rundir, rs.ORIGIN_FILE), f"{req.gtid}\n")
    child = run.sup.start(_rsync(rs.origin_pass(rsync_bin, push, origin), push))
    run.sup.wait([child], what="sending the origin file", timeout=max(s.idle_timeout, 60))


# ---------------------------------------------------------------------------------------
# donor
# ---------------------------------------------------------------------------------------


def _push(run: Run, s: RsyncSettings, stunnel_bin: str) -> rs.Push:
    req = run.req
    addr = req.address
    assert addr is not None
    # Our joiner (same py_ method) demands rsync authentication with its secret; under the
    # stock names the joiner may be stock, with no module users (docs/tls.md 2, rsync daemon).
    user, password_file = "", ""
    if req.name.ours and req.remote_auth.secret:
        user = rs.AUTH_USER
        password_file = write_private(
            os.path.join(run.rundir, "rsync.password"), rs.password_text(req.remote_auth.secret)
        )
    url = rs.push_url(addr.hostport, _module(req), user=user)
    if not stunnel_bin:
        return rs.Push(
            url,
            whole_file=not is_wan(req),
            bwlimit_kib=s.bwlimit_kib,
            password_file=password_file,
        )
    files, verify = tunnel_files(run, s)
    if s.ssl_mode == "VERIFY_IDENTITY":
        # The name the joiner announced (its CN), else the address it was reached at; an IP
        # literal is checked against IP SANs, any other name as a DNS name: the rule the
        # pre-flight and `galera-sst check` apply (sst.net.is_ip_literal).
        name = req.remote_auth.cn or addr.host
        verify = verify.identity(name)
    conf = os.path.join(run.rundir, "stunnel-client.conf")
    with open(conf, "w", encoding="utf-8") as f:
        f.write(st.client_conf(files, verify, f"{addr.host}:{addr.port}"))

    def explain(lines: Sequence[str]) -> str:
        return st.failure_reason(lines, verify.names)

    return rs.Push(
        url,
        whole_file=not is_wan(req),
        rsh=rs.rsh_stunnel(stunnel_bin, conf),
        bwlimit_kib=s.bwlimit_kib,
        password_file=password_file,
        explain=explain,
    )


def _binlog_tar(run: Run, s: RsyncSettings) -> str:
    """Tar the newest sst-max-binlogs binlogs into the datadir; '' when there are none."""
    req = run.req
    binlogs = s.server.binlogs(req.datadir)
    if binlogs is None or s.max_binlogs == 0:
        return ""
    files = [p for p in binlogs.listed(req.datadir) if os.path.isfile(p)]
    if s.max_binlogs > 0:
        files = files[-s.max_binlogs :]
    if not files:
        return ""
    tar = os.path.join(req.datadir, rs.BINLOG_TAR)
    argv: list[str] = [tools.find("tar"), "-cf", tar]
    for p in files:
        argv += ["-C", os.path.dirname(p), "--", os.path.basename(p)]
    child = run.sup.start(Stage(tuple(argv), name="tar"))
    run.sup.wait([child], what="archiving binlogs")
    log.info(
        f"Sending {len(files)} binlog file(s): {', '.join(os.path.basename(p) for p in files)}"
    )
    return tar


STRICT = frozenset({0})


def _rsync(argv: tuple[str, ...], push: rs.Push, ok: frozenset[int] = STRICT) -> Stage:
    """One rsync pass; a failure names the tunnel's TLS verdict when there is one."""
    return Stage(argv, name="rsync", ok_codes=ok, errno_for=rs.errno_for, explain=push.explain)


PRECOPY_OK = frozenset({0, rs.VANISHED})  # files may vanish while the server writes
# Passes at once under the read lock: they carry little, and each costs a connection (and a
# TLS handshake) that would otherwise wait its turn while writes are refused.
LOCKED_AT_ONCE = 8


@dataclass(frozen=True)
class Pass:
    """One of the donor's rsync passes (docs/contract.md 6.2): its argv, and the tree it
    carries: the directory its files are relative to and how they are selected."""

    key: str  # "top", a sub-module's name, or "db:" and a database directory's name
    what: str  # the phase it is
    argv: tuple[str, ...]
    root: str
    patterns: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    recursive: bool = False
    # A big database directory's pass split over parallel rsyncs (rs.database_part_passes);
    # () runs argv. argv stays the whole pass (its deletion pass under the lock).
    parts: tuple[tuple[str, ...], ...] = ()
    size: int = 0  # bytes of its files seen at the start (database directories: top level)

    def scan(self, skip: set[tuple[int, int]] | None = None) -> snapshot.Snapshot:
        """The stat of every file this pass carries, now."""
        return snapshot.scan(
            self.root,
            patterns=self.patterns,
            only=self.only,
            recursive=self.recursive,
            skip=skip or set(),
        )


def _passes(
    run: Run, s: RsyncSettings, push: rs.Push, rsync_bin: str, *, split: bool = True
) -> list[Pass]:
    """The passes in stock order: the top level, the sub-modules whose directory exists, then
    every database directory (each top-level directory but the excluded and our own); with
    split, a big database directory's parts and every pass's size (reads each directory:
    not wanted under the read lock, where only the whole passes serve)."""
    dd = run.req.datadir
    out = [
        Pass(
            "top",
            "sending the datadir's top level",
            rs.top_level_pass(rsync_bin, push, dd),
            dd,
            only=(rs.BINLOG_TAR,),
        )
    ]
    for sub, src in s.server.by_module(dd).items():
        if os.path.isdir(src):
            argv = rs.submodule_pass(rsync_bin, push, src, sub)
            pats = rs.SUBMODULE_FILES[sub]
            found = snapshot.scan(src, patterns=pats).files.values() if split else ()
            size = sum(e.size for e in found)
            out.append(Pass(sub, f"sending {sub} files", argv, src, pats, size=size))
    dbs = sorted(
        e.name
        for e in os.scandir(dd)
        if e.is_dir()
        and e.name not in (*rs.EXCLUDED_TOP, *rs.EXCLUDED_OURS, datadir.STAGING, datadir.OLD)
    )
    for db in dbs:
        argv = rs.database_pass(rsync_bin, push, dd, db)
        root = os.path.join(dd, db)
        sizes = _plain_files(root) if split else {}
        size = sum(sizes.values())
        parts: tuple[tuple[str, ...], ...] = ()
        groups = split_groups(sizes, s.backup_threads)
        if groups:
            parts = tuple(rs.database_part_passes(rsync_bin, push, dd, db, groups))
        what = "sending database directories"
        out.append(Pass(f"db:{db}", what, argv, root, recursive=True, parts=parts, size=size))
    return out


# A database directory holding at least SPLIT_BYTES in plain files is sent by backup-threads
# rsyncs at once, its files spread over parts (rs.database_part_passes): one rsync reads,
# checksums and writes its files one after the other, on each side. Up to PARTS_PER_THREAD
# parts per rsync, each of at least PART_BYTES: a part that takes longer than the others (a
# stale joiner's changed table, sent whole where the rest is only checksummed; files that
# compete for the disk) then holds up one rsync for less while the others take the rest.
SPLIT_BYTES = 64 << 20
PARTS_PER_THREAD = 2
PART_BYTES = 32 << 20
# Each name of a split directory stands in some part's argv as a filter rule (the last part
# names every file of the others): a directory of more names goes as one pass, so that no
# argv comes near the kernel's limit (ARG_MAX, 2 MiB with the usual 8 MiB stack: some
# 50,000 rules of table-length names).
SPLIT_NAMES_MAX = 10_000


def split_groups(sizes: dict[str, int], threads: int) -> list[list[str]]:
    """Given a database directory's plain files with their sizes and backup-threads: the
    groups of names its parts carry (rs.split_names), or [] when it goes as one pass (less
    than SPLIT_BYTES, more than SPLIT_NAMES_MAX names, one thread, or fewer than two
    groups)."""
    size = sum(sizes.values())
    if size < SPLIT_BYTES or threads < 2 or len(sizes) > SPLIT_NAMES_MAX:
        return []
    parts = min(PARTS_PER_THREAD * threads, max(threads, size // PART_BYTES))
    groups = rs.split_names(sizes, parts)
    return groups if len(groups) > 1 else []


def _plain_files(root: str) -> dict[str, int]:
    """The regular files directly in root whose names a filter rule can spell
    (rs.plain_name), with their sizes; {} when root cannot be read."""
    try:
        found = snapshot.scan(root, patterns=("*",)).files
    except OSError:
        return {}
    return {n: e.size for n, e in found.items() if stat.S_ISREG(e.mode) and rs.plain_name(n)}


def _run_passes(
    run: Run, s: RsyncSettings, push: rs.Push, passes: list[Pass], ok: frozenset[int]
) -> None:
    """Run the passes: the top level first, then, in stock order, the sub-modules one by
    one and the database directories backup-threads at a time, a big one's parts
    (Pass.parts) side by side; exits in ok are success. In the pre-copy (ok accepts
    vanished files) the order carries no meaning (docs/contract.md 6.2, "Pre-copy"):
    after the top level, every other pass goes in the same pool, the biggest first."""

    def one(p: Pass) -> None:
        child = run.sup.start(_rsync(p.argv, push, ok))
        run.phase(p.what, tls=s.ssl_mode, watch=(child.pid,))
        act = TreeActivity(child.pid)
        run.sup.wait([child], what=p.what, idle=act.idle, idle_timeout=s.idle_timeout)

    precopy = ok != STRICT
    pooled = [p for p in passes if p.key.startswith("db:") or (precopy and p.key != "top")]
    for p in passes:
        if p not in pooled:
            one(p)
    if precopy:
        pooled.sort(key=lambda p: -p.size)
    what = "sending the datadir's files" if precopy else "sending database directories"
    _parallel(run, s, push, [a for p in pooled for a in (p.parts or (p.argv,))], ok=ok, what=what)
    # A split directory's parts delete nothing (rs.database_part_passes): now they are done.
    deletions = [rs.deletion_pass(p.argv) for p in pooled if p.parts]
    _parallel(run, s, push, deletions, ok=ok, what="deleting what the donor no longer has")


def _parallel(
    run: Run,
    s: RsyncSettings,
    push: rs.Push,
    argvs: list[tuple[str, ...]],
    *,
    ok: frozenset[int] = STRICT,
    at_once: int = 0,
    what: str = "sending database directories",
) -> None:
    """Run rsync passes with at most at_once (default backup-threads) at a time, as the
    phase what; the first failure stops all."""
    pending = list(argvs)
    active: list[tuple[Child, TreeActivity]] = []
    while pending or active:
        while pending and len(active) < (at_once or s.backup_threads):
            c = run.sup.start(_rsync(pending.pop(0), push, ok))
            active.append((c, TreeActivity(c.pid)))
            run.phase(what, tls=s.ssl_mode, watch=tuple(a.pid for a, _ in active))
        run.sup.check_parent()
        running = len(active)
        for c, act in list(active):
            rc = c.poll()
            if rc is None:
                if s.idle_timeout and act.idle() > s.idle_timeout:
                    raise Timeout(
                        f"sending {c.stage.argv[-2]}: no progress for {s.idle_timeout:g} s"
                    )
                continue
            active.remove((c, act))
            if rc not in ok:
                raise c.error(f"sending {c.stage.argv[-2]}")
        if len(active) == running:  # none ended: sleep until one does (or the next tick)
            run.sup.nap([c for c, _ in active])


@dataclass(frozen=True)
class Baseline:
    """What the pre-copy started from: t0 (wall clock, ns) and every pass's files then."""

    t0_ns: int
    trees: dict[str, snapshot.Snapshot]
    seconds: float  # how long the pre-copy took


@dataclass(frozen=True)
class FileList:
    """Files of one module sent again under the lock: `--files-from` paths under root."""

    name: str  # names the list file: "main" or a sub-module
    root: str
    url: str
    paths: list[str]
    bytes: int
    # In the pre-copy with a record (_recorded_lists): "whole" (--ignore-times), "compare"
    # (--checksum) or "missing" (--ignore-existing); "" under the lock (--ignore-times).
    how: str = ""


def _redo_ids(trees: dict[str, snapshot.Snapshot]) -> set[tuple[int, int]]:
    """(dev, ino) of the redo log files: they go in their own pass, never in another."""
    redo = trees.get("log_dir", snapshot.Snapshot())
    return {(e.dev, e.ino) for e in redo.files.values()}


def _scan(passes: list[Pass], skip: set[tuple[int, int]]) -> dict[str, snapshot.Snapshot]:
    """The files of every pass but the redo log's, leaving out the redo log files."""
    return {p.key: p.scan(skip) for p in passes if p.key != "log_dir"}


def _precopy(
    run: Run, s: RsyncSettings, push: rs.Push, rsync_bin: str, rec: records.Record | None
) -> Baseline:
    """Every pass without the read lock, after recording t0 and every file's stat; files
    that vanish meanwhile are no failure (the passes under the lock see to them). With the
    donor's record of the joiner's last SST (rec), lists instead (_recorded_precopy)."""
    t0_ns = time.time_ns()
    start = time.monotonic()
    passes = _passes(run, s, push, rsync_bin)
    trees = {p.key: p.scan() for p in passes if p.key == "log_dir"}
    trees.update(_scan(passes, _redo_ids(trees)))
    # The redo log goes again under the lock, every file of it: sent whole there, a copy of
    # it now would cross the wire and the joiner's disk for nothing (a delta, on a WAN,
    # would find most of it in the copy).
    if push.whole_file:
        passes = [p for p in passes if p.key != "log_dir"]
    if rec is None:
        _run_passes(run, s, push, passes, PRECOPY_OK)
    else:
        _recorded_precopy(run, s, push, rsync_bin, passes=passes, trees=trees, rec=rec)
    os.sync()  # so that the sync under the lock has little left to write
    took = time.monotonic() - start
    dbs = sum(1 for p in passes if p.key.startswith("db:"))
    split = [f"{p.key[3:]} in {len(p.parts)} parts" for p in passes if p.parts and rec is None]
    log.info(
        f"Pre-copy without the read lock done in {took:.2f} s ({dbs} database directories"
        f"{'; split: ' + ', '.join(split) if split else ''}; {s.backup_threads} rsyncs at once)"
    )
    return Baseline(t0_ns, trees, took)


def _recorded_precopy(
    run: Run,
    s: RsyncSettings,
    push: rs.Push,
    rsync_bin: str,
    *,
    passes: list[Pass],
    trees: dict[str, snapshot.Snapshot],
    rec: records.Record,
) -> None:
    """The pre-copy with the donor's record of the joiner's last SST (docs/contract.md 6.2,
    "Skipping what both sides recorded"): the top level's pass (it makes new database
    directories), then lists of files (_recorded_lists): those whose content changed since
    the record whole, those it cannot vouch for by checksum, and those it vouches for only
    where the joiner lacks them; then every other pass's deletion pass, which deletes what
    the donor no longer has and creates what appeared since, reading no file both sides
    hold. No filter rule names a file (rsync matches every file against every rule)."""
    top = [p for p in passes if p.key == "top"]
    rest = [p for p in passes if p.key != "top"]
    _run_passes(run, s, push, top, PRECOPY_OK)
    lists = _recorded_lists(run, s, rest, trees=trees, rec=rec, url=push.url)
    _send_lists(run, s, push, rsync_bin, lists)
    deletions = [rs.deletion_pass(p.argv) for p in rest]
    _parallel(run, s, push, deletions, ok=PRECOPY_OK, what="deleting what the donor no longer has")


def _recorded_lists(
    run: Run,
    s: RsyncSettings,
    passes: list[Pass],
    *,
    trees: dict[str, snapshot.Snapshot],
    rec: records.Record,
    url: str,
) -> list[FileList]:
    """Given the pre-copy's passes but the top level's, their files at t0 and the donor's
    record: the lists to send, per module. A file the record still holds is listed only to
    be sent where the joiner lacks it ("missing": the joiner offers only copies its own
    record vouches for, sst/records.py); one whose inode, size or mtime changed since is
    sent whole ("whole": a checksum would almost never match); one the record does not
    know, or whose metadata alone changed (chmod, chown, a link), is compared by checksum
    ("compare"). Each list carries the tree's sub-directories too (created before their
    files). The "whole" files are spread over backup-threads lists. Logs the counts."""
    groups: dict[tuple[str, str], dict[str, int]] = {}
    dirs: dict[str, list[str]] = {}
    roots: dict[str, tuple[str, str]] = {}
    counts = {"missing": [0, 0], "whole": [0, 0], "compare": [0, 0]}
    for p in passes:
        tree = trees.get(p.key)
        if tree is None:
            continue
        module = "main" if p.key.startswith("db:") else p.key
        prefix = p.key[3:] + "/" if p.key.startswith("db:") else ""
        roots[module] = (run.req.datadir, url) if module == "main" else (p.root, f"{url}-{p.key}")
        dirs.setdefault(module, []).extend(prefix + d for d in tree.dirs if d)
        for rel, e in tree.files.items():
            r = rec.files.get(os.path.join(p.root, rel))
            if r == e:
                how = "missing"
            elif r is not None and (r.dev, r.ino, r.size, r.mtime_ns) != (
                e.dev,
                e.ino,
                e.size,
                e.mtime_ns,
            ):
                how = "whole"
            else:
                how = "compare"
            groups.setdefault((module, how), {})[prefix + rel] = e.size
            counts[how][0] += 1
            counts[how][1] += e.size
    out: list[FileList] = []
    for (module, how), sizes in sorted(groups.items()):
        root, dest = roots[module]
        parts = rs.split_names(sizes, s.backup_threads) if how == "whole" else [sorted(sizes)]
        for part in parts:
            paths = sorted(dirs[module]) + part
            out.append(FileList(module, root, dest, paths, sum(sizes[x] for x in part), how))
    mib = {k: v[1] / 2**20 for k, v in counts.items()}
    log.info(
        f"Record {rec.id[:8]} of the joiner's last SST: {counts['missing'][0]} file(s), "
        f"{mib['missing']:.1f} MiB unchanged on this donor since, skipped unread unless the "
        f"joiner lacks them; {counts['whole'][0]} changed since ({mib['whole']:.1f} MiB) go "
        f"whole, {counts['compare'][0]} it does not vouch for ({mib['compare']:.1f} MiB) "
        "are compared"
    )
    return out


def _file_lists(
    passes: list[Pass], base: Baseline, trees: dict[str, snapshot.Snapshot], url: str
) -> list[FileList]:
    """What changed since t0 (snapshot.changed_files), one list per module: each
    sub-module's, and the main module's (the binlog tar and the database directories)."""
    since = base.t0_ns - snapshot.MARGIN_NS
    out: list[FileList] = []
    main: list[str] = []
    main_bytes = 0
    for p in passes:
        if p.key == "log_dir":
            continue  # sent first, whole, by _send_changes
        changed = snapshot.changed_files(base.trees.get(p.key), trees[p.key], since)
        size = trees[p.key].size(changed)
        if p.key == "top" or p.key.startswith("db:"):
            prefix = "" if p.key == "top" else p.key[3:] + "/"
            main += [prefix + f for f in changed]
            main_bytes += size
        elif changed:
            out.append(FileList(p.key, p.root, f"{url}-{p.key}", changed, size))
    if main:
        out.append(FileList("main", passes[0].root, url, main, main_bytes))
    return out


def _send_lists(
    run: Run, s: RsyncSettings, push: rs.Push, rsync_bin: str, lists: list[FileList]
) -> tuple[int, int]:
    """Send each list's files (at most backup-threads passes at once, or LOCKED_AT_ONCE
    under the lock, where the lists carry little); (files, bytes). In the pre-copy (how
    set), a listed file that is gone by then is no failure (`--ignore-missing-args`)."""
    argvs = []
    for i, fl in enumerate(lists):
        path = os.path.join(run.rundir, f"{fl.how or 'changed'}-{fl.name}-{i}.lst")
        with open(path, "xb") as f:
            f.write(rs.files_from(fl.paths))
        argvs.append(rs.list_pass(rsync_bin, push, fl.root, fl.url, path, how=fl.how))
    if any(fl.how for fl in lists):
        _parallel(run, s, push, argvs, ok=PRECOPY_OK, what="sending the datadir's files")
    else:
        at_once = max(s.backup_threads, LOCKED_AT_ONCE)
        _parallel(run, s, push, argvs, at_once=at_once, what="sending what changed, under the lock")
    return sum(len(fl.paths) for fl in lists), sum(fl.bytes for fl in lists)


def _send_changes(
    run: Run, s: RsyncSettings, push: rs.Push, rsync_bin: str, base: Baseline
) -> tuple[int, int, int, dict[str, snapshot.Entry]]:
    """Under the read lock (docs/contract.md 6.2, "Pre-copy"): the redo log first, whole;
    then, scanned after it was read, every other file that changed since t0 or is new;
    then the deletion passes of the trees whose directories changed. Returns the files and
    bytes sent again, the number of database directories, and the settled files (_settled)."""
    passes = _passes(run, s, push, rsync_bin, split=False)
    trees: dict[str, snapshot.Snapshot] = {}
    files = size = 0
    for p in passes:
        if p.key == "log_dir":
            tree = trees[p.key] = p.scan()
            paths = sorted(tree.files)
            redo = FileList(p.key, p.root, f"{push.url}-{p.key}", paths, tree.size(paths))
            files, size = _send_lists(run, s, push, rsync_bin, [redo] if paths else [])
    trees.update(_scan(passes, _redo_ids(trees)))
    more = _send_lists(run, s, push, rsync_bin, _file_lists(passes, base, trees, push.url))
    since = base.t0_ns - snapshot.MARGIN_NS
    changed = [
        p for p in passes if snapshot.tree_changed(base.trees.get(p.key), trees[p.key], since)
    ]
    at_once = max(s.backup_threads, LOCKED_AT_ONCE)
    # The top level first (with the sub-modules, which touch none of its directories): it
    # makes a new database's directory before that database's own pass writes into it.
    for group in (
        [p for p in changed if not p.key.startswith("db:")],
        [p for p in changed if p.key.startswith("db:")],
    ):
        deletions = [rs.deletion_pass(p.argv, top=p.key == "top") for p in group]
        _parallel(
            run, s, push, deletions, at_once=at_once, what="deleting what the donor no longer has"
        )
    dbs = sum(1 for p in passes if p.key.startswith("db:"))
    return files + more[0], size + more[1], dbs, _settled(passes, base, trees)


def _settled(
    passes: list[Pass], base: Baseline, trees: dict[str, snapshot.Snapshot]
) -> dict[str, snapshot.Entry]:
    """The files the pre-copy sent (or skipped as recorded) and no pass sent again under the
    lock, by absolute path: unchanged from before t0 minus the margin until now, so the
    joiner's copy is this content (snapshot.changed_files). The redo log is never one."""
    since = base.t0_ns - snapshot.MARGIN_NS
    out: dict[str, snapshot.Entry] = {}
    for p in passes:
        if p.key in ("top", "log_dir") or p.key not in trees:
            continue
        changed = set(snapshot.changed_files(base.trees.get(p.key), trees[p.key], since))
        for rel, e in trees[p.key].files.items():
            if rel not in changed:
                out[os.path.join(p.root, rel)] = e
    return out


def _locked_copy(
    run: Run, s: RsyncSettings, push: rs.Push, rsync_bin: str, announced: str | None
) -> tuple[str, str]:
    """The copy around FTWRL: with rsync-precopy (the default) every pass first without the
    lock and under it only what changed since; else every pass under it, as stock. Sends
    `continue`, logs how long the lock lasted and what was sent under it. announced: the
    record id the joiner announced (rs.announced_record; None: it keeps none). Returns the
    state from tables_flushed and the id of this SST's record ('' for none: _record_donor,
    written once writes resumed)."""
    layout = _layout(run.req.datadir, s.server.by_module(run.req.datadir))
    rec = _donor_record(run, announced, layout) if push.basis else None
    base = _precopy(run, s, push, rsync_bin, rec) if s.precopy else None
    locked = time.monotonic()
    state = flush_tables(run, s.flush_timeout)
    os.sync()
    log.info("Tables flushed")
    _binlog_tar(run, s)
    settled: dict[str, snapshot.Entry] | None = None
    if base is None:
        passes = _passes(run, s, push, rsync_bin)
        _run_passes(run, s, push, passes, STRICT)
        dbs = sum(1 for p in passes if p.key.startswith("db:"))
        sent = ""
    else:
        files, size, dbs, settled = _send_changes(run, s, push, rsync_bin, base)
        sent = f": sent again under it {files} changed file(s), {size / 2**20:.1f} MiB"
    log.info(f"Transfer of data done ({dbs} database directories)")
    log.info("Sending continue to donor")
    run.out.resume()
    held = time.monotonic() - locked
    if base is None:
        log.info(f"Read lock held {held:.2f} s, for the whole copy (rsync-precopy=0)")
    else:
        log.info(f"Read lock held {held:.2f} s{sent}; pre-copy without it {base.seconds:.2f} s")
    if settled is None or announced is None:
        return state, ""
    return state, _record_donor(run, settled, layout)


def _donor_record(run: Run, announced: str | None, layout: dict[str, str]) -> records.Record | None:
    """The donor's record of the SST whose id the joiner announced, when it holds
    (sst/records.py); None otherwise, said in one INFO line."""
    if announced is None or not records.valid_id(announced):
        return None
    dd = run.req.datadir
    path = records.donor_path(dd, announced)
    rec, why = records.load(path, rs.cluster_uuid(run.req.gtid), layout)
    if rec is None:
        if why == "none readable":
            why = "not here (another donor's, or pruned)"
        log.info(
            f"The record {announced[:8]} of the joiner's last SST is not used: {why}; the "
            "files the joiner offers are compared by checksum, the others sent whole"
        )
    return rec


def _record_donor(run: Run, settled: dict[str, snapshot.Entry], layout: dict[str, str]) -> str:
    """Keep this SST's record (the settled files) for the joiner's next rejoin; its id, or
    '' when it could not be kept (logged: it costs only the next rejoin's speed)."""
    boot, uuid = records.boot_id(), rs.cluster_uuid(run.req.gtid)
    if not boot or not uuid:
        return ""
    rec = records.Record(records.new_id(), boot, uuid, layout, settled)
    try:
        records.save_donor(run.req.datadir, rec)
    except OSError as exc:
        log.warning(
            f"could not keep the record of this SST ({exc}): "
            "the joiner's next rejoin reads every file"
        )
        return ""
    log.info(f"Kept a record of this SST ({len(settled)} file(s), record {rec.id[:8]})")
    return rec.id


def donor(run: Run, s: RsyncSettings) -> None:
    """FTWRL handshake, the passes, `continue`, the completion file last, then `done`."""
    req = run.req
    if req.address is None:
        raise ConfigError("the donor needs --address")
    rsync_bin = tools.find("rsync")
    stunnel_bin = find_stunnel() if s.ssl_mode != "DISABLED" else ""
    preflight_tls(s, "donor")
    push = _push(run, s, stunnel_bin)
    if not req.bypass:
        push = _basis_push(req, push)
        _send_origin(run, s, push, rsync_bin)
    rid = ""  # this SST's record (sst/records.py), for our joiner
    tar = os.path.join(req.datadir, rs.BINLOG_TAR)
    datadir.remove(tar)
    try:
        if not req.bypass:
            announced = rs.announced_record(_module(req)) if s.records else None
            state, rid = _locked_copy(run, s, push, rsync_bin, announced)
        else:
            log.info("Bypassing state dump (IST).")
            state = f"{req.gtid} {req.gtid_domain_id}".strip()
            log.info("Sending continue to donor")
            run.out.resume()
    finally:
        datadir.remove(tar)

    magic = os.path.join(run.rundir, rs.MAGIC_FILE)
    lines = [state]
    if req.remote_auth.secret:
        lines.append(f"secret {req.remote_auth.secret}")
    if req.bypass:
        lines.append("bypass")
    if rid:
        lines.append(f"record {rid}")
    with open(magic, "w", encoding="utf-8") as mf:
        mf.write("\n".join(lines) + "\n")
    child = run.sup.start(_rsync(rs.magic_pass(rsync_bin, push, magic), push))
    run.sup.wait([child], what="sending the completion file", timeout=max(s.idle_timeout, 60))
    run.out.done(state)
