"""The test cluster, certificate factory and node helpers (not shipped in the wheel).

Built on the product's node runner (`sst.demo`): a Lab is a Cluster whose SST account has a
fixed password and every privilege, plus what only tests need (drop-in nodes, offline
accounts, test data, checksums, TLS options from a CA made here).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sst import demo
from sst.demo import (
    GALERA,
    MAX_NODES,
    SYNC_TIMEOUT,
    Cluster,
    Node,
    NodeNames,
    chown,
    chown_tree,
    cnf_value,
    free_port_block,
    scripts_dir,
    sql_string,
    subject_name,
    write_file,
)
from sst.demo import NodeError as LabError
from testsupport.nodes import GaleraNode, LocalNode

__all__ = [
    "GALERA",
    "MAX_NODES",
    "SYNC_TIMEOUT",
    "CertPaths",
    "GaleraNode",
    "Lab",
    "LabError",
    "LocalNode",
    "Node",
    "NodeNames",
    "chown",
    "chown_tree",
    "cnf_value",
    "free_port_block",
    "scripts_dir",
    "sql_string",
]

DEFAULT_NAMES = NodeNames()
SST_PASSWORD = "sst-Secret'pw"  # a quote on purpose: it must survive every layer
SST_PASSWORD_SQL = "'sst-Secret''pw'"


# ---------------------------------------------------------------------------------------
# certificates
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertPaths:
    """A CA and one key pair per node name."""

    ca: str
    certs: dict[str, tuple[str, str]]  # name -> (cert, key)


def make_ca(
    cn: str = "galera-sst test CA",
    *,
    days: int = 365,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject_name(cn))
        .issuer_name(subject_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    cn: str,
    *,
    ips: Sequence[str] = (),
    dns: Sequence[str] = (),
    days: int = 365,
    not_before_days: float = -1.0,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for cn signed by ca, with the given SANs (none: CN only)."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=not_before_days))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.DNSName(d) for d in dns]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def pem_cert(cert: x509.Certificate) -> bytes:
    """PEM bytes of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM bytes of a key."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_certs(
    directory: str, nodes: dict[str, str], owner: str = "mysql", extra_dns: Sequence[str] = ()
) -> CertPaths:
    """A CA plus, per node name, a certificate with CN=name and SANs IP and DNS name (and
    extra_dns on every certificate)."""
    os.makedirs(directory, exist_ok=True)
    ca = make_ca()
    ca_path = os.path.join(directory, "ca.pem")
    write_file(ca_path, pem_cert(ca[0]))
    out: dict[str, tuple[str, str]] = {}
    for name, ip in nodes.items():
        cert, key = make_leaf(ca, name, ips=[ip], dns=[name, *extra_dns])
        c = os.path.join(directory, f"{name}-cert.pem")
        k = os.path.join(directory, f"{name}-key.pem")
        write_file(c, pem_cert(cert))
        write_file(k, pem_key(key), 0o600)
        chown(k, owner)
        out[name] = (c, k)
    return CertPaths(ca_path, out)


