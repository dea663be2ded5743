"""mariadbd's argv and environment, parsed into a typed, frozen request (docs/contract.md 1)."""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sst.errors import ConfigError

DEFAULT_PORT = 4444
_ADDRESS_BAD = re.compile(r"[^A-Za-z0-9._\-:\[\]/]")


@dataclass(frozen=True)
class Address:
    """`host[:port][/module[/lsn[/sst_ver]]]` as in docs/contract.md 1.7."""

    host: str  # unescaped: no brackets around IPv6
    port: int
    module: str = ""
    lsn: str = ""
    sst_ver: str = ""
    path: str = ""

    @property
    def is_ipv6(self) -> bool:
        """True for an IPv6 literal."""
        return ":" in self.host

    @property
    def is_ip(self) -> bool:
        """True for an IPv4 or IPv6 literal."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def host_escaped(self) -> str:
        """The host as it goes into `host:port` strings (IPv6 in brackets)."""
        return f"[{self.host}]" if self.is_ipv6 else self.host

    @property
    def hostport(self) -> str:
        """`host:port` with IPv6 bracketed."""
        return f"{self.host_escaped}:{self.port}"

    @classmethod
    def parse(cls, text: str, default_port: int = DEFAULT_PORT) -> Address:
        """Parse an SST address; raises ConfigError naming what is wrong."""
        raw = text.strip()
        if not raw:
            raise ConfigError("empty SST address")
        bad = _ADDRESS_BAD.search(raw)
        if bad:
            raise ConfigError(
                f"bad character {bad.group()!r} in SST address {raw!r} (mariadbd "
                "allows letters, digits and . _ - : [ ] /)"
            )
        if raw.startswith("["):
            end = raw.find("]")
            if end < 0:
                raise ConfigError(f"unterminated IPv6 address in {raw!r}")
            host = raw[1:end]
            rest = raw[end + 1 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ConfigError(f"bad IPv6 address {host!r} in {raw!r}") from None
        else:
            host, sep, rest = raw.partition(":") if ":" in raw.split("/")[0] else raw.partition("/")
            rest = sep + rest
        if not host:
            raise ConfigError(f"no host in SST address {raw!r}")
        port = default_port
        if rest.startswith(":"):
            port_text, _, after = rest[1:].partition("/")
            rest = "/" + after if after or rest[1:].find("/") >= 0 else ""
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ConfigError(f"bad port {port_text!r} in SST address {raw!r}")
            port = int(port_text)
        elif rest and not rest.startswith("/"):
            raise ConfigError(f"unexpected {rest!r} in SST address {raw!r}")
        path = rest[1:] if rest.startswith("/") else ""
        parts = path.split("/")
        module = parts[0] if parts else ""
        lsn = parts[1] if len(parts) > 1 else ""
        sst_ver = parts[2] if len(parts) > 2 else ""
        return cls(host, port, module, lsn, sst_ver, path)


@dataclass(frozen=True)
class Credentials:
    """SST user and password (the password never goes to argv or the log)."""

    user: str = ""
    password: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password={'***' if self.password else None})"

    @classmethod
    def parse(cls, auth: str) -> Credentials:
        """Split `user:password` at the first colon; `(null)` or empty means none."""
        if not auth or auth == "(null)":
            return cls()
        user, sep, password = auth.partition(":")
        return cls(user, password if sep else None)


# The name a joiner outside VERIFY modes announces before its secret: MariaDB 11 passes the
# donor `sst_remote_password` only after a non-empty `sst_remote_user` (10.11 passed ':secret'
# as it came). Read back as no name (a donor in VERIFY_IDENTITY then checks the address).
NO_NAME = "-"


@dataclass(frozen=True)
class RemoteAuth:
    """The joiner's `CN:secret` as the donor receives it."""

    cn: str = ""
    secret: str = ""

    def __repr__(self) -> str:
        return f"RemoteAuth(cn={self.cn!r}, secret={'***' if self.secret else ''!r})"


