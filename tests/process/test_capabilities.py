"""Capabilities probed, not assumed (issue 17): the socat options our mariabackup method
passes are chosen from what the installed socat accepts (`socat -hhh`, once per run)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sst.errors import ConfigError
from sst.tools import socat as sc
from testsupport.process import fake_tool, pair_bases, pair_certs, pair_tls, run_ist

HELP = """socat by Gerhard Rieger and contributors - see www.dest-unreach.org
      openssl-commonname\tgroups=OPENSSL\tphase=SPECIFIC\ttype=STRING
      commonname is an alias for openssl-commonname
      cn is an alias for openssl-commonname
      openssl-no-sni\tgroups=OPENSSL\tphase=SPECIFIC\ttype=BOOL
      no-sni is an alias for openssl-no-sni
      verify is an alias for openssl-verify
"""


@pytest.fixture
def probed() -> Iterator[None]:
    saved = dict(sc._accepted)
    yield
    sc._accepted.update(saved)


def test_parse_options() -> None:
    names = sc.parse_options(HELP)
    assert {"commonname", "cn", "openssl-commonname", "no-sni", "verify"} <= names
    assert "socat" not in names


def test_options_follow_the_probe(probed: None) -> None:
    tls = sc.SocatTLS(cert="c.pem", key="k.pem", cafile="ca.pem", commonname="")
    sc._accepted["options"] = sc.parse_options(HELP)
    argv = sc.listen_argv("socat", port=1, bind="", ipv6=False, tls=tls)
    assert "commonname=" in argv[5]
    kept = [ln for ln in HELP.splitlines() if "commonname" not in ln and "sni" not in ln]
    without = "\n".join(kept)
    sc._accepted["options"] = sc.parse_options(without)
    argv = sc.listen_argv("socat", port=1, bind="", ipv6=False, tls=tls)
    assert "commonname" not in argv[5]  # the listener checks no name by default anyway
    plain = sc.SocatTLS("c", "k", verify=False, commonname="")
    connect = sc.connect_argv("socat", host="h", port=1, ipv6=False, tls=plain)
    assert "no-sni" not in connect[-1] and "commonname" not in connect[-1]
    with pytest.raises(ConfigError, match="no 'commonname' option"):
        sc.listen_argv(
            "socat", port=1, bind="", ipv6=False, tls=sc.SocatTLS("c", "k", commonname="node1")
        )


def test_probe_reads_the_installed_socat(probed: None) -> None:
    names = sc.probe("/usr/bin/socat")
    assert "commonname" in names and "openssl-verify" in names and sc.accepts("commonname")


def test_joiner_with_a_socat_that_rejects_commonname(
    tmp_path: Path, parent: subprocess.Popen[bytes], fakebin: Path
) -> None:
    """A socat build without `commonname`: a VERIFY_CA mariabackup IST still works."""
    fake_tool(
        fakebin,
        "socat",
        'if [ "$1" = -hhh ]; then /usr/bin/socat -hhh | grep -v commonname; exit 0; fi\n'
        'for a in "$@"; do case "$a" in *commonname*)\n'
        '  echo "socat E unknown option \\"commonname\\"" >&2; exit 1;; esac; done\n'
        'exec /usr/bin/socat "$@"',
    )
    c = pair_certs(tmp_path)
    bases = pair_bases(tmp_path, {n: pair_tls(c, n, "VERIFY_CA") for n in ("j", "d")})
    jerr, _, _ = run_ist("mariabackup", bases, parent.pid, path_prefix=str(fakebin))
    assert "mariabackup IST completed on joiner" in jerr
