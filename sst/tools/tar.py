"""tar: the binlog archive an rsync donor sends, listed and checked before extraction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sst.errors import TransferError


@dataclass(frozen=True)
class Member:
    """One line of `tar -tv`: the type letter ('-' regular, 'l' symlink, 'h' hard link,
    'd' directory, 'c'/'b' device, 'p' fifo ...), the mode string and the name."""

    kind: str
    mode: str
    name: str


def list_argv(tar: str, archive: str) -> tuple[str, ...]:
    """List the archive verbosely, owners as numbers (the output parse_listing reads)."""
    return (tar, "--numeric-owner", "-tvf", archive)


def extract_argv(tar: str, archive: str, directory: str, names: Sequence[str]) -> tuple[str, ...]:
    """Extract exactly the named members into directory, owned by us, modes by our umask,
    each existing file unlinked first (never written through a symlink)."""
    return (
        tar,
        "--no-same-owner",
        "--no-same-permissions",
        "--unlink-first",
        "-xf",
        archive,
        "-C",
        directory,
        "--",
        *names,
    )


def parse_listing(text: str) -> list[Member]:
    """GNU tar's `-tv` lines: mode, owner, size, date, time, name (for links the name is
    followed by ' -> target' or ' link to target', kept as part of it)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(maxsplit=5)
        mode = parts[0]
        name = parts[5] if len(parts) == 6 else ""
        out.append(Member(mode[:1], mode, name))
    return out


SPECIAL_BITS = frozenset("sStT")


def checked_names(members: Sequence[Member], allowed: Callable[[str], bool]) -> list[str]:
    """The names to extract, given the listing and the rule for a name.

    Raises TransferError naming the first member that is not a regular file with an
    allowed name and no setuid, setgid or sticky bit (links, directories, devices,
    absolute or '..' names are all refused this way).
    """
    names = []
    for m in members:
        if m.kind != "-":
            raise TransferError(
                f"the donor's binlog archive holds {m.name!r}, which is not a regular file "
                f"(type {m.kind!r}); refusing it"
            )
        if SPECIAL_BITS.intersection(m.mode) or not allowed(m.name):
            raise TransferError(
                f"the donor's binlog archive holds {m.name!r} ({m.mode}), which is not a "
                "plain binlog file name with ordinary permissions; refusing it"
            )
        names.append(m.name)
    return names
