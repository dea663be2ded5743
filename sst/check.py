"""`galera-sst check`: will this node's SST work? Every pre-flight check, touching no data."""

from __future__ import annotations

import datetime
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sst import config, login, net, optionfiles, options, staging, tls, tools, versions
from sst import datadir as datadir_mod
from sst.config import MYSQLD, Options, TLSFiles
from sst.errors import SSTError
from sst.methods import base as registry
from sst.methods.base import Method
from sst.process.runner import run_capture
from sst.request import Address, Credentials, MethodName, Request, parse_request
from sst.tools import mysql as my

EXPIRY_WARN_DAYS = 30


@dataclass(frozen=True)
class Finding:
    """One row of the report."""

    check: str
    level: str  # pass | warn | fail
    detail: str
    fix: str = ""

    @classmethod
    def judged(cls, check: str, ok: bool, detail: str, fix: str) -> Finding:
        """A pass, or a fail with its fix."""
        return cls(check, "pass" if ok else "fail", detail, "" if ok else fix)


def _which(name: str) -> str:
    try:
        return tools.find(name)
    except SSTError:
        return ""


def _tools(method: Method, tls_on: bool) -> list[Finding]:
    need = list(method.tools)
    if method.tunnel and tls_on:
        need.append("stunnel4" if _which("stunnel4") and not _which("stunnel") else "stunnel")
    out = []
    for name in ["my_print_defaults", *need]:
        path = _which(name)
        out.append(
            Finding.judged(
                f"tool {name}",
                bool(path),
                path or "not found",
                "apt-get install "
                + {
                    "stunnel": "stunnel4",
                    "socat": "socat",
                    "rsync": "rsync",
                    "mariadb-backup": "mariadb-backup",
                    "mbstream": "mariadb-backup",
                }.get(name, "mariadb-client"),
            )
        )
    if "socat" in need and _which("socat") and tls_on:
        ok = "WITH_OPENSSL 1" in run_capture((_which("socat"), "-V"), timeout=10).stdout
        out.append(
            Finding.judged(
                "socat with OpenSSL",
                ok,
                "yes" if ok else "socat was built without OpenSSL",
                "install Debian's socat package",
            )
        )
    return out


def _versions(method: Method, tls_on: bool) -> list[Finding]:
    """The versions of mariadbd and of the method's programs found here (each asked through
    the runner), and every pairing among them that cannot be trusted (sst/versions.py)."""
    names = ["mariadbd", *method.tools]
    if method.tunnel and tls_on:
        names.append("stunnel4" if _which("stunnel4") and not _which("stunnel") else "stunnel")
    found: dict[str, str] = {}
    for name in names:
        path = _server_binary() if name == "mariadbd" else _which(name)
        if path:
            found[name] = versions.tool_version(name, path)
    said = [f"{n} {v or '(not said)'}" for n, v in found.items() if v or versions.asks(n)]
    out = [Finding("versions", "pass", ", ".join(said) or "none of the programs was found")]
    fix = {
        "fail": "install the mariadb-backup of the server's version (same package release)",
        "warn": "install the packages of one MariaDB release",
    }
    out += [
        Finding("version mismatch", lvl, text, fix[lvl]) for lvl, text in versions.mismatches(found)
    ]
    return out


def _server_binary() -> str:
    """mariadbd: on PATH, else in /usr/sbin (not on an ordinary user's PATH)."""
    try:
        return tools.find("mariadbd", extra_dirs=("/usr/sbin",))
    except SSTError:
        return ""


def _cert(label: str, files: TLSFiles, role: str, need_ca: bool) -> list[Finding]:
    try:
        checked = tls.check(files, role=role, need_ca=need_ca)
    except SSTError as exc:
        return [Finding(label, "fail", exc.message, "fix or replace the file named")]
    days = (checked.not_after - datetime.datetime.now(datetime.timezone.utc)).days
    level = "warn" if days < EXPIRY_WARN_DAYS else "pass"
    return [
        Finding(
            label,
            level,
            f"CN={checked.cn or '-'}, expires in {days} days ({files.cert})",
            "renew the certificate" if level == "warn" else "",
        )
    ]


@dataclass(frozen=True)
class RoleTLS:
    """One role's TLS files as the method resolves them, and what the peer checks."""

    files: TLSFiles
    need_ca: bool
    names_checked: bool  # the donor checks the joiner's name (VERIFY_IDENTITY rules)
    peer_certs: str = ""  # [sst] ssl-peer-certs (rsync)


