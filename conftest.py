"""Test tiers by directory: every collected test gets its tier's marker, so `-m unit`,
`-m process`, `-m cluster` or `-m containers` runs one tier (docs/testing.md, Tiers)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
# The first matching prefix (relative to the checkout) decides a test's tier.
TIERS = (
    ("tests/unit/", "unit"),
    ("tests/process/", "process"),
    ("integration/test_containers.py", "containers"),
    ("integration/", "cluster"),
)


def tier_of(path: Path) -> str:
    """The tier of a test module, from where it lies in the checkout."""
    rel = path.resolve().relative_to(ROOT).as_posix()
    for prefix, tier in TIERS:
        if rel.startswith(prefix):
            return tier
    raise pytest.UsageError(f"{rel}: a test outside every tier's directory (conftest.TIERS)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier."""
    for item in items:
        item.add_marker(getattr(pytest.mark, tier_of(item.path)))