@dataclass(frozen=True)
class ServerPaths:
    """Server paths and names picked out of --mysqld-args or given explicitly."""

    log_bin: str | None = None  # None: off; "": on with the default name
    log_bin_index: str = ""
    log_basename: str = ""
    aria_log_dir_path: str = ""
    innodb_data_home_dir: str = ""
    innodb_log_group_home_dir: str = ""
    innodb_undo_directory: str = ""
    innodb_buffer_pool_filename: str = ""
    innodb_buffer_pool_size: str = ""
    innodb_force_recovery: str = ""


_ALIASES = {"xtrabackup-v2": "mariabackup", "xtrabackup": "mariabackup"}


@dataclass(frozen=True)
class MethodName:
    """A method name as started (`py_rsync_wan`), parsed once into what the code asks of it."""

    text: str
    family: str  # the stock method it implements: rsync, mariabackup, mysqldump, backup, ...
    wan: bool  # rsync_wan: delta transfers
    ours: bool  # a py_ name: the peer runs galera-sst too (both sides run the same name)

    @staticmethod
    @functools.cache
    def parse(text: str) -> MethodName:
        """`py_rsync_wan` -> MethodName(family='rsync', wan=True, ours=True). Never fails: an
        unknown name is refused by the registry (sst.methods.base), not here."""
        ours = text.startswith("py_")
        base = text[len("py_") :] if ours else text
        wan = base.endswith("_wan")
        base = base[: -len("_wan")] if wan else base
        return MethodName(text, _ALIASES.get(base, base), wan, ours)


@dataclass(frozen=True)
class Request:
    """Everything mariadbd told the script, typed."""

    method: str
    role: str
    address: Address | None
    datadir: str
    defaults_file: str = ""
    defaults_extra_file: str = ""
    defaults_group_suffix: str = ""
    parent: int = 0
    progress: int = 0
    binlog: str = ""
    binlog_index: str = ""
    gtid: str = ""
    gtid_domain_id: str = ""
    bypass: bool = False
    socket: str = ""
    local_port: int = 0
    port: int = 0
    credentials: Credentials = field(default_factory=Credentials)
    remote_auth: RemoteAuth = field(default_factory=RemoteAuth)
    paths: ServerPaths = field(default_factory=ServerPaths)
    mysqld_args: tuple[str, ...] = ()
    mysqld_passthrough: tuple[str, ...] = ()  # what mariadb-backup gets as --mysqld-args

    @property
    def name(self) -> MethodName:
        """The method name, typed."""
        return MethodName.parse(self.method)

    @property
    def defaults_args(self) -> tuple[str, ...]:
        """`--defaults-file=`, `--defaults-extra-file=`, `--defaults-group-suffix=`, in order."""
        out: list[str] = []
        if self.defaults_file:
            out.append(f"--defaults-file={self.defaults_file}")
        if self.defaults_extra_file:
            out.append(f"--defaults-extra-file={self.defaults_extra_file}")
        if self.defaults_group_suffix:
            out.append(f"--defaults-group-suffix={self.defaults_group_suffix}")
        return tuple(out)


def method_from_argv0(argv0: str) -> str:
    """`/usr/bin/wsrep_sst_py_rsync_wan.py` -> `py_rsync_wan` (as the stock scripts use $0)."""
    name = os.path.basename(argv0)
    name = name.split(".", 1)[0] if "." in name else name
    if name.startswith("wsrep_sst_"):
        name = name[len("wsrep_sst_") :]
    return name


# Options that take a value (everything else but --bypass is ignored, as stock does).
_VALUE_OPTS = frozenset(
    {
        "role",
        "address",
        "host",
        "datadir",
        "defaults-file",
        "defaults-extra-file",
        "defaults-group-suffix",
        "parent",
        "progress",
        "binlog",
        "log-bin",
        "binlog-index",
        "log-bin-index",
        "log-basename",
        "gtid",
        "gtid-domain-id",
        "socket",
        "local-port",
        "port",
        "user",
        "password",
        "aria-log-dir-path",
        "innodb-data-home-dir",
        "innodb-log-group-home-dir",
        "innodb-undo-directory",
        "innodb-buffer-pool-filename",
        "innodb-buffer-pool-size",
    }
)

