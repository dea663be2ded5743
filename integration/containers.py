"""Container tier support: a Docker engine of the tests' own, images built on this machine,
and Galera nodes in containers with host names (docs/testing.md, Containers).

- `Engine` starts `dockerd` with its own data root, exec root, pid file and unix socket, and
  on close removes every container and network it labelled, then stops the daemon by PID.
- `ensure_images` imports a debootstrapped Debian 12 as the base image (nothing can be
  pulled) and builds `container/Dockerfile` on it, with galera-sst installed from wheels built
  here. The apt layer is cached in the data root between runs; our wheel is rebuilt each run.
- `Cluster` puts nodes on a user-defined, internal bridge network (no route off it), each a
  container named and reachable by its host name, whose mariadbd the tests start and stop
  with `docker exec` so that the container, its data and its name outlive the server.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from testsupport import cluster
from testsupport import lab as labmod
from testsupport.nodes import GaleraNode

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # its image cannot be pulled

from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABEL = "galera-sst.test"
DATA_ROOT = os.environ.get("GALERA_SST_DOCKER_ROOT", "/var/lib/galera-sst-test/docker")
CNF = "/etc/galera/my.cnf"
DATADIR = "/var/lib/galera/data"
SOCKET = "/run/galera/mysqld.sock"
PIDFILE = "/run/galera/mysqld.pid"
ERROR_LOG = "/var/lib/galera/error.log"
SST_PORT = 4444
SQL_PORT = 3306
SST_PASSWORD = "c0ntainer s3cret;$(x)"
SYNC_TIMEOUT = 180.0


@dataclass(frozen=True)
class Base:
    """A Debian release the nodes run on: its suite, the Python it ships (the wheels are made
    for it) and the MariaDB series its packages carry (test ids name it)."""

    suite: str
    python: str
    mariadb: str

    @property
    def base_image(self) -> str:
        return f"galera-sst/base:{self.suite}"

    @property
    def node_image(self) -> str:
        return f"galera-sst/node:{self.suite}"


BOOKWORM = Base("bookworm", "3.11", "10.11")
TRIXIE = Base("trixie", "3.13", "11.8")
BASES = {b.mariadb: b for b in (BOOKWORM, TRIXIE)}
PIP = (sys.executable, "-m", "pip")
# Binary wheels for the image's Python, whatever the host's (galera-sst's own is pure Python).
WHEEL_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")


class ContainerError(RuntimeError):
    """The container tier could not do what a test asked."""


wait_for = functools.partial(cluster.wait_for, period=0.2)  # each poll is a docker exec


# -- the engine ------------------------------------------------------------------------------


class Engine:
    """dockerd, started and stopped by these tests."""

    def __init__(self, data_root: str = DATA_ROOT) -> None:
        if shutil.which("dockerd") is None or shutil.which("debootstrap") is None:
            raise ContainerError(
                "container tier cannot run: dockerd or debootstrap missing "
                "(scripts/setup.sh installs docker.io and debootstrap)"
            )
        self.data_root = data_root
        # Short: containerd's sockets live under the exec root (108-byte socket paths).
        # scripts/test.sh passes its own, to stop the daemon should pytest itself die.
        self.run = os.environ.get("GALERA_SST_DOCKER_RUN") or tempfile.mkdtemp(prefix="gsst-dk.")
        os.makedirs(self.run, exist_ok=True)
        self.socket = os.path.join(self.run, "docker.sock")
        self.pidfile = os.path.join(self.run, "dockerd.pid")
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: docker.DockerClient | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> docker.DockerClient:
        os.makedirs(self.data_root, exist_ok=True)
        log = open(os.path.join(self.run, "dockerd.log"), "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [
                    "dockerd",
                    f"--data-root={self.data_root}",
                    f"--exec-root={os.path.join(self.run, 'exec')}",
                    f"--pidfile={self.pidfile}",
                    f"--host={self.host}",
                    "--bridge=none",  # no default bridge: only the tests' own networks
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        os.environ["DOCKER_HOST"] = self.host  # for testcontainers

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise ContainerError(f"dockerd exited at start:\n{self.log_tail()}")
            try:
                # The client asks the daemon's API version as it is made.
                self.client = docker.DockerClient(base_url=self.host, timeout=300)
                return bool(self.client.ping())
            except (docker.errors.DockerException, OSError):
                return False

        wait_for(up, 60, "dockerd to answer")
        self.remove_labelled()  # what a killed earlier run may have left in the data root
        assert self.client is not None
        return self.client

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError), open(os.path.join(self.run, "dockerd.log")) as f:
            return "".join(f.readlines()[-lines:])
        return ""

    def remove_labelled(self) -> None:
        """Remove every container and network these tests made."""
        if self.client is None:
            return
        for c in self.client.containers.list(all=True, filters={"label": LABEL}):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True, v=True)
        for n in self.client.networks.list(filters={"label": LABEL}):
            with contextlib.suppress(docker.errors.NotFound):
                n.remove()

    def close(self) -> None:
        """Containers and networks removed, the daemon stopped by its PID, its run dir gone."""
        try:
            self.remove_labelled()
        finally:
            if self.client is not None:
                self.client.close()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            # dockerd leaves its default network namespace bind-mounted in the exec root.
            for mnt in reversed(mounts_under(self.run)):
                subprocess.run(["umount", "-l", mnt], check=False, timeout=30)
            shutil.rmtree(self.run, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What close() should have removed: the daemon, its mounts, its run directory."""
        out = [f"mount {m}" for m in mounts_under(self.run)]
        if os.path.exists(self.run):
            out.append(f"directory {self.run}")
        if self.proc is not None and self.proc.poll() is None:
            out.append(f"dockerd pid {self.proc.pid}")
        return out


