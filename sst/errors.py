"""One exception tree; every error carries the errno value mariadbd will see as exit code."""

from __future__ import annotations

import errno


class SSTError(Exception):
    """Base of every galera-sst failure; `code` is the process exit status (an errno value)."""

    code: int = errno.EINVAL
    phase: str = ""  # the SST phase it ended ("receiving", ...), set by the run that saw it

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        """The one-line reason, as logged."""
        return str(self.args[0]) if self.args else type(self).__name__


class ConfigError(SSTError):
    """Bad arguments, options or TLS settings (EINVAL, 22)."""

    code = errno.EINVAL


class ToolMissing(SSTError):
    """A required external program is not installed (ENOENT, 2)."""

    code = errno.ENOENT


class TLSError(ConfigError):
    """A certificate, key or CA failed its pre-flight check (EINVAL, 22)."""


class TransferError(SSTError):
    """The data transfer or its verification failed (EPIPE, 32)."""

    code = errno.EPIPE


class SecretMismatch(TransferError):
    """The donor did not prove it knows the joiner's secret (EPIPE, 32)."""


class ParentGone(SSTError):
    """mariadbd (the --parent process) died during the SST (EPIPE, 32).

    Not a TransferError: code that turns a failed listener or transfer into a more
    precise error (PortBusy, ...) must not hide that the server itself is gone."""

    code = errno.EPIPE


class Timeout(TransferError):
    """A phase deadline passed (EPIPE, 32)."""


class PortBusy(SSTError):
    """The SST port is taken or the listener died before listening (EBUSY, 16)."""

    code = errno.EBUSY


class AlreadyRunning(SSTError):
    """A previous SST on this datadir is still alive (EALREADY, 114)."""

    code = errno.EALREADY


class Interrupted(SSTError):
    """Terminated by SIGINT, SIGQUIT or SIGTERM (ESRCH, 3, as the stock scripts exit)."""

    code = errno.ESRCH


class FlushFailed(SSTError):
    """mariadbd could not take FLUSH TABLES WITH READ LOCK (255, as stock)."""

    code = 255


class NoSpace(SSTError):
    """The filesystem being written is full (ENOSPC, 28)."""

    code = errno.ENOSPC


class LocalFileError(SSTError):
    """A file or directory of our own cannot be made, read or written: missing (ENOENT, 2),
    not permitted or read-only (EACCES, 13)."""

    code = errno.EACCES


def from_oserror(exc: OSError, what: str = "") -> SSTError:
    """Given an OSError from our own file work (and what we were doing), returns the
    SSTError to raise: NoSpace for a full disk or quota, LocalFileError otherwise."""
    name = f" {exc.filename!r}" if exc.filename is not None else ""
    text = f"{what + ': ' if what else ''}{exc.strerror or type(exc).__name__}{name}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(text)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return LocalFileError(text, errno.ENOENT)
    return LocalFileError(text)


class ToolFailed(SSTError):
    """An external program exited with a failure status."""

    code = errno.EPIPE
