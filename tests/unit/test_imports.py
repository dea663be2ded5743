"""A plain SST's start stays light: `cryptography` (some 30 ms of imports) is loaded only
when TLS is configured (sst.tls, imported inside the methods' TLS pre-flight)."""

from __future__ import annotations

import subprocess
import sys

from testsupport.process import ROOT


def _fresh_python(code: str) -> str:
    """Run code in a new interpreter from the checkout; returns what it printed."""
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_a_plain_sst_script_does_not_import_cryptography() -> None:
    loaded = _fresh_python(
        "import sys, sst.cli, sst.methods.common, sst.methods.rsync, sst.methods.mariabackup, "
        "sst.methods.mysqldump; print(sorted(m for m in sys.modules "
        "if m.split('.')[0] == 'cryptography' or m == 'sst.tls'))"
    )
    assert loaded == "[]"


def test_tls_is_importable_and_brings_cryptography() -> None:
    """The other half: the lazy import is the real module (a renamed one fails here)."""
    assert _fresh_python("import sys, sst.tls; print('cryptography' in sys.modules)") == "True"
