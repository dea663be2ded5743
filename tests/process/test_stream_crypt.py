"""encrypt=1 with the real openssl and mbstream, no mariadbd: the stock script's `-k KEY` and
our `-kfile FILE` make and read the same stream, our scripts talk to stock-form peers both
ways, a wrong key fails on the joiner with a precise error, and the key is in no argv."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from sst import net
from sst.tools import openssl as ossl
from testsupport.leaks import watching
from testsupport.process import (
    UUID,
    donor_args,
    error_lines,
    free_port,
    joiner_args,
    mbstream_of,
    pair_bases,
    start_script,
)

KEY = "4FA92C5873672E20FB163A0BCB2BB4A4"
ALGO = "aes-256-ctr"


def kdf() -> tuple[str, ...]:
    """The key derivation flags stock adds for this machine's openssl."""
    res = subprocess.run(["openssl", "enc", "-help"], capture_output=True, text=True, check=False)
    return ossl.enc_kdf(res.stdout + res.stderr)


def stock_enc(algo: str, key: str, *, decrypt: bool) -> list[str]:
    """The stock script's ecmd: `openssl enc -ALGO KDF -k KEY [-d]`."""
    return ["openssl", "enc", f"-{algo}", *kdf(), "-k", key, *(["-d"] if decrypt else [])]


def run(argv: list[str] | tuple[str, ...], data: bytes) -> bytes:
    return subprocess.run(argv, input=data, capture_output=True, check=True, timeout=30).stdout


@pytest.mark.parametrize("algo", ["aes-256-ctr", "aes-128-cbc"])
@pytest.mark.parametrize("newline", [True, False])
def test_k_and_kfile_read_the_same_key(tmp_path: Path, algo: str, newline: bool) -> None:
    """Our key file (the key and a newline) or an operator's (maybe without one): a stream
    made with stock's -k decrypts with our -kfile, and the other way round."""
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + ("\n" if newline else ""))
    data = bytes(range(256)) * 300
    ours_enc = ossl.enc_argv("openssl", algo, kdf(), str(keyfile), decrypt=False)
    ours_dec = ossl.enc_argv("openssl", algo, kdf(), str(keyfile), decrypt=True)
    stock_made = run(stock_enc(algo, KEY, decrypt=False), data)
    assert stock_made.startswith(b"Salted__") and data not in stock_made
    assert run(ours_dec, stock_made) == data
    ours_made = run(ours_enc, data)
    assert ours_made != stock_made  # a fresh salt each time
    assert run(stock_enc(algo, KEY, decrypt=True), ours_made) == data
    wrong = subprocess.run(
        stock_enc(algo, KEY[:-1] + "5", decrypt=True),
        input=ours_made,
        capture_output=True,
        check=False,
    )
    assert wrong.stdout != data


def enc_opts(key: str = KEY, **more: str) -> dict[str, str]:
    return {"encrypt": "1", "encrypt-algo": ALGO, "encrypt-key": key, **more}


