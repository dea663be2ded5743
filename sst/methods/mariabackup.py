"""The mariabackup method: docs/contract.md 3.3, 3.5, 5.3 and 6.1.

Two connections to one joiner port: stage 1 carries the magic files, stage 2 the
mariadb-backup stream. The joiner receives and prepares into `<datadir>/.sst`; the old
datadir is set aside only once prepare succeeded and the coordinates were read, and is put
back if move-back fails. Our joiner acknowledges each stage on the same connection (it
announces this in the otherwise unused LSN field of its address), so our donor prints
`done` only for data the joiner really accepted; against stock peers both sides behave as
the stock scripts do.

Trust (docs/tls.md, "mariabackup"): the joiner announces a per-SST secret in every ssl-mode.
Started as py_mariabackup (the donor is ours by construction) it lets a connection reach
mbstream only after the gate (sst/gate.py) read that secret from its first bytes; a
connection that fails is dropped and the joiner listens again for the real donor. Our donor
carries its stream through stunnel, which checks the joiner's name as OpenSSL does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sst import (
    config,
    datadir,
    gate,
    log,
    logarchive,
    login,
    net,
    stock,
    swap,
    tools,
    versions,
)
from sst import staging as policy
from sst.config import MariabackupSettings, SocatPlan
from sst.datadir import STAGING_MB
from sst.errors import (
    ConfigError,
    PortBusy,
    SecretMismatch,
    SSTError,
    Timeout,
    ToolFailed,
    ToolMissing,
    TransferError,
)
from sst.methods import common as shared
from sst.methods import rsync
from sst.methods.common import Run, TreeActivity, listen_address, listening_on
from sst.methods.joiner import Received, run_joiner
from sst.process.runner import QUICK, Child, Stage, run_capture
from sst.request import Request
from sst.tools import mariabackup as mb
from sst.tools import mysql as my
from sst.tools import openssl as ossl
from sst.tools import pv
from sst.tools import socat as sc
from sst.tools import stunnel as st

if TYPE_CHECKING:
    from sst import tls

MODULE = "xtrabackup_sst"
ACK_MARK = "galera-sst-ack"  # in the LSN field: "this joiner acknowledges each stage"
GATE_MARK = "galera-sst-gate"  # ... "and wants the secret's preamble first on both stages"
# Under a stock name the donor may be a stock script: "acknowledges each stage, and gates
# stage 2 if the state files (which carried the secret) say GATE_TAG 2".
GATE2_MARK = "galera-sst-gate2"
GATE_TAG = "galera-sst-gate"
SIZE_TAG = "galera-sst-size"  # our donor's estimate of the backup's bytes (stage 1)
PREAMBLE_TIMEOUT = 10.0  # our donor sends the preamble as soon as it is connected
LISTEN_TIMEOUT = 30.0
ACK_TIMEOUT = 60.0
# How long the donor keeps retrying its connections. Every joiner listens before it prints
# `ready`, so a refused stage-1 connection for 10 s means the joiner is gone; between the
# stages the joiner extracts the state files and listens again, which takes well under 60 s.
STAGE1_CONNECT = 10.0
STAGE2_CONNECT = 60.0


def load_settings(req: Request) -> MariabackupSettings:
    """Read the option files for this request."""
    opts = config.read_options(req, (config.MYSQLD, "sst", "xtrabackup mariabackup"))
    return config.mariabackup_settings(req, opts)


def _tool(name: str) -> str:
    try:
        return tools.find(name)
    except ToolMissing as exc:
        if name in ("mariadb-backup", "mbstream"):
            raise SSTError(
                f"{exc.message} (Debian: apt-get install mariadb-backup)", errno.ENOMSG
            ) from None
        raise


def _preflight(s: MariabackupSettings, role: str, socat: str) -> tls.CheckedTLS | None:
    plan = s.plan
    if plan.files is None:
        return None
    from sst import tls  # noqa: PLC0415 (cryptography: some 30 ms of every start, for TLS only)

    ver = run_capture((socat, "-V"), timeout=10)
    if "WITH_OPENSSL 1" not in ver.stdout:
        raise ToolMissing(
            f"TLS is configured ({plan.label}) but {socat} has no OpenSSL "
            "support; refusing to send in cleartext"
        )
    stock.socat_tls(plan.encrypt, plan.mode)
    sc.probe(socat)  # which TLS options this socat takes (commonname, no-sni)
    checked = tls.check(plan.files, role=role, need_ca=plan.verify)
    log.info(
        f"{plan.label} through {'socat' if role == 'joiner' else 'stunnel'}: "
        f"cert '{plan.files.cert}', key '{plan.files.key}', "
        f"CA '{plan.files.ca or plan.files.capath or '-'}'"
        + ("" if plan.verify else "; the peer is NOT authenticated (no CA)")
    )
    return checked


def _socat_tls(plan: SocatPlan, commonname: str, rundir: str) -> sc.SocatTLS | None:
    """socat's TLS options. socat parses its address itself (',', ':', quotes), so it gets
    symlinks with plain names in our private run directory, pointing at the real files,
    named relative to that directory (socat runs there: the run directory's own path may
    hold any of those characters, from tmpdir)."""
    f = plan.files
    if f is None:
        return None
    links = os.path.join(rundir, "tls")
    os.makedirs(links, exist_ok=True)

    def link(path: str, name: str) -> str:
        if not path:
            return ""
        target = os.path.join(links, name)
        if not os.path.lexists(target):
            os.symlink(os.path.abspath(path), target)
        return os.path.join("tls", name)

    return sc.SocatTLS(
        cert=link(f.cert, "cert.pem"),
        key=link(f.key, "key.pem") if f.key != f.cert else link(f.cert, "cert.pem"),
        cafile=link(f.ca, "ca.pem"),
        capath=link(f.capath, "capath"),
        verify=plan.verify,
        commonname=commonname if plan.verify else "",
    )


def _common(req: Request, s: MariabackupSettings, binary: str) -> mb.Common:
    dirs = list(s.server.options())
    if req.paths.innodb_buffer_pool_filename:
        dirs.append(f"--innodb-buffer-pool-filename={req.paths.innodb_buffer_pool_filename}")
    return mb.Common(binary, tuple(dirs), s.use_memory, req.mysqld_passthrough)


def _progress_stages(run: Run, s: MariabackupSettings, role: str, size: int = 0) -> list[Stage]:
    """pv for `--progress 1` (machine lines to mariadbd), [sst] progress, and rlimit."""
    rlimit = s.rlimit if role == "donor" else ""
    if s.progress == "none":
        return []
    if run.req.progress == 1:
        out = run.out

        def complete(line: str) -> None:
            if line.strip().isdigit():
                out.complete(int(line.strip()))

        return [
            Stage(
                pv.machine_progress(tools.find("pv"), rlimit),
                name="pv",
                on_line=complete,
                log_stderr=False,
            )
        ]
    if s.progress:
        sink = "" if s.progress == "1" else s.progress
        return [
            Stage(pv.human_progress(tools.find("pv"), role, size, rlimit), name="pv", log_file=sink)
        ]
    if rlimit:
        return [Stage(pv.rate_limit(tools.find("pv"), rlimit), name="pv")]
    return []


def _filters(s: MariabackupSettings, *, send: bool, crypt: tuple[Stage, ...] = ()) -> list[Stage]:
    """The compressor (or decompressor) and encrypt=1's openssl stage, in stock's order:
    the sender encrypts before compressing, the receiver decompresses before decrypting."""
    argv = s.compressor if send else s.decompressor
    comp = [Stage(argv, name=os.path.basename(argv[0]))] if argv else []
    return [*crypt, *comp] if send else [*comp, *crypt]


CRYPT_NAME = "openssl enc"
KEY_FILE = "encrypt.key"


def _crypt(run: Run, s: MariabackupSettings, role: str) -> tuple[Stage, ...]:
    """encrypt=1: stock's `openssl enc` stage, its key in a 0600 file in the run directory
    (or encrypt-key-file as is), with the key derivation flags stock picks for this openssl.
    () without encrypt=1. Raises ToolMissing, ConfigError (cipher, unreadable key file)."""
    c = s.crypt
    if c is None:
        return ()
    binary = tools.find("openssl")
    helped = run_capture((binary, "enc", "-help"), timeout=10)
    kdf = ossl.enc_kdf(helped.stdout + helped.stderr)
    if c.algo not in ossl.enc_ciphers(run_capture((binary, "enc", "-list"), timeout=10).stdout):
        raise ConfigError(
            f"encrypt-algo={c.algo}: not a cipher this openssl's enc supports (see `openssl "
            "enc -list`; AEAD modes such as GCM are not)"
        )
    if c.key:
        keyfile = rsync.write_private(os.path.join(run.rundir, KEY_FILE), c.key + "\n")
    else:
        keyfile = c.keyfile
        try:
            with open(keyfile, "rb") as f:
                first = f.readline().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(
                f"encrypt-key-file '{keyfile}' cannot be read: {exc.strerror}"
            ) from exc
        if not first:
            raise ConfigError(f"encrypt-key-file '{keyfile}': its first line (the key) is empty")
    log.warning(
        f"encrypt=1: the stream is encrypted with openssl enc -{c.algo} and a shared key, "
        "but neither the peer nor the stream is authenticated (no MAC); prefer TLS "
        "(encrypt=3/4 or ssl-mode)"
    )
    argv = ossl.enc_argv(binary, c.algo, kdf, keyfile, decrypt=role == "joiner")
    return (Stage(argv, name=CRYPT_NAME),)


# ---------------------------------------------------------------------------------------
# joiner
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Stream:
    """One stage's receiving end: the listener, what follows it, and the gate's secret."""

    number: int  # 1: state files, 2: the backup
    tail: tuple[Stage, ...]  # after socat: [pv], [decompressor], mbstream
    secret: str  # "" = no gate (a stock donor may be sending)
    what: str


def _gated(stage: Stage, fd: int) -> Stage:
    """stage, started through the gate, which reads the expected preamble from fd."""
    return dataclasses.replace(
        stage,
        argv=gate.argv(fd, PREAMBLE_TIMEOUT, stage.argv),
        pass_fds=(*stage.pass_fds, fd),
    )


def _listen(run: Run, s: MariabackupSettings, socat: str, bind: str, st_: _Stream) -> list[Child]:
    """Start socat listening, piped into the stage's tail (the first one gated); wait until
    it listens. Raises PortBusy if it does not."""
    req = run.req
    addr = req.address
    assert addr is not None
    argv = sc.listen_argv(
        socat,
        port=addr.port,
        bind=bind,
        ipv6=addr.is_ipv6,
        tls=_socat_tls(s.plan, "", run.rundir),
        sockopt=s.sockopt,
    )
    tail = list(st_.tail)
    r = w = -1
    try:
        if st_.secret:
            r, w = os.pipe()
            os.write(w, gate.preamble(st_.number, st_.secret))  # far below a pipe's buffer
            os.close(w)
            w = -1
            tail[0] = _gated(tail[0], r)
        kids = run.sup.pipeline(
            [Stage(argv, name="socat", cwd=run.rundir), *tail], stdin=subprocess.PIPE
        )
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    listener = kids[0]
    try:
        run.sup.wait_until(
            # a gate that already refused a quick peer is for _receive to see
            lambda: (
                net.tree_listens_or_accepted(listener.pid, addr.port)
                or any(k.poll() is not None for k in kids[1:])
            ),
            what=f"starting socat on port {addr.port}",
            timeout=LISTEN_TIMEOUT,
            alive=[listener],
            every=QUICK,
        )
    except (Timeout, TransferError) as exc:
        raise PortBusy(f"socat could not listen on port {addr.port}: {exc.message}") from exc
    return kids


def _refusal(kids: Sequence[Child], st_: _Stream) -> str:
    """Why the gate refused this connection ('' if it did not: another failure)."""
    if not st_.secret or len(kids) < 2 or kids[1].poll() != gate.REFUSED:
        return ""
    last = next((ln for ln in reversed(kids[1].tail) if ln.startswith("refused: ")), "")
    return last[len("refused: ") :] or "no secret"


def _receive(
    run: Run,
    s: MariabackupSettings,
    kids: list[Child],
    st_: _Stream,
    relisten: Callable[[], list[Child]],
    *,
    timeout: float,
    idle: Callable[[list[Child]], Callable[[], float]] | None = None,
    configured: float = 0.0,
) -> list[Child]:
    """Wait for one stage's stream to be extracted. When the stream is gated, a connection
    that failed the TLS handshake or that the gate refused is dropped (nothing of it
    reached mbstream) and the joiner listens again, until timeout seconds (0 = no limit)
    have passed since the stage began. Returns the children that received the stream (the
    listener first). Raises SecretMismatch at the deadline, TransferError with the TLS
    reason (ungated: at once, as stock socat), and any other failure with the last refusal
    appended to its message. configured: the deadline the operator set, for messages, when
    timeout is what is left of it."""
    said = configured or timeout
    start = time.monotonic()
    refused = ""
    while True:
        left = timeout - (time.monotonic() - start) if timeout else 0.0
        if timeout and left <= 0:
            raise _nobody_got_through(st_, said, refused)
        try:
            run.sup.wait(
                kids[1:],
                watch=[kids[0]],
                what=st_.what,
                # stage 2 is bounded by idleness; only waiting for a connection by timeout
                timeout=max(left, 0.1) if timeout and idle is None else None,
                idle=idle(kids) if idle is not None else None,
                idle_timeout=s.idle_timeout if idle is not None else 0.0,
            )
            return kids
        except SSTError as exc:
            _undecryptable(kids, st_, exc)
            tls_reason = sc.tls_failure(list(kids[0].tail))
            if tls_reason and not st_.secret:  # the gate saw the pipe end too: not the cause
                raise TransferError(
                    f"{st_.what}: the TLS handshake with the donor failed: {tls_reason}"
                ) from exc
            why = f"the TLS handshake failed: {tls_reason}" if tls_reason else ""
            # Only a child that ended by itself: our kill (deadline, parent gone, signal)
            # also makes the gate see the end of its input.
            why = why or (_refusal(kids, st_) if isinstance(exc, ToolFailed) else "")
            if not why:
                if refused and isinstance(exc, Timeout) and idle is None:
                    raise _nobody_got_through(st_, said, refused) from exc
                if isinstance(exc, Timeout) and idle is None and said:
                    # say the deadline the operator set, not what was left of it
                    raise Timeout(f"{st_.what}: no result after {said:g} s") from exc
                if refused:
                    raise type(exc)(
                        f"{exc.message}; the last connection before was refused: {refused}",
                        exc.code,
                    ) from exc
                raise
            refused = why
        log.warning(
            f"Refused a connection on the SST port ({st_.what}): {refused}; nothing of it "
            "reached mbstream. Waiting for the donor"
        )
        kids = relisten()


def _undecryptable(kids: Sequence[Child], st_: _Stream, exc: SSTError) -> None:
    """With encrypt=1, raise TransferError if the stream could not be decrypted: the donor's
    key or cipher is not this joiner's. Whichever fails first says so: openssl (no salted
    header where it expected one, or a bad last block) or mbstream (no stream in what
    openssl decrypted)."""
    if not any(stage.name == CRYPT_NAME for stage in st_.tail):
        return
    for k in kids:
        if k.reader is not None:
            k.reader.join(timeout=2)
    why = ""
    for k in kids:
        if k.poll() in (None, 0):
            continue
        if k.stage.name == CRYPT_NAME and any(
            m in ln for ln in k.tail for m in ("bad magic number", "bad decrypt")
        ):
            why = "openssl could not decrypt it"
        elif k is kids[-1] and any("wrong chunk magic" in ln for ln in k.tail):
            why = why or "mbstream found no stream in openssl's output"
    if why:
        raise TransferError(
            f"{st_.what}: the stream could not be decrypted ({why}): wrong encrypt-key or "
            "encrypt-algo? Both must be the same on the donor and the joiner"
        ) from exc


def _nobody_got_through(st_: _Stream, timeout: float, refused: str) -> SecretMismatch:
    """The error for a stage whose deadline passed with only refused connections."""
    return SecretMismatch(
        f"{st_.what}: no connection proved this joiner's secret within {timeout:g} s; "
        f"the last one was refused: {refused}"
    )


def _ack(child: Child, ok: bool) -> None:
    """Answer the donor on the connection (our donor waits for it before `done`)."""
    stdin = child.popen.stdin
    if stdin is None:
        return
    try:
        if ok:
            stdin.write(sc.ACK)
            stdin.flush()
        stdin.close()
    except (BrokenPipeError, OSError):
        pass  # a stock donor (socat -u) may already be gone
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.popen.wait(timeout=ACK_TIMEOUT)


def joiner(run: Run, s: MariabackupSettings) -> None:
    """Receive both stages, prepare, swap in; print the coordinates."""
    run_joiner(run, MariabackupJoiner(s))


class MariabackupJoiner:
    """The mariabackup joiner's steps in the skeleton (sst/methods/joiner.py): socat
    receives the state files (stage 1), then the backup (stage 2) into `<datadir>/.sst`,
    which is prepared and moved back (journaled)."""

    socat: str
    mbstream: str
    backup: str
    crypt: tuple[Stage, ...]
    staging: str  # <datadir>/.sst: the backup
    statdir: str  # the state files, in the run directory
    gated: bool  # the donor is ours by construction: it proves the secret on both stages
    bind: str
    one: _Stream
    kids: list[Child]  # stage 1's listener and its tail
    common: mb.Common

    def __init__(self, s: MariabackupSettings) -> None:
        self.s = s

    @property
    def tls_mode(self) -> str:
        """The ssl-mode of the socat plan."""
        return self.s.plan.mode

    def preflight(self, run: Run) -> tls.CheckedTLS | None:
        """The old logs archived, the tools found, TLS and encryption checked."""
        _archive_logs(run.req)
        self.socat = tools.find("socat")
        self.mbstream = _tool("mbstream")
        self.backup = _tool("mariadb-backup")
        checked = _preflight(self.s, "joiner", self.socat)
        self.crypt = _crypt(run, self.s, "joiner")
        self.staging = os.path.join(run.req.datadir, STAGING_MB)
        self.statdir = os.path.join(run.rundir, "stage1")
        self.gated = run.req.name.ours
        return checked

    def listen(self, run: Run, secret: str) -> str:
        """Listen for stage 1 (gated by the secret when the donor is ours); returns
        `host:port/module/<mark>/1`."""
        addr = run.req.address
        assert addr is not None
        self.bind = listen_address(addr)
        # Every mode gets a secret (stock: VERIFY_* only). Started as py_mariabackup the
        # donor is ours and must prove it before mbstream sees a byte; under a stock name it
        # may be a stock script, which only writes it into the stage-1 magic file.
        os.mkdir(self.statdir)
        extract = Stage(mb.mbstream_extract(self.mbstream), name="mbstream", cwd=self.statdir)
        self.one = _Stream(
            1,
            (*_filters(self.s, send=False, crypt=self.crypt), extract),
            secret if self.gated else "",
            "receiving the donor's state files (stage 1)",
        )
        self.kids = _listen(run, self.s, self.socat, self.bind, self.one)
        mark = GATE_MARK if self.gated else GATE2_MARK
        log.info(f"Listening on {listening_on(addr, self.bind)} ({self.s.plan.label})")
        return f"{addr.hostport}/{addr.module or MODULE}/{mark}/1"

    def receive(self, run: Run, secret: str) -> Received:
        """Stage 1; for an SST, the staging decision, stage 2 and the prepare."""
        s = self.s
        first, tags = self._stage1(run, secret)
        if os.path.exists(os.path.join(self.statdir, mb.IST_FILE)):
            line = _first_line(os.path.join(self.statdir, mb.DONOR_INFO_FILE)) or first
            return Received(line, tags, bypass=True, shown=line)
        # Under a stock name, our donor says in the state files (proven by the secret in
        # them) that it sends the preamble on stage 2 too; a stock donor does not.
        gate2 = self.gated or tags.get(GATE_TAG) == "2"
        if not gate2:
            log.info("The donor does not prove the secret on stage 2 (a stock script): as stock")
        if not _decide(run, s, tags).stage:
            _wipe(run.req.datadir, s)
        _stage2(
            run,
            s,
            socat=self.socat,
            mbstream=self.mbstream,
            bind=self.bind,
            staging=self.staging,
            secret=secret if gate2 else "",
            tags=tags,
            crypt=self.crypt,
        )
        self.common = _prepare(run, s, self.backup, self.staging)
        line = (
            _first_line(os.path.join(self.staging, mb.DONOR_INFO_FILE))
            or _first_line(mb.either(self.staging, mb.INFO_FILE))
            or first
        )
        return Received(line, tags, shown=line)

    def _stage1(self, run: Run, secret: str) -> tuple[str, dict[str, str]]:
        """Receive the state files into statdir and check the secret in them; returns the
        magic file's first line and tags. Raises SecretMismatch, TransferError (TLS reason),
        Timeout."""
        s, one, statdir = self.s, self.one, self.statdir

        def listen1() -> list[Child]:
            shutil.rmtree(statdir)
            os.mkdir(statdir)
            return _listen(run, s, self.socat, self.bind, one)

        run.phase("receiving the state files", tls=s.plan.label)
        kids = self.kids
        deadline = time.monotonic() + s.initial_timeout
        while True:
            left = max(deadline - time.monotonic(), 0.1) if s.initial_timeout else 0.0
            listener = _receive(
                run, s, kids, one, listen1, timeout=left, configured=s.initial_timeout
            )[0]
            try:
                first, tags = _state_files(statdir, secret)
                break
            except TransferError as exc:
                _ack(listener, False)
                # Ungated (a stock name), these state files may be a third party's: drop
                # them and wait on for the donor, whose stage 1 carries the secret.
                if self.gated or (s.initial_timeout and time.monotonic() >= deadline):
                    raise
                log.warning(
                    f"Refused a connection on the SST port ({one.what}): {exc.message}; its "
                    "state files were discarded. Waiting for the donor"
                )
                kids = listen1()
        try:
            versions.check_donor_version(statdir, self.backup)  # an older joiner than its donor
        except SSTError:
            _ack(listener, False)
            raise
        _ack(listener, True)
        if run.req.progress == 1 and tags.get("total", "").isdigit():
            run.out.total(int(tags["total"]))
        run.sup.check_parent()
        return first, tags

    def verify(self, run: Run, got: Received) -> None:
        """Nothing beyond the skeleton's: the secret was checked in stage 1 already."""

    def keep(self, run: Run, got: Received) -> None:
        """Nothing to undo: an IST receives no backup."""

    def install(self, run: Run, got: Received) -> None:
        """The received binlogs dropped, the prepared backup moved into the datadir (the old
        one put back if move-back fails)."""
        _drop_received_binlogs(self.staging)
        run.phase("moving the backup into the datadir")
        _swap(run, self.s, self.common, self.staging)

    def cleanup(self, run: Run, outcome: BaseException | None) -> None:
        """The staging goes on every exit."""
        shutil.rmtree(self.staging, ignore_errors=True)


