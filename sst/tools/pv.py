"""pv: progress and rate limiting inside a pipeline."""

from __future__ import annotations


def machine_progress(binary: str, rate_limit: str = "") -> tuple[str, ...]:
    """Byte counts, one number a second on stderr (for `complete N` lines)."""
    limit = ("-L", rate_limit) if rate_limit else ()
    return (binary, "-f", "-i", "1", "-n", "-b", *limit)


def human_progress(binary: str, name: str, size: int = 0, rate_limit: str = "") -> tuple[str, ...]:
    """The human progress line every 10 s on stderr."""
    sz = ("-s", str(size)) if size > 0 else ()
    limit = ("-L", rate_limit) if rate_limit else ()
    return (binary, "-f", "-i", "10", "-N", name, *sz, *limit)


def rate_limit(binary: str, rate: str) -> tuple[str, ...]:
    """Only limit the rate."""
    return (binary, "-q", "-L", rate)
