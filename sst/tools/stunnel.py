"""stunnel: TLS around rsync (server on the joiner, inetd-style client on the donor) and
around the mariabackup donor's socat; the one reader of its logs, the one identity rule."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sst.config import TLSFiles
from sst.errors import ConfigError
from sst.net import is_ip_literal
from sst.tools.socat import explain_tls


@dataclass(frozen=True)
class Verify:
    """What to verify of the peer: chain against the CA, and optionally names/addresses."""

    chain: bool = False
    hosts: tuple[str, ...] = ()  # checkHost values
    ips: tuple[str, ...] = ()  # checkIP values
    peer: bool = False  # verifyPeer: the peer's own certificate must be in CAfile/CApath

    def identity(self, name: str, *, ip: bool | None = None) -> Verify:
        """Given the peer name to require; returns this with checkIP for an IP literal and
        checkHost for any other name, by the one rule the pre-flight and `check` apply too
        (sst.net.is_ip_literal; brackets around an IPv6 literal do not count). `ip` overrides
        the rule's verdict."""
        bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
        if ip is None:
            ip = is_ip_literal(bare)
        return replace(self, ips=(bare,)) if ip else replace(self, hosts=(name,))

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
    """Given the peer name to require, returns the chain check with OpenSSL's rule for the
    name (Verify.identity): an IP literal only matches IP SANs (checkIP), a name matches DNS
    SANs, or the CN when the certificate has no DNS SAN (checkHost). An empty name checks
    the chain only."""
    return Verify(chain=True).identity(name) if name else Verify(chain=True)


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


# What stunnel 5.68 logs when a connection fails: its own verdict on the peer's certificate
# (any debug level), the alert the peer sent back, an SSL error, or (at `debug = notice`,
# the mariabackup donor's tunnel) a reset or socat's own error from the exec'd program.
_PRE_VERIFY = re.compile(r"CERT: Pre-verification error: (.+)$")
_REJECTED = re.compile(r"Rejected by CERT at depth=(\d+): (.+)$")
_ALERT = re.compile(r"SSL_(?:accept|connect|read|write)\S*: .*SSL routines::(?:\w+ )?alert (.+)$")
_SSL_ERROR = re.compile(
    r"SSL_(?:connect|read|write|accept): .*?error:[0-9A-Fa-f]+:[^:]*:[^:]*:(.+)$"
)
_SOCAT_ERROR = re.compile(r"socat\[\d+\] E (.+)$")
_RESET = re.compile(r"Connection (?:closed/reset|reset)")
_SUBJECT_FAILED = "CERT: Subject checks failed"
_CLOSED = "TLS socket closed"
_NO_GREETING = "did not see server greeting"
_NOT_LISTED = "certificate is not among the accepted peer certificates"
NOISE = re.compile(r"LOG5\[ui\]|LOG6|Uninitialized client session cache")
_PLAIN = {
    "unable to get local issuer certificate": "unknown CA (unable to get local issuer certificate)",
    "self-signed certificate": "unknown CA (self-signed certificate)",
    "self-signed certificate in certificate chain": (
        "unknown CA (self-signed certificate in certificate chain)"
    ),
}
# Kinds of this side's verdict on the peer's certificate.
PRE_VERIFY, NAME, NOT_LISTED, NO_CERT = "pre-verify", "name", "not listed", "no certificate"


@dataclass(frozen=True)
class LogReading:
    """What one stunnel log says about its connection, in the order it said it."""

    verdicts: tuple[tuple[str, str], ...] = ()  # (kind, detail): this side refused the peer
    rejected: str = ""  # the last refused subject ("at depth N" when not the leaf)
    alert: str = ""  # the last alert the peer sent
    ssl_errors: tuple[str, ...] = ()
    socat_errors: tuple[str, ...] = ()
    reset: bool = False
    closed_before_greeting: bool = False


