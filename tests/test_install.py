"""Drop-in install logic against fake dpkg tools in a scratch bin directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sst import install
from tests.conftest import fake_tool

FAKE_DIVERT = r"""
db="$(dirname "$0")/diversions"; touch "$db"
case "$1" in
--listpackage) grep "^$2 " "$db" | cut -d' ' -f2; exit 0;;
--package) pkg="$2"; shift 2; shift; divert="$2"; op="$3"; path="$4"
  if [ "$op" = --add ]; then mv "$path" "$divert"; echo "$path $pkg" >> "$db"
  else mv "$divert" "$path"; grep -v "^$path " "$db" > "$db.n"; mv "$db.n" "$db"; fi;;
esac
"""


@pytest.fixture
def env(tmp_path: Path) -> install.Env:
    tools = tmp_path / "tools"
    tools.mkdir()
    fake_tool(tools, "dpkg-divert", FAKE_DIVERT)
    fake_tool(tools, "dpkg", 'echo "mariadb-server: $2"')
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in install.STOCK:
        (bindir / f"wsrep_sst_{name}").write_text(f"stock {name}\n")
    return install.Env(
        bindir=str(bindir),
        python="/opt/x/python",
        dpkg_divert=str(tools / "dpkg-divert"),
        dpkg=str(tools / "dpkg"),
        require_root=False,
    )


def contents(d: str) -> dict[str, str]:
    return {n: Path(d, n).read_text() for n in sorted(os.listdir(d))}


def test_install_twice_then_uninstall_restores(env: install.Env) -> None:
    before = contents(env.bindir)
    install.install(env, say=lambda _: None)
    after_once = contents(env.bindir)
    install.install(env, say=lambda _: None)
    assert contents(env.bindir) == after_once
    assert install.is_ours(os.path.join(env.bindir, "wsrep_sst_mysqldump"))
    assert install.is_ours(os.path.join(env.bindir, "wsrep_sst_xtrabackup-v2"))
    assert after_once["wsrep_sst_rsync" + install.SUFFIX] == "stock rsync\n"
    install.uninstall(env, say=lambda _: None)
    assert contents(env.bindir) == before
    install.uninstall(env, say=lambda _: None)  # idempotent
    assert contents(env.bindir) == before


def test_refuses_foreign_diversion(env: install.Env) -> None:
    db = Path(env.dpkg_divert).parent / "diversions"
    db.write_text(os.path.join(env.bindir, "wsrep_sst_rsync") + " someone-else\n")
    with pytest.raises(install.InstallError, match="diverted by package 'someone-else'"):
        install.install(env, say=lambda _: None)
    assert not install.is_ours(os.path.join(env.bindir, "wsrep_sst_mariabackup"))


def test_refuses_missing_stock_file_and_foreign_alias(env: install.Env) -> None:
    os.unlink(os.path.join(env.bindir, "wsrep_sst_backup"))
    with pytest.raises(install.InstallError, match="not where dpkg says"):
        install.install(env, say=lambda _: None)
    Path(env.bindir, "wsrep_sst_backup").write_text("stock backup\n")
    Path(env.bindir, "wsrep_sst_xtrabackup-v2").write_text("someone's script\n")
    with pytest.raises(install.InstallError, match="is not galera-sst's"):
        install.install(env, say=lambda _: None)
    # Nothing was diverted: checks run before any change.
    assert not (Path(env.dpkg_divert).parent / "diversions").read_text().strip()


def test_without_dpkg_prints_manual_steps(env: install.Env) -> None:
    e = install.Env(bindir=env.bindir, dpkg_divert="/nonexistent/dpkg-divert", require_root=False)
    with pytest.raises(install.InstallError, match="replace the stock scripts by hand"):
        install.install(e, say=lambda _: None)


def test_refuses_non_root(env: install.Env, monkeypatch: pytest.MonkeyPatch) -> None:
    e = install.Env(bindir=env.bindir, dpkg_divert=env.dpkg_divert, dpkg=env.dpkg)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(install.InstallError, match="run as root"):
        install.install(e, say=lambda _: None)
    with pytest.raises(install.InstallError, match="run as root"):
        install.uninstall(e, say=lambda _: None)