def _decide(run: Run, s: MariabackupSettings, tags: dict[str, str]) -> policy.Decision:
    """The staging decision, from the size our donor announced in its state files (or a
    stock donor's `total`), else from the old datadir's; logged and in the status file."""
    dd = run.req.datadir
    if policy.failed_in_place(dd):
        log.warning(f"{dd} holds the debris of an in-place SST that did not finish")
    said = tags.get(SIZE_TAG, "") or tags.get("total", "")
    announced = int(said) if said.isdigit() else 0
    decision, _ = policy.for_datadir(s.staging, _fill_dirs(dd, s), announced)
    policy.warn(decision, "mariabackup")
    run.staging(decision)
    return decision


def _fill_dirs(dd: str, s: MariabackupSettings) -> list[str]:
    """The directories move-back fills: the datadir, then separate ones outside it."""
    separate = list(s.server.by_module(dd).values())
    return [dd, *[p for p in separate if not p.startswith(dd + os.sep) and p != dd]]


def _wipe(dd: str, s: MariabackupSettings) -> None:
    """In place: before the backup arrives, mark the datadir, invalidate grastate.dat and
    remove what move-back would replace (all but `cpat`'s entries and galera-sst's own),
    so that the datadir's filesystem holds one copy at a time."""
    policy.mark_in_place(dd)
    policy.invalidate_grastate(dd)
    plan = swap.fill_plan(_fill_dirs(dd, s), s.cpat, [os.path.join(dd, n) for n in mb.LEGACY_FILES])
    for m in plan.aside:
        policy.remove_entry(m.src)
    for d in plan.fill:
        policy.fsync_dir(d)
    log.info(f"Removed {len(plan.aside)} entries of the old datadir before receiving")


