"""Where an option's value comes from: file and line, for `galera-sst check`.

The values themselves always come from my_print_defaults (the server's own reader); this
only follows the same files (the default search order, or --defaults-file, then
--defaults-extra-file, `!include` and `!includedir`) to tell the operator where to edit.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable

from sst.request import normalize_option

DEFAULT_FILES = ("/etc/my.cnf", "/etc/mysql/my.cnf")
MYSQLD_GROUPS = (
    "mysqld",
    "server",
    "mysqld-10.11",
    "mariadb",
    "mariadb-10.11",
    "mariadbd",
    "mariadbd-10.11",
    "client-server",
    "galera",
)


def search_files(defaults_file: str, extra_file: str) -> list[str]:
    """The top-level files the server reads, in order."""
    files = [defaults_file] if defaults_file else [*DEFAULT_FILES, os.path.expanduser("~/.my.cnf")]
    if extra_file:
        files.insert(len(files) - (0 if defaults_file else 1), extra_file)
    return files


def sources(
    files: Iterable[str], groups: Iterable[str], suffix: str = ""
) -> dict[str, tuple[str, int, str]]:
    """{normalized option: (file, line, group)} for the last setting in the given groups."""
    wanted = set(groups)
    if suffix:
        wanted |= {g + suffix for g in list(wanted)}
    found: dict[str, tuple[str, int, str]] = {}
    seen: set[str] = set()

    def read(path: str, depth: int) -> None:
        real = os.path.realpath(path)
        if depth > 10 or real in seen:
            return
        seen.add(real)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return
        group = ""
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("!includedir"):
                d = line[len("!includedir") :].strip()
                for inc in sorted(glob.glob(os.path.join(d, "*.cnf"))):
                    read(inc, depth + 1)
                continue
            if line.startswith("!include"):
                read(line[len("!include") :].strip(), depth + 1)
                continue
            if line.startswith("[") and "]" in line:
                group = line[1 : line.index("]")].strip()
                continue
            if group in wanted:
                name = normalize_option(line.split("=", 1)[0].strip())
                found[name] = (path, number, group)

    for p in files:
        read(p, 0)
    return found
