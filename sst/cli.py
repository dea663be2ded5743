"""Entry points: `wsrep_sst_<method>` (run by mariadbd) and `galera-sst` (run by people).

Exceptions become exit codes here and only here.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from sst import __version__, log
from sst.errors import ConfigError, SSTError
from sst.process.runner import install_signal_handlers
from sst.protocol import Stdout, donor_stdout
from sst.request import Request, method_from_argv0, parse_request

MethodFn = Callable[[Request, Stdout], None]


def _rsync(req: Request, out: Stdout) -> None:
    from sst.methods import rsync

    rsync.run_method(req, out)


def _mariabackup(req: Request, out: Stdout) -> None:
    from sst.methods import mariabackup

    mariabackup.run_method(req, out)


def _mysqldump(req: Request, out: Stdout) -> None:
    from sst.methods import mysqldump

    mysqldump.run_method(req, out)


def _backup(req: Request, out: Stdout) -> None:
    from sst.methods import backup

    backup.run_method(req, out)


# Method names we answer to: the side-by-side py_ names and the stock names (drop-in).
METHODS: dict[str, MethodFn] = {
    "py_rsync": _rsync,
    "py_rsync_wan": _rsync,
    "rsync": _rsync,
    "rsync_wan": _rsync,
    "py_mariabackup": _mariabackup,
    "mariabackup": _mariabackup,
    "xtrabackup-v2": _mariabackup,
    "xtrabackup": _mariabackup,
    "mysqldump": _mysqldump,
    "backup": _backup,
    "py_backup": _backup,
}


def run_sst(argv0: str, args: Sequence[str], env: dict[str, str] | os._Environ[str]) -> int:
    """Run one SST as mariadbd asked; returns the exit status (an errno value)."""
    method = method_from_argv0(argv0)
    peer = ""
    role = "donor"
    try:
        req = parse_request(argv0, args, env, method)
        role = req.role
        peer = req.address.hostport if req.address else ""
        fn = METHODS.get(method)
        if fn is None:
            raise ConfigError(
                f"unknown SST method {method!r} (this program was started as "
                f"{os.path.basename(argv0)!r}); known: {', '.join(sorted(METHODS))}"
            )
        out = Stdout() if req.role == "joiner" else donor_stdout()
        fn(req, out)
        return 0
    except SSTError as exc:
        where = f"{method} {role}" + (f", peer {peer}" if peer else "")
        where += f", during {exc.phase}" if exc.phase else ""
        log.error(f"{exc.message} [{where}]")
        log.info(f"Cleanup after exit with status: {exc.code}")
        return exc.code
    except KeyboardInterrupt:
        log.error(f"interrupted [{method} {role}]")
        return 3
    except Exception as exc:  # a bug: say so in one line, details after it
        log.error(f"internal error: {type(exc).__name__}: {exc} [{method} {role}]")
        traceback.print_exc(file=sys.stderr)
        log.info("Cleanup after exit with status: 1")
        return 1


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
    demo.add_argument(
        "--method", default="py_rsync", choices=sorted(m for m in METHODS if m.startswith("py_"))
    )
    demo.add_argument(
        "--ssl-mode",
        default="VERIFY_IDENTITY",
        choices=["DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"],
    )
    demo.add_argument("--rows", type=int, default=20000, help="rows of test data on the donor")
    demo.add_argument("--keep", action="store_true", help="keep the node directories")
    demo.add_argument("--base", default="", help="where node directories go (default /var/tmp)")
    ck = sub.add_parser("check", help="pre-flight checks of this node's SST, touching no data")
    ck.add_argument(
        "--method", default="py_mariabackup", choices=["py_mariabackup", "py_rsync", "mysqldump"]
    )
    ck.add_argument("--role", choices=["joiner", "donor"], help="default: both")
    ck.add_argument("--defaults-file", default="")
    ck.add_argument("--defaults-extra-file", default="")
    ck.add_argument("--defaults-group-suffix", default="")
    ck.add_argument("--json", action="store_true", help="machine-readable")
    mj = sub.add_parser("joiner", help="receive a state into an empty directory (a manual run)")
    mj.add_argument(
        "--method", default="py_mariabackup", choices=["py_mariabackup", "py_rsync", "py_rsync_wan"]
    )
    mj.add_argument("--address", required=True, help="host[:port] to listen on")
    mj.add_argument("--datadir", required=True, help="an empty directory")
    mj.add_argument("--defaults-file", default="")
    md = sub.add_parser("donor", help="send this server's state to a joiner (a manual run)")
    md.add_argument(
        "--method", default="py_mariabackup", choices=["py_mariabackup", "py_rsync", "py_rsync_wan"]
    )
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
    run = sub.add_parser("sst", help="run an SST script by method name (as mariadbd would)")
    run.add_argument("method")
    run.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    if ns.command == "demo":
        from sst import lab

        sys.exit(
            lab.demo(
                method=ns.method, ssl_mode=ns.ssl_mode, rows=ns.rows, keep=ns.keep, base=ns.base
            )
        )
    if ns.command == "check":
        from sst import check

        roles = (ns.role,) if ns.role else ("joiner", "donor")
        try:
            found = check.run(
                (ns.defaults_file, ns.defaults_extra_file, ns.defaults_group_suffix),
                method=ns.method,
                roles=roles,
                env=dict(os.environ),
            )
        except SSTError as exc:
            print(f"galera-sst check: {exc.message}", file=sys.stderr)
            sys.exit(exc.code)
        if ns.json:
            print(json.dumps(check.as_json(found)))
            sys.exit(1 if any(f.level == "fail" for f in found) else 0)
        sys.exit(check.report(found))
    if ns.command in ("joiner", "donor"):
        from sst import manual

        try:
            if ns.command == "joiner":
                code = manual.joiner(
                    method=ns.method,
                    address=ns.address,
                    datadir=ns.datadir,
                    defaults_file=ns.defaults_file,
                )
            else:
                code = manual.donor(
                    method=ns.method,
                    address=ns.address,
                    datadir=ns.datadir,
                    socket=ns.socket,
                    defaults_file=ns.defaults_file,
                )
        except SSTError as exc:
            print(f"galera-sst {ns.command}: {exc.message}", file=sys.stderr)
            sys.exit(exc.code)
        sys.exit(code)
    if ns.command == "status":
        from sst import status

        data = status.read(ns.datadir)
        if data is None:
            print(f"no galera-sst status in {ns.datadir}", file=sys.stderr)
            sys.exit(2)
        print(json.dumps(data) if ns.json else status.describe(data))
        sys.exit(0 if data["state"] in ("running", "succeeded") else 1)
    if ns.command == "recover":
        from sst import swap

        try:
            done = swap.recover_offline(ns.datadir)
        except SSTError as exc:
            print(f"galera-sst recover: {exc.message}", file=sys.stderr)
            sys.exit(exc.code)
        print(f"{ns.datadir}: " + (f"interrupted swap {done}" if done else "no interrupted swap"))
        sys.exit(0)
    if ns.command in ("install", "uninstall"):
        from sst import install

        try:
            (install.install if ns.command == "install" else install.uninstall)(install.Env())
        except SSTError as exc:
            print(f"galera-sst {ns.command}: {exc.message}", file=sys.stderr)
            sys.exit(exc.code)
        sys.exit(0)
    if ns.command == "sst":
        install_signal_handlers()
        sys.exit(run_sst(f"wsrep_sst_{ns.method}", ns.args, os.environ))