def _settings(req: Request, opts: Options) -> tuple[list[Finding], RoleTLS | None]:
    """Given a role's request and the options; returns its findings and TLS (None: off)."""
    label = f"{req.method} options ({req.role})"
    try:
        if req.name.family == "rsync":
            s = config.rsync_settings(req, opts)
            on = s.ssl_mode != "DISABLED"
            rsync_tls = RoleTLS(
                s.tls,
                s.ssl_mode.startswith("VERIFY"),
                s.ssl_mode == "VERIFY_IDENTITY",
                s.peer_certs,
            )
            return [Finding(label, "pass", f"ssl-mode {s.ssl_mode}")], rsync_tls if on else None
        if req.name.family == "mariabackup":
            m = config.mariabackup_settings(req, opts)
            f = m.plan.files
            rt = RoleTLS(f, m.plan.verify, m.plan.check_name) if f is not None else None
            return [Finding(label, "pass", m.plan.label)], rt
    except SSTError as exc:
        return [Finding(label, "fail", exc.message, "correct the option files")], None
    return [Finding(label, "pass", "nothing to resolve")], None


def _receive_host(opts: Options) -> str:
    """The host part of wsrep_sst_receive_address, else of wsrep_node_address ('' if unset)."""
    for name in ("wsrep-sst-receive-address", "wsrep-node-address"):
        text = opts.get((MYSQLD,), name)
        if text and text.upper() != "AUTO":
            try:
                return Address.parse(text).host
            except SSTError:
                return ""
    return ""


def _identity(files: TLSFiles, opts: Options) -> list[Finding]:
    """The joiner certificate against the names a donor checks, by OpenSSL's verdict
    (sst.tls.identity_matches): the CN it announces (a mismatch fails), and the SST
    address a donor that is told no CN checks instead (a mismatch warns)."""
    try:
        leaf = tls.load_certs(files.cert)[0]
        cn = tls.common_name(leaf)
        names = [(cn, "fail", "the CN this joiner announces")] if cn else []
        host = _receive_host(opts)
        if host and host != cn:
            names.append((host, "fail" if not cn else "warn", "the joiner's SST address"))
        out = []
        for name, level, what in names:
            ok = tls.identity_matches(files.cert, name)
            kind = "IP SANs" if net.is_ip_literal(name) else "DNS SANs, else the CN"
            out.append(
                Finding(
                    f"SST identity '{name}'",
                    "pass" if ok else level,
                    f"{what}, checked by the donor against {kind}: "
                    f"{'matches' if ok else 'does NOT match'} {tls.describe_names(leaf)}",
                    "" if ok else "add the name to the certificate's subjectAltName",
                )
            )
    except SSTError as exc:
        return [Finding("SST identity", "fail", exc.message, "fix the certificate file")]
    return out or [Finding("SST identity", "fail", "no CN and no SST address to check", "")]


def _pinned(path: str, role: str) -> list[Finding]:
    """Given the ssl-peer-certs file; returns whether it holds certificates, and whose."""
    label = f"accepted peer certificates ({role})"
    try:
        certs = tls.load_certs(path, "accepted peer certificates (ssl-peer-certs)")
    except SSTError as exc:
        return [Finding(label, "fail", exc.message, "list the peers' certificates in the file")]
    names = ", ".join(tls.common_name(c) or c.subject.rfc4514_string() for c in certs)
    return [Finding(label, "pass", f"{len(certs)} in {path}: {names}")]


def _port(opts: Options) -> list[Finding]:
    text = opts.get((MYSQLD,), "wsrep-sst-receive-address")
    if not text or text.upper() == "AUTO":
        text = (
            opts.get((MYSQLD,), "wsrep-node-address").rsplit(":", 1)[0]
            if opts.get((MYSQLD,), "wsrep-node-address").count(":") == 1
            else opts.get((MYSQLD,), "wsrep-node-address")
        )
    if not text:
        return [
            Finding(
                "SST port",
                "warn",
                "no wsrep_sst_receive_address or "
                "wsrep_node_address; mariadbd will guess the address",
                "set wsrep_sst_receive_address",
            )
        ]
    try:
        addr = Address.parse(text)
    except SSTError as exc:
        return [Finding("SST port", "fail", exc.message, "fix wsrep_sst_receive_address")]
    bind = net.bind_address(addr.host)
    busy = net.port_in_use(addr.port, bind)
    return [
        Finding.judged(
            "SST port",
            not busy,
            f"{addr.hostport} is {'in use' if busy else 'free'}"
            + ("" if bind else f" ({addr.host} is not an address of this host)"),
            "stop what listens there or pick another port",
        )
    ]


