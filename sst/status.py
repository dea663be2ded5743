"""The live status file `<datadir>/galera_sst_status.json`: what a running SST is doing, or
how the last one ended, for `galera-sst status`, probes and orchestration."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import psutil

from sst.errors import ConfigError
from sst.process.pidfile import read_small, replace_file
from sst.process.runner import tree_io

FILE = "galera_sst_status.json"
SAMPLE = 1.0  # seconds between byte samples (each walks the process table)
WRITE = 1.0  # seconds between rewrites of the file while nothing else changes


@dataclass
class Snapshot:
    """What the file holds (one JSON object)."""

    method: str
    role: str
    pid: int
    peer: str = ""
    tls: str = ""
    phase: str = "starting"
    state: str = "running"  # running | succeeded | failed
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    last_progress: float = field(default_factory=time.time)
    bytes_done: int = 0  # an estimate: bytes written by the watched processes
    bytes_expected: int = 0
    rate: float = 0.0  # bytes per second, over the last samples
    eta_seconds: float | None = None
    exit_code: int | None = None
    error: str = ""
    staging: str = ""  # joiner: `staged` or `in-place`, and why (sst/staging.py)


class Status:
    """Writes the status file atomically; cheap enough to call on every supervision tick."""

    def __init__(self, datadir: str, method: str, role: str, peer: str = "") -> None:
        self.path = os.path.join(datadir, FILE)
        self.snap = Snapshot(method=method, role=role, pid=os.getpid(), peer=peer)
        self._last_sample = 0.0
        self._last_bytes = 0
        self._pids: tuple[int, ...] = ()
        self.write()

    def write(self) -> None:
        """Replace the file (never a half-written one)."""
        self.snap.updated = time.time()
        # Best effort: the SST itself must not fail for its status file.
        with contextlib.suppress(OSError):
            replace_file(self.path, json.dumps(asdict(self.snap)).encode("utf-8"))

    def phase(
        self, name: str, *, expected: int = 0, tls: str = "", watch: tuple[int, ...] = ()
    ) -> None:
        """Enter a phase; optionally the process trees whose I/O counts as progress."""
        self.snap.phase = name
        if expected:
            self.snap.bytes_expected = expected
        if tls:
            self.snap.tls = tls
        self._pids = watch
        self.write()

    def tick(self) -> None:
        """Sample the watched processes' I/O at most every TICK seconds."""
        now = time.monotonic()
        if not self._pids or now - self._last_sample < SAMPLE:
            return
        total = tree_io(self._pids).write_chars
        elapsed = now - self._last_sample if self._last_sample else 0.0
        self._last_sample = now
        if total > self._last_bytes:
            if elapsed:
                self.snap.rate = (total - self._last_bytes) / elapsed
            self.snap.last_progress = time.time()
            self._last_bytes = total
            self.snap.bytes_done = max(self.snap.bytes_done, total)
        s = self.snap
        if s.bytes_expected and s.rate > 0 and s.bytes_done < s.bytes_expected:
            s.eta_seconds = (s.bytes_expected - s.bytes_done) / s.rate
        if time.time() - s.updated >= WRITE:
            self.write()

    def staging(self, text: str) -> None:
        """Record the staging decision (`staged: ...` or `in-place: ...`)."""
        self.snap.staging = text
        self.write()

    def finish(self, code: int, error: str = "") -> None:
        """Record the outcome."""
        self.snap.state = "succeeded" if code == 0 else "failed"
        self.snap.exit_code = code
        self.snap.error = error
        self.snap.phase = "done" if code == 0 else self.snap.phase
        self.snap.eta_seconds = None
        self.write()


_TYPES: dict[str, tuple[type, ...]] = {
    "method": (str,),
    "role": (str,),
    "pid": (int,),
    "peer": (str,),
    "tls": (str,),
    "phase": (str,),
    "state": (str,),
    "started": (int, float),
    "updated": (int, float),
    "last_progress": (int, float),
    "bytes_done": (int,),
    "bytes_expected": (int,),
    "rate": (int, float),
    "eta_seconds": (int, float, type(None)),
    "exit_code": (int, type(None)),
    "error": (str,),
    "staging": (str,),
}
OPTIONAL = {"staging": ""}  # fields an older galera-sst did not write
assert set(_TYPES) == {f.name for f in fields(Snapshot)}


def _valid(data: object) -> dict[str, Any] | None:
    """Given decoded JSON, returns it if it has every field of a Snapshot with its type
    (finite floats, 64-bit integers, no booleans), else None."""
    if not isinstance(data, dict):
        return None
    for name, value in OPTIONAL.items():
        data.setdefault(name, value)
    for name, types in _TYPES.items():
        v = data.get(name)
        if isinstance(v, bool) or not isinstance(v, types):
            return None
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, int) and not -(2**63) <= v < 2**63:
            return None
    return data


def read(datadir: str) -> dict[str, Any] | None:
    """Given a datadir, returns its status file as a dict, or None if there is none; a dead
    writer means it was interrupted. Raises ConfigError if the file is not a regular file,
    cannot be read, or is not a status file (malformed, truncated, binary)."""
    path = os.path.join(datadir, FILE)
    try:
        raw = read_small(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {printable(path)}: {exc.strerror or exc}") from None
    try:
        data = _valid(json.loads(raw.decode("utf-8")))
    except (ValueError, RecursionError):
        data = None
    if data is None:
        raise ConfigError(
            f"{printable(path)} is not a galera-sst status file (malformed or truncated)"
        )
    if data["state"] == "running" and not _alive(data["pid"]):
        data["state"] = "interrupted"
    return data


def _alive(pid: int) -> bool:
    return 0 < pid < 2**31 and psutil.pid_exists(pid)


def printable(text: object) -> str:
    """Given any value from the status file, returns its text with control characters and
    other non-printables escaped (\\x1b, \\u200b): a file others can write must not drive
    the terminal of whoever reads it."""
    out = []
    for c in str(text):
        if c.isprintable():
            out.append(c)
        elif ord(c) < 0x100:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
    return "".join(out)


def describe(data: dict[str, Any]) -> str:
    """A few human lines (every value from the file escaped)."""
    p = printable
    now = time.time()
    lines = [
        f"{p(data['method'])} {p(data['role'])} ({p(data['state'])})"
        + (f", peer {p(data['peer'])}" if data.get("peer") else "")
        + (f", {p(data['tls'])}" if data.get("tls") else ""),
        f"phase: {p(data['phase'])}, started {now - data['started']:.0f} s ago",
    ]
    done, exp = data.get("bytes_done", 0), data.get("bytes_expected", 0)
    if done or exp:
        lines.append(
            f"bytes: {done / 2**20:.1f} MiB"
            + (f" of {exp / 2**20:.1f} MiB" if exp else "")
            + f", {data.get('rate', 0) / 2**20:.1f} MiB/s"
            + (f", ETA {data['eta_seconds']:.0f} s" if data.get("eta_seconds") else "")
        )
    if data.get("staging"):
        lines.append(f"staging: {p(data['staging'])}")
    if data["state"] == "running":
        lines.append(f"last progress {now - data['last_progress']:.0f} s ago")
    if data.get("error"):
        lines.append(f"error (exit {data.get('exit_code')}): {p(data['error'])}")
    return "\n".join(lines)
