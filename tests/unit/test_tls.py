"""Pre-flight certificate checks: each refusal names the file and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from sst import net, tls
from sst.config import TLSFiles
from sst.errors import TLSError
from testsupport import certs, lab


@pytest.fixture
def ca() -> certs.Pair:
    return lab.make_ca()


def files(
    tmp: Path, ca: certs.Pair, leaf: certs.Pair, *, chain: tuple[object, ...] = ()
) -> TLSFiles:
    cert = certs.write(tmp, "leaf.pem", leaf[0], *chain)  # type: ignore[arg-type]
    return TLSFiles(
        ca=certs.write(tmp, "ca.pem", ca[0]),
        cert=cert,
        key=certs.write_key(tmp, "leaf.key", leaf[1]),
    )


def test_good_pair(tmp_path: Path, ca: certs.Pair) -> None:
    f = files(tmp_path, ca, lab.make_leaf(ca, "node2", ips=["127.0.0.2"]))
    out = tls.check(f, role="joiner", need_ca=True)
    assert out.cn == "node2"


def test_wrong_ca(tmp_path: Path, ca: certs.Pair) -> None:
    other = lab.make_ca("other")
    f = files(tmp_path, ca, lab.make_leaf(other, "node2"))
    with pytest.raises(TLSError, match="does not chain to the CA") as e:
        tls.check(f, role="joiner", need_ca=True)
    assert f.cert in e.value.message and e.value.code == 22


def test_expired_and_not_yet_valid(tmp_path: Path, ca: certs.Pair) -> None:
    f = files(tmp_path, ca, lab.make_leaf(ca, "n", not_before_days=-10, days=-1))
    with pytest.raises(TLSError, match="expired on"):
        tls.check(f, role="donor", need_ca=True)
    f = files(tmp_path, ca, lab.make_leaf(ca, "n", not_before_days=2, days=10))
    with pytest.raises(TLSError, match="not valid before"):
        tls.check(f, role="donor", need_ca=True)


def test_key_mismatch(tmp_path: Path, ca: certs.Pair) -> None:
    f = files(tmp_path, ca, lab.make_leaf(ca, "n"))
    other_key = certs.write_key(tmp_path, "other.key", lab.make_leaf(ca, "x")[1])
    with pytest.raises(TLSError, match="do not match") as e:
        tls.check(TLSFiles(f.ca, "", f.cert, other_key), role="donor", need_ca=True)
    assert other_key in e.value.message


def test_encrypted_key(tmp_path: Path, ca: certs.Pair) -> None:
    leaf = lab.make_leaf(ca, "n")
    f = files(tmp_path, ca, leaf)
    key = certs.write_key(tmp_path, "enc.key", leaf[1], b"pass")
    with pytest.raises(TLSError, match="encrypted"):
        tls.check(TLSFiles(f.ca, "", f.cert, key), role="donor", need_ca=False)


def test_missing_files_and_garbage(tmp_path: Path, ca: certs.Pair) -> None:
    f = files(tmp_path, ca, lab.make_leaf(ca, "n"))
    with pytest.raises(TLSError, match="file not found"):
        tls.check(TLSFiles(f.ca, "", str(tmp_path / "nope.pem"), f.key), role="donor", need_ca=True)
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(TLSError, match="no PEM certificate"):
        tls.check(TLSFiles(str(junk), "", f.cert, f.key), role="donor", need_ca=True)
    with pytest.raises(TLSError, match="no CA configured"):
        tls.check(TLSFiles("", "", f.cert, f.key), role="donor", need_ca=True)


def test_intermediate_bundled_after_leaf(tmp_path: Path, ca: certs.Pair) -> None:
    inter = certs.intermediate(ca)
    leaf = lab.make_leaf(inter, "node3")
    f = files(tmp_path, ca, leaf, chain=(inter[0],))
    assert tls.check(f, role="joiner", need_ca=True).cn == "node3"
    # Without the intermediate the chain is incomplete.
    f2 = files(tmp_path, ca, leaf)
    with pytest.raises(TLSError, match="bundle intermediates after the leaf"):
        tls.check(f2, role="joiner", need_ca=True)


def test_intermediate_in_wrong_order(tmp_path: Path, ca: certs.Pair) -> None:
    inter = certs.intermediate(ca)
    leaf = lab.make_leaf(inter, "node3")
    cert = certs.write(tmp_path, "wrong.pem", inter[0], leaf[0])
    key = certs.write_key(tmp_path, "leaf.key", leaf[1])
    with pytest.raises(TLSError, match="must come first, then the intermediates"):
        tls.check(
            TLSFiles(certs.write(tmp_path, "ca.pem", ca[0]), "", cert, key),
            role="joiner",
            need_ca=True,
        )


def test_v1_cn_only_certificate_accepted(tmp_path: Path, ca: certs.Pair) -> None:
    leaf = certs.v1_leaf(ca, "MariaDB Server")
    f = files(tmp_path, ca, leaf)
    assert tls.check(f, role="joiner", need_ca=True).cn == "MariaDB Server"


def test_capath(tmp_path: Path, ca: certs.Pair) -> None:
    d = tmp_path / "cadir"
    d.mkdir()
    certs.write(d, "a.pem", ca[0])
    leaf = lab.make_leaf(ca, "n")
    f = TLSFiles(
        "",
        str(d),
        certs.write(tmp_path, "l.pem", leaf[0]),
        certs.write_key(tmp_path, "l.key", leaf[1]),
    )
    assert tls.check(f, role="donor", need_ca=True).cn == "n"


def test_require_identity_names_the_problem(tmp_path: Path, ca: certs.Pair) -> None:
    f = files(tmp_path, ca, lab.make_leaf(ca, "node2", dns=["node2.example.com"]))
    checked = tls.check(f, role="joiner", need_ca=True)
    with pytest.raises(TLSError) as e:
        checked.require_identity("node2", "the donor checks it")
    assert f.cert in e.value.message and "DNS:node2.example.com" in e.value.message
    checked.require_identity("node2.example.com", "ok")


def test_an_address_in_the_cn_alone_is_not_an_identity(tmp_path: Path, ca: certs.Pair) -> None:
    """CN=10.0.0.2 with no SAN: the donor checks an address against IP SANs only."""
    f = files(tmp_path, ca, lab.make_leaf(ca, "10.0.0.2"))
    with pytest.raises(TLSError) as e:
        tls.check(f, role="joiner", need_ca=True).require_identity("10.0.0.2", "announced")
    assert "an address matches IP SANs only): CN=10.0.0.2, no SAN" in e.value.message


def test_identity_rule_picks_ip_or_dns() -> None:
    assert net.is_ip_literal("10.0.0.2") and net.is_ip_literal("::1")
    assert net.is_ip_literal("fd00::2")
    assert not net.is_ip_literal("node2.example.com")
    assert not net.is_ip_literal("[::1]") and not net.is_ip_literal("fe80::1%eth0")
    assert not net.is_ip_literal("10.0.0.2.")  # a DNS name (OpenSSL then refuses it)