def _verdict(line: str) -> tuple[str, str] | None:
    m = _PRE_VERIFY.search(line)
    if m:
        return PRE_VERIFY, m.group(1).strip()
    if _SUBJECT_FAILED in line:
        return NAME, _SUBJECT_FAILED
    if "CERT: No matching host name" in line or "CERT: No matching IP address" in line:
        return NAME, ""
    if "CERT: Certificate not found in local repository" in line:
        return NOT_LISTED, ""
    if "peer did not return a certificate" in line:
        return NO_CERT, ""
    return None


def read_log(lines: Sequence[str]) -> LogReading:
    """Given stunnel's log lines (either debug level); returns what they say."""
    verdicts: list[tuple[str, str]] = []
    rejected = alert = ""
    ssl_errors: list[str] = []
    socat_errors: list[str] = []
    for line in lines:
        v = _verdict(line)
        if v is not None:
            verdicts.append(v)
        m = _REJECTED.search(line)
        if m:
            rejected = m.group(2).strip() + (f" at depth {m.group(1)}" if m.group(1) != "0" else "")
        m = _ALERT.search(line)
        if m:
            alert = m.group(1).strip()
        m = _SSL_ERROR.search(line)
        if m:
            ssl_errors.append(m.group(1).strip())
        m = _SOCAT_ERROR.search(line)
        if m:
            socat_errors.append(m.group(1).strip())
    return LogReading(
        tuple(verdicts),
        rejected,
        alert,
        tuple(ssl_errors),
        tuple(socat_errors),
        any(_RESET.search(line) for line in lines),
        any(_CLOSED in ln for ln in lines) and any(_NO_GREETING in ln for ln in lines),
    )


def failure(lines: Sequence[str], name: str = "") -> str:
    """Given the mariabackup donor's tunnel log (debug = notice) and the name it checked;
    returns why the connection failed, or '' when it closed normally (stunnel exits 0
    either way). The first of: a chain verdict, a failed name check, an SSL error, socat's
    error, a reset."""
    log = read_log(lines)
    for kind, detail in log.verdicts:
        if kind == PRE_VERIFY:
            return explain_tls(detail)
    if any(kind == NAME and detail == _SUBJECT_FAILED for kind, detail in log.verdicts):
        return f"hostname mismatch: the peer's certificate does not name {name!r}"
    errors = (*log.ssl_errors, *log.socat_errors)
    if errors:
        return explain_tls(errors[0])
    return "the connection was reset" if log.reset else ""


def _own_verdict(kind: str, detail: str, names: Sequence[str]) -> str:
    if kind == PRE_VERIFY:
        return _PLAIN.get(detail, detail)
    if kind == NAME:
        return "hostname mismatch (checked " + ", ".join(f"'{n}'" for n in names) + ")"
    if kind == NOT_LISTED:
        return _NOT_LISTED
    return "no peer certificate (the peer sent none)"


def failure_reason(lines: Sequence[str], names: Sequence[str] = ()) -> str:
    """Given the rsync tunnels' log lines (debug = warning) and the names checked; returns
    why the TLS handshake failed, or '' when the lines say nothing about it.

    'the peer certificate was refused: <reason> (<subject>)' when this stunnel refused the
    peer (its last verdict); 'the peer refused this side's certificate: <alert>' when the
    peer did.
    """
    log = read_log(lines)
    if log.verdicts:
        reason = _own_verdict(*log.verdicts[-1], names)
        return f"TLS: the peer certificate was refused: {reason}" + (
            f" ({log.rejected})" if log.rejected else ""
        )
    if log.alert:
        return f"TLS: the peer refused this side's certificate or handshake: alert {log.alert}"
    if log.closed_before_greeting:
        # TLS 1.3: the client's handshake ends before the server judges the client's
        # certificate, so a refusal can reach this side as a bare close.
        return (
            "TLS: the peer closed the connection before the rsync greeting (it may have "
            "refused this side's certificate: its log says why)"
        )
    return ""