def _prepare(run: Run, s: MariabackupSettings, backup: str, staging: str) -> mb.Common:
    """mariadb-backup --prepare on the received copy; returns the common mariadb-backup
    options for move-back. Raises SSTError (the old datadir is untouched)."""
    req = run.req
    log.info("Backup received; preparing it")
    run.phase("preparing")
    common = _common(req, s, backup)
    prep = run.sup.start(
        Stage(
            mb.prepare_argv(
                common,
                target_dir=staging,
                force_recovery=req.paths.innodb_force_recovery,
                extra=s.inno_apply_opts,
            ),
            name="mariadb-backup --prepare",
            log_file=os.path.join(req.datadir, "mariabackup.prepare.log"),
            errno_for=lambda rc: errno.EINVAL,
        )
    )
    run.sup.wait([prep], what="mariadb-backup --prepare (the old datadir is untouched)")
    return common


def _state_files(statdir: str, secret: str) -> tuple[str, dict[str, str]]:
    """The stage-1 magic file's first line and tags; raises TransferError if it is missing
    and SecretMismatch if it does not carry this joiner's secret."""
    info = mb.either(statdir, mb.INFO_FILE)
    if not os.path.exists(info):
        raise TransferError(
            "the donor's stream ended without xtrabackup_galera_info or "
            "mariadb_backup_galera_info (stage 1)"
        )
    first, tags = datadir.read_magic(info)
    shared.check_secret(tags, secret)
    return first, tags


