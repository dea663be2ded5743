"""socat: the mariabackup transport, plain TCP or OpenSSL, both ends (docs/contract.md 5.3).

Our joiner's listener is bidirectional: after a stage has been extracted and checked it
writes `ok` back, because a sending socat's exit status does not prove that the receiver
accepted the data (docs/contract.md 5.6). The donor reads that acknowledgement.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sst.errors import ConfigError
from sst.process.runner import run_capture

BUFFER = 131072  # -b: the default 8 KiB buffer costs 3x on fast links
ACK = b"ok\n"


@dataclass(frozen=True)
class SocatTLS:
    """TLS options for one end: certificate, key, trust, and the peer name to check."""

    cert: str
    key: str
    cafile: str = ""
    capath: str = ""
    verify: bool = True
    commonname: str | None = ""  # "" = no name check; None = socat's default (the host)
    no_sni: bool = True


def _value(v: str, what: str) -> str:
    if any(c in v for c in ",:!\n\r") or "''" in v:
        raise ConfigError(
            f"{what} {v!r} contains a character socat cannot take in an address "
            "option (',', ':', '!' or a line break); rename or link the file"
        )
    return v


# The address options the installed socat accepts (`socat -hhh`), probed once per run by
# probe(); None: not probed, every option assumed (the tests' argv checks).
_accepted: dict[str, frozenset[str] | None] = {"options": None}
_OPTION_LINE = re.compile(r"^\s+([a-z0-9-]+)\t")
_ALIAS_LINE = re.compile(r"^\s+([a-z0-9-]+) is an alias for ([a-z0-9-]+)$")


def parse_options(help_text: str) -> frozenset[str]:
    """Given `socat -hhh`, returns the address option names it accepts, aliases included."""
    names: set[str] = set()
    for line in help_text.splitlines():
        m = _OPTION_LINE.match(line) or _ALIAS_LINE.match(line)
        if m:
            names.add(m.group(1))
    return frozenset(names)


def probe(binary: str) -> frozenset[str]:
    """Ask the installed socat which options it accepts (some builds reject `commonname`,
    older ones have no `no-sni`); our TLS options are chosen from that for this run."""
    res = run_capture((binary, "-hhh"), timeout=10)
    names = parse_options(res.stdout + res.stderr)
    _accepted["options"] = names or None  # nothing parsed: assume all, let socat say
    return names


def accepts(option: str) -> bool:
    """True unless the probe found socat does not know the option."""
    known = _accepted["options"]
    return known is None or option in known


def _tls_options(tls: SocatTLS, *, connect: bool) -> list[str]:
    opts = [f"cert={_value(tls.cert, 'certificate path')}"]
    if tls.key and tls.key != tls.cert:
        opts.append(f"key={_value(tls.key, 'key path')}")
    if tls.cafile:
        opts.append(f"cafile={_value(tls.cafile, 'CA path')}")
    if tls.capath:
        opts.append(f"capath={_value(tls.capath, 'CA path')}")
    opts.append(f"verify={1 if tls.verify else 0}")
    if tls.commonname is not None:
        if accepts("commonname"):
            opts.append(f"commonname={_value(tls.commonname, 'peer name')}")
        elif tls.commonname or (connect and tls.verify):
            # A name check (or, connecting, socat's default check of the host name) we
            # cannot switch: never silently weaker, never a spurious failure either.
            raise ConfigError(
                "the installed socat has no 'commonname' option, so the peer name check "
                f"({tls.commonname or 'none'}) cannot be configured; install a socat "
                "with it (Debian's), or use a TLS mode that checks no name (VERIFY_CA)"
            )
    if connect and tls.no_sni and accepts("no-sni"):
        opts.append("no-sni=1")  # socat without no-sni sends no SNI anyway (< 1.7.4)
    return opts


def _sockopt(extra: str) -> list[str]:
    extra = extra.strip().strip(",")
    return [extra] if extra else []


def listen_argv(
    binary: str,
    *,
    port: int,
    bind: str,
    ipv6: bool,
    tls: SocatTLS | None,
    sockopt: str = "",
    ack_wait: int = 300,
) -> tuple[str, ...]:
    """Joiner: accept one connection; network -> stdout (closed at EOF), stdin -> network."""
    opts = ["reuseaddr"]
    if bind:
        opts.append(f"bind={'[' + bind + ']' if ':' in bind else bind}")
    if ipv6:
        opts.append("pf=ip6")
    if tls is not None:
        opts += _tls_options(tls, connect=False)
    opts += _sockopt(sockopt)
    kind = "OPENSSL-LISTEN" if tls is not None else "TCP-LISTEN"
    return (
        binary,
        "-b",
        str(BUFFER),
        "-t",
        str(ack_wait),
        f"{kind}:{port},{','.join(opts)}",
        "STDIN!!STDOUT,shut-close",
    )


def connect_argv(
    binary: str,
    *,
    host: str,
    port: int,
    ipv6: bool,
    tls: SocatTLS | None,
    sockopt: str = "",
    retries: int = 0,
    interval: float = 0.1,
    ack_wait: int = 120,
) -> tuple[str, ...]:
    """Donor: stdin -> network; whatever the joiner answers -> stdout."""
    h = f"[{host}]" if ipv6 else host
    opts: list[str] = []
    if retries:
        opts += [f"retry={retries}", f"interval={interval:g}"]
    if ipv6:
        opts.append("pf=ip6")
    if tls is not None:
        opts += _tls_options(tls, connect=True)
    opts += _sockopt(sockopt)
    kind = "OPENSSL" if tls is not None else "TCP"
    addr = f"{kind}:{h}:{port}" + ("," + ",".join(opts) if opts else "")
    return (binary, "-b", str(BUFFER), "-t", str(ack_wait), "STDIO", addr)


# OpenSSL's reason strings (the text after the last '::' of an error line, OpenSSL 3), and
# what they mean for an SST, from either end (docs/tls.md, "mariabackup: who may send the
# stream").
_REASONS = (
    ("certificate has expired", "expired certificate"),
    ("alert certificate expired", "expired certificate (the peer says)"),
    ("certificate is not yet valid", "certificate not yet valid"),
    ("unable to get local issuer certificate", "unknown CA"),
    ("self-signed certificate", "unknown CA (self-signed certificate)"),
    ("certificate signature failure", "unknown CA (signature does not verify)"),
    ("alert unknown ca", "unknown CA (the peer does not trust this side's CA)"),
    ("alert decrypt error", "unknown CA (the peer could not verify this side's certificate)"),
    ("peer did not return a certificate", "no certificate (the peer sent none)"),
    ("alert certificate required", "no certificate (the peer wants one from this side)"),
    ("alert internal error", "the peer rejected this side's certificate"),
    ("hostname mismatch", "hostname mismatch"),
    ("ip address mismatch", "hostname mismatch (IP address)"),
    (
        "certificate verify failed",
        "the peer's certificate did not verify (unknown CA, expired or not yet valid)",
    ),
    ("wrong version number", "not TLS (the peer speaks cleartext?)"),
    (
        "connection reset by peer",
        # TLS 1.3: the client's handshake ends before the server judges its certificate, and
        # a refusal's alert is lost when the server's close resets this side's next write.
        "the peer reset the connection (a peer that refuses this side's certificate may "
        "do so before its alert arrives: its log says why)",
    ),
)


def explain_tls(reason: str) -> str:
    """Given an OpenSSL reason string, returns it with its meaning for the SST."""
    low = reason.lower()
    for needle, meaning in _REASONS:
        if needle in low:
            return meaning if meaning == reason else f"{meaning}: {reason}"
    return reason


def tls_failure(lines: Sequence[str]) -> str:
    """Given socat's stderr lines, returns why its TLS handshake failed ('' if it did not):
    the OpenSSL reason of the last `SSL_accept()`/`SSL_connect()` error, explained."""
    for line in reversed(lines):
        m = _SSL_ERROR.search(line)
        if m:
            return explain_tls(m.group(1).strip())
    return ""


_SSL_ERROR = re.compile(r"E SSL_(?:accept|connect)\(\): .*?error:[0-9A-Fa-f]+:[^:]*:[^:]*:(.+)$")
