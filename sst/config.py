"""Option files, read through my_print_defaults, frozen into typed settings (docs/contract.md 4)."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from sst import options, stock, tools
from sst.datadir import Binlogs, resolve
from sst.errors import ConfigError
from sst.process.runner import run_capture
from sst.request import Credentials, Request, normalize_option
from sst.tools import my_print_defaults

MYSQLD = options.MYSQLD  # every group mariadbd itself reads


@dataclass(frozen=True)
class Options:
    """Options by group set: {group_set: {normalized-name: value or None}}; last one wins."""

    by_group: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)

    def get(self, groups: tuple[str, ...], name: str, default: str = "") -> str:
        """First group (in order) with a non-empty value wins (stock parse_cnf)."""
        for g in groups:
            v = self.by_group.get(g, {}).get(name)
            if v:
                return v
        return default

    def present(self, groups: tuple[str, ...], name: str) -> bool:
        """True if the option appears at all, with or without a value (stock in_config)."""
        return any(name in self.by_group.get(g, {}) for g in groups)


def parse_output(text: str) -> dict[str, str | None]:
    """my_print_defaults lines `--name[=value]` -> {normalized name: value}; last wins."""
    out: dict[str, str | None] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("--"):
            continue
        name, sep, value = line.partition("=")
        out[normalize_option(name.strip())] = value.strip() if sep else None
    return out


def read_options(req: Request, group_sets: tuple[str, ...]) -> Options:
    """One my_print_defaults call per group set (a set is space-separated group names).
    Raises ConfigError if an option file mariadbd named cannot be read (my_print_defaults
    itself silently skips a directory, and the defaults would then rule unseen)."""
    for option, path in (
        ("--defaults-file", req.defaults_file),
        ("--defaults-extra-file", req.defaults_extra_file),
    ):
        if path and not _readable_file(path):
            raise ConfigError(f"{option} {path!r} is not a readable file")
    binary = tools.find("my_print_defaults", extra_dirs=my_print_defaults.candidates())
    by_group: dict[str, dict[str, str | None]] = {}
    for gs in group_sets:
        res = run_capture(my_print_defaults.argv(binary, req.defaults_args, tuple(gs.split())))
        if res.returncode != 0:
            raise ConfigError(
                f"my_print_defaults failed reading [{gs}] (exit {res.returncode}): "
                f"{res.stderr.strip()[-200:]}"
            )
        by_group[gs] = parse_output(res.stdout)
    return Options(by_group)


def _readable_file(path: str) -> bool:
    """True if path is a regular file we may open for reading."""
    if not os.path.isfile(path):  # first: opening a FIFO would block
        return False
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


TLS_MODES = ("DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")


@dataclass(frozen=True)
class TLSFiles:
    """The certificate files one role uses (docs/contract.md 5.1)."""

    ca: str = ""
    capath: str = ""
    cert: str = ""
    key: str = ""

    @property
    def any_ca(self) -> bool:
        """A CA file or directory is configured."""
        return bool(self.ca or self.capath)


@dataclass(frozen=True)
class ServerDirs:
    """The server's binlog names and separate InnoDB/Aria directories ('' = the datadir)."""

    log_bin: str | None = None  # None: binary logging off; "": on with the default name
    log_bin_index: str = ""
    log_basename: str = ""
    innodb_data_home_dir: str = ""
    innodb_log_group_home_dir: str = ""
    innodb_undo_directory: str = ""
    aria_log_dir_path: str = ""

    def by_module(self, datadir: str) -> dict[str, str]:
        """rsync sub-module -> the resolved directory it carries."""
        return {
            "data_dir": resolve(datadir, self.innodb_data_home_dir),
            "log_dir": resolve(datadir, self.innodb_log_group_home_dir),
            "undo_dir": resolve(datadir, self.innodb_undo_directory),
            "aria_log": resolve(datadir, self.aria_log_dir_path),
        }

    def options(self) -> tuple[str, ...]:
        """The set ones as mariadb-backup options."""
        return tuple(
            f"--{name}={value}"
            for name, value in (
                ("aria-log-dir-path", self.aria_log_dir_path),
                ("innodb-data-home-dir", self.innodb_data_home_dir),
                ("innodb-log-group-home-dir", self.innodb_log_group_home_dir),
                ("innodb-undo-directory", self.innodb_undo_directory),
            )
            if value
        )

    def binlogs(self, datadir: str) -> Binlogs | None:
        """The binlog names, or None when binary logging is off."""
        return Binlogs.from_settings(datadir, self.log_bin, self.log_bin_index, self.log_basename)


