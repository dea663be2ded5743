"""Entry points: `wsrep_sst_<method>` (run by mariadbd) and `galera-sst` (run by people).

Exceptions become exit codes here and only here.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from sst import __version__, log, stdin_auth
from sst.errors import SSTError, from_oserror
from sst.methods import base as registry
from sst.process.runner import ending, install_signal_handlers, signal_after_ending
from sst.protocol import Stdout, donor_stdout
from sst.request import method_from_argv0, parse_request


def run_sst(argv0: str, args: Sequence[str], env: dict[str, str] | os._Environ[str]) -> int:
    """Given mariadbd's argv and environment, runs one SST and returns the exit status (an
    errno value). Every failure ends as one ERROR line: never a traceback (a bug shows its
    type and place; GALERA_SST_DEBUG=1 adds the traceback)."""
    method, role, peer = "", "donor", ""
    try:
        method = method_from_argv0(argv0)
        req = parse_request(argv0, args, env, method)
        if req.role == "donor" and (given := stdin_auth.read()):  # MariaDB 11.x
            req = parse_request(argv0, args, {**env, **given}, method)
        role = req.role
        peer = req.address.hostport if req.address else ""
        spec = registry.lookup(req.name, os.path.basename(argv0))
        # Once the result line is out, a signal (a server shutting down) ends nothing that
        # matters: it is ignored, the cleanup completes and the run stays a success.
        out = Stdout(on_result=ending) if req.role == "joiner" else donor_stdout(on_result=ending)
        spec.run(req, out)
        ending()
        if sig := signal_after_ending():
            log.info(f"Received {sig} after the result reached mariadbd; the cleanup completed")
        return 0
    except BaseException as exc:
        ending()
        where = f"{method} {role}" + (f", peer {peer}" if peer else "")
        return _report(exc, where, debug=bool(env.get("GALERA_SST_DEBUG")))


def _report(exc: BaseException, where: str, *, debug: bool) -> int:
    """Given the exception that ended a run and where it happened, logs the one ERROR line
    and the stock 'Cleanup after exit' line; returns the exit status."""
    if isinstance(exc, SystemExit):
        raise exc
    if isinstance(exc, OSError):
        exc = from_oserror(exc)
    if isinstance(exc, SSTError):
        where += f", during {exc.phase}" if exc.phase else ""
        log.error(f"{exc.message} [{where}]")
        code = exc.code
    elif isinstance(exc, KeyboardInterrupt):
        log.error(f"interrupted [{where}]")
        code = 3
    else:  # a bug: say so in one line
        log.error(f"internal error: {type(exc).__name__}: {exc} at {_place(exc)} [{where}]")
        code = 1
    if debug and not isinstance(exc, SSTError):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    log.info(f"Cleanup after exit with status: {code}")
    return code


def _place(exc: BaseException) -> str:
    """Given an exception, returns `file:line` of the frame that raised it."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"


def main() -> None:
    """`wsrep_sst_<method>`: the method comes from the program name."""
    install_signal_handlers()
    sys.exit(run_sst(sys.argv[0], sys.argv[1:], os.environ))


def galera_sst(argv: Sequence[str] | None = None) -> None:
    """`galera-sst`: commands for people."""
    import argparse  # here, not at the top: every wsrep_sst_* start would pay for it

    parser = argparse.ArgumentParser(prog="galera-sst", description=__doc__)
    parser.add_argument("--version", action="version", version=f"galera-sst {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a real two-node SST on this machine and report it")
    demo.add_argument("--method", default="py_rsync", choices=registry.manual_names())
    demo.add_argument(
        "--ssl-mode",
        default="VERIFY_IDENTITY",
        choices=["DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"],
    )
    demo.add_argument("--rows", type=int, default=20000, help="rows of test data on the donor")
    demo.add_argument("--keep", action="store_true", help="keep the node directories")
    demo.add_argument("--base", default="", help="where node directories go (default /var/tmp)")
    ck = sub.add_parser("check", help="pre-flight checks of this node's SST, touching no data")
    ck.add_argument("--method", default="py_mariabackup", choices=registry.checked_names())
    ck.add_argument("--role", choices=["joiner", "donor"], help="default: both")
    ck.add_argument("--defaults-file", default="")
    ck.add_argument("--defaults-extra-file", default="")
    ck.add_argument("--defaults-group-suffix", default="")
    ck.add_argument("--json", action="store_true", help="machine-readable")
    mj = sub.add_parser("joiner", help="receive a state into an empty directory (a manual run)")
    mj.add_argument("--method", default="py_mariabackup", choices=registry.manual_names())
    mj.add_argument("--address", required=True, help="host[:port] to listen on")
    mj.add_argument("--datadir", required=True, help="an empty directory")
    mj.add_argument("--defaults-file", default="")
    md = sub.add_parser("donor", help="send this server's state to a joiner (a manual run)")
    md.add_argument("--method", default="py_mariabackup", choices=registry.manual_names())
    md.add_argument("--address", required=True, help="what the joiner printed after 'ready'")
    md.add_argument("--datadir", required=True)
    md.add_argument("--socket", required=True, help="the running server's socket")
    md.add_argument("--defaults-file", default="")
    st = sub.add_parser("status", help="the running SST, or how the last one ended")
    st.add_argument("--datadir", default="/var/lib/mysql")
    st.add_argument("--json", action="store_true", help="machine-readable")
    rec = sub.add_parser(
        "recover", help="repair an interrupted swap of a joiner's datadir (old or new, whole)"
    )
    rec.add_argument("--datadir", default="/var/lib/mysql")
    inst = sub.add_parser("install", help="put galera-sst in place of the stock scripts")
    inst.add_argument(
        "--replace-stock",
        action="store_true",
        required=True,
        help="divert the stock wsrep_sst_* scripts (dpkg-divert) and install ours",
    )
    sub.add_parser("uninstall", help="restore the stock scripts")
    opt = sub.add_parser("options", help="the options each method reads (sst/options.py)")
    opt.add_argument("--method", choices=[m.family for m in registry.METHODS], help="default: all")
    opt.add_argument("--readme", metavar="PATH", help="rewrite the option tables in this file")
    run = sub.add_parser("sst", help="run an SST script by method name (as mariadbd would)")
    run.add_argument("method")
    run.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    install_signal_handlers()  # SIGTERM/SIGINT: one line and exit 3, children stopped
    try:
        code = _command(ns)
        ending()
    except BaseException as exc:  # one line, never a traceback (see _report)
        ending()
        code = _command_failed(ns.command, exc)
    sys.exit(code)


