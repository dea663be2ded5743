"""What a test node offers, whether it runs here (`sst.demo.Node`, through `testsupport.lab`)
or in a container (`integration/containers.py`'s `CNode`): one protocol, so checks such as
`testsupport.lab.checksums` work on both."""

from __future__ import annotations

from typing import Protocol


class GaleraNode(Protocol):
    """A mariadbd with Galera that a test configures, starts, queries and stops."""

    name: str
    sst_method: str  # wsrep_sst_method
    sst_options: dict[str, str]  # the [sst] group of its option file
    mysqld_options: dict[str, str]  # extra [mysqld] options
    provider_options: str  # appended to wsrep_provider_options

    def sql(self, statement: str, *, timeout: float = ...) -> str:
        """Run SQL as root; tab-separated output."""
        ...

    def status_var(self, name: str) -> str:
        """A global status value, or '' if the server does not answer."""
        ...

    def start(self, *, new_cluster: bool = False) -> None:
        """Start mariadbd (bootstrapping a new cluster if asked)."""
        ...

    def stop(self, timeout: float = ...) -> None:
        """Stop mariadbd cleanly, forcibly after timeout."""
        ...

    def wait_synced(self, timeout: float = ...) -> float:
        """Wait for wsrep_local_state_comment Synced; the seconds it took."""
        ...

    def log_text(self) -> str:
        """The whole error log."""
        ...

    def log_tail(self, lines: int = ...) -> str:
        """The last lines of the error log."""
        ...


class LocalNode(GaleraNode, Protocol):
    """A node on this host: its files are paths here and it can be SIGKILLed by PID (a
    container node is killed through its container: `docker kill`)."""

    @property
    def datadir(self) -> str:
        """The datadir."""
        ...

    @property
    def error_log(self) -> str:
        """The error log's path."""
        ...

    def kill(self) -> None:
        """SIGKILL mariadbd and its SST children."""
        ...
