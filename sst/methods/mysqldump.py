"""The mysqldump method (donor only; docs/contract.md 1.4, 2.3, 5.5 and 6.3).

The dump runs in one client session on the joiner's server, which carries the header, the
dump itself (straight from mariadb-dump through an OS pipe) and then, only if mariadb-dump
exited 0, the trailer that sets `wsrep_start_position`, which is what completes the
joiner's SST: a failed dump can never look like a finished transfer (the stock script
relies on an injected syntax error instead). One session, because the dump's privilege
tables replace the joiner's and a second login could fail.

The joiner's `gtid_binlog_state` is set to the donor's (the stock script reads the joiner's
own value and writes it back, which only erases it).
"""

from __future__ import annotations

import os
import re
import select
import time
from dataclasses import dataclass

from sst import config, log, login, net, options, tools
from sst.config import MYSQLD, TLS_MODES, TLSFiles
from sst.errors import ConfigError, SSTError, Timeout
from sst.methods.common import Run, TreeActivity
from sst.process.runner import Child, Stage, run_capture
from sst.request import Address, Request
from sst.tools import mysql as my
from sst.tools import pv

Argv = tuple[str, ...]

CLIENT_GROUPS = options.CLIENT
VERSION_RE = re.compile(r"(Distrib 10\.[1-9])|( from 1[1-9]\.)")
GTID_STATE_RE = re.compile(r"^[0-9,\-]*$")
GTID_ARG_RE = re.compile(r"^[0-9a-fA-F\-]+:-?\d+(,\d+-\d+-\d+)?$")  # uuid:seqno,d-s-n

CSV_TABLES_FIX = (
    "SET sql_mode=''; USE mysql; "
    "SET @cond = (SELECT (SUPPORT = 'YES' or SUPPORT = 'DEFAULT') FROM "
    "INFORMATION_SCHEMA.ENGINES WHERE ENGINE = 'csv'); "
    "SET @stmt = IF (@cond = '1', 'CREATE TABLE IF NOT EXISTS general_log ( event_time "
    "timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), "
    "user_host mediumtext NOT NULL, thread_id bigint(21) unsigned NOT NULL, server_id int(10) "
    "unsigned NOT NULL, command_type varchar(64) NOT NULL, argument mediumtext NOT NULL) "
    "ENGINE=CSV DEFAULT CHARSET=utf8mb3 COMMENT=\"General log\"', 'SET @dummy = 0'); "
    "PREPARE stmt FROM @stmt; EXECUTE stmt; DROP PREPARE stmt; "
    "SET @stmt = IF (@cond = '1', 'CREATE TABLE IF NOT EXISTS slow_log ( start_time "
    "timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), "
    "user_host mediumtext NOT NULL, query_time time(6) NOT NULL, lock_time time(6) NOT NULL, "
    "rows_sent bigint(20) UNSIGNED NOT NULL, rows_examined bigint(20) UNSIGNED NOT NULL, "
    "db varchar(512) NOT NULL, last_insert_id int(11) NOT NULL, insert_id int(11) NOT NULL, "
    "server_id int(10) unsigned NOT NULL, sql_text mediumtext NOT NULL, thread_id bigint(21) "
    'unsigned NOT NULL) ENGINE=CSV DEFAULT CHARSET=utf8mb3 COMMENT="Slow log"\', '
    "'SET @dummy = 0'); PREPARE stmt FROM @stmt; EXECUTE stmt; DROP PREPARE stmt;"
)


def client_tls(req: Request, opts: config.Options) -> my.ClientTLS | None:
    """TLS for the connection to the joiner: [sst] ssl-* first, else the client groups'.

    With a CA the server certificate is verified, its name included; VERIFY_* without a
    CA is refused.
    """
    sst_files = config.resolve_tls(opts, ("sst",), "donor")
    files = sst_files
    if not (files.ca or files.capath or files.cert or files.key):
        files = config.resolve_tls(opts, (CLIENT_GROUPS,), "donor")
    mode = config.option(opts, "ssl-mode", "mysqldump").upper()
    if mode and mode not in TLS_MODES:
        raise ConfigError(f"ssl-mode={mode!r} is not one of {', '.join(TLS_MODES)}")
    if mode == "DISABLED":
        return None
    if mode.startswith("VERIFY") and not files.any_ca:
        raise ConfigError(
            f"ssl-mode={mode} needs a CA (ssl-ca or ssl-capath) to verify the "
            "joiner's server certificate"
        )
    if not (mode or files.ca or files.capath or files.cert):
        return None
    return my.ClientTLS(files.ca, files.capath, files.cert, files.key, verify_server=files.any_ca)


