"""The rsync method (and rsync_wan, delta mode): docs/contract.md 3.4, 3.5, 5.4 and 6.2."""

from __future__ import annotations

import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import psutil

from sst import config, datadir, log, net, resume, stock, swap, tls, tools
from sst.config import RsyncSettings, TLSFiles
from sst.datadir import IN_PROGRESS, Area
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
    announce,
    announced_cn,
    check_secret,
    flush_tables,
    joiner_start,
    listen_address,
    listening_on,
)
from sst.process.runner import Child, Stage
from sst.protocol import State
from sst.request import Request
from sst.tools import rsync as rs
from sst.tools import stunnel as st
from sst.tools import tar as tar_tool

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

    @property
    def areas(self) -> list[Area]:
        """Distinct areas, main first."""
        out = [self.main]
        for a in self.subs.values():
            if a.staged not in {x.staged for x in out}:
                out.append(a)
        return out


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


def _module(req: Request) -> str:
    assert req.address is not None
    return req.address.module or rs.DEFAULT_MODULE


def joiner(run: Run, s: RsyncSettings) -> None:
    """Receive the state into staging, verify it, swap it in, print the coordinates."""
    req = run.req
    dd = joiner_start(run)
    rsync_bin = tools.find("rsync")
    stunnel_bin = find_stunnel() if s.ssl_mode != "DISABLED" else ""
    checked = preflight_tls(s, "joiner")

    for stale in (rs.MAGIC_FILE, rs.BINLOG_TAR):
        datadir.remove(os.path.join(dd, stale))

    layout = joiner_layout(req, s)
    basis = joiner_layout(req, s, datadir.BASIS)
    for a in layout.areas:
        datadir.ensure_dir(a.live)
    marker = os.path.join(dd, IN_PROGRESS)
    datadir.touch(marker)
    outcome: BaseException | None = None
    try:
        _joiner_receive(
            run, s=s, layout=layout, rsync_bin=rsync_bin, stunnel_bin=stunnel_bin, checked=checked
        )
    except BaseException as exc:
        outcome = exc
        raise
    finally:
        _keep_partial(run, s, (layout, basis), outcome)
        datadir.remove_staging([*layout.areas, *basis.areas])
        datadir.remove(marker)
        for f in (STUNNEL_PID, RSYNC_PID, rs.MAGIC_FILE, rs.BINLOG_TAR):
            datadir.remove(os.path.join(dd, f))


def _joiner_receive(
    run: Run,
    *,
    s: RsyncSettings,
    layout: JoinerLayout,
    rsync_bin: str,
    stunnel_bin: str,
    checked: tls.CheckedTLS | None,
) -> None:
    req = run.req
    addr = req.address
    assert addr is not None
    wan = is_wan(req)
    # The announced modules stage into an empty directory (a stock donor's --inplace is
    # harmless there); the old files are offered as a basis only on separate modules.
    datadir.prepare_staging(layout.areas, hardlink_from_live=False)
    basis, uuid = _prepare_basis(run, s)
    st_dd = os.stat(req.datadir)
    owner = rs.daemon_owner(os.geteuid(), st_dd.st_uid, st_dd.st_gid)
    for lay in (layout, basis) if basis else (layout,):
        _private_staging(lay, owner)

    # Per-SST names and secret, announced only through Galera (docs/tls.md 2, rsync daemon).
    module = rs.basis_module_name(rs.module_name(_module(req), secrets.token_hex(16)), uuid)
    secret = secrets.token_hex(16)
    cn = announced_cn(s.ssl_mode, checked)
    bind = listen_address(addr)
    received = rs.Received()
    daemon, disk, refusals = _start_daemon(
        run,
        s,
        rs.Daemon(
            pid_file=os.path.join(req.datadir, RSYNC_PID),
            modules=_modules(module, layout),
            timeout=int(s.idle_timeout) or 300,
            owner=owner,
            secrets_file=_secrets_file(run, secret) if req.name.ours else "",
            basis_modules=_modules(module + rs.BASIS_SUFFIX, basis) if basis else (),
        ),
        bind=bind,
        rsync_bin=rsync_bin,
        stunnel_bin=stunnel_bin,
        received=received,
    )
    _wait_listening(run, daemon, addr.port)
    log.info(
        f"Listening on {listening_on(addr, bind)} "
        f"({'TLS ' + s.ssl_mode if stunnel_bin else 'plain'}"
        f"{', delta mode' if wan else ''})"
    )
    announce(run, cn, secret, f"{addr.hostport}/{module}")
    run.phase("receiving", tls=s.ssl_mode, watch=(daemon.pid,))
    stagings = (layout, basis) if basis else (layout,)
    magics = [os.path.join(lay.main.staged, rs.MAGIC_FILE) for lay in stagings]
    _await_magic(run, s, daemon, (disk, refusals), magics)
    _drain(run, daemon)
    run.sup.stop(daemon)  # nothing may write into staging from here on
    layout = _completed(stagings)
    log.info(f"Received: {received.summary()}")

    state_line, tags = datadir.read_magic(os.path.join(layout.main.staged, rs.MAGIC_FILE))
    check_secret(tags, secret)
    _refuse_foreign_files(layout)
    state = State.parse(state_line)
    tar = os.path.join(layout.main.staged, rs.BINLOG_TAR)
    if "bypass" in tags:
        if os.path.exists(tar):
            log.warning("a binlog tar was transferred in IST mode; ignored")
        log.info("IST requested by the donor: the datadir is left as it is")
        stock.mark_ist()
    else:
        run.sup.check_parent()  # the swap is the one irreversible step: only for a live server
        run.phase("swapping in the new datadir")
        _swap(run, s, layout, tar)
    log.info(f"Galera co-ords from the donor: {state}")
    run.out.coordinates(state_line)


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