def mounts_under(path: str) -> list[str]:
    """Mount points at or below path, in mount order."""
    with open("/proc/self/mounts", encoding="utf-8") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


# -- images ----------------------------------------------------------------------------------


def apt_mirror() -> str:
    """The Debian mirror of this machine's own apt sources (deb822 or one-line style)."""
    candidates = ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]
    if os.path.isdir("/etc/apt/sources.list.d"):
        candidates += sorted(
            os.path.join("/etc/apt/sources.list.d", n)
            for n in os.listdir("/etc/apt/sources.list.d")
        )
    for path in candidates:
        with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
            for line in f:
                words = line.split()
                if words[:1] == ["URIs:"] or words[:1] == ["deb"]:
                    uri = words[1] if words[0] == "URIs:" else words[-3]
                    if "security" not in uri and uri.startswith("http"):
                        return uri
    raise ContainerError("no Debian mirror in /etc/apt/sources.list{,.d}")


def _has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _run(argv: Sequence[str], what: str) -> None:
    """A build step on the host, bounded in time; its output is the error if it fails."""
    res = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if res.returncode != 0:
        raise ContainerError(f"{what} failed: {(res.stdout + res.stderr)[-2000:]}")


def ensure_base_image(client: docker.DockerClient, work: str, base: Base) -> None:
    """galera-sst/base:<suite>: debootstrap minbase from the machine's mirror, imported."""
    if _has_image(client, base.base_image):
        return
    rootfs = os.path.join(work, f"rootfs-{base.suite}")
    _run(["debootstrap", "--variant=minbase", base.suite, rootfs, apt_mirror()], "debootstrap")
    tarball = os.path.join(work, f"rootfs-{base.suite}.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tarball, "."], check=True, timeout=300)
    shutil.rmtree(rootfs)
    repo, tag = base.base_image.split(":")
    client.api.import_image_from_file(tarball, repository=repo, tag=tag)
    os.unlink(tarball)


def build_wheels(wheels: str, python: str) -> None:
    """galera-sst's wheel, and binary wheels of its dependencies for CPython `python`."""
    _run([*PIP, "wheel", "-q", "--no-deps", "--wheel-dir", wheels, ROOT], "pip wheel")
    ours = [os.path.join(wheels, n) for n in os.listdir(wheels) if n.endswith(".whl")]
    target = ["--python-version", python, "--implementation", "cp", "--only-binary=:all:"]
    target += [a for p in WHEEL_PLATFORMS for a in ("--platform", p)]
    _run([*PIP, "download", "-q", "--dest", wheels, *target, *ours], f"wheels for {python}")


def build_node_image(client: docker.DockerClient, work: str, base: Base) -> None:
    """container/Dockerfile FROM base's image, with galera-sst and its dependencies as
    wheels."""
    ctx = os.path.join(work, f"node-image-{base.suite}")
    os.makedirs(ctx)
    shutil.copy(os.path.join(ROOT, "container", "Dockerfile"), ctx)
    build_wheels(os.path.join(ctx, "wheels"), base.python)
    try:
        _build(client, "node", path=ctx, tag=base.node_image, buildargs={"BASE": base.base_image})
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


def _build(client: docker.DockerClient, what: str, **kw: Any) -> None:
    """docker build with apt reaching the machine's mirror (host network); a failure is a
    ContainerError with the build log's tail."""
    try:
        client.images.build(network_mode="host", rm=True, forcerm=True, **kw)
    except docker.errors.BuildError as exc:
        lines = "".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)
        raise ContainerError(f"{what} image build failed: {exc}\n{lines[-3000:]}") from exc