def _preflight(t: my.ClientTLS) -> None:
    from sst import tls  # noqa: PLC0415 (cryptography: some 30 ms of every start, for TLS only)

    if t.cert or t.key:
        tls.check(TLSFiles(t.ca, t.capath, t.cert, t.key), role="donor", need_ca=False)
    elif t.ca:
        tls.load_certs(t.ca, "CA")
    mode = (
        "verifying the server certificate and name"
        if t.verify_server
        else "NOT verifying the server (no CA)"
    )
    log.info(f"Connecting to the joiner with TLS, {mode}")


def _query(argv: tuple[str, ...], sql: str, what: str) -> list[str]:
    res = run_capture((*argv, "--skip-column-names", "-e", sql), timeout=60)
    if res.returncode != 0:
        last = res.stderr.strip().splitlines()[-1:] or [f"exit {res.returncode}"]
        raise SSTError(f"{what}: {last[0]}", res.returncode or 1)
    return res.stdout.strip().split("\t")


def _destination(req: Request) -> tuple[Address, int]:
    """The joiner's server address and port; raises ConfigError when mariadbd left one of
    the donor's arguments out, or the destination is this server."""
    addr = req.address
    for name, value in (
        ("host", addr.host if addr else ""),
        ("port", req.port or (addr.port if addr else 0)),
        ("local port", req.local_port),
        ("socket", req.socket),
        ("gtid", req.gtid),
    ):
        if not value:
            raise ConfigError(
                f"the mysqldump donor needs its {name} (--address, --port, "
                "--local-port, --socket, --gtid)"
            )
    assert addr is not None
    port = req.port or addr.port
    if net.bind_address(addr.host) and port == req.local_port:
        raise ConfigError(
            f"destination address '{addr.host}:{port}' matches this server "
            "(a node cannot transfer its state to itself)"
        )
    return addr, port


def _clients(
    run: Run, opts: config.Options, client: str, ctls: my.ClientTLS | None
) -> tuple[Argv, Argv, Argv]:
    """Option files for both sessions in the run directory (0600, credentials never in
    argv) -> (the joiner's client, the donor's client, the defaults options of the donor's)."""
    req = run.req
    creds = config.credentials(req, opts)
    local_cnf = os.path.join(run.rundir, "local.cnf")
    remote_cnf = os.path.join(run.rundir, "remote.cnf")
    account = login.local(creds)  # no wsrep_sst_auth: the OS user, unix_socket
    log.info(f"Logging in to the local server {login.describe(creds)}")
    for path, tls_to, who in ((local_cnf, None, account), (remote_cnf, ctls, creds)):
        my.option_file(  # TLS to the joiner only
            path,
            include=req.defaults_file,
            group="client",
            user=who.user,
            password=who.password,
            tls=tls_to,
        )

    def dflt(path: str) -> tuple[str, ...]:
        return my.defaults_args(
            path,
            has_defaults_file=bool(req.defaults_file),
            extra_file=req.defaults_extra_file,
            group_suffix=req.defaults_group_suffix,
        )

    assert req.address is not None
    remote = my.client_argv(
        client, dflt(remote_cnf), host=req.address.host, port=req.port or req.address.port
    )
    local = (client, *dflt(local_cnf), f"--socket={req.socket}", "--batch")
    return remote, local, dflt(local_cnf)


def donor(run: Run, s: MysqldumpSettings) -> None:
    """Dump the donor into the joiner's server, then `done <gtid> <domain>` as stock 11.x
    prints it: MariaDB 11 reads a mysqldump donor's stdout like any other method's and
    reports the SST failed without it; 10.11 never reads it (one short line in the pipe)."""
    req = run.req
    addr, port = _destination(req)
    client = tools.find("mariadb")
    dump = tools.find("mariadb-dump")
    version = run_capture((client, "--version"), timeout=10).stdout
    if not VERSION_RE.search(version):
        raise ConfigError(f"this operation requires MariaDB client 10.1 or newer: {version}")
    ctls = client_tls(req, s.opts)
    if ctls is not None:
        _preflight(ctls)
    remote, local, local_defaults = _clients(run, s.opts, client, ctls)
    log_bin, ver, general, slow = _query(
        remote,
        "SET SESSION wsrep_sync_wait=0; SELECT @@GLOBAL.log_bin, @@GLOBAL.version, "
        "@@GLOBAL.general_log, @@GLOBAL.slow_query_log",
        f"connecting to the joiner {addr.host}",
    )
    log.info(f"Joiner server {ver} at {addr.host}:{port}: log_bin={log_bin}")

    header: list[str] = ["SET wsrep_on=OFF;"]
    trailer: list[str] = []
    dump_argv: tuple[str, ...] = ()
    if not req.bypass:
        donor_state = _query(
            local, "SELECT @@GLOBAL.gtid_binlog_state", "reading the donor's gtid_binlog_state"
        )[0]
        if not GTID_STATE_RE.match(donor_state):
            raise SSTError(f"unexpected gtid_binlog_state {donor_state!r} on the donor")
        header += ["SET GLOBAL general_log=OFF;", "SET GLOBAL slow_query_log=OFF;"]
        if log_bin == "1" and int(ver.split(".")[0] or 0) > 5:
            header += [
                "SET GLOBAL wsrep_on=OFF; RESET MASTER; SET GLOBAL wsrep_on=ON;",
                "SET GLOBAL wsrep_on=OFF; "
                f"SET @@GLOBAL.gtid_binlog_state='{donor_state}'; "
                "SET GLOBAL wsrep_on=ON;",
                "SET @@SESSION.sql_log_bin=OFF;",
            ]
        header.append("SET wsrep_on=OFF;")
        dump_argv = my.dump_argv(dump, local_defaults, socket=req.socket)
        trailer += [
            CSV_TABLES_FIX,
            f"SET GLOBAL general_log={'ON' if general == '1' else 'OFF'};",
            f"SET GLOBAL slow_query_log={'ON' if slow == '1' else 'OFF'};",
        ]
        log.info(f"Dumping all databases into the joiner's server at {addr.host}:{port}")
    else:
        log.info("Bypassing state dump (IST).")
    trailer.append(f"SET GLOBAL wsrep_start_position='{req.gtid}';")
    limiter = pv.rate_limit(tools.find("pv"), s.rlimit) if s.rlimit and dump_argv else ()
    _apply(run, remote, header, dump_argv, trailer, limiter=limiter, idle_timeout=s.idle_timeout)
    run.out.done(f"{req.gtid} {req.gtid_domain_id}".strip())


