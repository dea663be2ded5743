"""One method registry and typed method names (sst/methods/base.py, sst/request.py), and the
code-shape rule that keeps every function in sst/ short enough to read."""

from __future__ import annotations

import ast
import pathlib

import pytest

from sst.errors import ConfigError
from sst.methods import base
from sst.request import MethodName

MAX_FUNCTION_LINES = 80


@pytest.mark.parametrize(
    ("text", "family", "wan", "ours"),
    [
        ("py_rsync_wan", "rsync", True, True),
        ("rsync", "rsync", False, False),
        ("py_mariabackup", "mariabackup", False, True),
        ("xtrabackup-v2", "mariabackup", False, False),
        ("mysqldump", "mysqldump", False, False),
        ("py_backup", "backup", False, True),
    ],
)
def test_method_names_parse_once_into_what_the_code_asks(
    text: str, family: str, wan: bool, ours: bool
) -> None:
    name = MethodName.parse(text)
    assert (name.text, name.family, name.wan, name.ours) == (text, family, wan, ours)
    assert base.lookup(name).family == family


def test_every_registered_name_belongs_to_its_family() -> None:
    for m in base.METHODS:
        for n in m.names:
            assert MethodName.parse(n).family == m.family


def test_front_ends_offer_only_what_can_run() -> None:
    assert base.manual_names() == ["py_mariabackup", "py_rsync", "py_rsync_wan"]
    assert "py_backup" not in base.manual_names()  # no joiner: no demo, no manual joiner
    assert base.checked_names() == ["py_mariabackup", "py_rsync", "mysqldump"]


def test_an_unknown_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown SST method 'nope'.*known: backup, "):
        base.lookup(MethodName.parse("nope"), "wsrep_sst_nope")


def test_no_function_in_the_package_is_long() -> None:
    root = pathlib.Path(base.__file__).resolve().parents[1]
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(
                        f"{path.relative_to(root.parent)}:{node.lineno} {node.name} {lines}"
                    )
    assert not long, long