def _disk(datadir: str, method: Method, opts: Options) -> list[Finding]:
    """Which staging policy applies on this joiner, and why: free space against the
    estimated incoming copy (the old datadir's size; sst/staging.py)."""
    if method.family not in ("rsync", "mariabackup"):
        return []
    if not os.path.isdir(datadir):
        return [Finding("staging policy", "warn", f"datadir {datadir} does not exist yet")]
    errors: list[str] = []
    value = config.staging_policy(opts, method.family, errors)
    if errors:
        return [
            Finding(
                "staging policy",
                "fail",
                errors[0],
                "[sst] staging: " + ", ".join(config.STAGING_POLICIES),
            )
        ]
    decision, estimate = staging.for_datadir(value, [datadir])
    out = []
    if staging.failed_in_place(datadir):
        out.append(
            Finding(
                "staging policy",
                "warn",
                f"{datadir} holds the debris of an in-place SST that did not finish "
                "(sst_in_progress says in-place; grastate.dat is invalidated)",
                "let the node SST again; do not start a server on it by hand",
            )
        )
    if value == staging.ALWAYS:
        auto = staging.decide(staging.AUTO, datadir_mod.free_bytes(datadir), estimate, empty=False)
        if not auto.stage:
            return [
                *out,
                Finding(
                    "staging policy",
                    "fail",
                    f"staged: {decision.reason}: a second copy does not fit",
                    "free space, move the datadir to a larger filesystem, or set "
                    "[sst] staging=auto (in place when a second copy does not fit)",
                ),
            ]
    level = "pass" if decision.stage else "warn"
    fix = "" if decision.stage else "free space to keep the old datadir until the new one is in"
    return [*out, Finding("staging policy", level, f"{decision.mode}: {decision.reason}", fix)]


def _credentials(req: Request, opts: Options) -> list[Finding]:
    creds = req.credentials
    if not creds.user:
        auth = opts.get(("sst",), "wsrep-sst-auth") or opts.get((MYSQLD,), "wsrep-sst-auth")
        creds = Credentials.parse(auth)
    if not creds.user:
        return _socket_login(opts)
    socket = opts.get((MYSQLD,), "socket")
    client = _which("mariadb")
    if not socket or not os.path.exists(socket) or not client:
        return [
            Finding("SST credentials", "warn", "the local server is not running; login not tried")
        ]
    with tempfile.TemporaryDirectory(prefix="galera-sst-check.") as d:
        cnf = os.path.join(d, "c.cnf")
        my.option_file(cnf, include="", group="client", user=creds.user, password=creds.password)
        res = run_capture(
            (client, f"--defaults-file={cnf}", f"--socket={socket}", "-e", "SELECT 1"), timeout=20
        )
    ok = res.returncode == 0
    return [
        Finding.judged(
            "SST credentials",
            ok,
            f"user '{creds.user}' "
            + ("can log in" if ok else f"cannot log in: {res.stderr.strip()[-200:]}"),
            "create the user or fix wsrep_sst_auth",
        )
    ]


def _socket_login(opts: Options) -> list[Finding]:
    """No wsrep_sst_auth: the donor logs in as the server's OS user through unix_socket
    (sst/login.py). Tried as that user when the server runs and this is root."""
    user = opts.get((MYSQLD,), "user") or login.os_user()
    how = f"the donor logs in as OS user '{user}' through unix_socket (no wsrep_sst_auth)"
    socket = opts.get((MYSQLD,), "socket")
    client = _which("mariadb")
    runuser = _which("runuser")
    if not socket or not os.path.exists(socket) or not client:
        return [Finding("SST login", "pass", how + "; the local server is not running: not tried")]
    argv: tuple[str, ...] = (client, "--no-defaults", f"--socket={socket}", f"--user={user}")
    if os.geteuid() == 0 and user != login.os_user() and runuser:
        argv = (runuser, "-u", user, "--", *argv)
    elif user != login.os_user():
        return [Finding("SST login", "pass", how + f"; not tried (not root, not '{user}')")]
    res = run_capture((*argv, "-e", "SELECT 1"), timeout=20)
    ok = res.returncode == 0
    return [
        Finding.judged(
            "SST login",
            ok,
            how + ("; it can log in" if ok else f"; it cannot: {res.stderr.strip()[-200:]}"),
            f"CREATE USER '{user}'@localhost IDENTIFIED VIA unix_socket (and grant it "
            "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR), or set wsrep_sst_auth",
        )
    ]


