"""One module per external program: options in, argv tuple out, exit-code rules beside it."""

from __future__ import annotations

import os
import shutil

from sst.errors import ToolMissing


def find(name: str, *, extra_dirs: tuple[str, ...] = ()) -> str:
    """Absolute path of a program (extra_dirs first, then PATH); raises ToolMissing."""
    for d in extra_dirs:
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(
            f"'{name}' not found in PATH; install it (Debian package hints in README)"
        )
    return path
