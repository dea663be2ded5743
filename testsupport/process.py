"""Process-tier helpers: run the real SST scripts as mariadbd would, without mariadbd.

The fixtures here are registered for tests/ by tests/conftest.py."""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from sst import datadir
from sst.status import FILE as STATUS_FILE
from sst.tools import rsync as rs
from testsupport import lab

ROOT = Path(__file__).resolve().parent.parent  # the checkout
UUID = "8d1b2c3e-0000-11ee-8000-000000000001"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Script:
    """A running wsrep_sst_<method> with pipes on stdout and stderr."""

    proc: subprocess.Popen[bytes]
    _buf: bytes = b""

    def readline(self, timeout: float = 30.0) -> str:
        """The next stdout line ('' at EOF); fails the test after timeout."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no stdout line within {timeout} s; stderr:\n{self.stderr()}")
                if sel.select(left):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        line, self._buf = self._buf, b""
                        return line.decode()
                    self._buf += chunk
        finally:
            sel.close()
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def wait(self, timeout: float = 60.0) -> int:
        """Exit status."""
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        """All of stderr (only after exit, or it blocks)."""
        assert self.proc.stderr is not None
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


def start_script(
    method: str, args: Sequence[str], *, env: dict[str, str] | None = None, path_prefix: str = ""
) -> Script:
    """Start wsrep_sst_<method> through the bin/ shim with this interpreter."""
    shim = ROOT / "bin" / f"wsrep_sst_{method}"
    if not shim.exists():
        shim = Path(shutil.copy(ROOT / "bin" / "wsrep_sst_py_rsync", f"/tmp/wsrep_sst_{method}"))
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT)
    e.setdefault("WSREP_SST_OPT_AUTH", "")
    if env:
        e.update(env)
    if path_prefix:
        e["PATH"] = f"{path_prefix}:{e['PATH']}"
    proc = subprocess.Popen(
        [sys.executable, str(shim), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=e,
    )
    return Script(proc)


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("WSREP_SST: [ERROR]")]


def no_processes_left(pids: Sequence[int]) -> bool:
    """True when none of the pids is still alive (zombies count as gone)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = []
        for p in pids:
            try:
                if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    """A datadir with a database and the files a stopped server has, plus a my.cnf."""
    d = tmp_path / "data"
    (d / "db1").mkdir(parents=True)
    (d / "db1" / "t.ibd").write_bytes(os.urandom(4096))
    (d / "ibdata1").write_bytes(b"i" * 1000)
    (d / "ib_logfile0").write_bytes(b"r" * 100)
    (d / "aria_log_control").write_bytes(b"a")
    (d / "grastate.dat").write_text("# GALERA saved state\n")
    (tmp_path / "my.cnf").write_text("[mysqld]\n[sst]\n")
    return tmp_path


def write_cnf(base: Path, sst: dict[str, str]) -> str:
    p = base / "my.cnf"
    p.write_text("[mysqld]\n[sst]\n" + "".join(f"{k}={v}\n" for k, v in sst.items()))
    return str(p)


@pytest.fixture
def fakebin(tmp_path: Path) -> Iterator[Path]:
    """A directory for fake tools, put first on the script's PATH by the test."""
    d = tmp_path / "fakebin"
    d.mkdir()
    yield d


def fake_tool(d: Path, name: str, body: str) -> None:
    p = d / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)


@pytest.fixture
def parent() -> Iterator[subprocess.Popen[bytes]]:
    """A process standing in for mariadbd (the joiner's --parent)."""
    p = subprocess.Popen(["sleep", "300"])
    yield p
    p.kill()
    p.wait()


def joiner_args(base: Path, port: int, parent_pid: int) -> list[str]:
    return [
        "--role",
        "joiner",
        "--address",
        f"127.0.0.1:{port}",
        "--datadir",
        str(base / "data"),
        "--defaults-file",
        str(base / "my.cnf"),
        "--parent",
        str(parent_pid),
        "--progress",
        "0",
    ]


def donor_args(base: Path, address: str, bypass: bool = False) -> list[str]:
    args = [
        "--role",
        "donor",
        "--address",
        address,
        "--local-port",
        "3306",
        "--socket",
        "/nonexistent.sock",
        "--progress",
        "0",
        "--datadir",
        str(base / "data"),
        "--defaults-file",
        str(base / "my.cnf"),
        "--gtid",
        f"{UUID}:5",
        "--gtid-domain-id",
        "0",
    ]
    return [*args, "--bypass"] if bypass else args


DEBRIS = (*datadir.TRANSIENT, rs.ORIGIN_FILE)  # the origin file: in place, in the datadir


def snapshot(d: Path) -> dict[str, bytes]:
    """Every file's bytes, minus our status file (written on purpose, success or not)."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            if f == STATUS_FILE:
                continue
            p = Path(root) / f
            out[str(p.relative_to(d))] = p.read_bytes()
    return out


def assert_no_debris(d: Path) -> None:
    left = [n for n in DEBRIS if (d / n).exists()]
    assert left == []


@pytest.fixture
def joiner_dir(tmp_path: Path) -> Path:
    """The joiner's old datadir: different data, its own grastate.dat and a dropped db."""
    base = tmp_path / "joiner"
    d = base / "data"
    (d / "db1").mkdir(parents=True)
    (d / "db1" / "t.ibd").write_bytes(b"old" * 100)
    (d / "dropped_db").mkdir()
    (d / "dropped_db" / "x.ibd").write_bytes(b"x")
    (d / "ibdata1").write_bytes(b"old-ibdata")
    (d / "grastate.dat").write_text("joiner's own state\n")
    write_cnf(base, {})
    return base


