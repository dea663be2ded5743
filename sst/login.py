"""Which account a donor logs in with to its own server (mariabackup, mysqldump).

With `wsrep_sst_auth` set: that user and password. Without: the OS user the script runs
as (the server's: mariadbd runs the donor script as itself), through the unix_socket
plugin, with no password, over the server's socket. Debian's install creates
`mysql@localhost IDENTIFIED VIA unix_socket` (and root's) for this. The user is named
explicitly: the client library would otherwise pick `getlogin()`, the login session's
user (root when someone started mariadbd by hand from a root shell), not the process's.
"""

from __future__ import annotations

import os
import pwd

from sst.request import Credentials


def os_user(uid: int | None = None) -> str:
    """The name of the effective (or given) uid; the number if it has no name."""
    uid = os.geteuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def local(creds: Credentials, uid: int | None = None) -> Credentials:
    """The credentials for the donor's own server: creds, or the OS user (unix_socket)."""
    if creds.user:
        return creds
    return Credentials(os_user(uid), None)


def describe(creds: Credentials, uid: int | None = None) -> str:
    """How the donor will log in, for the log and `galera-sst check`."""
    if creds.user:
        return f"as '{creds.user}' from wsrep_sst_auth" + (
            " (with a password)" if creds.password else " (no password)"
        )
    return f"as OS user '{os_user(uid)}' through unix_socket (no wsrep_sst_auth, no password)"
