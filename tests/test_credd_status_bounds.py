"""``status`` stays bounded whatever the daemon holds, and the peer warning stays quiet.

The real server runs in a thread of this process with a broker whose snapshot is
thousands of entries; the real ``menda-credd status`` (text and ``--json``) asks it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from menda_credd import status_report
from menda_credd.connections import Throttle
from menda_credd.server import CredServer
from menda_keyring.daemon_protocol import MAX_REPLY, StatusReply, encode_reply
from tests.support.procs import Run, credd
from tests.support.server import serving

ENTRIES = 5000
STATES = ("valid", "refreshing", "expired", "exchanging")


class BigBroker:
    """What the server asks of a broker, with a large synthetic snapshot."""

    idle_timeout = 8 * 3600.0

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.counters: Counter[str] = Counter()

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] += by

    def snapshot(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Most recently used first, as the broker gives them."""
        ordered = sorted(self.rows, key=lambda row: row["last_used"], reverse=True)
        return ordered if limit is None else ordered[:limit]

    def summary(self) -> dict[str, Any]:
        states = Counter(row["state"] for row in self.rows)
        return {
            "entries": len(self.rows),
            "identities": len({row["identity"] for row in self.rows}),
            "by_state": dict(states),
        }

    def close(self) -> None:
        pass


def synthetic_rows(count: int, error_size: int = 120) -> list[dict[str, Any]]:
    return [
        {
            "identity": f"env client client-{i // 2:05d} (m2m) at https://api.example.menda.cloud",
            "domain": f"domain-{i % 7}",
            "domain_owner": "058264169513",
            "region": "eu-west-1",
            "state": STATES[i % len(STATES)],
            "issued_at": 1_700_000_000.0,
            "expires_at": 1_700_043_200.0,
            "last_refresh": 1_700_000_000.0,
            "next_refresh": 1_700_040_000.0,
            "last_used": 1_700_000_000.0 + i,  # higher i: used more recently
            "requests": i,
            "refresh_failures": 0,
            "last_error": "e" * error_size,
        }
        for i in range(count)
    ]


def status(*args: str, path: str, home: Path) -> Run:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "MENDA_CREDD_SOCKET": path}
    return credd("status", *args, env=env)


def test_thousands_of_entries_give_a_bounded_status_and_json(sockdir: Path, tmp_path: Path) -> None:
    path = str(sockdir / "credd.sock")
    rows = synthetic_rows(ENTRIES)
    server = CredServer(BigBroker(rows), path)  # type: ignore[arg-type]
    assert len(encode_reply(StatusReply(server.status()))) < MAX_REPLY
    with serving(server, path):
        as_json = status("--json", path=path, home=tmp_path)
        as_text = status(path=path, home=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert len(as_json.stdout) < MAX_REPLY
    cap = status_report.MAX_ENTRIES
    assert report["entries_cap"] == cap and len(report["entries"]) == cap
    assert report["truncated"] == ENTRIES - cap
    assert report["summary"]["entries"] == ENTRIES
    assert report["summary"]["identities"] == ENTRIES // 2
    assert report["summary"]["by_state"] == {s: ENTRIES // len(STATES) for s in STATES}
    # The rows kept are the most recently used ones.
    assert {e["requests"] for e in report["entries"]} == set(range(ENTRIES - cap, ENTRIES))

    assert as_text.returncode == 0, as_text.stderr
    lines = as_text.stdout.splitlines()
    table = [line for line in lines if "domain-" in line]
    assert len(table) == status_report.TABLE_ROWS
    assert f"entries:      {ENTRIES} (" in as_text.stdout
    assert f"{ENTRIES // 2} identities" in as_text.stdout
    assert f"... and {ENTRIES - status_report.TABLE_ROWS} more entries" in as_text.stdout
    assert len(lines) < status_report.TABLE_ROWS + 15


def test_huge_rows_are_cut_by_bytes_before_the_reply_outgrows_the_client(
    sockdir: Path, tmp_path: Path
) -> None:
    path = str(sockdir / "credd.sock")
    rows = synthetic_rows(2000, error_size=4000)  # about 8 MB of rows
    server = CredServer(BigBroker(rows), path)  # type: ignore[arg-type]
    with serving(server, path):
        as_json = status("--json", path=path, home=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    kept = len(report["entries"])
    assert 0 < kept < status_report.MAX_ENTRIES
    assert report["truncated"] == 2000 - kept
    compact = json.dumps(report["entries"], separators=(",", ":"))
    assert len(compact) <= status_report.ROW_BUDGET + kept


def test_bounded_rows_keep_the_most_recent_within_count_and_bytes() -> None:
    rows = synthetic_rows(10)
    kept, left = status_report.bounded_rows(rows, limit=3)
    assert [r["requests"] for r in kept] == [9, 8, 7] and left == 7

    def size(row: dict[str, Any]) -> int:
        return len(json.dumps(row, separators=(",", ":"))) + 1

    two = size(rows[9]) + size(rows[8])
    kept, left = status_report.bounded_rows(rows, limit=100, budget=two)
    assert [r["requests"] for r in kept] == [9, 8] and left == 8
    kept, left = status_report.bounded_rows(rows, limit=100, budget=two - 1)
    assert [r["requests"] for r in kept] == [9] and left == 9
    assert status_report.bounded_rows([], 5) == ([], 0)


def test_the_peer_rejection_warning_is_one_line_per_interval_with_a_count() -> None:
    throttle = Throttle(interval=60.0)
    assert throttle.admit(1000.0) == 0
    assert all(throttle.admit(1000.0 + i) is None for i in range(1, 60))
    assert throttle.admit(1060.0) == 59  # the next line says how many were held back
    assert throttle.admit(1061.0) is None
    assert throttle.admit(2000.0) == 1


def test_a_burst_of_foreign_peers_logs_one_warning_and_counts_them_all(
    sockdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(sockdir / "credd.sock")
    broker = BigBroker([])
    # The server serves a uid that is not ours: our own connections are foreign peers.
    server = CredServer(broker, path, uid=os.getuid() + 4242)  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING, logger="menda_credd.server")
    with serving(server, path):
        for _ in range(50):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(path)
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(100) == b""  # closed without a word
    assert broker.counters["peer_rejections"] == 50
    warnings = [r for r in caplog.records if "rejected a connection" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
