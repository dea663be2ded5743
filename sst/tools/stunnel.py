"""stunnel: TLS around rsync, as server on the joiner and inetd-style client on the donor."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sst.config import TLSFiles
from sst.errors import ConfigError
from sst.tools.socat import explain_tls


@dataclass(frozen=True)
class Verify:
    """What to verify of the peer: chain against the CA, and optionally names/addresses."""

    chain: bool = False
    hosts: tuple[str, ...] = ()  # checkHost values
    ips: tuple[str, ...] = ()  # checkIP values
    peer: bool = False  # verifyPeer: the peer's own certificate must be in CAfile/CApath

    def identity(self, name: str, *, ip: bool) -> Verify:
        """Given the peer name to require and whether it is an IP literal (sst.tls's
        is_ip_literal, the same rule as the pre-flight); returns this with checkIP or
        checkHost for it."""
        return replace(self, ips=(name,)) if ip else replace(self, hosts=(name,))

    @property
    def names(self) -> tuple[str, ...]:
        """The names and addresses checked, for messages."""
        return self.hosts + self.ips


def _tls_lines(files: TLSFiles, verify: Verify) -> list[str]:
    lines = [f"key = {files.key}", f"cert = {files.cert}"]
    if files.ca:
        lines.append(f"CAfile = {files.ca}")
    if files.capath:
        lines.append(f"CApath = {files.capath}")
    if verify.chain:
        lines.append("verifyChain = yes")
    if verify.peer:
        lines.append("verifyPeer = yes")
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


def name_check(name: str) -> Verify:
    """Given the peer name to require, returns OpenSSL's rule for it: an IP literal only
    matches IP SANs (checkIP), a name matches DNS SANs, or the CN when the certificate has
    no DNS SAN (checkHost). An empty name checks the chain only."""
    if not name:
        return Verify(chain=True)
    try:
        return Verify(chain=True, ips=(str(ipaddress.ip_address(name.strip("[]"))),))
    except ValueError:
        return Verify(chain=True, hosts=(name,))


def exec_client_conf(files: TLSFiles, verify: Verify, program: Sequence[str]) -> str:
    """Donor side of mariabackup: TLS client in inetd mode whose plaintext side is stdin and
    stdout, and whose TLS side is `program` (socat, which connects with retries), since
    stunnel itself does not retry a refused connection."""
    if any(not a or any(c.isspace() for c in a) for a in program):
        raise ConfigError(
            f"a tunnel argument is empty or contains white space (stunnel's execArgs "
            f"cannot quote it): {' '.join(program)!r}"
        )
    lines = [
        "foreground = yes",
        "pid =",
        "debug = notice",  # 'Connection closed/reset' (notice) tells a failure from success
        "client = yes",
        "sessionResume = no",
        # After our stream ends, how long to wait for the joiner's acknowledgement (it
        # comes once mbstream has written everything; stunnel's default is 60 s).
        "TIMEOUTclose = 300",
        f"exec = {program[0]}",
        f"execArgs = {' '.join(program)}",
        *_tls_lines(files, verify),
    ]
    _check(lines)
    return "\n".join(lines) + "\n"


# Lines of stunnel's log (debug = notice) that say why a connection failed, best first.
_PREVERIFY = re.compile(r"CERT: Pre-verification error: (.+)$")
_SUBJECT = re.compile(r"CERT: Subject checks failed")
_SSL_ERROR = re.compile(
    r"SSL_(?:connect|read|write|accept): .*?error:[0-9A-Fa-f]+:[^:]*:[^:]*:(.+)$"
)
_SOCAT_ERROR = re.compile(r"socat\[\d+\] E (.+)$")
_RESET = re.compile(r"Connection (?:closed/reset|reset)")
NOISE = re.compile(r"LOG5\[ui\]|LOG6|Uninitialized client session cache")


def failure(lines: Sequence[str], name: str = "") -> str:
    """Given stunnel's log lines (debug = notice) and the name it checked, returns why the
    connection failed, or '' when it closed normally (stunnel exits 0 either way)."""
    for pattern in (_PREVERIFY, _SUBJECT, _SSL_ERROR, _SOCAT_ERROR):
        for line in lines:
            m = pattern.search(line)
            if m is None:
                continue
            if pattern is _SUBJECT:
                return f"hostname mismatch: the peer's certificate does not name {name!r}"
            return explain_tls(m.group(1).strip())
    if any(_RESET.search(line) for line in lines):
        return "the connection was reset"
    return ""


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


# What stunnel 5.68 logs (at `debug = warning`) when a handshake fails, by the side that
# refuses: its own verdict on the peer's certificate, or the alert the peer sent back.
_PRE_VERIFY = re.compile(r"CERT: Pre-verification error: (.+)$")
_REJECTED = re.compile(r"Rejected by CERT at depth=(\d+): (.+)$")
_ALERT = re.compile(r"SSL_(?:accept|connect|read|write)\S*: .*SSL routines::(?:\w+ )?alert (.+)$")
_CLOSED = "TLS socket closed"
_NO_GREETING = "did not see server greeting"
_NOT_LISTED = "certificate is not among the accepted peer certificates"
_PLAIN = {
    "unable to get local issuer certificate": "unknown CA (unable to get local issuer certificate)",
    "self-signed certificate": "unknown CA (self-signed certificate)",
    "self-signed certificate in certificate chain": (
        "unknown CA (self-signed certificate in certificate chain)"
    ),
}


def _own_verdict(line: str, names: Sequence[str]) -> str:
    m = _PRE_VERIFY.search(line)
    if m:
        return _PLAIN.get(m.group(1).strip(), m.group(1).strip())
    if "CERT: Subject checks failed" in line or "CERT: No matching host name" in line:
        return "hostname mismatch (checked " + ", ".join(f"'{n}'" for n in names) + ")"
    if "CERT: No matching IP address" in line:
        return "hostname mismatch (checked " + ", ".join(f"'{n}'" for n in names) + ")"
    if "CERT: Certificate not found in local repository" in line:
        return _NOT_LISTED
    if "peer did not return a certificate" in line:
        return "no peer certificate (the peer sent none)"
    return ""


def failure_reason(lines: Sequence[str], names: Sequence[str] = ()) -> str:
    """Given stunnel's log lines and the names it was told to check; returns why the TLS
    handshake failed, or '' when the lines say nothing about it.

    'the peer certificate was refused: <reason> (<subject>)' when this stunnel refused the
    peer; 'the peer refused this side's certificate: <alert>' when the peer did.
    """
    reason = subject = alert = ""
    for line in lines:
        reason = _own_verdict(line, names) or reason
        m = _REJECTED.search(line)
        if m:
            subject = m.group(2).strip() + (f" at depth {m.group(1)}" if m.group(1) != "0" else "")
        m = _ALERT.search(line)
        if m:
            alert = m.group(1).strip()
    if reason:
        return f"TLS: the peer certificate was refused: {reason}" + (
            f" ({subject})" if subject else ""
        )
    if alert:
        return f"TLS: the peer refused this side's certificate or handshake: alert {alert}"
    if any(_CLOSED in ln for ln in lines) and any(_NO_GREETING in ln for ln in lines):
        # TLS 1.3: the client's handshake ends before the server judges the client's
        # certificate, so a refusal can reach this side as a bare close.
        return (
            "TLS: the peer closed the connection before the rsync greeting (it may have "
            "refused this side's certificate: its log says why)"
        )
    return ""
