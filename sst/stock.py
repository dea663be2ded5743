"""What the stock scripts print and honour that tools outside galera-sst depend on.

Monitoring and MariaDB's own galera test suite (`mariadb-test`, `suite/galera/t`) grep the
server's error log for some of the stock scripts' INFO lines, and the suite drives the
stock scripts through a few `MTR_SST_*` environment variables. The lines are printed here
word for word as `wsrep_sst_common`, `wsrep_sst_rsync` and `wsrep_sst_mariabackup` print
them on 10.11.19 and 11.8.9 (identical in both; `docs/findings.md`, "Stock log lines that
are interface"), beside our own lines. The hooks are for tests only: they do something only
when their variable is set, and nothing sets them outside MariaDB's test runner.
"""

from __future__ import annotations

import os
import time

from sst import log
from sst.errors import ToolMissing

# MariaDB's test hooks (mysql-test/suite/galera): test-only, honoured only when set.
HOOK_NO_SSL_CERT = "MTR_SST_SIMULATE_NO_SSL_CERT"  # mariabackup: as if no cert/key were set
HOOK_NO_STUNNEL = "MTR_SST_SIMULATE_NO_STUNNEL"  # rsync: as if stunnel were not installed
HOOK_JOINER_DELAY = "MTR_SST_JOINER_DELAY"  # joiner: sleep N s before the coordinates

_ist = {"joiner": False}


def mark_ist() -> None:
    """The joiner learnt from the donor that this transfer is an IST: its last line says
    `<method> IST completed on joiner`, as stock (MariaDB's tests grep for it)."""
    _ist["joiner"] = True


def transfer_type(kind: str) -> str:
    """`IST` once the joiner learnt it was one, else kind (from --bypass)."""
    return "IST" if _ist["joiner"] else kind


def _hook(name: str, env: dict[str, str] | None = None) -> str:
    return ((os.environ if env is None else env).get(name) or "").strip()


def simulate_no_ssl_cert(env: dict[str, str] | None = None) -> bool:
    """MTR_SST_SIMULATE_NO_SSL_CERT (test-only): mariabackup behaves as if neither an SSL
    certificate nor a key were configured."""
    return bool(_hook(HOOK_NO_SSL_CERT, env))


def no_usable_cert(mode: str) -> str:
    """The stock mariabackup error when ssl-mode wants TLS and there is no cert/key."""
    return (
        f"ssl-mode is set to '{mode}', but no usable SSL certificate and key were found. "
        "Cannot perform an encrypted transfer. Please configure ssl-cert and ssl-key, "
        "or set ssl-mode to DISABLED."
    )


def rsync_tls(mode: str, ca: str, capath: str, env: dict[str, str] | None = None) -> None:
    """The stock rsync script's TLS lines, once per run when ssl-mode is not DISABLED:
    the VERIFY_CA line, then `Using stunnel for SSL encryption: ...` (MariaDB's tests count
    it: one per run). With MTR_SST_SIMULATE_NO_STUNNEL (test-only), fails as stock does
    when stunnel is missing."""
    if mode == "DISABLED":
        return
    if mode == "VERIFY_CA":
        log.info("Verifying peer certificate chain for ssl-mode=VERIFY_CA")
    if _hook(HOOK_NO_STUNNEL, env):
        raise ToolMissing(
            f"ssl-mode is set to '{mode}', but the 'stunnel' binary was not found in the "
            "path. Cannot perform an encrypted transfer. Please install stunnel or set "
            f"ssl-mode to DISABLED. ({HOOK_NO_STUNNEL} is set)"
        )
    log.info(f"Using stunnel for SSL encryption: CA: '{ca}', CAPATH='{capath}', ssl-mode='{mode}'")


def socat_tls(encrypt: int, mode: str) -> None:
    """The stock mariabackup script's TLS lines, once per run when socat uses TLS."""
    if encrypt == 2:
        log.info("Using openssl based encryption with socat: with crt and pem")
    else:
        log.info("Using openssl based encryption with socat: with key and crt")
    if mode == "VERIFY_CA":
        log.info("Verifying peer certificate chain for ssl-mode=VERIFY_CA")


def joiner_delay(env: dict[str, str] | None = None) -> None:
    """MTR_SST_JOINER_DELAY=N (test-only): the joiner sleeps N seconds before it prints the
    coordinates, as the stock joiners do, to simulate a long SST/IST."""
    text = _hook(HOOK_JOINER_DELAY, env)
    try:
        seconds = int(text) if text else 0
    except ValueError:
        seconds = 0
    if seconds > 0:
        log.info(f"Sleeping {seconds} seconds for MTR test")
        time.sleep(seconds)
