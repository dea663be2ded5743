"""Addresses and listeners: is an address ours, and is our child listening on the port."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import psutil


def local_ips() -> set[str]:
    """Every address on this host's interfaces."""
    out: set[str] = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                out.add(a.address.split("%", 1)[0])
    return out


def resolve(host: str) -> list[str]:
    """IP addresses for a host name or literal (empty if it does not resolve)."""
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return sorted({str(i[4][0]) for i in infos})


def bind_address(host: str) -> str:
    """The local IP to bind for host, or '' when host is not an address of this machine."""
    ours = local_ips()
    for ip in resolve(host):
        if ip in ours or ipaddress.ip_address(ip).is_loopback:
            return ip
    return ""


def _tree_has(pid: int, port: int, wanted: Callable[[Any], bool]) -> bool:
    """True if pid or one of its descendants holds a TCP socket on local port `port` that
    `wanted` (given psutil's connection) accepts."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for p in procs:
        try:
            for c in p.net_connections(kind="tcp"):
                if c.laddr and c.laddr.port == port and wanted(c):
                    return True
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return False


def tree_listens(pid: int, port: int) -> bool:
    """True if pid or one of its descendants listens on port."""
    return _tree_has(pid, port, lambda c: c.status == psutil.CONN_LISTEN)


def tree_listens_or_accepted(pid: int, port: int) -> bool:
    """True if pid or a descendant listens on port, or holds a connection accepted on it
    (a one-shot listener that a quick peer reached between two polls)."""
    return _tree_has(pid, port, lambda c: c.status != psutil.CONN_SYN_SENT)


def port_in_use(port: int, host: str = "") -> bool:
    """True if something already listens on host:port (any address when host is '')."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host or ("::" if fam == socket.AF_INET6 else "0.0.0.0"), port))
        except OSError:
            return True
    return False


def is_ip_literal(name: str) -> bool:
    """The one rule that picks the identity check: given a name, returns True for an IPv4
    or IPv6 literal (no brackets, no zone), which is checked against IP SANs only (OpenSSL
    X509_check_ip, stunnel `checkIP`); any other name is a DNS name (X509_check_host,
    stunnel `checkHost`: DNS SANs, the CN only when there is no DNS SAN)."""
    if "%" in name:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
