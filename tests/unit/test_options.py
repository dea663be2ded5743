"""The option table (sst/options.py): README's tables are rendered from it, and the settings
loaders take their defaults from it."""

from __future__ import annotations

import os

from sst import config, options
from sst.methods import base
from testsupport.process import ROOT

README = os.path.join(str(ROOT), "README.md")


def test_readme_option_tables_match_the_table() -> None:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert options.render_readme(text) == text, (
        "README's option tables drifted from sst/options.py: run "
        "`galera-sst options --readme README.md`"
    )
    for m in base.METHODS:
        assert f"<!-- options:{m.family} -->" in text


def test_every_row_names_a_known_method_and_kind() -> None:
    families = {m.family for m in base.METHODS}
    kinds = {options.SECONDS, options.COUNT, options.THREADS, options.RATE, options.ARGV}
    kinds.add(options.SWITCH)
    for row in options.TABLE:
        assert set(row.methods) <= families, row
        assert row.kind in {*kinds, options.TEXT}, row
        assert row.meaning, row


def test_defaults_come_from_the_table() -> None:
    opts = config.Options({})
    errors: list[str] = []
    assert config.option_seconds(opts, "sst-idle-timeout", "mysqldump", errors) == 600
    assert config.option_seconds(opts, "sst-idle-timeout", "rsync", errors) == 300
    assert config.option_seconds(opts, "sst-flush-timeout", "backup", errors) == 600
    assert config.option(opts, "encrypt", "mariabackup") == "0"
    assert not errors


def test_a_value_is_read_from_the_rows_groups() -> None:
    opts = config.Options({"sst": {"sst-idle-timeout": "7"}})
    assert config.option(opts, "sst-idle-timeout", "mysqldump") == "7"
