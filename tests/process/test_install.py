"""Drop-in install logic against the real dpkg-divert (on a scratch database) and a fake dpkg
in a scratch bin directory; a failure at any dpkg-divert call leaves everything as before."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from sst import install
from testsupport.process import fake_tool

# The real dpkg-divert on a database of the test's own; call number `fail_at` fails.
DIVERT = """
d="$(dirname "$0")"; n=$(($(cat "$d/calls") + 1)); echo $n > "$d/calls"
if [ "$n" = "$(cat "$d/fail_at")" ]; then echo "injected failure at call $n" >&2; exit 2; fi
exec /usr/bin/dpkg-divert --admindir "$d/admin" "$@"
"""


@pytest.fixture
def env(tmp_path: Path) -> install.Env:
    tools = tmp_path / "tools"
    (tools / "admin").mkdir(parents=True)
    (tools / "admin" / "diversions").write_text("")
    (tools / "calls").write_text("0\n")
    (tools / "fail_at").write_text("0\n")
    fake_tool(tools, "dpkg-divert", DIVERT)
    fake_tool(tools, "dpkg", 'echo "mariadb-server: $2"')
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in install.STOCK:
        p = bindir / f"wsrep_sst_{name}"
        if name == "rsync_wan":  # as Debian ships it (10.11 and 11.8)
            p.symlink_to("wsrep_sst_rsync")
            continue
        p.write_text(f"#!/bin/sh\n# stock {name}\n")
        p.chmod(0o755)
    return install.Env(
        bindir=str(bindir),
        python="/opt/x/python",
        dpkg_divert=str(tools / "dpkg-divert"),
        dpkg=str(tools / "dpkg"),
        require_root=False,
    )


def state(env: install.Env) -> tuple[dict[str, tuple[str, int]], str]:
    """Every file in bindir (content and mode) and dpkg's list of diversions."""
    files = {
        n: (
            f"-> {os.readlink(p)}" if p.is_symlink() else p.read_text(),
            stat.S_IMODE(os.lstat(p).st_mode),
        )
        for n in sorted(os.listdir(env.bindir))
        for p in [Path(env.bindir, n)]
    }
    admin = Path(env.dpkg_divert).parent / "admin"
    listed = subprocess.run(
        ["/usr/bin/dpkg-divert", "--admindir", str(admin), "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return files, "".join(sorted(listed.splitlines(keepends=True)))


def calls(env: install.Env, fail_at: int = 0) -> int:
    tools = Path(env.dpkg_divert).parent
    n = int((tools / "calls").read_text())
    (tools / "calls").write_text("0\n")
    (tools / "fail_at").write_text(f"{fail_at}\n")
    return n


def test_install_twice_then_uninstall_restores(env: install.Env) -> None:
    before = state(env)
    install.install(env, say=lambda _: None)
    after_once = state(env)
    assert "galera-sst" in after_once[1]
    install.install(env, say=lambda _: None)
    assert state(env) == after_once
    assert install.is_ours(os.path.join(env.bindir, "wsrep_sst_mysqldump"))
    assert install.is_ours(os.path.join(env.bindir, "wsrep_sst_xtrabackup-v2"))
    assert after_once[0]["wsrep_sst_rsync" + install.SUFFIX] == before[0]["wsrep_sst_rsync"]
    wan = "wsrep_sst_rsync_wan"
    assert after_once[0][wan + install.SUFFIX] == before[0][wan] == ("-> wsrep_sst_rsync", 0o777)
    assert install.is_ours(os.path.join(env.bindir, wan))
    install.uninstall(env, say=lambda _: None)
    assert state(env) == before
    install.uninstall(env, say=lambda _: None)  # idempotent
    assert state(env) == before


def test_install_fails_at_any_call_and_changes_nothing(env: install.Env) -> None:
    before = state(env)
    install.install(env, say=lambda _: None)
    total = calls(env)
    install.uninstall(env, say=lambda _: None)
    calls(env)
    assert total >= 2 * len(install.STOCK)
    for n in range(1, total + 1):
        calls(env, fail_at=n)
        with pytest.raises(install.InstallError, match=f"injected failure at call {n}"):
            install.install(env, say=lambda _: None)
        assert state(env) == before, f"install failing at dpkg-divert call {n}"


def test_uninstall_fails_at_any_call_and_changes_nothing(env: install.Env) -> None:
    install.install(env, say=lambda _: None)
    installed = state(env)
    calls(env)
    install.uninstall(env, say=lambda _: None)
    total = calls(env)
    install.install(env, say=lambda _: None)
    for n in range(1, total + 1):
        calls(env, fail_at=n)
        with pytest.raises(install.InstallError, match=f"injected failure at call {n}"):
            install.uninstall(env, say=lambda _: None)
        assert state(env) == installed, f"uninstall failing at dpkg-divert call {n}"


def test_a_failed_rollback_says_what_stayed_changed(env: install.Env) -> None:
    """Fail the last diversion and every call after it (the rollback's own dpkg-divert
    --remove calls): the error names what could not be undone."""
    before = state(env)
    install.install(env, say=lambda _: None)
    total = calls(env)
    install.uninstall(env, say=lambda _: None)
    calls(env)
    fail = Path(env.dpkg_divert).parent / "fail_at"
    body = (
        Path(env.dpkg_divert)
        .read_text()
        .replace('= "$(cat "$d/fail_at")"', '-ge "$(cat "$d/fail_at")"')
    )
    Path(env.dpkg_divert).write_text(body)
    fail.write_text(f"{total}\n")
    with pytest.raises(install.InstallError, match="rolling back failed too, still changed: ") as e:
        install.install(env, say=lambda _: None)
    assert "divert " in e.value.message
    assert state(env) != before


def test_refuses_foreign_diversion(env: install.Env) -> None:
    path = os.path.join(env.bindir, "wsrep_sst_rsync")
    subprocess.run(
        [
            env.dpkg_divert,
            "--package",
            "someone-else",
            "--no-rename",
            "--divert",
            path + ".x",
            "--add",
            path,
        ],
        check=True,
        capture_output=True,
    )
    with pytest.raises(install.InstallError, match="diverted by package 'someone-else'"):
        install.install(env, say=lambda _: None)
    assert not install.is_ours(os.path.join(env.bindir, "wsrep_sst_mariabackup"))


def test_refuses_missing_stock_file_and_foreign_alias(env: install.Env) -> None:
    before = state(env)
    os.unlink(os.path.join(env.bindir, "wsrep_sst_backup"))
    with pytest.raises(install.InstallError, match="not where dpkg says"):
        install.install(env, say=lambda _: None)
    Path(env.bindir, "wsrep_sst_backup").write_text("#!/bin/sh\n# stock backup\n")
    Path(env.bindir, "wsrep_sst_backup").chmod(0o755)
    Path(env.bindir, "wsrep_sst_xtrabackup-v2").write_text("someone's script\n")
    with pytest.raises(install.InstallError, match="is not galera-sst's"):
        install.install(env, say=lambda _: None)
    os.unlink(os.path.join(env.bindir, "wsrep_sst_xtrabackup-v2"))
    assert state(env) == before  # checks run before any change


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


@pytest.mark.parametrize("command", ["install", "uninstall"])
def test_a_file_step_failing_at_any_point_changes_nothing(
    env: install.Env, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """A full disk (or any error) at the n-th file write or removal, for every n."""
    if command == "uninstall":
        install.install(env, say=lambda _: None)
    before = state(env)
    real = install._put
    count = {"n": 0, "fail": 0}

    def put(path: str, saved: install.Saved) -> None:
        count["n"] += 1
        if count["n"] == count["fail"]:
            raise OSError(28, "No space left on device", path)
        real(path, saved)

    monkeypatch.setattr(install, "_put", put)
    run = getattr(install, command)
    run(env, say=lambda _: None)
    total = count["n"]
    (install.uninstall if command == "install" else install.install)(env, say=lambda _: None)
    assert state(env) == before
    for n in range(1, total + 1):
        count.update(n=0, fail=n)
        with pytest.raises(install.InstallError, match="No space left on device"):
            run(env, say=lambda _: None)
        assert state(env) == before, f"{command} failing at file step {n}"