# Server options that --mysqld-args may carry and the scripts keep (explicit args win).
_MYSQLD_KEPT = {
    "log-bin": "log_bin",
    "log-bin-index": "log_bin_index",
    "log-basename": "log_basename",
    "aria-log-dir-path": "aria_log_dir_path",
    "innodb-data-home-dir": "innodb_data_home_dir",
    "innodb-log-group-home-dir": "innodb_log_group_home_dir",
    "innodb-undo-directory": "innodb_undo_directory",
    "innodb-buffer-pool-filename": "innodb_buffer_pool_filename",
    "innodb-buffer-pool-size": "innodb_buffer_pool_size",
    "innodb-force-recovery": "innodb_force_recovery",
}
_MYSQLD_DROPPED = {
    "defaults-file",
    "defaults-extra-file",
    "defaults-group-suffix",
    "user",
    "port",
    "socket",
}


def normalize_option(name: str) -> str:
    """`--loose-innodb_data_home_dir` -> `innodb-data-home-dir`."""
    name = name.lstrip("-").replace("_", "-")
    if name.startswith("loose-"):
        name = name[len("loose-") :]
    return name


def _int(name: str, value: str) -> int:
    try:
        return int(value.strip(), 0) if value.strip() else 0
    except ValueError:
        raise ConfigError(f"--{name} needs a number, got {value!r}") from None


def _parse_mysqld_args(args: Sequence[str]) -> tuple[dict[str, str | None], str, list[str]]:
    """Pick the kept server options and the datadir out of mariadbd's own argv."""
    kept: dict[str, str | None] = {}
    datadir = ""
    passthrough: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in ("-h", "-u", "-P") and i < len(args):
            if arg == "-h":
                datadir = args[i]
            i += 1
            continue
        if arg.startswith(("-h", "-u", "-P")) and not arg.startswith("--"):
            if arg.startswith("-h"):
                datadir = arg[2:]
            continue
        if not arg.startswith("--"):
            passthrough.append(arg)
            continue
        name, sep, value = arg.partition("=")
        key = normalize_option(name)
        if key == "datadir" and sep:
            datadir = value
        elif key in _MYSQLD_DROPPED:
            continue
        elif key in _MYSQLD_KEPT:
            kept[key] = value if sep else None
            if key in ("log-basename", "log-bin-index"):
                passthrough.append(arg)
            continue
        passthrough.append(arg)
    return kept, datadir, passthrough


def _scan(args: Sequence[str]) -> tuple[dict[str, str], bool, list[str]]:
    """mariadbd's argv -> (the valued options we read, --bypass, the --mysqld-args words).
    Raises ConfigError for an option without its value."""
    values: dict[str, str] = {}
    bypass = False
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--mysqld-args":
            return values, bypass, list(args[i:])
        if not arg.startswith("--"):
            continue  # stray words are ignored, as stock does
        name, sep, inline = arg[2:].partition("=")
        name = name.replace("_", "-")
        if name == "bypass":
            bypass = True
            continue
        if name not in _VALUE_OPTS:
            continue  # unknown arguments are ignored silently (stock)
        if sep:
            values[name] = inline
        elif i < len(args):
            values[name] = args[i]
            i += 1
        else:
            raise ConfigError(f"--{name} needs a value")
    return values, bypass, []


def _get(values: Mapping[str, str], *names: str) -> str:
    """The first of the named options given, else ''."""
    for n in names:
        if n in values:
            return values[n]
    return ""


def _address(values: Mapping[str, str]) -> tuple[Address | None, str, int]:
    """--address (or --host) and --port -> (address, the `CN:secret` before an '@', port).
    Raises ConfigError."""
    addr_text = _get(values, "address", "host")
    address: Address | None = None
    auth_prefix = ""
    if addr_text:
        if "@" in addr_text:
            auth_prefix, _, addr_text = addr_text.rpartition("@")
        address = Address.parse(addr_text)
    port = _int("port", _get(values, "port"))
    if address is not None and port:
        explicit = Address.parse(addr_text, default_port=0).port
        if explicit and explicit != port:
            raise ConfigError(
                f"--port {port} differs from the port in --address {address.hostport}", code=2
            )
        address = Address(
            address.host, port, address.module, address.lsn, address.sst_ver, address.path
        )
    return address, auth_prefix, port