def _stage2(
    run: Run,
    s: MariabackupSettings,
    *,
    socat: str,
    mbstream: str,
    bind: str,
    staging: str,
    secret: str,
    tags: dict[str, str],
    crypt: tuple[Stage, ...],
) -> None:
    """Receive the backup into staging (gated by secret unless it is ''), check it and
    acknowledge it. Raises SSTError subclasses (NoSpace when the disk filled up)."""
    if os.path.lexists(staging):
        log.info(f"Removing a stale staging directory {staging}")
        shutil.rmtree(staging)
    os.mkdir(staging)
    disk = datadir.DiskWatch()
    extract2 = Stage(
        mb.mbstream_extract(mbstream), name="mbstream", cwd=staging, on_line=disk.watch
    )
    two = _Stream(
        2,
        (*_progress_stages(run, s, "joiner"), *_filters(s, send=False, crypt=crypt), extract2),
        secret,
        "receiving the backup stream (stage 2)",
    )

    total = tags.get("total", "")
    expected = int(total) if total.isdigit() else 0

    def listen2() -> list[Child]:
        shutil.rmtree(staging)
        os.mkdir(staging)
        kids = _listen(run, s, socat, bind, two)
        run.phase("receiving the backup", expected=expected, watch=(kids[0].pid,))
        return kids

    kids = _listen(run, s, socat, bind, two)
    log.info("Receiving the backup (stage 2)")
    # bytes received: what socat writes on
    run.phase("receiving the backup", expected=expected, watch=(kids[0].pid,))
    try:
        kids = _receive(
            run,
            s,
            kids,
            two,
            listen2,
            timeout=s.initial_timeout,
            idle=lambda ks: TreeActivity(*(k.pid for k in ks)).idle,
        )
    except SSTError:
        disk.check(staging)  # a full disk first breaks the pipe: name the cause, not the pipe
        raise
    listener = kids[0]
    _check_backup(staging, listener)
    _ack(listener, True)