@dataclass(frozen=True)
class RsyncSettings:
    """Everything the rsync method reads from the option files."""

    ssl_mode: str  # one of TLS_MODES
    tls: TLSFiles
    max_binlogs: int
    backup_threads: int
    tmpdir: str
    server: ServerDirs
    flush_timeout: float
    idle_timeout: float
    connect_timeout: float
    bwlimit_kib: int  # [sst] rlimit as rsync's --bwlimit (KiB/s); 0: unlimited
    peer_certs: str = ""  # [sst] ssl-peer-certs: PEM file of the only peer certificates accepted
    precopy: bool = True  # [sst] rsync-precopy: copy before the read lock, the delta under it
    records: bool = True  # [sst] rsync-records: skip what both sides' records vouch for
    staging: str = "auto"  # [sst] staging: auto, always or in-place (sst/staging.py)
    resume_max_age: float = 86400.0  # [sst] sst-resume-max-age; 0: a failed transfer is not kept


RATE = re.compile(r"^(\d+(?:\.\d+)?)([kKmMgGtT]?)$")


def rate_bytes(name: str, value: str, errors: list[str]) -> int:
    """A pv-style rate (bytes/s with an optional k/m/g/t suffix, powers of 1024); 0 if ''."""
    if not value:
        return 0
    m = RATE.match(value.strip())
    if not m or float(m.group(1)) <= 0:
        errors.append(f"{name}={value!r} is not a rate like 500k, 20m or 1g (bytes per second)")
        return 0
    power = " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * 1024**power)


def resolve_tls(opts: Options, groups: tuple[str, ...], role: str) -> TLSFiles:
    """Legacy tca/tcert/tkey win over ssl-*; ssl-server-*/ssl-client-* override per role."""
    legacy = TLSFiles(
        ca=opts.get(("sst",), "tca"),
        capath=opts.get(("sst",), "tcapath"),
        cert=opts.get(("sst",), "tcert"),
        key=opts.get(("sst",), "tkey"),
    )
    if legacy.ca or legacy.capath or legacy.cert or legacy.key:
        base = legacy
    else:
        base = TLSFiles(
            ca=opts.get(groups, "ssl-ca"),
            capath=opts.get(groups, "ssl-capath"),
            cert=opts.get(groups, "ssl-cert"),
            key=opts.get(groups, "ssl-key"),
        )
    prefix = "ssl-server-" if role == "joiner" else "ssl-client-"
    files = TLSFiles(
        ca=opts.get(groups, prefix + "ca", base.ca),
        capath=opts.get(groups, prefix + "capath", base.capath),
        cert=opts.get(groups, prefix + "cert", base.cert),
        key=opts.get(groups, prefix + "key", base.key),
    )
    # A CA value naming a directory (or ending in /) is a CA path.
    if files.ca and (files.ca.endswith("/") or os.path.isdir(files.ca)):
        files = TLSFiles(ca="", capath=files.ca, cert=files.cert, key=files.key)
    return files


def _number(name: str, value: str, errors: list[str], *, minimum: float | None = None) -> float:
    try:
        n = float(value)
    except ValueError:
        errors.append(f"{name}={value!r} is not a number")
        return 0.0
    if minimum is not None and n < minimum:
        errors.append(f"{name}={value!r} must be at least {minimum:g}")
    return n


def option(opts: Options, name: str, method: str, kind: str = "") -> str:
    """An option's value as `method` reads it: its groups and default from sst/options.py
    (and, given a kind, the row must declare it: the table says how each value is checked)."""
    row = options.row(name, method)
    assert not kind or row.kind == kind, f"{name} is {row.kind} in sst/options.py, not {kind}"
    return opts.get(row.groups, name, row.default)


def option_seconds(opts: Options, name: str, method: str, errors: list[str]) -> float:
    """A timeout in seconds (>= 0) from the option table; a bad value is added to errors."""
    return _number(name, option(opts, name, method, options.SECONDS), errors, minimum=0)


