"""The node runner behind `galera-sst demo`: real mariadbd + Galera nodes on 127.0.0.N.

Nodes live under one base directory (reachable by the mysql user), listen on 127.0.0.N,
and run as the mysql user. Everything started here is stopped by its PID. The demo's SST
user gets a random password and only the privileges an SST needs (`SST_GRANTS`). The test
harness (`testsupport/lab.py`, not shipped) builds its clusters on these classes.
"""

from __future__ import annotations

import contextlib
import datetime
import grp
import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sst.process.runner import kill_tree, run_capture

GALERA = "/usr/lib/galera/libgalera_smm.so"
SYNC_TIMEOUT = 180.0
ASK_EVERY = 0.3  # Node.wait_synced: how often the server is asked (a client start each)
LOG_EVERY = 0.02  # and how often its error log is looked at
SYNCED_LINE = "Synchronized with group"  # mariadbd's WSREP note on reaching Synced
MAX_NODES = 254  # nodes live on 127.0.0.N
SST_USER = "sst"
# What an SST needs of the donor's SST account, and no more. mariadb-backup (MariaDB 10.11,
# "Authentication and Privileges"): RELOAD and LOCK TABLES (FLUSH TABLES WITH READ LOCK,
# BACKUP STAGE), PROCESS (SHOW ENGINE INNODB STATUS), BINLOG MONITOR (SHOW MASTER STATUS),
# REPLICA MONITOR (its --slave-info/--galera-info queries), CONNECTION ADMIN (--kill-long-*).
# The rsync methods need none (mariadbd flushes for them); `galera-sst check` only logs in.
SST_PRIVILEGES = "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICA MONITOR, CONNECTION ADMIN"


class NodeError(RuntimeError):
    """A node did not start, join or answer; the message carries its error log tail."""


def sql_string(text: str) -> str:
    """text as an SQL string literal (quotes doubled, backslashes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def cnf_value(text: str) -> str:
    """text as an option-file value that my_print_defaults and mariadbd read back unchanged:
    double-quoted, with backslash and double quote escaped, when it holds a comment sign,
    a quote, a backslash or white space at either end; as it is otherwise, and also when the
    caller already wrapped it in double quotes (wsrep_provider_options)."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text
    if any(c in text for c in "#'\"\\") or text != text.strip():
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def scripts_dir() -> str:
    """Where pip put our entry points (wsrep_sst_py_*), to go first on mariadbd's PATH."""
    d = sysconfig.get_path("scripts")
    if not os.path.exists(os.path.join(d, "wsrep_sst_py_rsync")):
        raise NodeError(f"wsrep_sst_py_rsync is not installed in {d}; run scripts/setup.sh")
    return d


def chown(path: str, user: str) -> None:
    """chown path (not recursive) to user:user's group."""
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def chown_tree(path: str, user: str) -> None:
    """chown -R path to user."""
    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for n in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)


