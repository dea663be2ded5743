"""Option files, read through my_print_defaults, frozen into typed settings (sst-contract.md 4)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from sst import tools
from sst.errors import ConfigError
from sst.process.runner import run_capture
from sst.request import Request, normalize_option
from sst.tools import my_print_defaults

MYSQLD = "--mysqld"  # every group mariadbd itself reads


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
    """One my_print_defaults call per group set (a set is space-separated group names)."""
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


TLS_MODES = ("DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")


@dataclass(frozen=True)
class TLSFiles:
    """The certificate files one role uses (sst-contract.md 5.1)."""

    ca: str = ""
    capath: str = ""
    cert: str = ""
    key: str = ""

    @property
    def any_ca(self) -> bool:
        """A CA file or directory is configured."""
        return bool(self.ca or self.capath)


@dataclass(frozen=True)
class RsyncSettings:
    """Everything the rsync method reads from the option files."""

    ssl_mode: str  # one of TLS_MODES
    tls: TLSFiles
    max_binlogs: int
    backup_threads: int
    tmpdir: str
    log_bin: str | None
    log_bin_index: str
    log_basename: str
    innodb_data_home_dir: str
    innodb_log_group_home_dir: str
    innodb_undo_directory: str
    aria_log_dir_path: str
    flush_timeout: float
    idle_timeout: float
    connect_timeout: float


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


def rsync_settings(req: Request, opts: Options) -> RsyncSettings:
    """Freeze the rsync method's settings; every invalid value is reported at once."""
    groups = (MYSQLD, "sst")
    errors: list[str] = []
    tls = resolve_tls(opts, groups, req.role)
    mode = opts.get(groups, "ssl-mode").upper()
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
    max_binlogs = int(_number("sst-max-binlogs", opts.get(groups, "sst-max-binlogs", "1"), errors))
    threads_text = opts.get(groups, "backup-threads")
    threads = int(_number("backup-threads", threads_text, errors, minimum=1)) if threads_text else 0
    if threads <= 0:
        threads = max(2, os.cpu_count() or 2)

    def timeout(name: str, default: str) -> float:
        return _number(name, opts.get(("sst",), name, default), errors, minimum=0)

    flush_t = timeout("sst-flush-timeout", "600")
    idle_t = timeout("sst-idle-timeout", "300")
    conn_t = timeout("sst-initial-timeout", "300")
    if errors:
        raise ConfigError("; ".join(errors))

    p = req.paths
    log_bin = p.log_bin
    if log_bin is None and opts.present((MYSQLD,), "log-bin"):
        log_bin = opts.get((MYSQLD,), "log-bin")
    return RsyncSettings(
        ssl_mode=mode,
        tls=tls,
        max_binlogs=max_binlogs,
        backup_threads=threads,
        tmpdir=opts.get(groups, "tmpdir"),
        log_bin=log_bin,
        log_bin_index=p.log_bin_index or opts.get((MYSQLD,), "log-bin-index"),
        log_basename=p.log_basename or opts.get((MYSQLD,), "log-basename"),
        innodb_data_home_dir=p.innodb_data_home_dir or opts.get((MYSQLD,), "innodb-data-home-dir"),
        innodb_log_group_home_dir=p.innodb_log_group_home_dir
        or opts.get((MYSQLD,), "innodb-log-group-home-dir"),
        innodb_undo_directory=p.innodb_undo_directory
        or opts.get((MYSQLD,), "innodb-undo-directory"),
        aria_log_dir_path=p.aria_log_dir_path or opts.get((MYSQLD,), "aria-log-dir-path"),
        flush_timeout=flush_t,
        idle_timeout=idle_t,
        connect_timeout=conn_t,
    )