def ensure_images(client: docker.DockerClient, bases: Sequence[Base] = (BOOKWORM,)) -> None:
    """Base and node image of each base (the base image cached, the node image rebuilt)."""
    work = tempfile.mkdtemp(prefix="galera-sst-images.")
    try:
        for base in bases:
            ensure_base_image(client, work, base)
            build_node_image(client, work, base)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def mtr_image(base: Base) -> str:
    """The node image with the base's own mariadb-test (MariaDB's regression suite)."""
    return f"galera-sst/mtr:{base.suite}"


def ensure_mtr_image(client: docker.DockerClient, base: Base) -> None:
    """mtr_image(base): FROM the node image, with the Debian release's mariadb-test from the
    machine's mirror (built, nothing pulled; rebuilt on the node image each run)."""
    dockerfile = (
        f"FROM {base.node_image}\n"
        "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
        "--no-install-recommends mariadb-test && rm -rf /var/lib/apt/lists/*\n"
        'CMD ["sleep", "infinity"]\n'
    )
    _build(client, "mtr", fileobj=io.BytesIO(dockerfile.encode()), tag=mtr_image(base))


@dataclass(frozen=True)
class MtrRun:
    """scripts/mtr.sh's summary line, read back (docs/testing.md, MariaDB's own tests)."""

    scripts: str
    tests: int
    passed: int
    failed: int
    skipped: int
    seconds: int
    status: int
    output: str

    @classmethod
    def parse(cls, output: str, status: int) -> MtrRun:
        m = re.search(
            r"^\[mtr\] scripts=(\S+) tests=(\d+) passed=(\d+) failed=(\d+) "
            r"skipped=(\d+) seconds=(\d+) mtr_status=\d+$",
            output,
            re.M,
        )
        if m is None:
            raise ContainerError(f"no summary line from scripts/mtr.sh:\n{output[-3000:]}")
        tests, passed, failed, skipped, seconds = (int(g) for g in m.groups()[1:])
        return cls(m.group(1), tests, passed, failed, skipped, seconds, status, output)


def run_mtr(engine: Engine, base: Base, args: Sequence[str]) -> MtrRun:
    """scripts/mtr.sh with args in a container of mtr_image(base) (built here), our programs
    under the stock names (GALERA_SST_BIN), on the container's loopback only; the container
    is removed afterwards."""
    assert engine.client is not None
    ensure_mtr_image(engine.client, base)
    box = engine.client.containers.run(
        mtr_image(base),
        ["sleep", "infinity"],
        detach=True,
        init=True,
        network_mode="none",
        # IPv6 on the container's own loopback: the suite's IPv6 tests (galera_sst_rsync_
        # recv_auto) skip as "No IPv6" when docker leaves it disabled.
        sysctls={"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.lo.disable_ipv6": "0"},
        labels={LABEL: "mtr"},
    )
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(os.path.join(ROOT, "scripts", "mtr.sh"), arcname="mtr.sh")
        box.put_archive("/usr/local/lib", buf.getvalue())
        res = box.exec_run(
            ["bash", "/usr/local/lib/mtr.sh", *args],
            environment={"GALERA_SST_BIN": "/opt/galera-sst/bin"},
        )
        out = res.output if isinstance(res.output, bytes) else b"".join(res.output)
        return MtrRun.parse(
            out.decode("utf-8", "replace"), -1 if res.exit_code is None else res.exit_code
        )
    finally:
        box.remove(force=True, v=True)


