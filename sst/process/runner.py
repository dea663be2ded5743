"""Supervised subprocesses: OS-piped stages, deadlines, a parent watch and tree kill.

Data flows between stages through OS pipes; Python only reads the stages' stderr
(line by line, into the log) and watches the clock, the parent and the children.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Union

import psutil

from sst.errors import Interrupted, ParentGone, SSTError, Timeout, ToolFailed, TransferError

TICK = 0.1  # seconds between supervision checks (each costs a few /proc reads)
# Between checks of a condition on the critical path (a file's arrival, a listener up): the
# supervision checks still run every TICK (Supervisor.wait_until).
QUICK = 0.01
TERM_GRACE = 5.0  # seconds between a stage's stop signal and SIGKILL
TAIL_LINES = 20

FileArg = Union[int, IO[Any], None]
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC

# Secrets mariadbd hands the script in its environment: no child ever inherits them.
SECRET_ENV = ("WSREP_SST_OPT_AUTH", "WSREP_SST_OPT_REMOTE_AUTH", "WSREP_SST_OPT_PSWD", "MYSQL_PWD")


_SETPRIV = shutil.which("setpriv")
# None on a Python built without it (Supervisor.nap then waits for the tick).
_PIDFD_OPEN: Callable[[int], int] | None = getattr(os, "pidfd_open", None)


def _with_parent_death_signal(argv: tuple[str, ...]) -> tuple[str, ...]:
    """Children get SIGTERM if this process dies, even by SIGKILL (no cleanup runs then):
    util-linux setpriv sets PR_SET_PDEATHSIG and execs the program. Without setpriv the
    normal cleanup paths still stop them."""
    if _SETPRIV is None:
        return argv
    return (_SETPRIV, "--pdeathsig", "TERM", "--", *argv)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without the SST secrets, plus extra."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class Stage:
    """One program to run: argv as data, an explicit environment, its own exit-code rule."""

    argv: tuple[str, ...]
    name: str = ""
    env: Mapping[str, str] | None = None  # None: ours without the secrets (child_env)
    cwd: str | None = None
    ok_codes: frozenset[int] = frozenset({0})
    pass_fds: tuple[int, ...] = ()
    errno_for: Callable[[int], int] | None = None  # exit status -> errno for a failure
    log_stderr: bool = True  # relay stderr lines into our stderr
    log_file: str = ""  # append stderr here instead (verbose tools); the tail is still kept
    on_line: Callable[[str], None] | None = None  # called per stderr line (progress)
    # Given the kept stderr lines, why the stage failed ('' = say its last line), for
    # tools whose last line hides the cause (rsync's "code 5" after stunnel's TLS verdict).
    explain: Callable[[Sequence[str]], str] | None = None
    # What asks the stage's processes to end (SIGKILL follows after a grace period). Only
    # for a stage whose whole tree is one program: stunnel, for one, reopens its log on
    # SIGUSR1 and would wait out the grace period.
    stop_signal: int = signal.SIGTERM

    @property
    def label(self) -> str:
        """The name used in log lines."""
        return self.name or os.path.basename(self.argv[0])


@dataclass
class Child:
    """A started stage: its process, and the last lines it wrote to stderr."""

    stage: Stage
    popen: subprocess.Popen[bytes]
    tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=TAIL_LINES)
    )
    reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.popen.pid

    def poll(self) -> int | None:
        """Exit status, or None while running."""
        return self.popen.poll()

    def failed(self) -> bool:
        """True once the child has exited with a status its stage does not accept."""
        rc = self.popen.poll()
        return rc is not None and rc not in self.stage.ok_codes

    def describe_failure(self) -> str:
        """`<tool> exited with N: <last stderr line>`."""
        rc = self.popen.returncode
        how = f"was killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with {rc}"
        last = next((ln for ln in reversed(self.tail) if ln.strip()), "")
        why = self.stage.explain(list(self.tail)) if self.stage.explain is not None else ""
        return f"{self.stage.label} {how}" + (f": {(why or last).strip()}" if why or last else "")

    def error(self, context: str) -> ToolFailed:
        """The exception for this child's failure, with the stage's errno rule."""
        rc = self.popen.returncode or 0
        code = self.stage.errno_for(rc) if self.stage.errno_for else None
        if any("No space left on device" in ln or "Errcode: 28" in ln for ln in self.tail):
            code = errno.ENOSPC  # whatever the tool's own status: the disk is full
        return ToolFailed(f"{context}: {self.describe_failure()}", code)


def _relay(child: Child, stream: IO[bytes]) -> None:
    """Read a child's stderr line by line: keep the tail, feed on_line, log it."""
    stage = child.stage
    sink: IO[str] | None = None
    if stage.log_file:
        try:  # in the datadir, which others may write: never through a planted symlink
            fd = os.open(stage.log_file, _APPEND, 0o640)
            # line-buffered: the log shows each line when the tool wrote it, as stock's does
            sink = open(fd, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError:
            sink = None
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n").rstrip("\r")
            child.tail.append(line)
            if stage.on_line is not None:
                # A progress consumer must never stop the relay.
                with contextlib.suppress(Exception):
                    stage.on_line(line)
            try:
                if sink is not None:
                    sink.write(line + "\n")
                elif stage.log_stderr:
                    sys.stderr.write(f"{stage.label}: {line}\n")
                    sys.stderr.flush()
            except (OSError, ValueError):
                pass
    finally:
        stream.close()
        if sink is not None:
            sink.close()


def _ended(p: psutil.Process) -> bool:
    """Whether p has exited: gone, or a zombie (its exit status not yet collected, by us or,
    once re-parented, by PID 1, which in a container may never do it)."""
    try:
        if p.status() != psutil.STATUS_ZOMBIE:
            return False
        # A thread-group leader that exited alone (pthread_exit in main) shows as a zombie
        # while its other threads run, holding the process's files and sockets: not ended.
        return p.num_threads() <= 1
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:  # not ours to read: signal it as before
        return False


def _wait_ended(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to timeout for procs to end (_ended); returns those still running."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _ended(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if not _ended(p)]
    return alive


def kill_tree(pid: int, grace: float = TERM_GRACE, sig: int = signal.SIGTERM) -> None:
    """Signal (sig, SIGTERM by default) a process and all its descendants, then SIGKILL
    what is left after grace. A zombie counts as ended: nothing can kill it, and waiting
    for its reaper (PID 1, for an orphan) held every donor's exit by a whole grace period
    after its `done`."""
    try:
        root = psutil.Process(pid)
        procs = [p for p in (*root.children(recursive=True), root) if not _ended(p)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)
    alive = _wait_ended(procs, grace)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    _wait_ended(alive, grace)


def _kill_descendants_of_exited(child: Child) -> None:
    """An exited stage's own children were re-parented; its session id still finds them."""
    try:
        sid = child.pid
        for p in psutil.process_iter(["pid"]):
            try:
                if p.pid != os.getpid() and os.getsid(p.pid) == sid:
                    kill_tree(p.pid, grace=1.0, sig=child.stage.stop_signal)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
    except psutil.Error:
        return


@dataclass(frozen=True)
class TreeIO:
    """I/O of process trees, summed: what the stall detector and the status file sample."""

    read_chars: int
    write_chars: int
    processes: int


def tree_io(pids: Sequence[int]) -> TreeIO:
    """Read and write counts of pids and all their descendants (those we may read)."""
    procs: list[psutil.Process] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    read = write = count = 0
    for p in procs:
        try:
            io = p.io_counters()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        read += io.read_chars
        write += io.write_chars
        count += 1
    return TreeIO(read, write, count)


class ParentWatch:
    """Remembers the --parent process (pid and start time) and tells when it is gone."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._created: float | None = None
        if pid > 0:
            try:
                self._created = psutil.Process(pid).create_time()
            except psutil.NoSuchProcess:
                self._created = None

    def alive(self) -> bool:
        """False once the parent has exited (or its pid was reused by another process)."""
        if self.pid <= 0:
            return True
        if self._created is None:
            return False
        try:
            p = psutil.Process(self.pid)
            return p.create_time() == self._created and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


class Supervisor:
    """Owns every child of one SST run; `close()` leaves nothing running.

    Children run in new sessions, so their process groups are ours to signal and they do
    not share mariadbd's group. No child ever inherits our stdout (mariadbd's pipe).
    """

    def __init__(
        self, parent: ParentWatch | None = None, on_tick: Callable[[], None] | None = None
    ) -> None:
        self.parent = parent or ParentWatch(0)
        self.children: list[Child] = []
        self.on_tick = on_tick  # called on every supervision tick (the status file)
        # wake() makes a nap end at once: for events only a stage's stderr tells of. The
        # lock keeps a late wake() (a relay thread) off the descriptor number once closed.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_lock = threading.Lock()

    # -- starting -----------------------------------------------------------------------
    def start(
        self, stage: Stage, *, stdin: FileArg = subprocess.DEVNULL, stdout: FileArg = None
    ) -> Child:
        """Start one stage; stdout defaults to our stderr, never to our stdout."""
        out: FileArg = stdout if stdout is not None else sys.stderr.fileno()
        with cleanup_shield():  # a signal must not come between the fork and the record
            return self._start(stage, stdin, out)

    def _start(self, stage: Stage, stdin: FileArg, out: FileArg) -> Child:
        try:
            popen = subprocess.Popen(
                _with_parent_death_signal(stage.argv),
                stdin=stdin,
                stdout=out,
                stderr=subprocess.PIPE,
                env=dict(stage.env) if stage.env is not None else child_env(),
                cwd=stage.cwd,
                close_fds=True,
                pass_fds=stage.pass_fds,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise SSTError(f"cannot run {stage.argv[0]}: {exc.strerror}", 2) from exc
        except PermissionError as exc:
            raise SSTError(f"cannot run {stage.argv[0]}: {exc.strerror}", 13) from exc
        child = Child(stage, popen)
        assert popen.stderr is not None
        child.reader = threading.Thread(target=_relay, args=(child, popen.stderr), daemon=True)
        child.reader.start()
        self.children.append(child)
        return child

    def pipeline(
        self,
        stages: Sequence[Stage],
        *,
        stdin: FileArg = subprocess.DEVNULL,
        stdout: FileArg = None,
    ) -> list[Child]:
        """Start stages joined stdout->stdin by OS pipes."""
        started: list[Child] = []
        prev: FileArg = stdin
        for i, stage in enumerate(stages):
            last = i == len(stages) - 1
            child = self.start(stage, stdin=prev, stdout=stdout if last else subprocess.PIPE)
            if prev is not stdin and prev is not None and not isinstance(prev, int):
                prev.close()  # the next stage holds its own copy
            prev = None if last else child.popen.stdout
            started.append(child)
        return started

    # -- waiting ------------------------------------------------------------------------
    def check_parent(self) -> None:
        """Raise ParentGone if mariadbd died (and tick the status)."""
        if self.on_tick is not None:
            self.on_tick()
        if not self.parent.alive():
            raise ParentGone(
                f"parent mysqld process (PID {self.parent.pid}) terminated unexpectedly"
            )

    def wait(
        self,
        children: Sequence[Child],
        *,
        what: str,
        timeout: float | None = None,
        idle: Callable[[], float] | None = None,
        idle_timeout: float = 0.0,
        watch: Sequence[Child] = (),
    ) -> None:
        """Wait for all children to exit; the first failure kills the rest and raises.

        `timeout` bounds the whole wait; `idle()` returns seconds since the last progress,
        and more than `idle_timeout` of it is a stall. Both raise Timeout. A failure of a
        `watch` child also raises, but its exit is not waited for.
        """
        start = time.monotonic()
        everyone = [*watch, *children]
        while True:
            self.check_parent()
            for c in everyone:
                if c.failed():
                    self._reap(everyone)
                    raise c.error(what)  # _reap drained stderr, so the tail is complete
            if all(c.poll() is not None for c in children):
                for c in children:
                    if c.reader is not None:
                        c.reader.join(timeout=2)
                return
            if timeout and time.monotonic() - start > timeout:
                self._reap(everyone)
                raise Timeout(f"{what}: no result after {timeout:g} s")
            if idle is not None and idle_timeout and idle() > idle_timeout:
                self._reap(everyone)
                raise Timeout(f"{what}: no progress for {idle_timeout:g} s")
            self.nap(everyone)

    def wait_until(
        self,
        predicate: Callable[[], bool],
        *,
        what: str,
        timeout: float,
        alive: Sequence[Child] = (),
        every: float = TICK,
    ) -> None:
        """Poll predicate every `every` seconds until true; raise if a watched child exits,
        the parent dies (checked every TICK, however short `every` is: each check reads
        /proc), or timeout seconds pass (0 = no limit)."""
        start = checked = time.monotonic()
        while not predicate():
            now = time.monotonic()
            if now - checked >= TICK or every >= TICK:
                self.check_parent()
                checked = now
            for c in alive:
                if c.poll() is not None:
                    self._reap([c])
                    raise c.error(f"{what}: {c.stage.label} ended early")
            if timeout and now - start > timeout:
                raise Timeout(f"{what}: not done after {timeout:g} s")
            self.nap(alive, every)

    def nap(self, children: Sequence[Child], seconds: float = TICK) -> None:
        """Sleep up to seconds, but return as soon as one of children ends (its pidfd
        becomes readable) or wake() is called: the next step starts at once, not at the
        next tick, which cost an SST some 50 ms per step and it takes dozens. A child not
        yet reaped keeps its PID, so the pidfd is its. Without pidfd_open (Linux before
        5.3, a Python built without it, or a seccomp filter refusing it) a child's end
        waits for the tick. poll(), not select(): a descriptor above 1023 is no error."""
        fds: list[int] = []
        try:
            waiter = select.poll()
            if self._wake_r >= 0:  # not once closed
                waiter.register(self._wake_r, select.POLLIN)
            for c in children:
                if _PIDFD_OPEN is not None and c.popen.returncode is None:
                    with contextlib.suppress(OSError):
                        fds.append(_PIDFD_OPEN(c.pid))
                        waiter.register(fds[-1], select.POLLIN)
            if waiter.poll(seconds * 1000) and self._wake_r >= 0:
                with contextlib.suppress(OSError):
                    while os.read(self._wake_r, 64):
                        pass
        finally:
            for fd in fds:
                os.close(fd)

    def wake(self) -> None:
        """End the current (or the next) nap at once; safe from any thread."""
        with self._wake_lock, contextlib.suppress(OSError):
            if self._wake_w >= 0:
                os.write(self._wake_w, b"!")

    def _reap(self, children: Sequence[Child]) -> None:
        """Kill what still runs, then let the stderr readers finish (for complete tails)."""
        for c in children:
            if c.poll() is None:
                kill_tree(c.pid, sig=c.stage.stop_signal)
            else:
                _kill_descendants_of_exited(c)
            c.popen.wait()
        for c in children:
            if c.reader is not None:
                c.reader.join(timeout=2)

    def stop(self, child: Child) -> None:
        """Terminate one child and its descendants (also those it left behind)."""
        if child.poll() is None:
            kill_tree(child.pid, sig=child.stage.stop_signal)
        else:
            _kill_descendants_of_exited(child)
        child.popen.wait()
        if child.reader is not None:
            child.reader.join(timeout=2)

    def close(self) -> None:
        """Kill every child still running, with its descendants; close our pipe ends.
        Signals cannot cut it short (cleanup_shield)."""
        with cleanup_shield():
            for c in reversed(self.children):
                self.stop(c)
                for s in (c.popen.stdout, c.popen.stdin):
                    if s is not None:
                        s.close()
            self.children.clear()
            with self._wake_lock:
                for fd in (self._wake_r, self._wake_w):
                    if fd >= 0:
                        os.close(fd)
                self._wake_r = self._wake_w = -1

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Captured:
    """The result of a short command whose output we need."""

    returncode: int
    stdout: str
    stderr: str


def run_capture(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    cwd: str | None = None,
) -> Captured:
    """Run a short command and capture its (small) output; kills it on timeout."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else child_env(),
            cwd=cwd,
            close_fds=True,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise SSTError(f"cannot run {argv[0]}: {exc.strerror}", 2) from exc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.communicate()
        raise Timeout(f"{os.path.basename(argv[0])} did not finish within {timeout:g} s") from None
    return Captured(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


class _Signals:
    """What the terminating-signal handlers know: whether one was already turned into an
    exception (the run is ending), and how deep we are in cleanup."""

    stopping = False
    depth = 0
    pending = 0  # a signal that arrived inside a shield, raised when it ends


def _raise_for(signum: int) -> None:
    _Signals.stopping = True
    name = signal.Signals(signum).name
    if signum == signal.SIGHUP:
        raise TransferError(f"received {name}")
    raise Interrupted(f"terminated by signal {name}")


def _on_signal(signum: int, _frame: object) -> None:
    # The first signal ends the run; from then on (and inside any cleanup) more signals
    # must not cut the cleanup short: children and the run directory would be left behind.
    if _Signals.stopping or _Signals.depth:
        _Signals.pending = _Signals.pending or signum
        return
    _raise_for(signum)


@contextlib.contextmanager
def cleanup_shield() -> Iterator[None]:
    """While inside, SIGTERM/INT/QUIT/HUP are remembered instead of raised. A signal that
    came meanwhile is raised on a normal exit from the outermost shield (unless the run is
    already ending); on an exceptional exit the exception in flight wins."""
    _Signals.depth += 1
    try:
        yield
    finally:
        _Signals.depth -= 1
    if _Signals.pending and not _Signals.depth and not _Signals.stopping:
        _raise_for(_Signals.pending)


def ending() -> None:
    """The run is over (reported or about to be): terminating signals are ignored from now
    on, so that the last lines and the exit status are the run's own."""
    _Signals.stopping = True


def signal_after_ending() -> str:
    """The name of a terminating signal that came after ending() (and was ignored), or ''."""
    return signal.Signals(_Signals.pending).name if _Signals.stopping and _Signals.pending else ""


def install_signal_handlers() -> None:
    """TERM/INT/QUIT exit 3 and HUP exits 32, like the stock traps, via exceptions; the
    first one ends the run, later ones are ignored so that its cleanup completes. SIGPIPE
    keeps Python's default (ignored): a write to a closed pipe raises BrokenPipeError."""
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(s, _on_signal)
