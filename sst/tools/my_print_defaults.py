"""my_print_defaults: the server's own option-file reader."""

from __future__ import annotations

import os
import sys


def argv(binary: str, defaults: tuple[str, ...], groups: tuple[str, ...]) -> tuple[str, ...]:
    """`my_print_defaults <defaults...> <groups...>`; defaults keep their order (file first)."""
    return (binary, *defaults, *groups)


def candidates() -> tuple[str, ...]:
    """Where to look before PATH: next to this program, then ../extra (as stock does)."""
    here = os.path.dirname(os.path.abspath(sys.argv[0]))
    return (here, os.path.join(here, "..", "extra"))