def leftovers(*marks: str) -> list[str]:
    """Processes whose command line holds one of marks."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(m in cmd for m in marks) and "pytest" not in cmd:
            out.append(f"{p.info['pid']}: {cmd}")
    return out


def test_ist_ours_to_ours_with_no_key_in_any_argv(
    tmp_path: Path, parent: subprocess.Popen[bytes]
) -> None:
    bases = pair_bases(tmp_path, {"j": enc_opts(), "d": enc_opts()})
    port = free_port()
    with watching("no-password-in-this-test") as watch:
        watch.secrets.add(KEY)
        js = start_script("py_mariabackup", joiner_args(bases["j"], port, parent.pid))
        auth, _, address = js.readline()[6:].rpartition("@")
        assert address.endswith("/galera-sst-gate/1")
        ds = start_script(
            "py_mariabackup",
            donor_args(bases["d"], address, bypass=True),
            env={"WSREP_SST_OPT_REMOTE_AUTH": auth},
        )
        assert ds.readline() == "continue"
        assert ds.readline() == f"done {UUID}:5"
        assert ds.wait() == 0
        assert js.readline() == f"{UUID}:5 0"
        assert js.wait() == 0
    assert watch.scripts_seen >= 2 and watch.hits == []
    for err in (js.stderr(), ds.stderr()):
        warnings = [ln for ln in err.splitlines() if "encrypt=1" in ln and "[WARNING]" in ln]
        assert len(warnings) == 1, err
        assert (
            "neither the peer nor the stream is authenticated" in warnings[0]
            and "prefer TLS" in warnings[0]
        )
        assert KEY not in err
    assert not net.port_in_use(port, "127.0.0.1")


def test_wrong_key_fails_on_the_joiner_precisely(
    tmp_path: Path, parent: subprocess.Popen[bytes]
) -> None:
    keyfile = tmp_path / "joiner.key"
    keyfile.write_text("not the donor's key\n")
    keyfile.chmod(0o600)
    opts = {"encrypt": "1", "encrypt-algo": ALGO, "encrypt-key-file": str(keyfile)}
    bases = pair_bases(tmp_path, {"j": opts, "d": enc_opts()})
    port = free_port()
    js = start_script("py_mariabackup", joiner_args(bases["j"], port, parent.pid))
    auth, _, address = js.readline()[6:].rpartition("@")
    ds = start_script(
        "py_mariabackup",
        donor_args(bases["d"], address, bypass=True),
        env={"WSREP_SST_OPT_REMOTE_AUTH": auth},
    )
    assert ds.readline() == "continue"
    assert ds.readline() == ""  # no `done`
    assert ds.wait() == 32
    assert js.readline() == ""
    assert js.wait() == 32
    errors = error_lines(js.stderr())
    assert len(errors) == 1, errors
    # openssl or mbstream fails first (the machine's timing), either way this line:
    assert re.search(
        r"receiving the donor's state files \(stage 1\): the stream could not be decrypted "
        r"\((openssl could not decrypt it|mbstream found no stream in openssl's output)\): "
        r"wrong encrypt-key or encrypt-algo\?",
        errors[0],
    ), errors[0]
    derrors = error_lines(ds.stderr())
    assert len(derrors) == 1 and "did not acknowledge" in derrors[0]
    assert not net.port_in_use(port, "127.0.0.1")
    deadline = time.monotonic() + 5
    while leftovers(str(keyfile), f"TCP-LISTEN:{port}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(str(keyfile), f"TCP-LISTEN:{port}") == []


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (
            {"encrypt-key-file": "/nonexistent/key"},
            "encrypt-key-file '/nonexistent/key' cannot be read: No such file or directory",
        ),
        (
            {"encrypt-key": KEY, "encrypt-algo": "aes-256-gcm"},
            "encrypt-algo=aes-256-gcm: not a cipher this openssl's enc supports",
        ),
    ],
)
def test_joiner_refuses_before_listening(
    tmp_path: Path, parent: subprocess.Popen[bytes], opts: dict[str, str], message: str
) -> None:
    bases = pair_bases(tmp_path, {"j": {"encrypt": "1", "encrypt-algo": ALGO, **opts}})
    port = free_port()
    js = start_script("py_mariabackup", joiner_args(bases["j"], port, parent.pid))
    assert js.readline() == ""  # no `ready`
    assert js.wait() == 22
    errors = error_lines(js.stderr())
    assert len(errors) == 1 and message in errors[0], errors


def connect(port: int, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the joiner never listened"
            time.sleep(0.05)


def test_stock_form_donor_to_our_joiner(tmp_path: Path, parent: subprocess.Popen[bytes]) -> None:
    """What a stock donor sends for IST (the state files through stock's `openssl enc -k`)
    reaches our joiner under the stock name."""
    bases = pair_bases(tmp_path, {"j": enc_opts()})
    port = free_port()
    js = start_script("mariabackup", joiner_args(bases["j"], port, parent.pid))
    auth, _, address = js.readline()[6:].rpartition("@")
    assert address.endswith("/galera-sst-gate2/1")  # stage 1 ungated: a stock donor may send
    secret = auth.partition(":")[2]
    plain = mbstream_of(
        tmp_path / "state",
        {
            "xtrabackup_galera_info": f"{UUID}:7 0\nsecret {secret}\n".encode(),
            "xtrabackup_ist": b"1\n",
        },
    )
    stream = run(stock_enc(ALGO, KEY, decrypt=False), plain)
    with connect(port, time.monotonic() + 10) as s:
        s.sendall(stream)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    assert js.readline() == f"{UUID}:7 0"
    assert js.wait() == 0, js.stderr()
    assert not net.port_in_use(port, "127.0.0.1")


def test_our_donor_to_a_stock_form_joiner(tmp_path: Path) -> None:
    """Our donor (IST) to a joiner announcing itself as stock does: what arrives is stock's
    format, decrypted with stock's `openssl enc -d -k KEY`."""
    bases = pair_bases(tmp_path, {"d": enc_opts()})
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    got: list[bytes] = []

    def accept() -> None:
        conn, _ = srv.accept()
        with conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            got.append(data)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    ds = start_script(
        "py_mariabackup",
        donor_args(bases["d"], f"127.0.0.1:{port}/xtrabackup_sst//1", bypass=True),
        env={"WSREP_SST_OPT_REMOTE_AUTH": "joiner:s3cret"},
    )
    assert ds.readline() == "continue"
    assert ds.readline() == f"done {UUID}:5"
    assert ds.wait() == 0
    t.join(10)
    srv.close()
    assert got and got[0].startswith(b"Salted__")
    out = tmp_path / "out"
    out.mkdir()
    plain = run(stock_enc(ALGO, KEY, decrypt=True), got[0])
    subprocess.run(["mbstream", "-x"], input=plain, cwd=out, check=True, timeout=30)
    info = (out / "xtrabackup_galera_info").read_text()
    assert info.startswith(f"{UUID}:5") and "secret s3cret" in info
    assert (out / "xtrabackup_ist").exists()
