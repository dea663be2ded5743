"""The joiner's gate: a connection proves the SST secret before any byte reaches mbstream.

Run as the first program after the joiner's listener (docs/tls.md, "mariabackup"):

    python -I -S gate.py FD SECONDS -- PROGRAM [ARGS...]

It reads the expected preamble from file descriptor FD (a pipe the joiner wrote and
closed), reads exactly that many bytes from its stdin with os.read, compares them in
constant time, and on a match execs PROGRAM on the same stdin: the stream itself never
passes through Python. On a mismatch, a short read or no preamble within SECONDS it writes
one reason line to stderr and exits REFUSED, and PROGRAM never runs.

Standard library only: it runs with -I -S, without the sst package on its path.
"""

from __future__ import annotations

import hmac
import os
import select
import sys
import time

REFUSED = 77  # sysexits EX_NOPERM: "this connection did not prove the secret"
MAGIC = b"galera-sst-gate"


def preamble(stage: int, secret: str) -> bytes:
    """Given the stage (1 or 2) and the joiner's secret, returns what our donor sends
    first on that stage's connection."""
    return MAGIC + b" " + str(stage).encode() + b" " + secret.encode() + b"\n"


def argv(fd: int, seconds: float, program: tuple[str, ...]) -> tuple[str, ...]:
    """Given the descriptor holding the expected preamble, the deadline for it and the
    program to exec, returns the gate's command line (this interpreter, isolated)."""
    return (
        sys.executable,
        "-I",
        "-S",
        os.path.abspath(__file__),
        str(fd),
        f"{seconds:g}",
        "--",
        *program,
    )


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def read_exactly(fd: int, count: int, seconds: float) -> bytes:
    """Given a descriptor, a byte count and a deadline, returns at most count bytes read
    before EOF or the deadline (fewer means the peer did not send them in time). The
    deadline starts with the first byte: the listener relays nothing before a connection."""
    got = b""
    select.select([fd], [], [])
    end = time.monotonic() + seconds
    while len(got) < count:
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, count - len(got))
        if not chunk:
            break
        got += chunk
    return got


def check(expected: bytes, fd: int, seconds: float) -> str:
    """Given the expected preamble and the stream, returns '' when it matches, else why not."""
    got = read_exactly(fd, len(expected), seconds)
    if len(got) < len(expected):
        if not got:
            return "the connection ended before it sent anything"
        return (
            f"the connection sent {len(got)} bytes and then nothing for {seconds:g} s or "
            "ended, before the secret was complete"
        )
    if not hmac.compare_digest(got, expected):
        return "the connection did not start with this joiner's secret"
    return ""


def main(argv: list[str]) -> int:
    """Given `FD SECONDS -- PROGRAM ARGS`, execs PROGRAM or returns REFUSED (2: usage)."""
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: gate.py FD SECONDS -- PROGRAM [ARGS...]\n")
        return 2
    fd, seconds, program = int(argv[0]), float(argv[1]), argv[3:]
    expected = _read_all(fd)
    os.close(fd)
    why = check(expected, 0, seconds) if expected else "no secret was given to the gate"
    if why:
        sys.stderr.write(f"refused: {why}\n")
        sys.stderr.flush()
        return REFUSED
    os.execvp(program[0], program)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
