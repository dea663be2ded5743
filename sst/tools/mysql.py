"""The mariadb client and mariadb-dump: argv, and their option files (credentials, TLS)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

DUMP_OPTIONS = (
    "--add-drop-database",
    "--add-drop-table",
    "--skip-add-locks",
    "--create-options",
    "--disable-keys",
    "--extended-insert",
    "--skip-lock-tables",
    "--quick",
    "--set-charset",
    "--skip-comments",
    "--flush-privileges",
    "--all-databases",
    "--events",
)


@dataclass(frozen=True)
class ClientTLS:
    """TLS for the client connection to the joiner's server."""

    ca: str = ""
    capath: str = ""
    cert: str = ""
    key: str = ""
    verify_server: bool = False  # name and chain: --ssl-verify-server-cert


def quote(value: str) -> str:
    """An option-file value, double-quoted with the escapes MariaDB's parser undoes."""
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{out}"'


def option_file(
    path: str,
    *,
    include: str,
    group: str,
    user: str,
    password: str | None,
    tls: ClientTLS | None = None,
) -> None:
    """A 0600 option file: the server's defaults (!include), then our group's settings.

    Used as --defaults-file (or --defaults-extra-file without one): a --defaults-extra-file
    is ignored next to --defaults-file, and argv is visible to every user.
    """
    lines = [f"!include {include}"] if include else []
    lines.append(f"[{group}]")
    if user:
        lines.append(f"user={quote(user)}")
    if password is not None:
        lines.append(f"password={quote(password)}")
    if tls is not None:
        lines.append("ssl")
        for name, value in (
            ("ssl-ca", tls.ca),
            ("ssl-capath", tls.capath),
            ("ssl-cert", tls.cert),
            ("ssl-key", tls.key),
        ):
            if value:
                lines.append(f"{name}={quote(value)}")
        if tls.verify_server:
            lines.append("ssl-verify-server-cert")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def defaults_args(
    option_path: str, *, has_defaults_file: bool, extra_file: str, group_suffix: str
) -> tuple[str, ...]:
    """The leading defaults options for a client using our option file."""
    key = "--defaults-file" if has_defaults_file else "--defaults-extra-file"
    out = [f"{key}={option_path}"]
    if group_suffix:
        out.append(f"--defaults-group-suffix={group_suffix}")
    del extra_file  # cannot be combined with ours; its [client] settings are not read
    return tuple(out)


def client_argv(
    binary: str, defaults: Sequence[str], *, host: str, port: int, extra: Sequence[str] = ()
) -> tuple[str, ...]:
    """`mariadb` to the joiner's server, bounded connect, no reconnect."""
    return (
        binary,
        *defaults,
        f"--host={host}",
        f"--port={port}",
        "--protocol=TCP",
        "--disable-reconnect",
        "--connect-timeout=10",
        "--batch",
        *extra,
    )


def dump_argv(binary: str, defaults: Sequence[str], *, socket: str) -> tuple[str, ...]:
    """`mariadb-dump` of the donor over its own socket, options as the stock script."""
    return (binary, *defaults, f"--socket={socket}", *DUMP_OPTIONS)