class Lab(Cluster):
    """The test cluster: sst.demo's Cluster with the fixed test SST account (ALL PRIVILEGES,
    which the pairing matrix's stock scripts and mysqldump joiners need) and drop-in nodes."""

    def __init__(
        self,
        base: str = "",
        user: str = "mysql",
        path_prefix: str = "",
        names: NodeNames = DEFAULT_NAMES,
    ) -> None:
        super().__init__(
            base, user, path_prefix=path_prefix, names=names, sst_auth=f"sst:{SST_PASSWORD}"
        )

    def use_ours_under_stock_names(self, node: Node) -> None:
        """Make this node's mariadbd run our scripts under the stock names (drop-in).

        mariadbd always puts "<basedir>/bin" first on the scripts' PATH (it normalises
        basedir to "/usr/", and its "already on PATH" check then misses "/usr/bin"), so the
        node gets a basedir of its own whose bin/ holds ours, as docs/testing.md describes.
        """
        d = os.path.join(node.directory, "bin")
        os.makedirs(d, exist_ok=True)
        node.mysqld_options.update(
            {
                "basedir": node.directory,
                "plugin-dir": "/usr/lib/mysql/plugin",
                "lc-messages-dir": "/usr/share/mysql",
                "character-sets-dir": "/usr/share/mysql/charsets",
            }
        )
        scripts = scripts_dir()
        for stock, ours in (
            ("mariabackup", "py_mariabackup"),
            ("rsync", "py_rsync"),
            ("rsync_wan", "py_rsync_wan"),
            ("mysqldump", "py_rsync"),  # one program: the method comes from the link's name
            ("backup", "py_rsync"),
        ):
            link = os.path.join(d, f"wsrep_sst_{stock}")
            if not os.path.lexists(link):
                os.symlink(os.path.join(scripts, f"wsrep_sst_{ours}"), link)
        node.path_prefix = f"{d}:{scripts}"

    def bootstrap(self, node: Node, *grants: str) -> None:
        """Start node as a new cluster and create the test SST user (or run grants)."""
        super().bootstrap(
            node,
            *(
                grants
                or (
                    f"CREATE USER IF NOT EXISTS 'sst'@'localhost' IDENTIFIED BY {SST_PASSWORD_SQL}",
                    "GRANT ALL PRIVILEGES ON *.* TO 'sst'@'localhost' WITH GRANT OPTION",
                )
            ),
        )

    def create_sst_user_offline(
        self, node: Node, user: str = "sst", password: str = SST_PASSWORD
    ) -> None:
        """An SST account on a stopped node, reachable from other nodes (mysqldump joiners)."""
        if "\n" in user + password:
            raise LabError("--bootstrap reads one statement per line: no newline in credentials")
        account = f"{sql_string(user)}@'%'"
        sql = (  # --bootstrap reads one statement per line
            "FLUSH PRIVILEGES;\n"
            f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {sql_string(password)};\n"
            f"GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION;\n"
        )
        argv = [
            "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={node.datadir}",
            f"--user={node.user}",
            "--bootstrap",
            f"--log-error={os.path.join(node.directory, 'bootstrap.log')}",
        ]
        res = subprocess.run(
            argv, input=sql.encode(), capture_output=True, timeout=120, check=False
        )
        if res.returncode != 0:
            raise LabError(f"bootstrap of the SST user failed: {res.stderr.decode()[-500:]}")


def load_data(node: Node, rows: int, *, database: str = "lab", tables: int = 4) -> None:
    """Create tables of rows each, with a few types worth checksumming."""
    stmts = [f"CREATE DATABASE IF NOT EXISTS {database}"]
    for t in range(tables):
        stmts.append(
            f"CREATE TABLE IF NOT EXISTS {database}.t{t} (id INT PRIMARY KEY, "
            "v VARCHAR(64), d DECIMAL(12,3), b BLOB, ts DATETIME) ENGINE=InnoDB"
        )
        stmts.append(
            f"INSERT INTO {database}.t{t} SELECT seq, MD5(seq), seq/7, REPEAT(CHAR(65+seq%26),"
            f" 200), '2026-01-01' + INTERVAL seq SECOND FROM {database}.seq_1_to_{rows} "
            "ON DUPLICATE KEY UPDATE v=VALUES(v)"
        )
    node.sql(";".join(stmts), timeout=600)


def checksums(node: GaleraNode, databases: Sequence[str] = ()) -> dict[str, str]:
    """CHECKSUM TABLE of every base table outside the system schemas (or of databases)."""
    where = (
        "table_schema NOT IN ('mysql','information_schema','performance_schema','sys')"
        if not databases
        else "table_schema IN (" + ",".join(f"'{d}'" for d in databases) + ")"
    )
    names = node.sql(
        f"SELECT CONCAT(table_schema,'.',table_name) FROM information_schema.tables "
        f"WHERE table_type='BASE TABLE' AND {where} ORDER BY 1"
    ).split()
    out: dict[str, str] = {}
    if names:
        res = node.sql(
            "CHECKSUM TABLE " + ",".join(f"`{n.split('.')[0]}`.`{n.split('.')[1]}`" for n in names),
            timeout=600,
        )
        for line in res.strip().splitlines():
            table, _, value = line.partition("\t")
            out[table] = value
    return out


@contextlib.contextmanager
def lab(base: str = "", keep: bool = False, user: str = "mysql") -> Iterator[Lab]:
    """A Lab that is always closed."""
    lb = Lab(base, user)
    try:
        yield lb
    finally:
        lb.close(keep)


def tls_options(certs: CertPaths, node: str, mode: str) -> dict[str, str]:
    """[sst] options for a TLS mode using the lab's certificates."""
    return demo.tls_options(certs.ca, certs.certs[node], mode)


def cluster_tls(certs: CertPaths, node: Node) -> dict[str, str]:
    """[mysqld] options for TLS on client connections and on replication (docs/tls.md)."""
    return demo.cluster_tls(certs.ca, certs.certs[node.name], node)


def _conforms(node: Node) -> LocalNode:
    """A type check (mypy): the local node offers the whole node protocol."""
    return node
