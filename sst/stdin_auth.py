"""Credentials MariaDB 11.x hands the donor on its stdin (docs/contract.md: `sst_user=`,
`sst_password=`, `sst_remote_user=`, `sst_remote_password=` lines, then end of file), where
10.11 used the environment (`WSREP_SST_OPT_AUTH`, `WSREP_SST_OPT_REMOTE_AUTH`). Without them
an 11.8 donor knows neither the joiner's secret nor the temporary SST user mariadbd made.

They are turned into the environment names the request parser reads, in a mapping of their
own: never into os.environ, which children inherit.
"""

from __future__ import annotations

import os
import select
import time

KEYS = ("sst_user", "sst_password", "sst_remote_user", "sst_remote_password")


def parse(text: str) -> dict[str, str]:
    """`key=value` lines -> the known keys' values (values may hold '=')."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in KEYS:
            out[key] = value
    return out


def as_env(values: dict[str, str]) -> dict[str, str]:
    """The stdin values under the environment names of 10.11 (what parse_request reads)."""
    env: dict[str, str] = {}
    if values.get("sst_user"):
        env["WSREP_SST_OPT_USER"] = values["sst_user"]
        env["WSREP_SST_OPT_PSWD"] = values.get("sst_password", "")
    if values.get("sst_remote_user") or values.get("sst_remote_password"):
        remote = f"{values.get('sst_remote_user', '')}:{values.get('sst_remote_password', '')}"
        env["WSREP_SST_OPT_REMOTE_AUTH"] = remote
    return env


def read(fd: int = 0, first_wait: float = 1.0, deadline: float = 5.0) -> dict[str, str]:
    """What mariadbd wrote on fd, as environment overrides; {} for a terminal, a closed fd,
    or nothing within first_wait seconds (10.11 writes nothing: its stdin is mariadbd's)."""
    try:
        if os.isatty(fd):
            return {}
        ready, _, _ = select.select([fd], [], [], first_wait)
    except (OSError, ValueError):
        return {}
    if not ready:
        return {}
    chunks: list[bytes] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end and sum(map(len, chunks)) < 65536:
        ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return as_env(parse(b"".join(chunks).decode("utf-8", "replace")))