def tables_flushed(datadir: Path, again_after: float = 0.02) -> None:
    """mariadbd's answer to `flush tables` as 10.11 gives it: the tables_flushed file,
    written whole (by a rename), and again_after seconds later (mariadbd's fsync in
    between) once more: 10.11's sst_flush_tables writes it twice, before it reads the
    donor's next line. A donor that removed the first as soon as it read it (it looks
    every 10 ms) left the second behind."""
    for pause in (0.0, again_after):
        time.sleep(pause)
        tmp = datadir / "tables_flushed.tmp"
        tmp.write_text(f"{UUID}:5 0\n")
        tmp.rename(datadir / "tables_flushed")


def act_as_donor_server(donor: Script, datadir: Path) -> None:
    """What mariadbd does for `flush tables` ... `done`."""
    assert donor.readline() == "flush tables"
    tables_flushed(datadir)
    assert donor.readline() == "continue"
    assert donor.readline() == f"done {UUID}:5 0"


def certs_for(tmp: Path, ip: str = "127.0.0.1") -> lab.CertPaths:
    return lab.make_certs(str(tmp / "certs"), {"joiner": ip, "donor": ip}, owner="root")


def tls_opts(c: lab.CertPaths, who: str, mode: str) -> dict[str, str]:
    cert, key = c.certs[who]
    return {"ssl-mode": mode, "ssl-ca": c.ca, "ssl-cert": cert, "ssl-key": key}


def pair_certs(tmp: Path) -> lab.CertPaths:
    """A CA and certificates for a joiner `j` and a donor `d` on 127.0.0.1."""
    return lab.make_certs(str(tmp / "certs"), {"j": "127.0.0.1", "d": "127.0.0.1"}, owner="root")


def pair_tls(c: lab.CertPaths, who: str, mode: str) -> dict[str, str]:
    """[sst] TLS options for one of pair_certs' two."""
    cert, key = c.certs[who]
    return {"ssl-mode": mode, "ssl-ca": c.ca, "ssl-cert": cert, "ssl-key": key}


def pair_bases(tmp: Path, opts: dict[str, dict[str, str]]) -> dict[str, Path]:
    """Node directories `j` and `d`, each with a datadir and an option file."""
    bases = {}
    for n in ("j", "d"):
        b = tmp / n
        (b / "data").mkdir(parents=True)
        write_cnf(b, opts.get(n, {}))
        bases[n] = b
    return bases


def run_ist(
    method: str,
    bases: dict[str, Path],
    parent_pid: int,
    env: dict[str, str] | None = None,
    path_prefix: str = "",
) -> tuple[str, str, float]:
    """One IST (donor with --bypass) between two programs; returns both stderrs and the
    joiner's run time."""
    t0 = time.monotonic()
    j = start_script(
        method,
        joiner_args(bases["j"], free_port(), parent_pid),
        env=env,
        path_prefix=path_prefix,
    )
    ready = j.readline()
    if not ready:
        j.wait()
        pytest.fail(f"joiner: {j.stderr()}")
    auth, _, address = ready[6:].rpartition("@")
    d = start_script(
        method,
        donor_args(bases["d"], address, bypass=True),
        env={"WSREP_SST_OPT_REMOTE_AUTH": auth},
        path_prefix=path_prefix,
    )
    assert d.readline() == "continue", d.stderr() if d.proc.poll() is not None else ""
    assert d.readline().startswith(f"done {UUID}:5")
    assert d.wait() == 0, d.stderr()
    assert j.readline(timeout=60) == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    took = time.monotonic() - t0
    return j.stderr(), d.stderr(), took


def mbstream_of(directory: Path, files: dict[str, bytes]) -> bytes:
    """An mbstream (as mariadb-backup --stream writes) of files, made by the real mbstream
    in directory (created here)."""
    directory.mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    res = subprocess.run(
        ["mbstream", "-c", *files], cwd=directory, capture_output=True, check=True, timeout=30
    )
    return res.stdout


def tls_peer_exchange(
    addr: tuple[str, int],
    ca: str,
    cert_key: tuple[str, str],
    payload: bytes,
    *,
    deadline: float,
    poll: float = 0.01,
) -> bytes:
    """Connect to addr with a certificate (cert, key) as soon as it listens (every poll
    seconds until the monotonic deadline; raises AssertionError after it), send payload,
    and return what the peer answered before it closed the connection."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    ctx.load_cert_chain(*cert_key)
    while True:
        try:
            raw = socket.create_connection(addr, timeout=30)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{addr[0]}:{addr[1]} never listened") from None
            time.sleep(poll)
    answer = b""
    with ctx.wrap_socket(raw) as tls:
        tls.sendall(payload)
        try:
            while chunk := tls.recv(4096):
                answer += chunk
        except (ssl.SSLError, OSError):
            pass
    return answer
