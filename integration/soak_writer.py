"""The soak's write load, run INSIDE a node's container by its own python3 (the image has no
database driver): one `mariadb` client fed one INSERT every INTERVAL seconds over one
connection (`--force`: an error is printed and the next statement runs), until the stop file
appears. The client's stderr, where every failed statement's error goes, is the error file;
the number of statements sent is written to the count file when it stops.

    python3 soak_writer.py SOCKET RUN STOP_FILE ERROR_FILE COUNT_FILE

Its processes carry `soak-writer` in their command lines, so that the container tier's
leftover check (integration/containers.py, CNode.leftovers) can tell them from SST debris.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

INTERVAL = 0.05


def main(socket: str, run: str, stop: str, errors: str, count: str) -> int:
    with open(errors, "wb") as err:
        client = subprocess.Popen(
            ["soak-writer-client", "-S", socket, "-uroot", "--force", "-N", "-B"],
            executable="mariadb",
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        assert client.stdin is not None
        sent = 0
        try:
            while not os.path.exists(stop):
                sent += 1
                stmt = (
                    "INSERT INTO writeload.writes (run, seq, t, pad) "
                    f"VALUES ('{run}', {sent}, NOW(6), 'soak');\n"
                )
                client.stdin.write(stmt.encode())
                client.stdin.flush()
                time.sleep(INTERVAL)
        finally:
            client.stdin.close()
            rc = client.wait()
    with open(count, "w", encoding="ascii") as f:
        f.write(f"{sent} {rc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
