"""What a method is, and the one registry every front end reads (`wsrep_sst_*`, `galera-sst
check`, the manual `joiner`/`donor` runs and `demo`).

A method module (imported only when its method runs, so that every start stays fast) gives:

- `load_settings(req) -> settings`: read the option files and freeze every value, reporting
  every invalid one at once (ConfigError) before anything connects; the settings carry
  `tmpdir` ([sst] tmpdir, '' for the system's);
- `donor(run, settings)`, and `joiner(run, settings)` unless the method has no joiner: it
  hands the method's `JoinerTransport` to the one joiner skeleton (sst/methods/joiner.py).

The registry says which names the method answers to, which programs it runs (for `check`),
and which front ends offer it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

from sst.errors import ConfigError
from sst.protocol import Stdout
from sst.request import MethodName, Request


class MethodModule(Protocol):
    """The functions a method module defines (see the module docstring)."""

    def load_settings(self, req: Request) -> Any:
        """The method's frozen settings for this request; raises ConfigError."""

    def donor(self, run: Any, s: Any) -> None:
        """The donor's side, inside the run's supervision."""


@dataclass(frozen=True)
class Method:
    """One method family and what the front ends need to know about it."""

    family: str
    names: tuple[str, ...]  # names we answer to; the first is what galera-sst commands offer
    module: str
    tools: tuple[str, ...]  # programs `check` looks for (stunnel too when TLS is on: tunnel)
    tunnel: bool = False  # TLS goes through stunnel (the rsync daemon, mariabackup's donor)
    no_joiner: str = ""  # why there is no joiner script ('' when there is one)
    checked: bool = True  # `galera-sst check --method` offers it

    @property
    def has_joiner(self) -> bool:
        """The method has a joiner script."""
        return not self.no_joiner

    def load(self) -> MethodModule:
        """Import the method's module."""
        mod: MethodModule = importlib.import_module(self.module)
        return mod

    def run(self, req: Request, out: Stdout) -> None:
        """One SST in the request's role: settings first (every invalid value at once, before
        anything connects), then the role inside `run_roles`. Raises SSTError."""
        from sst.methods.common import run_roles  # noqa: PLC0415 (keeps this module light)

        if req.role == "joiner" and self.no_joiner:
            raise ConfigError(self.no_joiner)
        mod = self.load()
        s = mod.load_settings(req)
        joiner = getattr(mod, "joiner", None)
        run_roles(
            req,
            out,
            s.tmpdir,
            lambda run: joiner(run, s) if joiner is not None else None,
            lambda run: mod.donor(run, s),
        )


METHODS: tuple[Method, ...] = (
    Method(
        "mariabackup",
        ("py_mariabackup", "mariabackup", "xtrabackup-v2", "xtrabackup"),
        "sst.methods.mariabackup",
        ("socat", "mariadb-backup", "mbstream"),
        tunnel=True,  # the donor's TLS
    ),
    Method(
        "rsync",
        ("py_rsync", "py_rsync_wan", "rsync", "rsync_wan"),
        "sst.methods.rsync",
        ("rsync", "tar"),
        tunnel=True,
    ),
    Method(
        "mysqldump",
        ("mysqldump",),
        "sst.methods.mysqldump",
        ("mariadb", "mariadb-dump"),
        no_joiner="the mysqldump method has no joiner script (mariadbd receives the dump itself)",
    ),
    Method(
        "backup",
        ("backup", "py_backup"),
        "sst.methods.backup",
        (),
        no_joiner="the backup method has no joiner side (it transfers nothing)",
        checked=False,
    ),
)

_BY_NAME = {name: m for m in METHODS for name in m.names}


def all_names() -> list[str]:
    """Every name we answer to, sorted."""
    return sorted(_BY_NAME)


def find(name: MethodName) -> Method | None:
    """The method a name belongs to, or None."""
    return _BY_NAME.get(name.text)


def lookup(name: MethodName, argv0: str = "") -> Method:
    """The method a name belongs to; raises ConfigError naming the known ones."""
    m = find(name)
    if m is None:
        started = f" (this program was started as {argv0!r})" if argv0 else ""
        raise ConfigError(
            f"unknown SST method {name.text!r}{started}; known: {', '.join(all_names())}"
        )
    return m


def manual_names() -> list[str]:
    """Names a person can run both roles of by hand, and the demo can join with: ours, with
    a joiner script."""
    return [n for m in METHODS if m.has_joiner for n in m.names if MethodName.parse(n).ours]


def checked_names() -> list[str]:
    """Names `galera-sst check` offers: each checked family's first name."""
    return [m.names[0] for m in METHODS if m.checked]