# -- nodes -----------------------------------------------------------------------------------


@dataclass
class Certs:
    """PEM texts: the CA and, per host name, a certificate naming only that DNS name."""

    ca: bytes
    leaves: dict[str, tuple[bytes, bytes]]

    @classmethod
    def for_hosts(cls, hosts: Sequence[str]) -> Certs:
        ca = labmod.make_ca("galera-sst container CA")
        leaves = {}
        for h in hosts:
            cert, key = labmod.make_leaf(ca, h, dns=[h])
            leaves[h] = (labmod.pem_cert(cert), labmod.pem_key(key))
        return cls(labmod.pem_cert(ca[0]), leaves)


@dataclass
class CNode:
    """One Galera node in its own container; `name` is its host name on the network."""

    cluster: Cluster
    name: str
    sst_method: str
    container: DockerContainer
    sst_options: dict[str, str] = field(default_factory=dict)
    mysqld_options: dict[str, str] = field(default_factory=dict)
    provider_options: str = ""
    base: Base = BOOKWORM

    @property
    def raw(self) -> Container:
        return self.container.get_wrapped_container()

    def exec(self, argv: Sequence[str], *, check: bool = True, timeout: float = 120) -> str:
        """Run argv in the container (bounded by coreutils timeout); stdout+stderr text."""
        code, out = self.raw.exec_run(["timeout", "-s", "KILL", str(int(timeout)), *argv])
        text = out.decode("utf-8", "replace") if isinstance(out, bytes) else ""
        if check and code != 0:
            raise ContainerError(f"{self.name}: {shlex.join(argv)} exited {code}: {text[-1500:]}")
        return text

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write a file owned by mysql, through the engine's archive upload."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(os.path.basename(path))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        self.raw.put_archive(os.path.dirname(path), buf.getvalue())
        self.exec(["chown", "mysql:mysql", path])

    def cnf_text(self) -> str:
        peers = ",".join(n.name for n in self.cluster.nodes)
        lines = [
            "[mysqld]",
            f"datadir={DATADIR}",
            f"socket={SOCKET}",
            f"pid-file={PIDFILE}",
            f"log-error={ERROR_LOG}",
            "user=mysql",
            "binlog_format=ROW",
            "innodb_autoinc_lock_mode=2",
            "innodb_buffer_pool_size=32M",
            "innodb_log_file_size=16M",
            "wsrep_on=ON",
            "wsrep_provider=/usr/lib/galera/libgalera_smm.so",
            f"wsrep_cluster_address=gcomm://{peers}",
            f"wsrep_cluster_name={self.cluster.tag}",
            f"wsrep_node_address={self.name}",
            f"wsrep_node_name={self.name}",
            'wsrep_provider_options="gcache.size=32M'
            + (f";{self.provider_options}" if self.provider_options else "")
            + '"',
            f"wsrep_sst_method={self.sst_method}",
            # mysqldump: mariadbd receives the dump itself, on its SQL port.
            f"wsrep_sst_receive_address={self.name}:"
            f"{SQL_PORT if self.sst_method == 'mysqldump' else SST_PORT}",
            f"wsrep_sst_auth=sst:{SST_PASSWORD}",
        ]
        lines += [f"{k}={v}" for k, v in self.mysqld_options.items()]
        lines += ["[sst]", *(f"{k}={v}" for k, v in self.sst_options.items())]
        return "\n".join(lines) + "\n"

    def write_cnf(self) -> None:
        self.put(CNF, self.cnf_text().encode())

    def tls(self, mode: str) -> None:
        """[sst] ssl-mode with this node's DNS-name certificate."""
        self.sst_options.update(
            {
                "ssl-mode": mode,
                "ssl-ca": "/etc/galera/ca.pem",
                "ssl-cert": "/etc/galera/cert.pem",
                "ssl-key": "/etc/galera/key.pem",
            }
        )

    def start(self, *, new_cluster: bool = False) -> None:
        """mariadbd in the background of the container (tini reaps it)."""
        self.write_cnf()
        argv = ["mariadbd", f"--defaults-file={CNF}"]
        if new_cluster:
            argv.append("--wsrep-new-cluster")
        self.raw.exec_run(argv, detach=True)

    def server_pid(self) -> int | None:
        out = self.exec(["pgrep", "-x", "mariadbd"], check=False).split()
        return int(out[0]) if out else None

    def sql(self, statement: str, *, timeout: float = 120) -> str:
        return self.exec(
            ["mariadb", "-S", SOCKET, "-uroot", "-N", "-B", "-e", statement], timeout=timeout
        )

    def status_var(self, name: str) -> str:
        try:
            out = self.sql(f"SHOW STATUS LIKE '{name}'", timeout=10)
        except ContainerError:
            return ""
        parts = out.split()
        return parts[1] if len(parts) > 1 else ""

    def wait_synced(self, timeout: float = SYNC_TIMEOUT) -> float:
        t0 = time.monotonic()

        def synced() -> bool:
            if self.status_var("wsrep_local_state_comment") == "Synced":
                return True
            if self.server_pid() is None and time.monotonic() - t0 > 5:
                raise ContainerError(f"{self.name}'s mariadbd exited:\n{self.log_tail(40)}")
            return False

        wait_for(synced, timeout, f"{self.name} to be Synced")
        return time.monotonic() - t0

    def wait_exit(self, timeout: float) -> bool:
        """True once mariadbd has exited within timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server_pid() is None:
                return True
            time.sleep(0.5)
        return False

    def stop(self, timeout: float = 90) -> None:
        pid = self.server_pid()
        if pid is None:
            return
        self.exec(["kill", "-TERM", str(pid)], check=False)
        if not self.wait_exit(timeout):
            self.exec(["kill", "-KILL", str(pid)], check=False)
            self.wait_exit(10)

    def log_text(self) -> str:
        return self.exec(["cat", ERROR_LOG], check=False)

    def log_tail(self, lines: int = 60) -> str:
        return self.exec(["tail", "-n", str(lines), ERROR_LOG], check=False)

    def clear_log(self) -> None:
        self.exec(["truncate", "-s", "0", ERROR_LOG])

    def sst_errors(self) -> list[str]:
        """Our scripts' ERROR lines in the error log."""
        return [ln for ln in self.log_text().splitlines() if ln.startswith("WSREP_SST: [ERROR]")]

    def leftovers(self) -> list[str]:
        """Processes in the container besides its init, sleep and mariadbd (and ps itself)."""
        out = self.exec(["ps", "-eo", "pid=,args="], check=False)
        # ... and the soak's write load (integration/soak_writer.py), which is no SST debris.
        keep = (
            "sleep infinity",
            "docker-init",
            "mariadbd",
            "ps -eo",
            "timeout -s KILL",
            "soak-writer",
        )
        return [
            ln.strip() for ln in out.splitlines() if ln.strip() and not any(k in ln for k in keep)
        ]

    def sst_port_open(self) -> bool:
        return bool(self.exec(["ss", "-Hltn", f"sport = :{SST_PORT}"], check=False).strip())

    def status_file(self) -> dict[str, Any] | None:
        out = self.exec(["galera-sst", "status", "--datadir", DATADIR, "--json"], check=False)
        try:
            data: dict[str, Any] = json.loads(out)
        except ValueError:
            return None
        return data

    def init_datadir(self) -> None:
        self.write_cnf()
        self.exec(
            ["mariadb-install-db", f"--defaults-file={CNF}", "--user=mysql", "--skip-test-db"],
            timeout=180,
        )

    @contextlib.contextmanager
    def standalone(self) -> Iterator[CNode]:
        """mariadbd on this node's datadir without Galera, to seed it or prove it starts."""
        saved = dict(self.mysqld_options)
        self.mysqld_options.update({"wsrep_on": "OFF", "wsrep_provider": "none"})
        try:
            self.start()

            def ready() -> bool:
                try:
                    self.sql("SELECT 1", timeout=5)
                except ContainerError:
                    return False
                return True

            wait_for(ready, 60, f"{self.name} to accept connections standalone")
            yield self
        finally:
            self.stop()
            self.mysqld_options = saved
            self.write_cnf()

    def create_sst_user(self) -> None:
        pw = labmod.sql_string(SST_PASSWORD)
        self.sql(
            f"CREATE USER IF NOT EXISTS 'sst'@'localhost' IDENTIFIED BY {pw};"
            # The least mariadb-backup needs (MariaDB's SST documentation).
            "GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO 'sst'@'localhost'"
        )