def _apply(
    run: Run,
    client: tuple[str, ...],
    header: list[str],
    dump: tuple[str, ...],
    trailer: list[str],
    *,
    limiter: tuple[str, ...] = (),
    idle_timeout: float,
) -> None:
    """One client session on the joiner: header, then the dump straight from mariadb-dump
    into the same OS pipe, then, only if the dump exited 0, the trailer that sets the
    start position. The dump's privilege tables replace the joiner's, so a second session
    could not log in any more."""
    r, w = os.pipe()
    try:
        applier = run.sup.start(Stage(client, name="mariadb (joiner)"), stdin=r)
    finally:
        os.close(r)
    try:
        _feed(run, w, "\n".join(header) + "\n", applier)
        if dump:
            stages = [Stage(dump, name="mariadb-dump")]
            if limiter:  # [sst] rlimit: pv between the dump and the joiner's session
                stages.append(Stage(limiter, name="pv"))
            kids = run.sup.pipeline(stages, stdout=w)
            dumper = kids[0]
            activity = TreeActivity(*(k.pid for k in kids), applier.pid)
            run.phase("dumping into the joiner", watch=(dumper.pid,))
            run.sup.wait(
                kids,
                watch=[applier],
                what="dumping into the joiner (a refusal by the joiner's server is explained "
                "in its error log)",
                idle=activity.idle,
                idle_timeout=idle_timeout,
            )
        _feed(run, w, "\n".join(trailer) + "\n", applier)
    finally:
        os.close(w)
    run.sup.wait([applier], what="applying the state on the joiner")


def _feed(run: Run, fd: int, text: str, reader: Child, timeout: float = 120.0) -> None:
    """Write a few statements into the client's pipe, never blocking past the deadline."""
    data = memoryview(text.encode())
    deadline = time.monotonic() + timeout
    while data:
        run.sup.check_parent()
        if reader.failed():
            raise reader.error("the joiner's client session")
        _, ready, _ = select.select([], [fd], [], 0.1)
        if ready:
            try:
                n = os.write(fd, data[:4096])
            except BrokenPipeError:
                raise reader.error("the joiner's client session ended early") from None
            data = data[n:]
        elif time.monotonic() > deadline:
            raise Timeout(f"the joiner's client did not read for {timeout:g} s")


@dataclass(frozen=True)
class MysqldumpSettings:
    """What the mysqldump donor reads from the option files, every value checked."""

    opts: config.Options  # for the client TLS and the credentials
    rlimit: str  # [sst] rlimit, pv's form ('' unlimited)
    idle_timeout: float
    tmpdir: str = ""  # the run directory goes to the system's


def load_settings(req: Request) -> MysqldumpSettings:
    """Read the option files; every invalid value is reported at once (ConfigError), before
    anything connects."""
    if req.gtid and not GTID_ARG_RE.match(req.gtid):
        raise ConfigError(f"malformed --gtid {req.gtid!r}")
    opts = config.read_options(req, (MYSQLD, "sst", CLIENT_GROUPS))
    errors: list[str] = []
    rlimit = config.option_rate(opts, "rlimit", "mysqldump", errors)
    idle = config.option_seconds(opts, "sst-idle-timeout", "mysqldump", errors)
    if errors:
        raise ConfigError("; ".join(errors))
    return MysqldumpSettings(opts, rlimit, idle)