def _first_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().strip()
    except FileNotFoundError:
        return ""


def _check_backup(staging: str, listener: Child) -> None:
    cp = mb.either(staging, mb.CHECKPOINTS)
    if not os.path.exists(cp) or os.path.getsize(cp) == 0:
        _ack(listener, False)
        raise TransferError(
            "xtrabackup_checkpoints is missing or empty: the backup on the "
            "donor failed or the stream was cut (see the donor's "
            "mariabackup.backup.log)"
        )
    with open(cp, encoding="utf-8", errors="replace") as f:
        if re.search(r"\bcompact\s*=\s*1\b", f.read()):
            _ack(listener, False)
            raise SSTError("compact backups are not supported by mariadb-backup", errno.ENOENT)
    if any(n.endswith(".qp") for n in os.listdir(staging)):
        _ack(listener, False)
        raise ConfigError(
            "the donor sent qpress-compressed files ([sst] compress); qpress is "
            "not supported, use [sst] compressor/decompressor (e.g. zstd)"
        )


def _drop_received_binlogs(staging: str) -> None:
    """10.11.19 (MDEV-38147): the joiner starts a fresh binlog seeded from the checkpoint.

    Only regular files of the staging with a plain binlog name are removed; other names in
    xtrabackup_binlog_info ('..', paths, the staging's own files) are ignored.
    """
    info = mb.either(staging, mb.BINLOG_INFO)
    names: list[str] = []
    try:
        with open(info, encoding="utf-8", errors="replace") as f:
            names = [ln.split("\t")[0].strip() for ln in f if ln.strip()]
    except FileNotFoundError:
        return
    for n in names:
        path = os.path.join(staging, n)
        if datadir.BINLOG_NAME.fullmatch(n) and os.path.isfile(path) and not os.path.islink(path):
            datadir.remove(path)


