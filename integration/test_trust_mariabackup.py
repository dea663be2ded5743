"""A third party with a certificate from the cluster's CA (CN=mallory) connects to the
joiner's SST port in each stage of a real py_mariabackup join: its connections are refused
before any of its bytes reach mbstream, the join still succeeds with the donor's data, and
nothing of mallory's ends up in the datadir (docs/tls.md, "mariabackup")."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testsupport import lab as labmod
from testsupport.cluster import join
from testsupport.lab import CertPaths, Lab, Node
from testsupport.process import mbstream_of, tls_peer_exchange

MARKER = "mallory_marker"
# On the donor, logged just before it starts the stage-2 pipeline: mallory's cue.
STAGE2_CUE = "Streaming the backup to the joiner at"


@dataclass
class Mallory:
    """A thread that connects once per stage, as soon as the joiner listens."""

    certs: CertPaths
    joiner: Node
    donor_log: str
    log_at: int
    payload: bytes
    answers: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        try:
            self.answers.append(self.attack(deadline=time.monotonic() + 120))
            self.wait_for_cue(deadline=time.monotonic() + 120)
            self.answers.append(self.attack(deadline=time.monotonic() + 60))
        except Exception as exc:  # reported by the test, not lost in the thread
            self.errors.append(repr(exc))

    def wait_for_cue(self, deadline: float) -> None:
        with open(self.donor_log, "rb") as f:
            f.seek(self.log_at)
            text = b""
            while STAGE2_CUE.encode() not in text:
                if time.monotonic() > deadline:
                    raise TimeoutError("the donor never started stage 2")
                text += f.read()
                time.sleep(0.001)

    def attack(self, deadline: float) -> bytes:
        return tls_peer_exchange(
            (self.joiner.ip, self.joiner.ports["sst"]),
            self.certs.ca,
            self.certs.certs["mallory"],
            self.payload,
            deadline=deadline,
            poll=0.001,
        )


def mallory_stream(directory: str) -> bytes:
    """An mbstream with a marker file and state files at mallory's own position."""
    files = {
        MARKER: b"mallory was here\n",
        "xtrabackup_galera_info": b"badbadba-d000-4000-8000-00000000beef:99 0\n",
        "xtrabackup_checkpoints": b"backup_type = full-backuped\n",
    }
    return mbstream_of(Path(directory), files)


@pytest.mark.parametrize("mode", ["VERIFY_CA", "VERIFY_IDENTITY"])
def test_mallory_refused_in_both_stages(lab: Lab, donor: Node, mode: str) -> None:
    joiner = lab.add_node(sst_method="py_mariabackup")
    d = os.path.join(lab.base, f"trust-certs-{mode}")
    certs = labmod.make_certs(
        d, {donor.name: donor.ip, joiner.name: joiner.ip, "mallory": "127.0.0.250"}
    )
    donor.sst_method = "py_mariabackup"
    donor.sst_options = {**labmod.tls_options(certs, donor.name, mode), "rlimit": "40m"}
    joiner.sst_options = labmod.tls_options(certs, joiner.name, mode)
    mallory = Mallory(
        certs,
        joiner,
        donor.error_log,
        len(donor.log_text().encode()),
        mallory_stream(os.path.join(lab.base, f"mallory-{mode}")),
    )
    thread = threading.Thread(target=mallory.run, daemon=True)
    thread.start()
    join(lab, donor, joiner)  # data equal, no SST error, nothing left running, no leak
    thread.join(timeout=30)
    assert mallory.errors == []
    assert mallory.answers == [b"", b""]  # two connections, neither acknowledged
    log = joiner.log_text()
    refusals = [ln for ln in log.splitlines() if "Refused a connection on the SST port" in ln]
    assert len(refusals) == 2, "\n".join(refusals)
    assert "(stage 1)" in refusals[0] and "(stage 2)" in refusals[1]
    assert all("did not start with this joiner's secret" in ln for ln in refusals)
    for root, _, files in os.walk(joiner.directory):
        assert MARKER not in files, f"mallory's file in {root}"
    assert "badbadba-d000-4000-8000-00000000beef" not in log  # its position was never used
    lab.remove_node(joiner)
