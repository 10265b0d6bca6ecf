"""Wire protocol v1 against a real daemon: odd input gets an error reply or a close, never a
crash, and the daemon keeps serving."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from menda_keyring.daemon_protocol import MAX_LINE
from tests.support.daemon import Daemon
from tests.support.env import base_env
from tests.support.sockets import raw_exchange

NOT_OURS = "https://pypi.org/simple/"


@pytest.fixture
def daemon(home: Path, sockdir: Path) -> Iterator[Daemon]:
    with Daemon(base_env(home), sockdir / "c.sock") as running:
        yield running
    assert running.proc is not None and running.proc.returncode == 0, running.log()


def replies(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (b"this is not json\n", "not JSON"),
        (b"\xff\xfe\x00garbage\n", "not JSON"),
        (b"[1, 2, 3]\n", "JSON object"),
        (b'"v"\n', "JSON object"),
        (b'{"op": "ping"}\n', "version"),
        (b'{"v": true, "op": "ping"}\n', "version"),
        (b'{"v": "1", "op": "ping"}\n', "version"),
        (b'{"v": 1, "op": "explode"}\n', "unknown op"),
        (b'{"v": 1, "op": ["get"]}\n', "unknown op"),
        (b'{"v": 1, "op": "get", "service": 42}\n', "service"),
        (b'{"v": 1, "op": "get", "service": "x", "username": 7}\n', "username"),
        (b'{"v": 1, "op": "get", "service": "x", "env": []}\n', "env"),
        (b'{"v": 1, "op": "get", "service": "x", "env": {"HOME": 1}}\n', "env"),
        (b'{"v": 1, "op": "get", "service": "x", "env": {"A": null}}\n', "env"),
    ],
)
def test_malformed_requests_get_a_bad_request_reply(
    daemon: Daemon, line: bytes, needle: str
) -> None:
    (reply,) = replies(raw_exchange(daemon.socket, line))
    assert reply["v"] == 1 and reply["ok"] is False
    assert reply["error"]["kind"] == "bad_request"
    assert needle in reply["error"]["message"]
    assert daemon.counters()["bad_requests"] >= 1


def test_a_newer_protocol_version_is_refused_by_name_and_the_connection_serves_on(
    daemon: Daemon,
) -> None:
    data = b'{"v": 2, "op": "ping", "new_field": [1]}\n{"v": 1, "op": "ping", "new_field": 1}\n'
    refused, ping = replies(raw_exchange(daemon.socket, data))
    assert refused["v"] == 1 and refused["ok"] is False
    assert refused["error"]["kind"] == "unsupported_version"
    assert "v2" in refused["error"]["message"] and "v1" in refused["error"]["message"]
    # A field this daemon does not know is ignored, not refused.
    assert ping == {
        "v": 1,
        "ok": True,
        "pid": daemon.pid,
        "version": ping["version"],
        "protocol": 1,
    }


def test_an_oversized_line_is_refused_and_the_daemon_survives(daemon: Daemon) -> None:
    huge = b'{"v":1,"op":"get","service":"' + b"a" * (MAX_LINE + 10) + b'"}\n'
    answer = raw_exchange(daemon.socket, huge)
    if answer:  # an error reply, then the connection closes
        (reply,) = replies(answer)
        assert reply["error"]["kind"] == "bad_request"
        assert "longer than" in reply["error"]["message"]
    # A line that never ends is cut off the same way.
    raw_exchange(daemon.socket, b"x" * (4 * MAX_LINE))
    assert daemon.status()["pid"] == daemon.pid


def test_several_requests_on_one_connection_and_blank_lines(daemon: Daemon) -> None:
    data = (
        b'{"v":1,"op":"ping"}\n\n'
        b"not json\n"
        b'{"v":1,"op":"status"}\n'
        + json.dumps({"v": 1, "op": "get", "service": NOT_OURS, "username": None}).encode()
        + b"\n"
        + json.dumps({"v": 1, "op": "get", "service": NOT_OURS}).encode()  # no newline at EOF
    )
    first, second, third, fourth, fifth = replies(raw_exchange(daemon.socket, data))
    assert first == {
        "v": 1,
        "ok": True,
        "pid": daemon.pid,
        "version": first["version"],
        "protocol": 1,
    }
    assert second["error"]["kind"] == "bad_request"
    assert third["ok"] and third["status"]["pid"] == daemon.pid
    assert fourth == {"v": 1, "ok": True, "password": None}
    assert fifth == {"v": 1, "ok": True, "password": None}


def test_other_usernames_and_services_get_null_without_any_lookup(daemon: Daemon) -> None:
    ca = "https://menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com/pypi/r/"
    for service, username in ((ca, "alice"), (NOT_OURS, "aws"), ("", None), (ca * 50, None)):
        line = json.dumps({"v": 1, "op": "get", "service": service, "username": username})
        (reply,) = replies(raw_exchange(daemon.socket, line.encode() + b"\n"))
        assert reply == {"v": 1, "ok": True, "password": None}
    # Nothing was resolved: no config file exists, yet no error came back.
    assert daemon.counters()["requests"] == 0


def test_a_client_that_vanishes_mid_request_does_not_hurt(daemon: Daemon) -> None:
    for _ in range(20):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(daemon.socket)
            sock.sendall(b'{"v":1,"op":"sta')
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(daemon.socket)
    assert daemon.status()["pid"] == daemon.pid