def option_threads(opts: Options, name: str, method: str, errors: list[str]) -> int:
    """A thread count (>= 1), or 0 when unset; a bad value is added to errors."""
    text = option(opts, name, method, options.THREADS)
    return int(_number(name, text, errors, minimum=1)) if text else 0


SWITCH_VALUES = {"1": True, "on": True, "yes": True, "true": True}
SWITCH_VALUES.update({"0": False, "off": False, "no": False, "false": False})


def option_switch(opts: Options, name: str, method: str, errors: list[str]) -> bool:
    """An on/off option (1/0, on/off, yes/no, true/false, any case); a bad value is added
    to errors (and reads as the table's default)."""
    text = option(opts, name, method, options.SWITCH).strip().lower()
    if text not in SWITCH_VALUES:
        errors.append(f"{name}={text!r} is not one of 1/0, on/off, yes/no, true/false")
        return SWITCH_VALUES[options.default(name, method)]
    return SWITCH_VALUES[text]


def option_argv(opts: Options, name: str, method: str, errors: list[str]) -> tuple[str, ...]:
    """A command option (compressor, inno-*-opts) as an argument list; errors as above."""
    return _argv_option(name, option(opts, name, method, options.ARGV), errors)


def option_rate(opts: Options, name: str, method: str, errors: list[str]) -> str:
    """A pv-style rate (checked as rate_bytes does), stripped; errors as above."""
    text = option(opts, name, method, options.RATE).strip()
    rate_bytes(name, text, errors)
    return text


STAGING_POLICIES = ("auto", "always", "in-place")


def staging_policy(opts: Options, method: str, errors: list[str]) -> str:
    """[sst] staging, lower-cased; a value not in STAGING_POLICIES is added to errors."""
    value = option(opts, "staging", method).strip().lower()
    if value not in STAGING_POLICIES:
        errors.append(f"staging={value!r} is not one of {', '.join(STAGING_POLICIES)}")
    return value