def _swap(run: Run, s: MariabackupSettings, common: mb.Common, staging: str) -> None:
    """Set the old entries aside and let --move-back fill the directories, journaled
    (sst/swap.py): a failure or an interruption puts the old datadir back whole."""
    req = run.req
    dd = req.datadir
    dirs = _fill_dirs(dd, s)
    for d in dirs:
        datadir.ensure_dir(d)
    # A previous SST's metadata goes aside with the rest, even where a custom cpat keeps it.
    plan = swap.fill_plan(dirs, s.cpat, [os.path.join(dd, n) for n in mb.LEGACY_FILES])

    def move_back() -> None:
        move = run.sup.start(
            Stage(
                mb.move_back_argv(
                    common,
                    _defaults(req, ""),
                    target_dir=staging,
                    datadir=dd,
                    parallel=s.backup_threads,
                    extra=s.inno_move_opts,
                ),
                name="mariadb-backup --move-back",
                log_file=os.path.join(dd, "mariabackup.move.log"),
                errno_for=lambda rc: errno.EINVAL,
            )
        )
        run.sup.wait([move], what="mariadb-backup --move-back (the old datadir was restored)")

    swap.execute(dd, plan, move_back)
    binlogs = s.server.binlogs(dd)
    if binlogs is not None:
        binlogs.remove_all(dd)
        datadir.ensure_dir(binlogs.directory)
        datadir.ensure_dir(os.path.dirname(binlogs.index))
    log.info(f"Moved the prepared backup into {dd}")


def _defaults(req: Request, credentials: str) -> tuple[str, ...]:
    """The defaults options for mariadb-backup, with the credentials file if any."""
    out: list[str] = []
    if credentials:
        key = "--defaults-file" if req.defaults_file else "--defaults-extra-file"
        out.append(f"{key}={credentials}")
    elif req.defaults_file:
        out.append(f"--defaults-file={req.defaults_file}")
    if req.defaults_extra_file and not (credentials and not req.defaults_file):
        out.append(f"--defaults-extra-file={req.defaults_extra_file}")
    if req.defaults_group_suffix:
        out.append(f"--defaults-group-suffix={req.defaults_group_suffix}")
    return tuple(out)


# ---------------------------------------------------------------------------------------
# donor
# ---------------------------------------------------------------------------------------

FOOTPRINT = re.compile(r"(undo.*|.*\.ibd|.*\.MY[ID]|ibdata1)")


def footprint(root: str) -> int:
    """Bytes the backup will send, estimated like stock (undo, .ibd, .MYI/.MYD, ibdata1)."""
    total = 0
    for base, _, files in os.walk(root):
        for f in files:
            if FOOTPRINT.fullmatch(f):
                try:
                    total += os.lstat(os.path.join(base, f)).st_size
                except OSError:
                    continue
    return total


def _donor_commonname(plan: SocatPlan, req: Request) -> str:
    """Which name the donor requires in the joiner's certificate ('' = chain only)."""
    if not plan.check_name or plan.mode == "VERIFY_CA":
        return ""
    if req.remote_auth.cn:
        return req.remote_auth.cn  # the name the joiner announced (stock rule)
    assert req.address is not None
    return req.address.host


def donor_tunnel(
    rundir: str,
    files: config.TLSFiles,
    verify: st.Verify,
    *,
    host: str,
    port: int,
    ipv6: bool = False,
    sockopt: str = "",
    connect_for: float = STAGE1_CONNECT,
) -> Stage:
    """The donor's end of one stage: stdin to the joiner over TLS, the joiner's answer to
    stdout. stunnel checks the joiner's certificate as OpenSSL does (verify: the chain, and
    checkHost for a name or checkIP for an address, see stunnel.name_check); its TLS side is
    a plain socat, which retries the connection every 0.1 s for connect_for seconds.

    Given the run directory (the config goes there), the TLS files, what to verify and the
    joiner's address; returns the stage to start with the stream on its stdin. stunnel exits
    0 even when the handshake failed: check `stunnel.failure(child.tail)` after it ended.
    Raises ToolMissing without stunnel, ConfigError for values stunnel cannot take.
    """
    socat = tools.find("socat")
    program = sc.connect_argv(
        socat,
        host=host,
        port=port,
        ipv6=ipv6,
        tls=None,
        sockopt=sockopt,
        retries=max(1, int(connect_for / 0.1)),
    )
    conf = os.path.join(rundir, "stunnel-donor.conf")
    _write(conf, st.exec_client_conf(files, verify, program))
    return Stage(
        st.argv(_stunnel(), conf),
        name="stunnel",
        log_stderr=False,
        on_line=_relay_stunnel,
    )


