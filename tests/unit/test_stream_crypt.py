"""encrypt=1 (stock's openssl stream encryption): option validation and the argv built."""

from __future__ import annotations

import pytest

from sst.config import MYSQLD, MariabackupSettings, Options, StreamCrypt, mariabackup_settings
from sst.errors import ConfigError
from sst.methods import mariabackup as mbm
from sst.process.runner import Stage
from sst.request import parse_request
from sst.tools import openssl as ossl

KEY = "4FA92C5873672E20FB163A0BCB2BB4A4"  # MariaDB's galera_sst_mariabackup_encrypt_with_key


def settings(sst: dict[str, str | None], role: str = "joiner") -> MariabackupSettings:
    req = parse_request(
        "wsrep_sst_py_mariabackup", ["--role", role, "--datadir", "/d", "--address", "h"], {}
    )
    return mariabackup_settings(req, Options({MYSQLD: {}, "sst": sst}))


def error(sst: dict[str, str | None]) -> str:
    with pytest.raises(ConfigError) as e:
        settings(sst)
    return e.value.message


def test_encrypt1_as_the_mtr_test_configures_it() -> None:
    s = settings(
        {
            "encrypt": "1",
            "encrypt-format": "openssl",
            "encrypt-algo": "aes-256-ctr",
            "encrypt-key": KEY,
        }
    )
    assert s.crypt == StreamCrypt("aes-256-ctr", KEY, "")
    assert s.plan.files is None and s.plan.encrypt == 1  # no TLS, as stock
    assert "encrypt=1" in s.plan.label
    assert KEY not in repr(s)  # settings may be logged: the key is not in their repr


def test_key_file_only_when_the_key_is_unset() -> None:
    base = {"encrypt": "1", "encrypt-algo": "aes-128-cbc"}
    assert settings({**base, "encrypt-key-file": "/k"}).crypt == StreamCrypt(
        "aes-128-cbc", "", "/k"
    )
    both = settings({**base, "encrypt-key": "abc", "encrypt-key-file": "/k"}).crypt
    assert both == StreamCrypt("aes-128-cbc", "abc", "")  # stock reads the file only without a key


def test_no_crypt_without_encrypt1() -> None:
    assert settings({"encrypt-algo": "aes-256-ctr", "encrypt-key": KEY}).crypt is None


@pytest.mark.parametrize(
    ("sst", "message"),
    [
        (
            {"encrypt-key": KEY},
            "encrypt=1 needs encrypt-algo (an openssl cipher, e.g. aes-256-ctr)",
        ),
        ({"encrypt-algo": "aes-256-ctr"}, "encrypt=1 needs encrypt-key or encrypt-key-file"),
        (
            {"encrypt-algo": "aes-256-ctr", "encrypt-key": KEY, "encrypt-format": "xbcrypt"},
            "encrypt-format=xbcrypt is not supported (it needs the xbcrypt tool, which Debian "
            "does not ship); use encrypt-format=openssl",
        ),
        (
            {"encrypt-algo": "aes-256-ctr", "encrypt-key": KEY, "encrypt-format": "gpg"},
            "encrypt-format='gpg' is not one of openssl, xbcrypt",
        ),
        (
            {"encrypt-algo": "-d", "encrypt-key": KEY},
            "encrypt-algo='-d' is not an openssl cipher name",
        ),
        (
            {"encrypt-algo": "aes-256-ctr", "encrypt-key": "k" * 128},
            "encrypt-key is longer than 127 bytes or holds a line break",
        ),
        (
            {"encrypt-algo": "aes-256-ctr", "encrypt-key": KEY, "ssl-mode": "REQUIRED"},
            "encrypt=1 with ssl-mode=REQUIRED: the stock script then ignores ssl-mode and sends "
            "without TLS; choose one",
        ),
    ],
)
def test_refusals(sst: dict[str, str | None], message: str) -> None:
    msg = error({"encrypt": "1", **sst})
    assert message in msg
    assert KEY not in msg


def test_longest_key_openssl_reads_from_a_file() -> None:
    assert settings({"encrypt": "1", "encrypt-algo": "aes-256-ctr", "encrypt-key": "k" * 127}).crypt


def test_encrypt_values() -> None:
    assert "encrypt=5 is not one of 0, 1, 2, 3, 4" in error({"encrypt": "5"})


@pytest.mark.parametrize(
    ("help_text", "flags"),
    [
        (" -pbkdf2   Use password-based key derivation\n -iter +int\n -md val\n", ("-pbkdf2",)),
        (" -iter +int  Specify the iteration count\n -md val\n", ("-iter", "1")),
        (" -md val   Use specified digest\n", ("-md", "sha256")),
        (" -k val   Passphrase\n -kfile infile\n -mdx\n", ()),
    ],
)
def test_key_derivation_flags_as_stock_picks_them(help_text: str, flags: tuple[str, ...]) -> None:
    assert ossl.enc_kdf(help_text) == flags


def test_enc_argv_has_the_key_file_never_the_key() -> None:
    enc = ossl.enc_argv("/usr/bin/openssl", "aes-256-ctr", ("-pbkdf2",), "/run/k", decrypt=False)
    assert enc == ("/usr/bin/openssl", "enc", "-aes-256-ctr", "-pbkdf2", "-kfile", "/run/k")
    dec = ossl.enc_argv("/usr/bin/openssl", "aes-256-ctr", (), "/run/k", decrypt=True)
    assert dec == ("/usr/bin/openssl", "enc", "-aes-256-ctr", "-kfile", "/run/k", "-d")
    with pytest.raises(ConfigError, match="not an openssl cipher name"):
        ossl.enc_argv("/usr/bin/openssl", "aes -k x", (), "/run/k", decrypt=True)


def test_enc_ciphers() -> None:
    text = "Supported ciphers:\n-aes-128-cbc   -aes-256-ctr\n-bf\n"
    assert ossl.enc_ciphers(text) == {"aes-128-cbc", "aes-256-ctr", "bf"}


def test_stage_order_as_stock() -> None:
    """Stock: mariadb-backup | openssl enc | compressor on the donor, decompressor |
    openssl enc -d | mbstream on the joiner."""
    crypt = (Stage(("openssl", "enc"), name=mbm.CRYPT_NAME),)
    s = settings({"compressor": "zstd -1", "decompressor": "zstd -d"})
    assert [st.name for st in mbm._filters(s, send=True, crypt=crypt)] == [mbm.CRYPT_NAME, "zstd"]
    assert [st.name for st in mbm._filters(s, send=False, crypt=crypt)] == ["zstd", mbm.CRYPT_NAME]
    assert mbm._filters(settings({}), send=False) == []