SOURCE_KEYS = (
    "ssl-mode",
    "ssl-ca",
    "ssl-capath",
    "ssl-cert",
    "ssl-key",
    "tca",
    "tcert",
    "tkey",
    "encrypt",
    "wsrep-sst-method",
    "wsrep-sst-auth",
    "wsrep-sst-receive-address",
)


def _sources(defaults: tuple[str, str, str]) -> Finding:
    """Where the SST-relevant options are set (file:line [group]), to know what to edit."""
    files = optionfiles.search_files(defaults[0], defaults[1])
    found = optionfiles.sources(
        files, (*optionfiles.MYSQLD_GROUPS, "sst", "xtrabackup", "mariabackup"), defaults[2]
    )
    parts = [
        f"{k} in {found[k][0]}:{found[k][1]} [{found[k][2]}]" for k in SOURCE_KEYS if k in found
    ]
    return Finding(
        "option sources",
        "pass",
        "; ".join(parts) or f"none of the SST options is set in {', '.join(files)}",
    )


def _set_options(method: Method, opts: Options) -> Finding:
    """The options of the method's table rows that the files set (sst/options.py)."""
    seen = [
        f"{name}={'***' if row.secret else opts.get(row.groups, name)}"
        for row in options.for_method(method.family)
        for name in row.names
        if "*" not in name and opts.get(row.groups, name)
    ]
    return Finding(
        f"{method.family} options set",
        "pass",
        ", ".join(seen) or "none: every option has its default (README, Configuration)",
    )


def run(
    defaults: tuple[str, str, str], *, method: str, roles: tuple[str, ...], env: dict[str, str]
) -> list[Finding]:
    """Every check for the given method and roles."""
    spec = registry.lookup(MethodName.parse(method))
    args = ["--datadir", "/"]
    for opt, value in zip(
        ("--defaults-file", "--defaults-extra-file", "--defaults-group-suffix"), defaults
    ):
        if value:
            args += [opt, value]
    base = parse_request(f"wsrep_sst_{method}", ["--role", "joiner", *args], env)
    opts = config.read_options(base, (MYSQLD, "sst", "xtrabackup mariabackup"))
    datadir = opts.get((MYSQLD,), "datadir", "/var/lib/mysql").rstrip("/")
    findings: list[Finding] = []
    tls_files: list[tuple[str, RoleTLS]] = []
    for role in roles:
        req = parse_request(
            f"wsrep_sst_{method}",
            ["--role", role, "--address", "127.0.0.1", *args, "--datadir", datadir],
            env,
        )
        f, rt = _settings(req, opts)
        findings += f
        if rt is not None:
            tls_files.append((role, rt))
    on = bool(tls_files)
    findings = [*_tools(spec, on), *_versions(spec, on), _set_options(spec, opts), *findings]
    for role, rt in tls_files:
        findings += _cert(f"SST certificate ({role})", rt.files, role, rt.need_ca)
        if role == "joiner" and rt.names_checked:
            findings += _identity(rt.files, opts)
        if rt.peer_certs:
            findings += _pinned(rt.peer_certs, role)
    repl = opts.get((MYSQLD,), "wsrep-provider-options")
    m = re.search(r"socket\.ssl_ca\s*=\s*([^;\s]+)", repl)
    if m and tls_files:
        sst_ca = tls_files[0][1].files.ca
        same = not sst_ca or os.path.realpath(m.group(1)) == os.path.realpath(sst_ca)
        findings.append(
            Finding(
                "replication and SST CA",
                "pass" if same else "warn",
                f"replication CA {m.group(1)}, SST CA {sst_ca or '-'}",
                "" if same else "use one CA for both, or check both trust",
            )
        )
    findings.append(_sources(defaults))
    if "joiner" in roles:
        findings += _port(opts) + _disk(datadir, spec, opts)
    if "donor" in roles:
        findings += _credentials(base, opts)
    return findings


def report(findings: list[Finding], say: Callable[[str], None] = print) -> int:
    """Print the table; exit status 1 if anything failed."""
    width = max(len(f.check) for f in findings)
    for f in findings:
        say(
            f"{f.level.upper():5} {f.check:{width}}  {f.detail}"
            + (f"\n{'':{width + 8}}fix: {f.fix}" if f.fix else "")
        )
    return 1 if any(f.level == "fail" for f in findings) else 0


def as_json(findings: list[Finding]) -> list[dict[str, str]]:
    """The findings as plain dicts."""
    return [asdict(f) for f in findings]
