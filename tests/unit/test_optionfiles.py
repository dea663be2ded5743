"""Option provenance: file, line and group, following !include and !includedir."""

from __future__ import annotations

from pathlib import Path

from sst import optionfiles


def test_sources_follow_includes_and_last_wins(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "50-server.cnf").write_text("[mysqld]\nssl_cert = /a.pem\n")
    (conf_d / "60-galera.cnf").write_text(
        "[galera]\nwsrep_sst_method=py_rsync\n[sst]\n# comment\nssl-mode=VERIFY_CA\n"
    )
    (conf_d / "notes.txt").write_text("[sst]\nssl-mode=ignored\n")
    extra = tmp_path / "extra.cnf"
    extra.write_text("[sst]\nloose-ssl_mode = REQUIRED\n")
    main = tmp_path / "my.cnf"
    main.write_text(f"[client]\nssl-cert=/client.pem\n!includedir {conf_d}\n!include {extra}\n")
    found = optionfiles.sources(
        optionfiles.search_files(str(main), ""), (*optionfiles.MYSQLD_GROUPS, "sst")
    )
    assert found["ssl-cert"] == (str(conf_d / "50-server.cnf"), 2, "mysqld")
    assert found["wsrep-sst-method"] == (str(conf_d / "60-galera.cnf"), 2, "galera")
    assert found["ssl-mode"] == (str(extra), 2, "sst")


def test_search_order() -> None:
    assert optionfiles.search_files("/x.cnf", "/e.cnf") == ["/x.cnf", "/e.cnf"]
    files = optionfiles.search_files("", "/e.cnf")
    assert files[:2] == ["/etc/my.cnf", "/etc/mysql/my.cnf"] and files[2] == "/e.cnf"
