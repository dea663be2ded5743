"""A bounded write load against one node: what applications feel while an SST runs.

`Writer` commits one small transaction at a time (an INSERT stamped by the server with
`NOW(6)`) at a fixed cadence, over one connection, and records each transaction's latency
(from the client's send to the server's acknowledgement of the commit). It stops after
`seconds` or `transactions`, whichever comes first, or when asked. A write that fails is
recorded with its error and retried on a new connection after a short pause; the time from
the first failing attempt to the next success counts as refused.

Connections go to the node's unix socket (local nodes, as root through unix_socket) or to a
TCP address the caller gives: loopback, or a container or namespace the test created
(the network rule in docs/testing.md).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pymysql

DATABASE = "writeload"
TABLE = "writes"


@dataclass(frozen=True)
class Target:
    """Where the writer connects: a unix socket, or host and port with a user."""

    socket: str = ""
    host: str = ""
    port: int = 3306
    user: str = "root"
    password: str = ""

    def connect_args(self) -> dict[str, Any]:
        """pymysql.connect keyword arguments (autocommit on, short timeouts)."""
        args: dict[str, Any] = {
            "user": self.user,
            "password": self.password,
            "autocommit": True,
            "connect_timeout": 5,
        }
        if self.socket:
            args["unix_socket"] = self.socket
        else:
            args["host"], args["port"] = self.host, self.port
        return args


@dataclass
class Stats:
    """What the writer saw."""

    committed: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, one per commit
    errors: list[str] = field(default_factory=list)
    refused_seconds: float = 0.0  # from a failed attempt to the next success

    @property
    def longest(self) -> float:
        """The longest single commit (0 with none)."""
        return max(self.latencies, default=0.0)

    def blocked_seconds(self, threshold: float = 0.1) -> float:
        """Total time writes were blocked: every commit that took longer than threshold,
        plus the time writes were refused."""
        return sum(x for x in self.latencies if x > threshold) + self.refused_seconds


def create_table(node_sql: Any) -> None:
    """Given a node's sql callable: the writer's table, empty of nothing (kept across runs)."""
    node_sql(
        f"CREATE DATABASE IF NOT EXISTS {DATABASE}; "
        f"CREATE TABLE IF NOT EXISTS {DATABASE}.{TABLE} ("
        "id BIGINT AUTO_INCREMENT PRIMARY KEY, run VARCHAR(32), seq INT, "
        "t DATETIME(6), pad VARCHAR(200)) ENGINE=InnoDB"
    )


class Writer(threading.Thread):
    """The load: start() it (or use it as a context manager), stop() it, read .stats."""

    def __init__(
        self,
        target: Target,
        *,
        run: str,
        interval: float = 0.02,
        seconds: float = 600.0,
        transactions: int = 0,
    ) -> None:
        super().__init__(daemon=True, name=f"writer-{run}")
        self.target = target
        self.run_id = run
        self.interval = interval
        self.seconds = seconds
        self.transactions = transactions
        self.stats = Stats()
        self._halt = threading.Event()
        self._conn: pymysql.connections.Connection[Any] | None = None

    def __enter__(self) -> Writer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 120.0) -> Stats:
        """Ask the writer to finish its current transaction and stop; its stats."""
        self._halt.set()
        self.join(timeout)
        if self.is_alive():
            raise RuntimeError(f"writer {self.run_id} did not stop within {timeout:g} s")
        return self.stats

    def _connection(self) -> pymysql.connections.Connection[Any]:
        if self._conn is None:
            self._conn = pymysql.connect(**self.target.connect_args())
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(pymysql.Error):
                self._conn.close()
            self._conn = None

    def _one(self, seq: int) -> None:
        with self._connection().cursor() as cur:
            cur.execute(
                f"INSERT INTO {DATABASE}.{TABLE} (run, seq, t, pad) VALUES (%s, %s, NOW(6), %s)",
                (self.run_id, seq, "x" * 100),
            )

    def run(self) -> None:
        end = time.monotonic() + self.seconds
        seq = 0
        failing_since = 0.0
        try:
            while not self._halt.is_set() and time.monotonic() < end:
                if self.transactions and self.stats.committed >= self.transactions:
                    break
                t0 = time.monotonic()
                try:
                    self._one(seq)
                except (pymysql.Error, OSError) as exc:
                    self.stats.errors.append(f"{type(exc).__name__}: {exc}")
                    failing_since = failing_since or t0
                    self._drop()
                    self._halt.wait(0.2)
                    continue
                took = time.monotonic() - t0
                if failing_since:
                    self.stats.refused_seconds += t0 - failing_since
                    failing_since = 0.0
                self.stats.latencies.append(took)
                self.stats.committed += 1
                seq += 1
                self._halt.wait(max(0.0, self.interval - took))
        finally:
            if failing_since:
                self.stats.refused_seconds += time.monotonic() - failing_since
            self._drop()