def _stunnel() -> str:
    """stunnel's path (the donor's TLS tunnel); raises ToolMissing, never cleartext."""
    try:
        return rsync.find_stunnel()
    except ToolMissing:
        raise ToolMissing(
            "TLS is configured for the mariabackup SST, whose donor sends through stunnel, "
            "but stunnel is not installed (Debian: apt-get install stunnel4); refusing to "
            "send in cleartext"
        ) from None


def _relay_stunnel(line: str) -> None:
    """stunnel's notices, without its start-up banner and a harmless INTERNAL ERROR about
    the session cache (exec mode has no address to cache sessions for)."""
    if not st.NOISE.search(line):
        sys.stderr.write(f"stunnel: {line}\n")
        sys.stderr.flush()


def _tunnel(run: Run, s: MariabackupSettings, connect_for: float) -> tuple[Stage, str]:
    """The last stage of a donor pipeline, and the name it checks ('' = none)."""
    req = run.req
    addr = req.address
    assert addr is not None
    name = _donor_commonname(s.plan, req)
    if s.plan.files is None:
        argv = sc.connect_argv(
            tools.find("socat"),
            host=addr.host,
            port=addr.port,
            ipv6=addr.is_ipv6,
            tls=None,
            sockopt=s.sockopt,
            retries=max(1, int(connect_for / 0.1)),
        )
        return Stage(argv, name="socat"), name
    verify = st.name_check(name) if s.plan.verify else st.Verify()
    stage = donor_tunnel(
        run.rundir,
        s.plan.files,
        verify,
        host=addr.host,
        port=addr.port,
        ipv6=addr.is_ipv6,
        sockopt=s.sockopt,
        connect_for=connect_for,
    )
    return stage, name


def _send(
    run: Run,
    s: MariabackupSettings,
    stages: Sequence[Stage],
    *,
    what: str,
    connect_for: float,
    ack_expected: bool,
    preamble: bytes = b"",
    idle: Callable[[list[Child]], Callable[[], float]] | None = None,
    expected: int = 0,
) -> None:
    """Run stages into the tunnel to the joiner (after the preamble, if any); raises
    TransferError with the TLS reason, or when the joiner did not acknowledge."""
    tunnel, name = _tunnel(run, s, connect_for)
    r, w = os.pipe()
    try:
        os.write(w, preamble)  # before any byte of the stream (a pipe keeps the order)
        kids = run.sup.pipeline(stages, stdout=w)
        os.close(w)
        w = -1
        kids.append(run.sup.start(tunnel, stdin=r, stdout=subprocess.PIPE))
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    run.phase(what, tls=s.plan.label, expected=expected, watch=(kids[-1].pid,))
    idle_fn = idle(kids) if idle is not None else None
    try:
        run.sup.wait(kids, what=what, idle=idle_fn, idle_timeout=s.idle_timeout if idle else 0.0)
    except SSTError as exc:
        _tls_failed(kids[-1], what, name, exc)
        raise
    _tls_failed(kids[-1], what, name, None)
    out = kids[-1].popen.stdout
    answer = out.read() if out is not None else b""
    if ack_expected and answer != sc.ACK:
        raise TransferError(
            f"{what}: the joiner did not acknowledge the data (it rejected "
            "this donor's connection or failed to store it; see its log)"
        )


def _tls_failed(tunnel: Child, what: str, name: str, cause: SSTError | None) -> None:
    """Raise TransferError with the reason if the tunnel (stunnel) failed its connection."""
    if tunnel.stage.name != "stunnel":
        return
    if tunnel.reader is not None:
        tunnel.reader.join(timeout=2)
    reason = st.failure(list(tunnel.tail), name)
    if reason:
        raise TransferError(f"{what}: the TLS connection to the joiner failed: {reason}") from cause


@dataclasses.dataclass(frozen=True)
class _JoinerSays:
    """What the joiner's address tells our donor: its gates and acknowledgements."""

    gated: bool  # stage 1 starts with the secret's preamble
    gate2: bool  # stage 2 does
    ack_expected: bool  # the joiner acknowledges each stage on its connection


def _joiner_says(req: Request) -> _JoinerSays:
    """Read the joiner's capabilities from its address; raises SSTError for a joiner too old
    for this donor, or a gated joiner whose secret did not come."""
    addr = req.address
    if addr is None:
        raise ConfigError("the donor needs --address")
    if not req.bypass and not addr.sst_ver:
        raise SSTError(
            "the joiner's address has no SST version: upgrade the joiner "
            "(its mariabackup SST script is too old for this donor)",
            errno.EPROTONOSUPPORT,
        )
    return _JoinerSays(
        gated=addr.lsn == GATE_MARK,
        gate2=addr.lsn in (GATE_MARK, GATE2_MARK),
        ack_expected=addr.lsn in (ACK_MARK, GATE_MARK, GATE2_MARK),
    )


