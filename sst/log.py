"""Stock-shaped log lines on stderr: `WSREP_SST: [LEVEL] text (YYYYMMDD HH:MM:SS.mmm)`."""

from __future__ import annotations

import sys
import time


def _stamp() -> str:
    now = time.time()
    local = time.localtime(now)
    millis = int((now - int(now)) * 1000)
    return time.strftime("%Y%m%d %H:%M:%S", local) + f".{millis:03d}"


def _emit(level: str, text: str) -> None:
    # One physical line per message, so log watchers see one event per line.
    flat = " ".join(text.splitlines())
    try:
        sys.stderr.write(f"WSREP_SST: [{level}] {flat} ({_stamp()})\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr gone: nothing better to do


def info(text: str) -> None:
    """Log an INFO line."""
    _emit("INFO", text)


def warning(text: str) -> None:
    """Log a WARNING line."""
    _emit("WARNING", text)


def error(text: str) -> None:
    """Log an ERROR line."""
    _emit("ERROR", text)