def free_port_block(host: str, count: int, start: int = 20000, stop: int = 60000) -> int:
    """A base port such that base..base+count-1 are free on host."""
    span = stop - start - count  # every base tried stays in [start, stop - count)
    base = start + (os.getpid() * 37) % min(span, 20000)
    for _ in range(200):
        ok = True
        for p in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind((host, p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
        base = start + (base + count * 7 - start) % span
    raise NodeError("no free block of ports")


class _LogWatch:
    """The new lines of a growing log, read from where it ended when the watch began (from
    the start again if it shrank: a new log)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.at = self._size()
        self.tail = b""  # a line not yet ended

    def _size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    def says(self, text: str) -> bool:
        """Whether a line ended since the last call contains text (reads nothing when the
        log has not grown)."""
        size = self._size()
        if size == self.at:
            return False
        if size < self.at:
            self.at, self.tail = 0, b""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.at)
                data = f.read(size - self.at)
        except OSError:
            return False
        self.at += len(data)
        *lines, self.tail = (self.tail + data).split(b"\n")
        return any(text.encode() in ln for ln in lines)


@dataclass(frozen=True)
class NodeNames:
    """The names of a node's datadir, tmpdir and option file inside its directory (tests
    give them white space and shell metacharacters)."""

    data: str = "data"
    tmp: str = "tmp"
    cnf: str = "my.cnf"


@dataclass
class Node:
    """One mariadbd with Galera, configured under its own directory."""

    name: str
    index: int
    ip: str
    directory: str
    ports: dict[str, int]
    user: str = "mysql"
    sst_method: str = "py_rsync"
    sst_options: dict[str, str] = field(default_factory=dict)
    mysqld_options: dict[str, str] = field(default_factory=dict)
    path_prefix: str = ""  # prepended to mariadbd's PATH (where our scripts are)
    netns: str = ""  # a network namespace to run mariadbd in (`ip netns exec`)
    provider_options: str = ""  # appended to wsrep_provider_options ("pc.weight=2;...")
    names: NodeNames = NodeNames()
    sst_auth: str = ""  # wsrep_sst_auth ("user:password"); none when empty
    proc: subprocess.Popen[bytes] | None = None

    @property
    def galera_name(self) -> str:
        """wsrep_node_name. Galera matches wsrep_sst_donor as a prefix, so "node2" would
        also pick node26; the suffix makes every name a prefix of no other."""
        return f"{self.name}.lab"

    @property
    def datadir(self) -> str:
        """The node's datadir."""
        return os.path.join(self.directory, self.names.data)

    @property
    def tmpdir(self) -> str:
        """The node's tmpdir (also its scripts' TMPDIR)."""
        return os.path.join(self.directory, self.names.tmp)

    @property
    def socket(self) -> str:
        """The node's unix socket."""
        return os.path.join(self.directory, "mysqld.sock")

    @property
    def error_log(self) -> str:
        """The node's error log."""
        return os.path.join(self.directory, "error.log")

    @property
    def cnf(self) -> str:
        """The node's option file."""
        return os.path.join(self.directory, self.names.cnf)

    def write_cnf(self, cluster: Sequence[Node]) -> None:
        """Write my.cnf: everything inside the node directory, nothing from /etc/mysql."""
        peers = ",".join(f"{n.ip}:{n.ports['galera']}" for n in cluster)
        lines = [
            "[mysqld]",
            f"datadir={cnf_value(self.datadir)}",
            f"socket={cnf_value(self.socket)}",
            f"pid-file={cnf_value(os.path.join(self.directory, 'mysqld.pid'))}",
            f"port={self.ports['mysql']}",
            f"bind-address={self.ip}",
            f"log-error={cnf_value(self.error_log)}",
            f"tmpdir={cnf_value(self.tmpdir)}",
            f"user={self.user}",
            "binlog_format=ROW",
            "default_storage_engine=InnoDB",
            "innodb_autoinc_lock_mode=2",
            "innodb_buffer_pool_size=64M",
            "innodb_log_file_size=32M",
            "skip-name-resolve",
            "wsrep_on=ON",
            f"wsrep_provider={GALERA}",
            f"wsrep_cluster_address=gcomm://{peers}",
            "wsrep_cluster_name=galera-sst-lab",
            f"wsrep_node_address={self.ip}",
            f"wsrep_node_name={self.galera_name}",
            f'wsrep_provider_options="gmcast.listen_addr=tcp://{self.ip}:{self.ports["galera"]};'
            f"ist.recv_addr={self.ip}:{self.ports['ist']};gcache.size=32M"
            + (f";{self.provider_options}" if self.provider_options else "")
            + '"',
            f"wsrep_sst_method={self.sst_method}",
            # mysqldump: mariadbd receives the dump itself, on its SQL port.
            f"wsrep_sst_receive_address={self.ip}:"
            f"{self.ports['mysql' if self.sst_method == 'mysqldump' else 'sst']}",
        ]
        if self.sst_auth:
            lines.append(f"wsrep_sst_auth={cnf_value(self.sst_auth)}")
        lines += [f"{k}={cnf_value(v)}" for k, v in self.mysqld_options.items()]
        lines.append("[sst]")
        lines += [f"{k}={cnf_value(v)}" for k, v in self.sst_options.items()]
        with open(self.cnf, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.cnf, 0o644)

    def start(self, *, new_cluster: bool = False) -> None:
        """Start mariadbd (as root, dropping to self.user) in its own session."""
        if self.proc is not None and self.proc.poll() is None:
            raise NodeError(f"{self.name} is already running")
        env = {
            "PATH": ":".join(
                p
                for p in (
                    self.path_prefix,
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                )
                if p
            ),
            "TMPDIR": self.tmpdir,
            "LANG": "C.UTF-8",
        }
        args = ["/usr/sbin/mariadbd", f"--defaults-file={self.cnf}"]
        if new_cluster:
            args.append("--wsrep-new-cluster")
        if self.netns:  # `ip netns exec` execs mariadbd: the PID stays mariadbd's
            args = ["ip", "netns", "exec", self.netns, *args]
        out = open(os.path.join(self.directory, "mariadbd.out"), "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                close_fds=True,
                start_new_session=True,
            )
        finally:
            out.close()

    def sql(self, statement: str, *, timeout: float = 60.0) -> str:
        """Run SQL as root over the socket; returns tab-separated output."""
        res = run_capture(
            (
                "mariadb",
                "--no-defaults",
                "--default-character-set=utf8mb4",
                "-uroot",
                f"-S{self.socket}",
                "-N",
                "-B",
                "-e",
                statement,
            ),
            timeout=timeout,
        )
        if res.returncode != 0:
            raise NodeError(f"{self.name}: SQL failed: {res.stderr.strip()}")
        return res.stdout

    def status(self, name: str) -> str:
        """A global status value, or '' if the server does not answer."""
        try:
            out = self.sql(f"SHOW GLOBAL STATUS LIKE '{name}'", timeout=10)
        except NodeError:
            return ""
        parts = out.strip().split("\t")
        return parts[1] if len(parts) == 2 else ""

    def status_var(self, name: str) -> str:
        """status(name), under the name container test nodes use for it."""
        return self.status(name)

    def write_back(self, timeout: float = 300.0) -> None:
        """Bring the node's InnoDB files to rest: purge of all history first (it rewrites
        the pages of rows just inserted or changed, and undo pages in the system tablespace),
        then every dirty page written (innodb_max_dirty_pages_pct=0 until none is dirty; the
        low-water mark goes to 0 with it), both settings restored after. Until something
        writes again, a file on disk is what a copy of it now holds. NodeError after timeout."""
        self.sql("SET GLOBAL innodb_max_purge_lag_wait=0", timeout=timeout)
        pct, lwm = self.sql(
            "SELECT @@GLOBAL.innodb_max_dirty_pages_pct, @@GLOBAL.innodb_max_dirty_pages_pct_lwm"
        ).split()
        self.sql("SET GLOBAL innodb_max_dirty_pages_pct=0")
        try:
            deadline = time.monotonic() + timeout
            while self.status("Innodb_buffer_pool_pages_dirty") != "0":
                if time.monotonic() > deadline:
                    raise NodeError(f"{self.name}: dirty pages still unwritten after {timeout:g} s")
                time.sleep(0.2)
        finally:
            self.sql(
                f"SET GLOBAL innodb_max_dirty_pages_pct={float(pct)}, "
                f"innodb_max_dirty_pages_pct_lwm={float(lwm)}"  # in this order: lwm <= pct
            )

    def wait_synced(self, timeout: float = SYNC_TIMEOUT) -> float:
        """Wait until wsrep_local_state_comment is Synced; returns the seconds it took. The
        server is asked every ASK_EVERY seconds, and at once when its error log gains a
        line saying it synced (watched every LOG_EVERY seconds: a stat, no client start),
        so that the time returned is within LOG_EVERY and one client's run of the change,
        not within ASK_EVERY."""
        t0 = time.monotonic()
        watch = _LogWatch(self.error_log)
        ask_at = t0
        while time.monotonic() - t0 < timeout:
            if self.proc is None or self.proc.poll() is not None:
                raise NodeError(
                    f"{self.name}: mariadbd exited "
                    f"({None if self.proc is None else self.proc.returncode})\n" + self.log_tail()
                )
            if watch.says(SYNCED_LINE):
                ask_at = 0.0  # now, and until the server has been asked
            if time.monotonic() >= ask_at and os.path.exists(self.socket):
                if self.status("wsrep_local_state_comment") == "Synced":
                    return time.monotonic() - t0
                ask_at = time.monotonic() + ASK_EVERY
            time.sleep(LOG_EVERY)
        raise NodeError(f"{self.name}: not Synced after {timeout:g} s\n" + self.log_tail())

    def wait_exit(self, timeout: float = 120.0) -> int | None:
        """Wait for mariadbd to exit by itself; returns its status (None on timeout)."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM mariadbd by its PID, wait, then kill its tree if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_tree(self.proc.pid)
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL mariadbd (and its SST children) by PID."""
        if self.proc is not None and self.proc.poll() is None:
            kill_tree(self.proc.pid, grace=0.1)
            self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the error log."""
        try:
            with open(self.error_log, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no error log)"

    def log_text(self) -> str:
        """The whole error log."""
        try:
            with open(self.error_log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class Cluster:
    """A base directory, a datadir template and nodes on 127.0.0.N (up to MAX_NODES)."""

    def __init__(
        self,
        base: str = "",
        user: str = "mysql",
        *,
        path_prefix: str = "",
        names: NodeNames = NodeNames(),
        sst_auth: str = "",
        prefix: str = "galera-sst-lab.",
    ) -> None:
        parent = base or "/var/tmp"
        os.makedirs(parent, exist_ok=True)
        self.base = tempfile.mkdtemp(prefix=prefix, dir=parent)
        os.chmod(self.base, 0o755)
        self.user = user
        self.names = names
        self.sst_auth = sst_auth
        self.path_prefix = path_prefix or scripts_dir()
        self.nodes: list[Node] = []
        self._template = ""
        self._count = 0
        # Node i uses base + 10 i .. + 3 on 127.0.0.i, for i up to MAX_NODES.
        self._port_base = free_port_block("127.0.0.1", 10 * (MAX_NODES + 1))

    def template(self) -> str:
        """An initialised datadir (mariadb-install-db once; nodes get copies). The shell
        script mariadb-install-db splits paths at white space, so it works in a plainly
        named directory, which is then moved into the base."""
        if not self._template:
            plain = tempfile.mkdtemp(prefix="galera-sst-template.", dir="/var/tmp")
            tpl = os.path.join(plain, "template")
            os.makedirs(tpl)
            res = run_capture(
                (
                    "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={tpl}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ),
                timeout=180,
            )
            if res.returncode != 0:
                shutil.rmtree(plain, ignore_errors=True)
                raise NodeError(f"mariadb-install-db failed: {res.stderr[-2000:]}")
            self._template = shutil.move(tpl, os.path.join(self.base, "template"))
            os.rmdir(plain)
        return self._template

    def add_node(
        self,
        *,
        user: str | None = None,
        sst_method: str = "py_rsync",
        sst_options: dict[str, str] | None = None,
        mysqld_options: dict[str, str] | None = None,
        empty: bool = False,
        ip: str = "",
        netns: str = "",
    ) -> Node:
        """Create a node directory with an initialised datadir owned by the node's user
        (on 127.0.0.N unless ip is given; in the network namespace netns if given)."""
        self._count += 1
        i = self._count
        if i > MAX_NODES:
            raise NodeError(f"a lab has room for {MAX_NODES} nodes (127.0.0.1-{MAX_NODES})")
        name = f"node{i}"
        ip = ip or f"127.0.0.{i}"
        d = os.path.join(self.base, name)
        owner = user or self.user
        b = self._port_base + 10 * i
        node = Node(
            name,
            i,
            ip,
            d,
            {"mysql": b, "galera": b + 1, "ist": b + 2, "sst": b + 3},
            user=owner,
            sst_method=sst_method,
            sst_options=dict(sst_options or {}),
            mysqld_options=dict(mysqld_options or {}),
            path_prefix=self.path_prefix,
            netns=netns,
            names=self.names,
            sst_auth=self.sst_auth,
        )
        os.makedirs(node.tmpdir)
        if empty:
            os.makedirs(node.datadir)
        else:
            shutil.copytree(self.template(), node.datadir, symlinks=True)
        self.nodes.append(node)
        chown_tree(d, owner)
        log_path = node.error_log
        open(log_path, "a").close()
        chown(log_path, owner)
        return node

    def remove_node(self, node: Node, *, keep_files: bool = False) -> None:
        """Stop a node and take it out of the cluster membership (and off the disk)."""
        node.stop()
        self.nodes.remove(node)
        if not keep_files:
            shutil.rmtree(node.directory, ignore_errors=True)

    def configure(self) -> None:
        """(Re)write every node's my.cnf with the current membership."""
        for n in self.nodes:
            n.write_cnf(self.nodes)

    def bootstrap(self, node: Node, *grants: str) -> None:
        """Start node as a new cluster and run the statements that create its SST user."""
        self.configure()
        node.start(new_cluster=True)
        node.wait_synced()
        if grants:
            node.sql(";".join(grants))

    def join(self, node: Node, timeout: float = SYNC_TIMEOUT) -> float:
        """Start a node that joins the cluster; returns seconds until Synced."""
        self.configure()
        node.start()
        return node.wait_synced(timeout)

    def close(self, keep: bool = False) -> None:
        """Stop every node by its PID; remove the base directory unless keep."""
        for n in self.nodes:
            n.stop()
        if not keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sst_grants(password: str, user: str = SST_USER, host: str = "localhost") -> tuple[str, ...]:
    """The statements that create the SST account with only SST_PRIVILEGES."""
    account = f"{sql_string(user)}@{sql_string(host)}"
    return (
        f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {sql_string(password)}",
        f"GRANT {SST_PRIVILEGES} ON *.* TO {account}",
    )


# ---------------------------------------------------------------------------------------
# the demo's certificates: one CA, one certificate per node (CN, DNS and IP SANs)
# ---------------------------------------------------------------------------------------


def subject_name(cn: str) -> x509.Name:
    """An X.509 name holding only the CN."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write data to path and give it mode."""
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def demo_certs(
    directory: str, nodes: dict[str, str], owner: str = "mysql"
) -> tuple[str, dict[str, tuple[str, str]]]:
    """Write a CA and, per node name -> IP, a certificate and key (the key owned by owner,
    mode 0600) into directory; returns (ca path, {name: (cert path, key path)})."""
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(subject_name("galera-sst demo CA"))
        .issuer_name(subject_name("galera-sst demo CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = os.path.join(directory, "ca.pem")
    write_file(ca_path, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    out: dict[str, tuple[str, str]] = {}
    for name, ip in nodes.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(ip)), x509.DNSName(name)]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        c = os.path.join(directory, f"{name}-cert.pem")
        k = os.path.join(directory, f"{name}-key.pem")
        write_file(c, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        write_file(
            k,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            0o600,
        )
        chown(k, owner)
        out[name] = (c, k)
    return ca_path, out


def tls_options(ca: str, pair: tuple[str, str], mode: str) -> dict[str, str]:
    """[sst] options for a TLS mode with the CA and a (cert, key) pair."""
    if mode == "DISABLED":
        return {}
    return {"ssl-mode": mode, "ssl-ca": ca, "ssl-cert": pair[0], "ssl-key": pair[1]}


def cluster_tls(ca: str, pair: tuple[str, str], node: Node) -> dict[str, str]:
    """[mysqld] options for TLS on client connections and on replication (docs/tls.md)."""
    cert, key = pair
    return {
        "ssl_cert": cert,
        "ssl_key": key,
        "ssl_ca": ca,
        "wsrep_provider_options": f'"gmcast.listen_addr=tcp://{node.ip}:{node.ports["galera"]};'
        f"ist.recv_addr={node.ip}:{node.ports['ist']};gcache.size=32M;"
        f'socket.ssl_cert={cert};socket.ssl_key={key};socket.ssl_ca={ca}"',
    }


def _load(node: Node, rows: int, tables: int = 4) -> None:
    stmts = ["CREATE DATABASE IF NOT EXISTS demo"]
    for t in range(tables):
        stmts.append(
            f"CREATE TABLE demo.t{t} (id INT PRIMARY KEY, v VARCHAR(64), d DECIMAL(12,3), "
            "b BLOB, ts DATETIME) ENGINE=InnoDB"
        )
        stmts.append(
            f"INSERT INTO demo.t{t} SELECT seq, MD5(seq), seq/7, REPEAT(CHAR(65+seq%26), 200),"
            f" '2026-01-01' + INTERVAL seq SECOND FROM demo.seq_1_to_{rows}"
        )
    node.sql(";".join(stmts), timeout=600)


def _checksums(node: Node) -> dict[str, str]:
    names = node.sql(
        "SELECT CONCAT(table_schema,'.',table_name) FROM information_schema.tables "
        "WHERE table_type='BASE TABLE' AND table_schema='demo' ORDER BY 1"
    ).split()
    if not names:
        return {}
    res = node.sql("CHECKSUM TABLE " + ",".join(names), timeout=600)
    return dict(line.partition("\t")[::2] for line in res.strip().splitlines())


def datadir_bytes(path: str) -> int:
    """Total size of the files under path."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def demo(*, method: str, ssl_mode: str, rows: int, keep: bool, base: str) -> int:
    """Bootstrap a donor, load data, join a second node through our SST, report."""
    if os.geteuid() != 0:
        print(
            "galera-sst demo must run as root (it starts mariadbd as the mysql user)",
            file=sys.stderr,
        )
        return 1
    password = secrets.token_urlsafe(24)
    cl = Cluster(base, sst_auth=f"{SST_USER}:{password}", prefix="galera-sst-demo.")
    ok = False
    try:
        certdir = os.path.join(cl.base, "certs")
        ca, pairs = demo_certs(certdir, {"node1": "127.0.0.1", "node2": "127.0.0.2"})
        os.chown(certdir, 0, grp.getgrnam("mysql").gr_gid)
        donor = cl.add_node(
            sst_method=method, sst_options=tls_options(ca, pairs["node1"], ssl_mode)
        )
        joiner = cl.add_node(
            sst_method=method, sst_options=tls_options(ca, pairs["node2"], ssl_mode)
        )
        if ssl_mode != "DISABLED":  # the whole walk-through: replication and clients too
            for n in (donor, joiner):
                n.mysqld_options.update(cluster_tls(ca, pairs[n.name], n))
        print(f"[demo] bootstrapping {donor.name} on {donor.ip} ...", flush=True)
        cl.bootstrap(donor, *sst_grants(password))
        _load(donor, rows)
        size = datadir_bytes(donor.datadir)
        print(
            f"[demo] {donor.name}: loaded {rows} rows x 4 tables, datadir {size / 2**20:.1f} MiB",
            flush=True,
        )
        print(
            f"[demo] starting {joiner.name} on {joiner.ip}: SST method {method}, "
            f"TLS {ssl_mode} ...",
            flush=True,
        )
        seconds = cl.join(joiner)
        a, b = _checksums(donor), _checksums(joiner)
        ok = bool(a) and a == b
        errors = [ln for ln in joiner.log_text().splitlines() if "WSREP_SST: [ERROR]" in ln]
        cipher = joiner.sql("SHOW SESSION STATUS LIKE 'Ssl_cipher'").split("\t")[-1].strip()
        print(
            f"[demo] method={method} tls={ssl_mode} bytes={size} seconds={seconds:.1f} "
            f"tables={len(a)} data_equal={'yes' if ok else 'NO'} sst_errors={len(errors)}"
        )
        if ssl_mode != "DISABLED":
            print(
                f"[demo] replication TLS: socket.ssl_* on both nodes; client TLS: "
                f"have_ssl={joiner.sql('SELECT @@have_ssl').strip()}"
                f"{', cipher ' + cipher if cipher else ''}"
            )
        if not ok:
            print(f"[demo] donor: {a}\n[demo] joiner: {b}", file=sys.stderr)
        return 0 if ok and not errors else 1
    except NodeError as exc:
        print(f"[demo] FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        cl.close(keep)
        if keep:
            print(f"[demo] node directories kept in {cl.base}")