def _credentials(values: Mapping[str, str], env: Mapping[str, str]) -> Credentials:
    """WSREP_SST_OPT_AUTH, overridden by --user/--password (or their environment forms)."""
    creds = Credentials.parse(env.get("WSREP_SST_OPT_AUTH", ""))
    user = _get(values, "user") or env.get("WSREP_SST_OPT_USER", "")
    pswd = values.get("password", env.get("WSREP_SST_OPT_PSWD"))
    if user and user != creds.user:
        return Credentials(user, pswd if pswd is not None else creds.password)
    if pswd is not None and creds.user:
        return Credentials(creds.user, pswd)
    return creds


def _server_paths(
    values: Mapping[str, str], kept: Mapping[str, str | None], env: Mapping[str, str]
) -> ServerPaths:
    """Explicit arguments win over --mysqld-args, which win over the environment."""

    def path_opt(key: str) -> str:
        return _get(values, key) or kept.get(key) or ""

    log_bin: str | None
    if _get(values, "binlog"):
        log_bin = _get(values, "binlog")
    elif "log-bin" in kept:
        log_bin = kept["log-bin"] or ""
    else:
        log_bin = None
    return ServerPaths(
        log_bin=log_bin,
        log_bin_index=_get(values, "binlog-index") or (kept.get("log-bin-index") or ""),
        log_basename=_get(values, "log-basename") or (kept.get("log-basename") or ""),
        aria_log_dir_path=path_opt("aria-log-dir-path"),
        innodb_data_home_dir=path_opt("innodb-data-home-dir")
        or env.get("INNODB_DATA_HOME_DIR", ""),
        innodb_log_group_home_dir=path_opt("innodb-log-group-home-dir")
        or env.get("INNODB_LOG_GROUP_HOME", ""),
        innodb_undo_directory=path_opt("innodb-undo-directory") or env.get("INNODB_UNDO_DIR", ""),
        innodb_buffer_pool_filename=path_opt("innodb-buffer-pool-filename"),
        innodb_buffer_pool_size=path_opt("innodb-buffer-pool-size"),
        innodb_force_recovery=kept.get("innodb-force-recovery") or "",
    )


def parse_request(
    argv0: str, args: Sequence[str], env: Mapping[str, str], method: str | None = None
) -> Request:
    """Turn mariadbd's argv and environment into a Request; raises ConfigError."""
    values, bypass, mysqld_args = _scan(args)

    def get(*names: str) -> str:
        return _get(values, *names)

    role = get("role").strip() or "donor"
    if role not in ("joiner", "donor"):
        raise ConfigError(f"--role must be 'joiner' or 'donor', not {role!r}")
    kept, mysqld_datadir, passthrough = _parse_mysqld_args(mysqld_args)
    datadir = get("datadir") or mysqld_datadir
    if not datadir:
        raise ConfigError("The '--datadir' parameter must be passed", code=2)
    datadir = datadir.rstrip("/") or "/"
    address, auth_prefix, port = _address(values)
    creds = _credentials(values, env)
    remote = env.get("WSREP_SST_OPT_REMOTE_AUTH", "") or auth_prefix
    ra = RemoteAuth()
    if remote:
        cn, _, secret = remote.partition(":")
        ra = RemoteAuth("" if cn == NO_NAME else cn, secret)
    paths = _server_paths(values, kept, env)
    return Request(
        method=method or method_from_argv0(argv0),
        role=role,
        address=address,
        datadir=datadir,
        defaults_file=get("defaults-file"),
        defaults_extra_file=get("defaults-extra-file"),
        defaults_group_suffix=get("defaults-group-suffix"),
        parent=_int("parent", get("parent")),
        progress=_int("progress", get("progress")),
        binlog=paths.log_bin or "",
        binlog_index=paths.log_bin_index,
        gtid=get("gtid"),
        gtid_domain_id=get("gtid-domain-id"),
        bypass=bypass,
        socket=get("socket"),
        local_port=_int("local-port", get("local-port")),
        port=port,
        credentials=creds,
        remote_auth=ra,
        paths=paths,
        mysqld_args=tuple(mysqld_args),
        mysqld_passthrough=tuple(passthrough),
    )