def _private_staging(layout: JoinerLayout, owner: tuple[int, int] | None) -> None:
    """Staging roots 0700; as root, every staged directory belongs to the datadir's owner,
    whom the daemon's transfers run as."""
    for a in layout.areas:
        os.chmod(a.staged, 0o700)
        if owner is None or owner == (os.geteuid(), os.getegid()):
            continue
        for root, dirs, _ in os.walk(a.staged):
            os.chown(root, *owner)
            for d in dirs:
                os.chown(os.path.join(root, d), *owner, follow_symlinks=False)


def _refuse_foreign_files(layout: JoinerLayout) -> None:
    """No datadir holds devices, FIFOs, sockets or set-id files: raises TransferError,
    before anything is swapped in, when the staging does."""
    for a in layout.areas:
        bad = datadir.first_foreign_entry(a.staged)
        if bad:
            raise TransferError(
                f"refusing the data: '{os.path.relpath(bad, a.staged)}' arrived as a device, "
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
        stage = Stage(argv, name="rsyncd", log_file=daemon_log, on_line=counted)
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
    magics: Sequence[str],
) -> None:
    """Wait until the completion file exists; raises Timeout when no donor connects within
    sst-initial-timeout or the transfer stalls for sst-idle-timeout, NoSpace on a full disk,
    TransferError when the listener dies (each with the last refused TLS handshake)."""
    disk, refusals = watches
    addr = run.req.address
    assert addr is not None
    activity = TreeActivity(daemon.pid)
    t0 = time.monotonic()

    def arrived() -> bool:
        if any(os.path.exists(m) for m in magics):
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
            idle, what="waiting for the last rsync connection to close", timeout=timeout
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
    if binlogs is None:
        return
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


