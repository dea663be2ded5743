"""What tools outside galera-sst grep for and drive (issue 17): the stock scripts' INFO lines
that MariaDB's galera suite and monitoring look for, the suite's MTR_SST_* test hooks, and
mariabackup's log archive (sst-log-archive, sst-log-archive-dir). Process tier: the real
programs under the stock names, without mariadbd."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from sst import logarchive
from testsupport.process import (
    error_lines,
    free_port,
    joiner_args,
    pair_bases,
    pair_certs,
    pair_tls,
    run_ist,
    start_script,
)


def _count(text: str, needle: str) -> int:
    return sum(needle in ln for ln in text.splitlines())


@pytest.mark.parametrize("method", ["rsync", "mariabackup"])
def test_ist_lines_as_stock_under_stock_names(
    tmp_path: Path, parent: subprocess.Popen[bytes], method: str
) -> None:
    """galera_ist_{rsync,mariabackup}_verify_ca grep `<method> IST completed on joiner`;
    galera_sst_rsync_encrypt_* count `Using stunnel for SSL encryption` (one per run);
    the mariabackup ones `Using openssl based encryption with socat: with key and crt`."""
    c = pair_certs(tmp_path)
    bases = pair_bases(tmp_path, {n: pair_tls(c, n, "VERIFY_CA") for n in ("j", "d")})
    jerr, derr, _ = run_ist(method, bases, parent.pid)
    assert error_lines(jerr + derr) == []
    assert _count(jerr, f"WSREP_SST: [INFO] {method} IST completed on joiner") == 1
    assert _count(derr, f"WSREP_SST: [INFO] {method} IST completed on donor") == 1
    tls_line = {
        "rsync": "Using stunnel for SSL encryption: CA: '",
        "mariabackup": "Using openssl based encryption with socat: with key and crt",
    }[method]
    for err in (jerr, derr):
        assert _count(err, tls_line) == 1, err
        assert _count(err, "Verifying peer certificate chain for ssl-mode=VERIFY_CA") == 1
    if method == "rsync":
        assert f"CA: '{c.ca}', CAPATH='', ssl-mode='VERIFY_CA'" in jerr


def test_no_tls_lines_when_tls_is_off(tmp_path: Path, parent: subprocess.Popen[bytes]) -> None:
    bases = pair_bases(tmp_path, {})
    jerr, derr, _ = run_ist("rsync", bases, parent.pid)
    assert "Using stunnel" not in jerr + derr and "Verifying peer" not in jerr + derr
    assert _count(jerr, "rsync IST completed on joiner") == 1


def test_hook_no_stunnel(tmp_path: Path, parent: subprocess.Popen[bytes]) -> None:
    """MTR_SST_SIMULATE_NO_STUNNEL (galera_sst_rsync_missing_stunnel): the joiner refuses
    as stock does without stunnel: exit 2, the stock words, no `ready`."""
    c = pair_certs(tmp_path)
    bases = pair_bases(tmp_path, {"j": pair_tls(c, "j", "REQUIRED")})
    j = start_script(
        "rsync",
        joiner_args(bases["j"], free_port(), parent.pid),
        env={"MTR_SST_SIMULATE_NO_STUNNEL": "1"},
    )
    assert j.readline() == ""
    assert j.wait() == 2
    err = j.stderr()
    assert len(error_lines(err)) == 1
    assert "ssl-mode is set to 'REQUIRED', but the 'stunnel' binary was not found" in err


def test_hook_no_ssl_cert(tmp_path: Path, parent: subprocess.Popen[bytes]) -> None:
    """MTR_SST_SIMULATE_NO_SSL_CERT (galera_sst_mariabackup_missing_ssl): the mariabackup
    joiner behaves as if no certificate and key were set: refuses, stock words, EINVAL."""
    c = pair_certs(tmp_path)
    bases = pair_bases(tmp_path, {"j": pair_tls(c, "j", "REQUIRED")})
    j = start_script(
        "mariabackup",
        joiner_args(bases["j"], free_port(), parent.pid),
        env={"MTR_SST_SIMULATE_NO_SSL_CERT": "1"},
    )
    assert j.readline() == ""
    assert j.wait() == 22
    err = j.stderr()
    assert len(error_lines(err)) == 1
    assert "ssl-mode is set to 'REQUIRED', but no usable SSL" in err


def test_hooks_do_nothing_when_unset_or_empty(
    tmp_path: Path, parent: subprocess.Popen[bytes]
) -> None:
    c = pair_certs(tmp_path)
    bases = pair_bases(tmp_path, {n: pair_tls(c, n, "REQUIRED") for n in ("j", "d")})
    env = {"MTR_SST_SIMULATE_NO_STUNNEL": "", "MTR_SST_JOINER_DELAY": "0"}
    jerr, _, _ = run_ist("rsync", bases, parent.pid, env=env)
    assert "Sleeping" not in jerr


def test_hook_joiner_delay(tmp_path: Path, parent: subprocess.Popen[bytes]) -> None:
    """MTR_SST_JOINER_DELAY=N (galera_vote_joined_*): the joiner sleeps N s before it
    prints the coordinates, and says so as stock."""
    bases = pair_bases(tmp_path, {})
    jerr, _, took = run_ist("rsync", bases, parent.pid, env={"MTR_SST_JOINER_DELAY": "2"})
    assert "Sleeping 2 seconds for MTR test" in jerr
    assert took >= 2


def test_mariabackup_archives_previous_logs(
    tmp_path: Path, parent: subprocess.Popen[bytes]
) -> None:
    """sst-log-archive-dir (galera_sst_mariabackup_logarchive): every run moves the previous
    mariabackup logs there, gzipped, with the stock time stamp."""
    archive = tmp_path / "archive"
    bases = pair_bases(tmp_path, {n: {"sst-log-archive-dir": str(archive)} for n in ("j", "d")})
    for n in ("prepare", "move"):
        (bases["j"] / "data" / f"mariabackup.{n}.log").write_text(f"old {n}\n")
    (bases["d"] / "data" / "mariabackup.backup.log").write_text("old backup\n")
    jerr, derr, _ = run_ist("mariabackup", bases, parent.pid)
    got = sorted(p.name for p in archive.iterdir())
    assert len(got) == 3, got
    for name in got:
        assert name.endswith(".gz")
        kind = name.split(".")[1]
        assert gzip.decompress((archive / name).read_bytes()) == f"old {kind}\n".encode()
    assert not list((bases["j"] / "data").glob("mariabackup.*.log"))
    assert "Moving '" in jerr and "Moving '" in derr


def test_log_archive_off_and_fallback(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    (d / "mariabackup.prepare.log").write_text("x")
    assert logarchive.archive(str(d), "0", str(tmp_path / "a")) == []
    assert (d / "mariabackup.prepare.log").exists() and not (tmp_path / "a").exists()
    blocked = tmp_path / "file"
    blocked.write_text("")
    done = logarchive.archive(str(d), "1", str(blocked / "sub"), now=0.5)
    assert len(done) == 1 and done[0].startswith(str(d / "mariabackup.prepare.log."))
    assert done[0].endswith(".500000000.gz")
    assert not (d / "mariabackup.prepare.log").exists()


def test_archive_dir_is_made_even_with_no_log(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    assert logarchive.archive(str(d), "", str(tmp_path / "a" / "b")) == []
    assert (tmp_path / "a" / "b").is_dir()


def test_stamp_is_stock_date_format() -> None:
    s = logarchive.stamp(86400 * 365 + 0.25)
    assert len(s) == len("1971.01.01-00.00.00.250000000") and s.endswith(".250000000")


def test_archive_dir_of_another_user_is_not_used(tmp_path: Path) -> None:
    """The default archive directory lies in /tmp: one that another user made first (to
    read the logs, or to point it elsewhere) is passed over; the log is archived beside
    itself, and nothing is written into the other user's directory."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "mariabackup.backup.log").write_text("x")
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, 65534, 65534)  # nobody's
    done = logarchive.archive(str(d), "1", str(theirs), now=0.5)
    assert len(done) == 1 and done[0].startswith(str(d / "mariabackup.backup.log."))
    assert list(theirs.iterdir()) == []
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    (d / "mariabackup.backup.log").write_text("y")
    done = logarchive.archive(str(d), "1", str(tmp_path / "link"), now=1.5)
    assert len(done) == 1 and done[0].startswith(str(d))
    assert list(elsewhere.iterdir()) == []