def _magic_files(run: Run, s: MariabackupSettings) -> tuple[str, list[str], int]:
    """Write stage 1's files (state, secret, gate tag, total) into the run directory ->
    (their directory, their names, the estimated transfer size or 0)."""
    req = run.req
    assert req.address is not None
    magic = os.path.join(run.rundir, "magic")
    os.mkdir(magic)
    state = f"{req.gtid} {req.gtid_domain_id}".strip()
    lines = [state]
    if req.remote_auth.secret:
        lines.append(f"secret {req.remote_auth.secret}")
    if req.address.lsn == GATE2_MARK:
        lines.append(f"{GATE_TAG} 2")  # stage 2 starts with the preamble
    size = 0
    if not req.bypass:
        size = footprint(req.datadir)
        lines.append(f"{SIZE_TAG} {size}")  # for the joiner's staging decision
    if not req.bypass and (req.progress == 1 or s.progress not in ("", "none")):
        log.info(f"Estimated transfer size: {size} bytes")
        if req.progress == 1:
            lines.append(f"total {size}")
            run.out.total(size)
    _write(os.path.join(magic, mb.INFO_FILE), "\n".join(lines) + "\n")
    _write(os.path.join(magic, mb.DONOR_INFO_FILE), state + "\n")
    files = [mb.INFO_FILE, mb.DONOR_INFO_FILE]
    if req.bypass:
        log.info("Bypassing the SST for IST")
        run.out.resume()
        _write(os.path.join(magic, mb.IST_FILE), "1\n")
        files.append(mb.IST_FILE)
    return magic, files, size


def _backup_stages(
    run: Run, s: MariabackupSettings, backup: str, size: int, crypt: tuple[Stage, ...]
) -> tuple[list[Stage], mb.LockClock]:
    """Stage 2's pipeline: mariadb-backup --backup (credentials in a 0600 option file),
    the compressor, pv; and the clock its stage lines feed."""
    req = run.req
    creds = os.path.join(run.rundir, "credentials.cnf")
    account = login.local(s.credentials)
    log.info(f"Logging in to the local server {login.describe(s.credentials)}")
    my.option_file(
        creds,
        include=req.defaults_file,
        group="mariadb-backup",
        user=account.user,
        password=account.password,
    )
    xtmp = os.path.join(run.rundir, "tmp")
    target = os.path.join(run.rundir, "target")
    os.mkdir(xtmp)
    os.mkdir(target)
    argv = mb.backup_argv(
        _common(req, s, backup),
        _defaults(req, creds),
        socket=req.socket,
        tmpdir=xtmp,
        target_dir=target,
        datadir=req.datadir,
        parallel=s.backup_threads,
        extra=s.inno_backup_opts,
    )
    backup_log = os.path.join(req.datadir, "mariabackup.backup.log")
    datadir.remove(backup_log)
    clock = mb.LockClock()
    stages = [
        Stage(
            argv,
            name="mariadb-backup --backup",
            log_file=backup_log,
            errno_for=lambda rc: errno.EINVAL,
            on_line=clock.feed,
        ),
        *_filters(s, send=True, crypt=crypt),
        *_progress_stages(run, s, "donor", size),
    ]
    return stages, clock


def _report_blocked(clock: mb.LockClock) -> None:
    """The INFO line saying how long this donor's writes were blocked by the backup."""
    blocked = clock.blocked()
    if blocked is None:
        log.info(
            "mariadb-backup did not log its blocking stages: how long writes waited is unknown"
        )
        return
    total, commit = blocked
    gap, after = clock.longest
    log.info(
        f"Writes on this node were blocked for {total:.2f} s while mariadb-backup held its "
        f"locks (BACKUP STAGE BLOCK_DDL to END; BLOCK_COMMIT to END {commit:.2f} s; its "
        f"longest step {gap:.2f} s, after '{after}')"
    )


def donor(run: Run, s: MariabackupSettings) -> None:
    """Stream the magic files, then the backup; `done` only after the joiner has them."""
    req = run.req
    _archive_logs(req)
    says = _joiner_says(req)
    socat = tools.find("socat")
    mbstream = _tool("mbstream")
    backup = "" if req.bypass else _tool("mariadb-backup")
    _preflight(s, "donor", socat)
    if s.plan.files is not None:
        _stunnel()  # missing: exit 2 before `flush tables`, never cleartext
    crypt = _crypt(run, s, "donor")
    secret = req.remote_auth.secret
    if says.gate2 and not secret:
        raise SecretMismatch(
            "the joiner wants its secret on its connections, but its address carried none"
        )
    if not says.ack_expected:
        log.info(
            "The joiner does not acknowledge stages (a stock script): as with stock, "
            "delivery is judged by the sender's exit status"
        )
    magic, files, size = _magic_files(run, s)
    if backup:
        files += versions.write_donor_version(magic, backup)  # joiner: versions.py
    stage1 = [
        Stage(mb.mbstream_create(mbstream, files), name="mbstream", cwd=magic),
        *_filters(s, send=True, crypt=crypt),
    ]
    _send(
        run,
        s,
        stage1,
        what="sending the state files (stage 1)",
        connect_for=STAGE1_CONNECT,
        ack_expected=says.ack_expected,
        preamble=gate.preamble(1, secret) if says.gated else b"",
    )
    if req.bypass:
        run.out.done(req.gtid)
        return
    stage2, clock = _backup_stages(run, s, backup, size, crypt)
    assert req.address is not None
    log.info(f"Streaming the backup to the joiner at {req.address.hostport}")
    _send(
        run,
        s,
        stage2,
        what="streaming the backup (stage 2)",
        expected=size,
        connect_for=STAGE2_CONNECT,
        ack_expected=says.ack_expected,
        preamble=gate.preamble(2, secret) if says.gate2 else b"",
        # Progress is what socat (the last stage) writes to the joiner: mariadb-backup keeps
        # reading the redo log while its pipe is blocked, which must not hide a dead link.
        idle=lambda kids: TreeActivity(kids[-1].pid).idle,
    )
    _report_blocked(clock)
    run.out.done(req.gtid)


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _archive_logs(req: Request) -> None:
    """The previous run's mariabackup logs, archived as stock (sst/logarchive.py)."""
    opts = config.read_options(req, ("sst",))
    logarchive.archive(
        req.datadir,
        opts.get(("sst",), "sst-log-archive"),
        opts.get(("sst",), "sst-log-archive-dir"),
    )