class Cluster:
    """Nodes on one internal bridge network of their own; all removed by close(). bases
    gives each node's Debian (and so its MariaDB), BOOKWORM for all by default."""

    def __init__(
        self,
        engine: Engine,
        hosts: Sequence[str],
        method: str,
        bases: Sequence[Base] | Base = BOOKWORM,
    ) -> None:
        self.engine = engine
        self.tag = f"gsst-{uuid.uuid4().hex[:8]}"
        self.certs = Certs.for_hosts(hosts)
        self.network = Network(
            docker_network_kw={"internal": True, "labels": {LABEL: self.tag}}
        ).create()
        self.nodes: list[CNode] = []
        per_node = [bases] * len(hosts) if isinstance(bases, Base) else list(bases)
        try:
            for h, b in zip(hosts, per_node):
                self.nodes.append(self._container(h, method, b))
        except BaseException:
            self.close()
            raise

    def _container(self, host: str, method: str, base: Base) -> CNode:
        c = (
            DockerContainer(base.node_image, init=True, hostname=host, labels={LABEL: self.tag})
            .with_name(f"{self.tag}-{host}-{base.suite}")
            .with_network(self.network)
            .with_network_aliases(host)
        )
        c.start()
        node = CNode(self, host, method, c, base=base)
        node.exec(["mkdir", "-p", "/etc/galera", "/var/lib/galera", "/run/galera"])
        node.exec(["chown", "mysql:mysql", "/etc/galera", "/var/lib/galera", "/run/galera"])
        cert, key = self.certs.leaves[host]
        node.put("/etc/galera/ca.pem", self.certs.ca)
        node.put("/etc/galera/cert.pem", cert)
        node.put("/etc/galera/key.pem", key, 0o600)
        node.init_datadir()
        return node

    def replace(self, node: CNode, base: Base) -> CNode:
        """node's host, upgraded: its server stopped, its container removed, and a new one on
        base under the same host name with a fresh datadir (so it rejoins by a full SST).
        The new node keeps node's method and options; it is not started."""
        node.stop()
        node.container.stop()
        new = self._container(node.name, node.sst_method, base)
        new.sst_options = dict(node.sst_options)
        new.mysqld_options = dict(node.mysqld_options)
        new.provider_options = node.provider_options
        self.nodes[self.nodes.index(node)] = new
        return new

    def _docker_network(self) -> Any:
        assert self.engine.client is not None
        return self.engine.client.networks.get(self.network.name)

    def disconnect(self, node: CNode) -> None:
        """Take node's host off the network (its only one besides loopback)."""
        self._docker_network().disconnect(node.raw.id)

    def reconnect(self, node: CNode) -> None:
        self._docker_network().connect(node.raw.id, aliases=[node.name])

    def close(self) -> None:
        for n in self.nodes:
            with contextlib.suppress(docker.errors.DockerException):
                n.container.stop()
        with contextlib.suppress(docker.errors.DockerException):
            self.network.remove()


def _conforms(node: CNode) -> GaleraNode:
    """A type check (mypy): a container node offers the node protocol."""
    return node