def _prepare_basis(run: Run, s: RsyncSettings) -> tuple[JoinerLayout | None, str]:
    """The basis staging, filled with hard links of a kept partial transfer and then of the
    old files, and the cluster UUID it holds data of; (None, '') when there is nothing to
    offer. The old files go in only when grastate.dat names the kept transfer's cluster
    (or there is none kept)."""
    req = run.req
    dd = req.datadir
    kept = resume.usable(dd, s.resume_max_age)
    own = datadir.grastate_uuid(dd)
    uuid = kept.uuid if kept else own
    if not uuid:
        log.info("No basis offered: grastate.dat names no cluster and no partial transfer is kept")
        return None, ""
    layout = joiner_layout(req, s, datadir.BASIS)
    datadir.prepare_staging(layout.areas, hardlink_from_live=False)
    datadir.link_basis(layout.areas, resume.path(dd) if kept else "", live=own == uuid)
    parts = [f"the partial transfer from {kept.position}"] if kept else []
    if own == uuid:
        parts.append("the old datadir")
    log.info(f"Offering {' and '.join(parts)} as the basis (cluster {uuid}) to a donor of it")
    return layout, uuid


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
    """After the joiner's transfer: on success the kept transfer is obsolete; on a failure
    before the data was complete, the staging holding our donor's origin file is kept
    (sst/resume.py), but not when the disk filled up."""
    dd = run.req.datadir
    if outcome is None:
        resume.drop(dd, "the SST succeeded")
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
    modules with --checksum when its data belongs to this cluster (changed files as deltas,
    also for rsync: a big table with a few changed pages sends those pages), else the full
    transfer."""
    use, why = rs.basis_decision(_module(req), req.gtid)
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
        # pre-flight and `galera-sst check` apply (sst.tls.is_ip_literal).
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


def _rsync(argv: tuple[str, ...], push: rs.Push) -> Stage:
    """One rsync pass; a failure names the tunnel's TLS verdict when there is one."""
    return Stage(argv, name="rsync", errno_for=rs.errno_for, explain=push.explain)


def _run_passes(run: Run, s: RsyncSettings, push: rs.Push, rsync_bin: str) -> None:
    req = run.req
    dd = req.datadir

    def one(argv: tuple[str, ...], what: str) -> None:
        child = run.sup.start(_rsync(argv, push))
        run.phase(what, tls=s.ssl_mode, watch=(child.pid,))
        act = TreeActivity(child.pid)
        run.sup.wait([child], what=what, idle=act.idle, idle_timeout=s.idle_timeout)

    one(rs.top_level_pass(rsync_bin, push, dd), "sending the datadir's top level")
    log.info("Transfer of normal directories done")
    dirs = s.server.by_module(dd)
    for sub, src in dirs.items():
        if os.path.isdir(src):
            one(rs.submodule_pass(rsync_bin, push, src, sub), f"sending {sub} files")
    dbs = sorted(
        e.name
        for e in os.scandir(dd)
        if e.is_dir()
        and e.name not in (*rs.EXCLUDED_TOP, *rs.EXCLUDED_OURS, datadir.STAGING, datadir.OLD)
    )
    _parallel(run, s, push, [rs.database_pass(rsync_bin, push, dd, db) for db in dbs])
    log.info(f"Transfer of data done ({len(dbs)} database directories)")


def _parallel(run: Run, s: RsyncSettings, push: rs.Push, argvs: list[tuple[str, ...]]) -> None:
    """Run rsync passes with at most backup-threads at once; the first failure stops all."""
    pending = list(argvs)
    active: list[tuple[Child, TreeActivity]] = []
    while pending or active:
        while pending and len(active) < s.backup_threads:
            c = run.sup.start(_rsync(pending.pop(0), push))
            active.append((c, TreeActivity(c.pid)))
            run.phase("sending database directories", watch=tuple(a.pid for a, _ in active))
        run.sup.check_parent()
        for c, act in list(active):
            rc = c.poll()
            if rc is None:
                if s.idle_timeout and act.idle() > s.idle_timeout:
                    raise Timeout(
                        f"sending {c.stage.argv[-2]}: no progress for {s.idle_timeout:g} s"
                    )
                continue
            active.remove((c, act))
            if rc != 0:
                raise c.error(f"sending {c.stage.argv[-2]}")
        time.sleep(0.05)


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
    tar = os.path.join(req.datadir, rs.BINLOG_TAR)
    datadir.remove(tar)
    try:
        if not req.bypass:
            state = flush_tables(run, s.flush_timeout)
            os.sync()
            log.info("Tables flushed")
            _binlog_tar(run, s)
            _run_passes(run, s, push, rsync_bin)
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
    with open(magic, "w", encoding="utf-8") as mf:
        mf.write("\n".join(lines) + "\n")
    child = run.sup.start(_rsync(rs.magic_pass(rsync_bin, push, magic), push))
    run.sup.wait([child], what="sending the completion file", timeout=max(s.idle_timeout, 60))
    run.out.done(state)