def _command_failed(command: str, exc: BaseException) -> int:
    """Given a galera-sst command and what ended it, prints one error line; returns the
    exit status."""
    if isinstance(exc, SystemExit):
        raise exc
    if isinstance(exc, OSError):
        exc = from_oserror(exc)
    if isinstance(exc, SSTError):
        text, code = exc.message, exc.code
    elif isinstance(exc, KeyboardInterrupt):
        text, code = "interrupted", 3
    else:
        text, code = f"internal error: {type(exc).__name__}: {exc} at {_place(exc)}", 1
    if os.environ.get("GALERA_SST_DEBUG") and not isinstance(exc, SSTError):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    with contextlib.suppress(OSError, ValueError):
        print(f"galera-sst {command}: {text}", file=sys.stderr)
    return code


def _demo(ns: Any) -> int:
    """`galera-sst demo`: a real two-node SST here; returns its exit status."""
    from sst import demo

    return demo.demo(
        method=ns.method, ssl_mode=ns.ssl_mode, rows=ns.rows, keep=ns.keep, base=ns.base
    )


def _check(ns: Any) -> int:
    """`galera-sst check`: pre-flight findings; returns 1 if any failed."""
    from sst import check

    roles = (ns.role,) if ns.role else ("joiner", "donor")
    found = check.run(
        (ns.defaults_file, ns.defaults_extra_file, ns.defaults_group_suffix),
        method=ns.method,
        roles=roles,
        env=dict(os.environ),
    )
    if ns.json:
        print(json.dumps(check.as_json(found)))
        return 1 if any(f.level == "fail" for f in found) else 0
    return check.report(found)


def _joiner(ns: Any) -> int:
    """`galera-sst joiner`: a manual joiner; returns the script's exit status."""
    from sst import manual

    return manual.joiner(
        method=ns.method, address=ns.address, datadir=ns.datadir, defaults_file=ns.defaults_file
    )


def _donor(ns: Any) -> int:
    """`galera-sst donor`: a manual donor; returns the script's exit status."""
    from sst import manual

    return manual.donor(
        method=ns.method,
        address=ns.address,
        datadir=ns.datadir,
        socket=ns.socket,
        defaults_file=ns.defaults_file,
    )


def _recover(ns: Any) -> int:
    """`galera-sst recover`: finish or roll back a swap an SST left half done; returns 0."""
    from sst import swap

    done = swap.recover_offline(ns.datadir)
    print(f"{ns.datadir}: " + (f"interrupted swap {done}" if done else "no interrupted swap"))
    return 0


def _install(ns: Any) -> int:
    """`galera-sst install|uninstall`: returns 0; raises InstallError."""
    from sst import install

    (install.install if ns.command == "install" else install.uninstall)(install.Env())
    return 0


def _options(ns: Any) -> int:
    """`galera-sst options`: print the option tables, or rewrite them in a README."""
    from sst import options

    if ns.readme:
        with open(ns.readme, encoding="utf-8") as f:
            text = f.read()
        new = options.render_readme(text)
        if new != text:
            with open(ns.readme, "w", encoding="utf-8") as f:
                f.write(new)
        print(f"{ns.readme}: " + ("option tables rewritten" if new != text else "up to date"))
        return 0
    for m in registry.METHODS:
        if ns.method in (None, m.family):
            print(f"{m.family}:\n{options.render(m.family)}\n")
    return 0


def _sst(ns: Any) -> int:
    """`galera-sst sst <method> ...`: one SST as mariadbd would run it."""
    return run_sst(f"wsrep_sst_{ns.method}", ns.args, os.environ)


def _command(ns: Any) -> int:
    """Given the parsed command line, runs one galera-sst command; returns its exit status.
    Raises SSTError (and whatever a bug raises) for galera_sst to report."""
    commands: dict[str, Callable[[Any], int]] = {
        "demo": _demo,
        "check": _check,
        "joiner": _joiner,
        "donor": _donor,
        "status": lambda ns: _status(ns.datadir, as_json=ns.json),
        "recover": _recover,
        "install": _install,
        "uninstall": _install,
        "options": _options,
        "sst": _sst,
    }
    return commands[ns.command](ns)


def _status(datadir: str, *, as_json: bool) -> int:
    """`galera-sst status`: 0 running or succeeded, 1 failed or interrupted, 2 none."""
    from sst import records, resume, status

    data = status.read(datadir)
    if data is None:
        print(f"no galera-sst status in {status.printable(datadir)}", file=sys.stderr)
        return 2
    kept = resume.read(datadir)
    if as_json:
        extra = {"kept": asdict(kept) if kept else None, "records": records.summary(datadir)}
        print(json.dumps({**data, **extra}))
    else:
        parts = (status.describe(data), resume.describe(datadir), records.describe(datadir))
        print("\n".join(x for x in parts if x))
    return 0 if data["state"] in ("running", "succeeded") else 1