def rsync_settings(req: Request, opts: Options) -> RsyncSettings:
    """Freeze the rsync method's settings; every invalid value is reported at once."""
    groups = options.SERVER_SST
    errors: list[str] = []
    tls = resolve_tls(opts, groups, req.role)
    mode = option(opts, "ssl-mode", "rsync").upper()
    if not mode:
        if tls.any_ca:
            mode = "VERIFY_CA"
        elif tls.cert and tls.key:
            mode = "REQUIRED"
        else:
            mode = "DISABLED"
    if mode not in TLS_MODES:
        errors.append(f"ssl-mode={mode!r} is not one of {', '.join(TLS_MODES)}")
    elif mode.startswith("VERIFY") and not tls.any_ca:
        errors.append(f"ssl-mode={mode} needs a CA (ssl-ca or ssl-capath), and none is configured")
    if mode != "DISABLED" and not (tls.cert and tls.key):
        errors.append(f"ssl-mode={mode} needs ssl-cert and ssl-key for the {req.role}")
    binlogs = option(opts, "sst-max-binlogs", "rsync", options.COUNT)
    max_binlogs = int(_number("sst-max-binlogs", binlogs, errors))
    threads = option_threads(opts, "backup-threads", "rsync", errors)
    if threads <= 0:
        threads = max(2, os.cpu_count() or 2)

    flush_t = option_seconds(opts, "sst-flush-timeout", "rsync", errors)
    idle_t = option_seconds(opts, "sst-idle-timeout", "rsync", errors)
    conn_t = option_seconds(opts, "sst-initial-timeout", "rsync", errors)
    resume_t = option_seconds(opts, "sst-resume-max-age", "rsync", errors)
    rlimit = rate_bytes("rlimit", option(opts, "rlimit", "rsync", options.RATE), errors)
    peer_certs = option(opts, "ssl-peer-certs", "rsync")
    precopy = option_switch(opts, "rsync-precopy", "rsync", errors)
    records = option_switch(opts, "rsync-records", "rsync", errors)
    if peer_certs and not mode.startswith("VERIFY"):
        errors.append(f"ssl-peer-certs needs ssl-mode VERIFY_CA or VERIFY_IDENTITY, not {mode}")
    staging = staging_policy(opts, "rsync", errors)
    if errors:
        raise ConfigError("; ".join(errors))

    return RsyncSettings(
        ssl_mode=mode,
        tls=tls,
        max_binlogs=max_binlogs,
        backup_threads=threads,
        tmpdir=option(opts, "tmpdir", "rsync"),
        server=server_dirs(req, opts),
        flush_timeout=flush_t,
        idle_timeout=idle_t,
        connect_timeout=conn_t,
        bwlimit_kib=max(1, rlimit // 1024) if rlimit else 0,
        peer_certs=peer_certs,
        precopy=precopy,
        records=records,
        staging=staging,
        resume_max_age=resume_t,
    )


ENC_GROUPS = options.ENC

DEFAULT_CPAT = (
    r".*/(\.sst|\.sst-old|\.sst-staging|galera\.cache|sst_in_progress|grastate\.dat"
    r"|gvwstate\.dat|wsrep_sst\.pid|.*\.pem|.*\.err|.*\.log|RPM_UPGRADE_MARKER"
    r"|RPM_UPGRADE_HISTORY|lost\+found|galera_sst_status\.json)$"
)


@dataclass(frozen=True)
class SocatPlan:
    """The effective mariabackup transport security after encrypt/ssl-mode resolution."""

    label: str  # for log lines: "plain", "TLS VERIFY_CA (encrypt=3)", ...
    files: TLSFiles | None  # None: plain TCP
    verify: bool = False  # peers' chains are checked against the CA
    check_name: bool = False  # the donor checks the joiner's name (VERIFY_IDENTITY rules)
    mode: str = "DISABLED"
    encrypt: int = 0  # after resolution: 2, 3 or 4 with TLS


@dataclass(frozen=True)
class StreamCrypt:
    """encrypt=1: stock's `openssl enc` stage on the mbstream stream (no authentication)."""

    algo: str  # an `openssl enc` cipher name without the dash, e.g. aes-256-ctr
    key: str = field(default="", repr=False)  # written to a 0600 file, never on argv
    keyfile: str = ""  # encrypt-key-file, when key is unset: handed to -kfile as is


KFILE_MAX = 127  # `openssl enc -kfile` reads the first line into a 128-byte buffer


def stream_crypt(opts: Options, errors: list[str]) -> StreamCrypt:
    """encrypt=1's options, as stock reads them (the key file only when the key is unset)."""
    fmt = option(opts, "encrypt-format", "mariabackup")
    if fmt == "xbcrypt":
        errors.append(
            "encrypt-format=xbcrypt is not supported (it needs the xbcrypt tool, which Debian "
            "does not ship); use encrypt-format=openssl"
        )
    elif fmt != "openssl":
        errors.append(f"encrypt-format={fmt!r} is not one of openssl, xbcrypt")
    algo = option(opts, "encrypt-algo", "mariabackup")
    if not algo:
        errors.append("encrypt=1 needs encrypt-algo (an openssl cipher, e.g. aes-256-ctr)")
    elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", algo):
        errors.append(f"encrypt-algo={algo!r} is not an openssl cipher name")
    key = option(opts, "encrypt-key", "mariabackup")
    keyfile = "" if key else option(opts, "encrypt-key-file", "mariabackup")
    if not key and not keyfile:
        errors.append("encrypt=1 needs encrypt-key or encrypt-key-file")
    if len(key.encode()) > KFILE_MAX or any(c in key for c in "\r\n\0"):
        errors.append(
            f"encrypt-key is longer than {KFILE_MAX} bytes or holds a line break: openssl "
            "would not read it from a key file as the stock script's `-k` uses it"
        )
    return StreamCrypt(algo, key, keyfile)


@dataclass(frozen=True)
class MariabackupSettings:
    """Everything the mariabackup method reads from the option files."""

    plan: SocatPlan
    sockopt: str
    compressor: tuple[str, ...]
    decompressor: tuple[str, ...]
    backup_threads: int
    inno_backup_opts: tuple[str, ...]
    inno_apply_opts: tuple[str, ...]
    inno_move_opts: tuple[str, ...]
    use_memory: str
    initial_timeout: float
    idle_timeout: float
    progress: str  # "", "none", "1" or a file path
    rlimit: str
    tmpdir: str
    cpat: str  # a Python regex matched against full paths of depth-1 entries
    server: ServerDirs
    credentials: Credentials = field(default_factory=Credentials)
    staging: str = "auto"  # [sst] staging: auto, always or in-place (sst/staging.py)
    crypt: StreamCrypt | None = None  # encrypt=1


def _argv_option(name: str, value: str, errors: list[str]) -> tuple[str, ...]:
    """A command option (compressor, inno-*-opts) split like a shell would, never run by one."""
    if not value:
        return ()
    if any(c in value for c in "|;&<>`$\n") or "$(" in value:
        errors.append(
            f"{name}={value!r}: shell syntax is not supported (the command runs as an "
            "argument list, not through a shell)"
        )
        return ()
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        errors.append(f"{name}={value!r}: {exc}")
        return ()


def emacs_regex_to_python(pattern: str) -> str:
    """find(1)'s default (emacs) regex, as the stock cpat uses, to a Python regex."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            # Emacs syntax has no intervals: \{ and \} are plain braces, as find(1) reads them.
            out.append(nxt if nxt in "()|" else "\\" + nxt)
            i += 2
            continue
        out.append("\\" + ch if ch in "()|{}" else ch)
        i += 1
    return "".join(out)


def socat_plan(opts: Options, role: str, errors: list[str]) -> SocatPlan:
    """encrypt + ssl-mode -> what the socat tunnel does (docs/contract.md 5.3), stricter:
    VERIFY_* with no CA is refused instead of silently dropping authentication."""
    enc_text = option(opts, "encrypt", "mariabackup")
    mode = option(opts, "ssl-mode", "mariabackup").upper()
    if mode not in TLS_MODES:
        errors.append(f"ssl-mode={mode!r} is not one of {', '.join(TLS_MODES)}")
        mode = "DISABLED"
    try:
        encrypt = int(enc_text)
    except ValueError:
        errors.append(f"encrypt={enc_text!r} is not a number")
        return SocatPlan("plain", None)
    if encrypt == 1:
        if mode != "DISABLED":
            errors.append(
                f"encrypt=1 with ssl-mode={mode}: the stock script then ignores ssl-mode "
                "and sends without TLS; choose one (encrypt=1 for openssl stream "
                "encryption, or TLS with ssl-mode or encrypt=3/4)"
            )
        return SocatPlan("openssl stream encryption (encrypt=1)", None, encrypt=1)
    if encrypt not in (0, 2, 3, 4):
        errors.append(f"encrypt={encrypt} is not one of 0, 1, 2, 3, 4")
        return SocatPlan("plain", None)
    if encrypt == 0 and mode == "DISABLED":
        return SocatPlan("plain", None)
    auto = encrypt == 0
    if auto:
        encrypt = 3
    files = resolve_tls(opts, ENC_GROUPS, role)
    if stock.simulate_no_ssl_cert():  # MTR_SST_SIMULATE_NO_SSL_CERT, test-only
        files = TLSFiles(files.ca, files.capath, "", "")
    if encrypt == 2 and not files.key:
        files = TLSFiles(files.ca, files.capath, files.cert, files.cert)  # PEM holds the key
    if not (files.cert and files.key):
        errors.append(
            (stock.no_usable_cert(mode) + " " if mode != "DISABLED" else "")
            + f"TLS (encrypt={encrypt}, ssl-mode={mode}) needs ssl-cert and ssl-key "
            f"(or tcert/tkey) for the {role}; refusing to fall back to cleartext"
        )
        return SocatPlan("plain", None)
    if mode == "REQUIRED" and auto:
        files = TLSFiles("", "", files.cert, files.key)  # encryption only, as stock
    if mode.startswith("VERIFY") and not files.any_ca:
        errors.append(
            f"ssl-mode={mode} needs a CA (ssl-ca or ssl-capath); without one the "
            "peer would not be authenticated"
        )
    if encrypt in (2, 4) and not files.any_ca:
        errors.append(f"encrypt={encrypt} needs a CA (tca / ssl-ca)")
    verify = files.any_ca
    check_name = verify and mode != "VERIFY_CA" and encrypt == 3
    if mode == "VERIFY_IDENTITY":
        check_name = True
    label = f"TLS {mode if mode != 'DISABLED' else ''} (encrypt={encrypt})".replace("  ", " ")
    return SocatPlan(label, files, verify, check_name, mode, encrypt)


def mariabackup_settings(req: Request, opts: Options) -> MariabackupSettings:
    """Freeze the mariabackup method's settings; every invalid value is reported at once."""
    errors: list[str] = []
    plan = socat_plan(opts, req.role, errors)
    tfmt = option(opts, "transferfmt", "mariabackup")
    if tfmt != "socat":
        errors.append(f"transferfmt={tfmt!r}: only socat is supported")
    sfmt = option(opts, "streamfmt", "mariabackup")
    if sfmt not in ("mbstream", "xbstream"):
        errors.append(
            f"streamfmt={sfmt!r}: only mbstream is supported (mariadb-backup cannot produce tar)"
        )
    threads = option_threads(opts, "backup-threads", "mariabackup", errors)
    cpat_text = option(opts, "cpat", "mariabackup")
    cpat = emacs_regex_to_python(cpat_text) if cpat_text else DEFAULT_CPAT
    try:
        re.compile(cpat)
    except re.error as exc:
        errors.append(f"cpat={cpat_text!r} is not a valid pattern: {exc}")
    progress = option(opts, "progress", "mariabackup")
    initial = option_seconds(opts, "sst-initial-timeout", "mariabackup", errors)
    idle = option_seconds(opts, "sst-idle-timeout", "mariabackup", errors)
    rlimit = option_rate(opts, "rlimit", "mariabackup", errors)  # pv's form, nothing else
    result = MariabackupSettings(
        plan=plan,
        sockopt=option(opts, "sockopt", "mariabackup"),
        compressor=option_argv(opts, "compressor", "mariabackup", errors),
        decompressor=option_argv(opts, "decompressor", "mariabackup", errors),
        backup_threads=threads,
        inno_backup_opts=option_argv(opts, "inno-backup-opts", "mariabackup", errors),
        inno_apply_opts=option_argv(opts, "inno-apply-opts", "mariabackup", errors),
        inno_move_opts=option_argv(opts, "inno-move-opts", "mariabackup", errors),
        use_memory=option(opts, "use-memory", "mariabackup")
        or req.paths.innodb_buffer_pool_size
        or opts.get((MYSQLD,), "innodb-buffer-pool-size"),
        initial_timeout=initial,
        idle_timeout=idle,
        progress=progress,
        rlimit=rlimit,
        tmpdir=option(opts, "tmpdir", "mariabackup"),
        cpat=cpat,
        credentials=credentials(req, opts),
        server=server_dirs(req, opts),
        staging=staging_policy(opts, "mariabackup", errors),
        crypt=stream_crypt(opts, errors) if plan.encrypt == 1 else None,
    )
    if errors:
        raise ConfigError("; ".join(errors))
    return result


def server_dirs(req: Request, opts: Options) -> ServerDirs:
    """Explicit arguments (and --mysqld-args) win over the server's option groups."""
    p = req.paths
    log_bin = p.log_bin
    if log_bin is None and opts.present((MYSQLD,), "log-bin"):
        log_bin = opts.get((MYSQLD,), "log-bin")
    return ServerDirs(
        log_bin=log_bin,
        log_bin_index=p.log_bin_index or opts.get((MYSQLD,), "log-bin-index"),
        log_basename=p.log_basename or opts.get((MYSQLD,), "log-basename"),
        innodb_data_home_dir=p.innodb_data_home_dir or opts.get((MYSQLD,), "innodb-data-home-dir"),
        innodb_log_group_home_dir=p.innodb_log_group_home_dir
        or opts.get((MYSQLD,), "innodb-log-group-home-dir"),
        innodb_undo_directory=p.innodb_undo_directory
        or opts.get((MYSQLD,), "innodb-undo-directory"),
        aria_log_dir_path=p.aria_log_dir_path or opts.get((MYSQLD,), "aria-log-dir-path"),
    )


def credentials(req: Request, opts: Options) -> Credentials:
    """WSREP_SST_OPT_AUTH, else `[sst] wsrep-sst-auth` (docs/contract.md 1.9)."""
    if req.credentials.user:
        return req.credentials
    return Credentials.parse(opts.get(("sst",), "wsrep-sst-auth"))
