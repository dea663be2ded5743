"""stunnel: TLS around rsync, as server on the joiner and inetd-style client on the donor."""

from __future__ import annotations

from dataclasses import dataclass

from sst.config import TLSFiles
from sst.errors import ConfigError


@dataclass(frozen=True)
class Verify:
    """What to verify of the peer: chain against the CA, and optionally names/addresses."""

    chain: bool = False
    hosts: tuple[str, ...] = ()  # checkHost values
    ips: tuple[str, ...] = ()  # checkIP values


def _tls_lines(files: TLSFiles, verify: Verify) -> list[str]:
    lines = [f"key = {files.key}", f"cert = {files.cert}"]
    if files.ca:
        lines.append(f"CAfile = {files.ca}")
    if files.capath:
        lines.append(f"CApath = {files.capath}")
    if verify.chain:
        lines.append("verifyChain = yes")
    lines += [f"checkHost = {h}" for h in verify.hosts]
    lines += [f"checkIP = {ip}" for ip in verify.ips]
    return lines


def _check(values: list[str]) -> None:
    for v in values:
        if "\n" in v or "\r" in v:
            raise ConfigError(f"stunnel setting contains a line break: {v!r}")


def client_conf(files: TLSFiles, verify: Verify, connect: str) -> str:
    """Donor side: stdin/stdout tunnelled to `connect` (inetd mode, no pid file)."""
    lines = [
        "foreground = yes",
        "pid =",
        "debug = warning",
        "client = yes",
        f"connect = {connect}",
        "TIMEOUTclose = 0",
        *_tls_lines(files, verify),
    ]
    _check(lines)
    return "\n".join(lines) + "\n"


def server_conf(
    files: TLSFiles, verify: Verify, *, pid_file: str, accept: str, rsync: str, execargs: str
) -> str:
    """Joiner side: accept TLS and run one rsync server per connection."""
    lines = [
        "foreground = yes",
        f"pid = {pid_file}",
        "debug = warning",
        "client = no",
        *_tls_lines(files, verify),
        "[rsync]",
        f"accept = {accept}",
        f"exec = {rsync}",
        f"execargs = {execargs}",
    ]
    _check(lines)
    return "\n".join(lines) + "\n"


def argv(binary: str, conf: str) -> tuple[str, ...]:
    """`stunnel <conf>`."""
    return (binary, conf)
