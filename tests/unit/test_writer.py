"""The write load's figures (testsupport/writer.py): what the benchmark prints as stalls."""

from __future__ import annotations

from testsupport.writer import Stats, Target


def test_blocked_time_counts_slow_commits_and_refusals() -> None:
    s = Stats(committed=4, latencies=[0.01, 0.5, 0.02, 2.0], refused_seconds=1.5)
    assert s.longest == 2.0
    assert s.blocked_seconds(0.1) == 4.0
    assert s.blocked_seconds(1.0) == 3.5


def test_no_commit_means_no_latency() -> None:
    assert Stats().longest == 0.0
    assert Stats().blocked_seconds() == 0.0


def test_socket_or_tcp() -> None:
    assert Target(socket="/run/x.sock").connect_args()["unix_socket"] == "/run/x.sock"
    tcp = Target(host="127.0.0.5", port=3307, user="w", password="p").connect_args()
    assert (tcp["host"], tcp["port"], tcp["user"], "unix_socket" in tcp) == (
        "127.0.0.5",
        3307,
        "w",
        False,
    )
