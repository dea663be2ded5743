"""The demo's SST account: a password of its own, only the privileges an SST needs."""

from __future__ import annotations

from sst import demo


def test_demo_sst_account_has_only_sst_privileges() -> None:
    grants = demo.sst_grants("pw'x")
    assert grants[1] == f"GRANT {demo.SST_PRIVILEGES} ON *.* TO 'sst'@'localhost'"
    assert "ALL" not in demo.SST_PRIVILEGES and "GRANT OPTION" not in " ".join(grants)
    assert "'pw''x'" in grants[0]
