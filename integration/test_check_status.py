"""`galera-sst check` and `galera-sst status` against a real node's configuration."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

from sst import demo
from testsupport import lab as labmod
from testsupport.cluster import galera_sst, leftovers, starts_standalone
from testsupport.lab import CertPaths, Lab, Node


def test_check_passes_on_a_configured_donor(lab: Lab, donor: Node, certs: CertPaths) -> None:
    donor.sst_options = labmod.tls_options(certs, donor.name, "VERIFY_IDENTITY")
    donor.write_cnf(lab.nodes)
    res = galera_sst("check", "--method", "py_mariabackup", "--defaults-file", donor.cnf, "--json")
    rows = {r["check"]: r for r in json.loads(res.stdout)}
    assert res.returncode == 0, res.stdout
    assert rows["SST credentials"]["level"] == "pass"
    running = donor.sql("SELECT VERSION()").strip().split("-")[0]  # what the server says
    said = rows["versions"]["detail"]
    assert f"mariadbd {running}," in said and f"mariadb-backup {running}" in said, said
    assert "version mismatch" not in rows
    assert rows["SST certificate (joiner)"]["level"] == "pass"
    assert "TLS VERIFY_IDENTITY" in rows["py_mariabackup options (donor)"]["detail"]
    sources = rows["option sources"]["detail"]
    assert f"ssl-mode in {donor.cnf}:" in sources and "[sst]" in sources
    assert f"wsrep-sst-auth in {donor.cnf}:" in sources and "[mysqld]" in sources


def test_check_names_the_broken_file(lab: Lab, donor: Node, certs: CertPaths) -> None:
    opts = labmod.tls_options(certs, donor.name, "VERIFY_CA")
    opts["ssl-key"] = certs.certs["node254"][1]  # another node's key
    donor.sst_options = opts
    donor.write_cnf(lab.nodes)
    res = galera_sst("check", "--method", "py_rsync", "--defaults-file", donor.cnf)
    assert res.returncode == 1
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("FAIL"))
    assert "do not match" in line and certs.certs["node254"][1] in line
    donor.sst_options = {}
    donor.write_cnf(lab.nodes)


def test_status_after_a_join(lab: Lab, donor: Node) -> None:
    joiner = lab.add_node(sst_method="py_rsync")
    donor.sst_method = "py_rsync"
    donor.sst_options = {}
    lab.join(joiner)
    for node, role in ((joiner, "joiner"), (donor, "donor")):
        res = galera_sst("status", "--datadir", node.datadir, "--json")
        data = json.loads(res.stdout)
        assert res.returncode == 0
        assert (data["state"], data["role"], data["method"]) == ("succeeded", role, "py_rsync")
        assert data["phase"] == "done" and data["exit_code"] == 0
    joiner_state = json.loads(galera_sst("status", "--datadir", joiner.datadir, "--json").stdout)
    assert joiner_state["bytes_done"] > 0  # the daemon lived through the whole transfer


def test_manual_joiner_and_donor(lab: Lab, donor: Node, certs: CertPaths) -> None:
    """Try certificates and the network path without touching a node: a manual joiner
    receives the running donor's state into an empty directory, over VERIFY_IDENTITY."""
    target = os.path.join(lab.base, "manual-target")
    cnf = os.path.join(lab.base, "manual-joiner.cnf")
    with open(cnf, "w", encoding="utf-8") as f:
        f.write(
            "[sst]\n"
            + "".join(
                f"{k}={v}\n"
                for k, v in labmod.tls_options(certs, "node9", "VERIFY_IDENTITY").items()
            )
        )
    donor.sst_options = labmod.tls_options(certs, donor.name, "VERIFY_IDENTITY")
    donor.write_cnf(lab.nodes)
    port = labmod.free_port_block("127.0.0.9", 1)
    j = subprocess.Popen(
        [
            "galera-sst",
            "joiner",
            "--address",
            f"127.0.0.9:{port}",
            "--datadir",
            target,
            "--defaults-file",
            cnf,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert j.stdout is not None
    first = j.stdout.readline()
    assert first.startswith("ready: on the donor, run")
    address = j.stdout.readline().split("--address '")[1].split("'")[0]
    assert address.startswith("node9:") and f"@127.0.0.9:{port}/" in address
    env = {**os.environ, "WSREP_SST_OPT_AUTH": f"sst:{labmod.SST_PASSWORD}"}
    d = subprocess.run(
        [
            "galera-sst",
            "donor",
            "--address",
            address,
            "--datadir",
            donor.datadir,
            "--socket",
            donor.socket,
            "--defaults-file",
            donor.cnf,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert d.returncode == 0, d.stdout + d.stderr
    assert "done: the joiner has the state" in d.stdout
    rest = j.stdout.read()
    assert j.wait(60) == 0, rest + (j.stderr.read() if j.stderr else "")
    assert f"into {target}" in rest
    assert os.path.isdir(os.path.join(target, "lab")) and os.path.exists(
        os.path.join(target, "ibdata1")
    )
    # The received directory starts as a server with the donor's data.
    fresh = lab.add_node(empty=True)
    os.rmdir(fresh.datadir)
    shutil.move(target, fresh.datadir)
    labmod.chown_tree(fresh.datadir, "mysql")
    assert starts_standalone(fresh) == "c4ca4238a0b923820dcc509a6f75849b"  # MD5(1)
    assert leftovers(lab.base) == []
    # Never into a live datadir.
    res = galera_sst("joiner", "--address", "127.0.0.9:1", "--datadir", donor.datadir)
    assert res.returncode == 22 and "is not empty" in res.stderr
    donor.sst_options = {}
    donor.write_cnf(lab.nodes)


def check_rows(
    cnf: str, *, env: dict[str, str] | None = None, method: str = "py_mariabackup"
) -> tuple[int, dict[str, dict[str, str]]]:
    res = subprocess.run(
        [
            shutil.which("galera-sst") or "galera-sst",
            "check",
            "--method",
            method,
            "--defaults-file",
            cnf,
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return res.returncode, {r["check"]: r for r in json.loads(res.stdout)}


def write_variant(
    lab: Lab, donor: Node, name: str, sst: dict[str, str], mysqld: dict[str, str] | None = None
) -> str:
    """A copy of the donor's option file with other [sst] (and [mysqld]) settings."""
    saved = (dict(donor.sst_options), dict(donor.mysqld_options), donor.cnf)
    donor.sst_options, donor.mysqld_options = sst, {**donor.mysqld_options, **(mysqld or {})}
    path = os.path.join(lab.base, f"check-{name}.cnf")
    donor.write_cnf(lab.nodes)
    os.replace(donor.cnf, path)
    donor.sst_options, donor.mysqld_options = saved[0], saved[1]
    donor.write_cnf(lab.nodes)
    return path


def test_check_finds_each_misconfiguration(lab: Lab, donor: Node, certs: CertPaths) -> None:
    good = labmod.tls_options(certs, donor.name, "VERIFY_CA")
    # wrong CA
    other = labmod.make_certs(os.path.join(lab.base, "check-ca"), {"x": "127.0.0.1"})
    code, rows = check_rows(write_variant(lab, donor, "wrong-ca", {**good, "ssl-ca": other.ca}))
    assert code == 1 and "does not chain to the CA" in rows["SST certificate (joiner)"]["detail"]
    # a certificate expiring in 10 days
    ca = labmod.make_ca("check CA")
    ca_path = os.path.join(lab.base, "check-ca.pem")
    demo.write_file(ca_path, labmod.pem_cert(ca[0]))
    leaf = labmod.make_leaf(ca, donor.name, ips=[donor.ip], days=10)
    cert, key = (os.path.join(lab.base, f"soon.{e}") for e in ("pem", "key"))
    demo.write_file(cert, labmod.pem_cert(leaf[0]))
    demo.write_file(key, labmod.pem_key(leaf[1]), 0o600)
    code, rows = check_rows(
        write_variant(
            lab,
            donor,
            "expiring",
            {"ssl-mode": "VERIFY_CA", "ssl-ca": ca_path, "ssl-cert": cert, "ssl-key": key},
        )
    )
    assert rows["SST certificate (donor)"]["level"] == "warn"
    assert "expires in 9 days" in rows["SST certificate (donor)"]["detail"]
    # a missing tool: a PATH without socat
    tooldir = os.path.join(lab.base, "check-tools")
    os.makedirs(tooldir, exist_ok=True)
    for t in ("my_print_defaults", "mariadb-backup", "mbstream", "mariadb", "mariadbd"):
        link = os.path.join(tooldir, t)
        if not os.path.lexists(link):
            os.symlink(shutil.which(t) or t, link)
    code, rows = check_rows(
        write_variant(lab, donor, "tools", good), env={**os.environ, "PATH": tooldir}
    )
    assert code == 1 and rows["tool socat"]["level"] == "fail"
    # a busy SST port
    joiner_cnf = write_variant(lab, donor, "port", good)
    with socket.socket() as s:
        s.bind((donor.ip, donor.ports["sst"]))
        s.listen()
        code, rows = check_rows(joiner_cnf)
    assert code == 1 and "is in use" in rows["SST port"]["detail"]
    # a bad SST password
    code, rows = check_rows(
        write_variant(lab, donor, "pw", good), env={**os.environ, "WSREP_SST_OPT_AUTH": "sst:wrong"}
    )
    assert code == 1 and "cannot log in" in rows["SST credentials"]["detail"]
    # too little disk for a second copy: a datadir on a 4 MiB filesystem holding 3.5 MiB;
    # staging=auto goes in place (a warning), staging=always cannot work (a failure)
    small = os.path.join(lab.base, "check-small")
    os.makedirs(small, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", small], check=True)
    try:
        os.makedirs(os.path.join(small, "data"))
        with open(os.path.join(small, "data", "ibdata1"), "wb") as f:
            f.write(b"\0" * (3 * 2**20 + 2**19))
        on_small = {"datadir": os.path.join(small, "data")}
        _, rows = check_rows(write_variant(lab, donor, "disk", good, on_small))
        code2, rows2 = check_rows(
            write_variant(lab, donor, "disk2", {**good, "staging": "always"}, on_small)
        )
    finally:
        subprocess.run(["umount", small], check=False)
    row = rows["staging policy"]
    assert row["level"] == "warn", rows
    assert row["detail"].startswith("in-place: staging=auto: no room for a second copy"), row
    assert "incoming copy estimated at 3.5 MiB (3670016 bytes)" in row["detail"], row
    row = rows2["staging policy"]
    assert code2 == 1 and row["level"] == "fail" and "does not fit" in row["detail"], rows2


def test_status_shows_a_running_sst(lab: Lab, donor: Node) -> None:
    joiner = lab.add_node(sst_method="py_mariabackup")
    donor.sst_method = "py_mariabackup"
    donor.sst_options = {"rlimit": "20m"}  # a few seconds for the donor's data
    lab.configure()
    joiner.start()
    seen: list[dict[str, object]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(seen) < 2:
        res = galera_sst("status", "--datadir", joiner.datadir, "--json")
        if res.returncode == 0:
            data = json.loads(res.stdout)
            if (
                data["state"] == "running"
                and data["phase"] == "receiving the backup"
                and int(data["bytes_done"]) > 0
            ):
                seen.append(data)
                time.sleep(1.2)
                continue
        time.sleep(0.2)
    assert len(seen) == 2, "no running transfer was seen"
    assert int(seen[1]["bytes_done"]) > int(seen[0]["bytes_done"])  # type: ignore[call-overload]
    human = galera_sst("status", "--datadir", joiner.datadir).stdout
    assert "py_mariabackup joiner" in human
    joiner.wait_synced()
    donor.sst_options = {}
